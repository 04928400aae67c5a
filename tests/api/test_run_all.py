"""Run all over real HTTP against the emulator: segments are refreshed before any run reads
them, whichever worker executes the runs (the request's own thread, the in-process Huey worker
on SQLite, Huey on Redis); the web page's button, its summary, and who may press it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from segment_export.db.models import Connection, Export, Run
from segment_export.definitions import connections
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.exports.engine import TERMINAL
from segment_export.profiles.imports import ProfileImport
from segment_export.segments.service import SegmentSpec, create_segment
from tests.api.harness import AppWorld, app_world, make_settings
from tests.services import REDIS_URL, port_open, require

CLIENT_SECRET = "run-all-secret-0123456789"


@dataclass
class Site:
    world: AppWorld
    emulator: EmulatorServer
    connection: Connection
    lists: dict[str, str]
    events: list[tuple[str, tuple[str, ...]]]

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.world.runtime.store.import_table(pa.Table.from_pylist(rows),
                                              ProfileImport(id_column="customer_id"))

    def segment(self, name: str, expression: str) -> str:
        with self.world.runtime.sessions.begin() as db:
            return create_segment(
                db, self.world.runtime.store, spec=SegmentSpec(name=name, expression=expression)
            ).id

    def export(self, name: str, segment: str, list_name: str, **spec: Any) -> Export:
        with self.world.runtime.sessions.begin() as db:
            return create_export(db, actor=db.merge(self.world.users["admin"]), spec=ExportSpec(
                name=name, connection_id=self.connection.id, list_id=self.lists[list_name],
                list_name=list_name, mapping={"email": "email"}, segment_ids=[segment], **spec))

    def record_store_calls(self) -> None:
        """From now on note every membership refresh and every read of members, in order."""
        store = self.world.runtime.store
        lock = threading.Lock()

        def noting(kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
            def call(first: Any, *args: Any, **kwargs: Any) -> Any:
                ids = (first,) if isinstance(first, str) else tuple(first)
                if kind == "refresh":
                    result = method(first, *args, **kwargs)  # noted once it is stored
                    with lock:
                        self.events.append((kind, ids))
                    return result
                with lock:
                    self.events.append((kind, ids))
                return method(first, *args, **kwargs)
            return call

        store.store_membership = noting("refresh", store.store_membership)  # type: ignore[method-assign]
        store.membership_size = noting("read", store.membership_size)  # type: ignore[method-assign]
        store.read_members = noting("read", store.read_members)  # type: ignore[method-assign]


@contextmanager
def open_site(data_dir: Path, queue: str) -> Iterator[Site]:
    """The app on a port with an authorized connection to an emulator with two lists;
    ``queue``: ``immediate`` (runs execute inside the request), ``sqlite`` or ``redis`` (the
    in-process Huey consumer on that queue)."""
    client_id = f"run-all-{uuid.uuid4().hex[:8]}"
    with EmulatorServer(EmulatorConfig(requests_per_second=50, auto_approve=True,
                                       activity_seconds=0.05)) as emu:
        overrides: dict[str, Any] = {"cc_api_url": emu.api_url, "cc_auth_url": emu.auth_url,
                                     "cc_requests_per_second": 40.0}
        if queue == "redis":
            require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
            overrides |= {"redis_url": REDIS_URL, "queue_name": f"test-{uuid.uuid4().hex}"}
        settings = make_settings(data_dir, **overrides)
        with app_world(settings, profiles=0, immediate_queue=queue == "immediate",
                       start_worker=queue != "immediate") as world:
            seeded = emu.control.seed(
                apps=[{"client_id": client_id, "client_secret": CLIENT_SECRET,
                       "redirect_uris": [connections.DEFAULT_REDIRECT_URI]}],
                account={"organization_name": "Run-all Bakery"}, lists=["Germany", "France"])
            conn = connect_sandbox(
                world.runtime.sessions, engine=world.engine, settings=settings,
                control=emu.control, actor=world.users["admin"], display_name="Bakery",
                client_id=client_id, client_secret=CLIENT_SECRET,
                shared_with_contributors=True)
            yield Site(world, emu, conn, dict(seeded.lists), [])


def _people(countries: dict[int, str]) -> list[dict[str, Any]]:
    return [{"customer_id": i, "email": f"p{i}@example.com", "country": country}
            for i, country in countries.items()]


def _wait_for(site: Site, run_ids: list[str], *, timeout: float = 60) -> dict[str, Run]:
    deadline = time.monotonic() + timeout
    while True:
        with site.world.runtime.sessions() as db:
            runs = {r: db.get(Run, r) for r in run_ids}
        if all(run is not None and run.status in TERMINAL for run in runs.values()):
            return runs  # type: ignore[return-value]
        assert time.monotonic() < deadline, {r: run and run.status for r, run in runs.items()}
        time.sleep(0.1)


@pytest.mark.parametrize("queue", ["immediate", "sqlite",
                                   pytest.param("redis", marks=pytest.mark.redis)])
def test_segments_are_refreshed_before_any_run_reads_them(tmp_path: Path, queue: str) -> None:
    with open_site(tmp_path / "data", queue) as site:
        site.load(_people({1: "DE", 2: "DE", 3: "FR"}))
        germany = site.segment("Germany", "country = 'DE'")
        france = site.segment("France", "country = 'FR'")
        site.export("DE newsletter", germany, "Germany")
        site.export("FR newsletter", france, "France")
        site.export("DE paused", germany, "France", enabled=False)
        # Two people join the segments after their last refresh; one leaves France.
        site.load(_people({1: "DE", 2: "DE", 3: "DE", 4: "DE", 5: "FR"}))
        site.record_store_calls()

        answer = site.world.api("contributor").post("/api/exports/run-all")

        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert [q["export_name"] for q in body["queued"]] == ["DE newsletter", "FR newsletter"]
        assert [(s["export_name"], s["reason"]) for s in body["skipped"]] == [
            ("DE paused", "disabled")]
        assert {r["name"]: r["size"] for r in body["refreshed"]} == {"Germany": 4, "France": 1}
        runs = _wait_for(site, [q["run_id"] for q in body["queued"]])
        assert {r.status for r in runs.values()} == {"succeeded"}, [
            r.message for r in runs.values()]
        members = site.emulator.control.list_members
        assert members(site.lists["Germany"]) == {f"p{i}@example.com" for i in (1, 2, 3, 4)}
        assert members(site.lists["France"]) == {"p5@example.com"}
        # Every refresh was stored before the first read of any member by a run.
        kinds = [kind for kind, _ in site.events]
        assert kinds.count("refresh") == 2
        assert "read" in kinds
        assert kinds.index("read") > max(i for i, k in enumerate(kinds) if k == "refresh")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path / "data", "immediate") as opened:
        yield opened


def test_the_button_runs_all_and_the_page_says_what_happened(site: Site) -> None:
    site.load(_people({1: "DE", 2: "FR"}))
    germany = site.segment("Germany", "country = 'DE'")
    site.export("DE newsletter", germany, "Germany")
    busy = site.export("Busy", germany, "France")
    site.export("Off", germany, "France", enabled=False)
    with site.world.runtime.sessions.begin() as db:
        db.add(Run(export_id=busy.id, status="running"))  # its worker is at it

    viewer = site.world.browser("viewer")
    assert 'action="/data/exports/run-all"' not in viewer.get("/data/exports").text
    assert viewer.post("/data/exports/run-all").status_code == 403

    contributor = site.world.browser("contributor")
    page = contributor.get("/data/exports")
    assert 'action="/data/exports/run-all"' in page.text
    assert contributor.post("/data/exports/run-all", csrf=False).status_code == 403

    pressed = contributor.post("/data/exports/run-all")
    assert pressed.status_code == 303, pressed.text
    summary_url = pressed.headers["location"]
    assert summary_url.startswith("/data/exports?run_all=")
    shown = contributor.get(summary_url)
    assert shown.status_code == 200
    text = shown.text
    assert "Run all: 1 run queued, 2 exports skipped." in text
    summary = text[text.index('id="run-all-summary"'):]
    summary = summary[:summary.index("</section>")]
    assert "Segments refreshed first: Germany." in summary
    assert "Queued (1)" in summary
    assert ">DE newsletter</a>" in summary
    assert "Busy: it already has an active run" in summary
    assert "Off: disabled" in summary
    with site.world.runtime.sessions() as db:
        queued = db.query(Run).filter(Run.trigger == "run_all").one()
    assert f'href="/runs/{queued.id}"' in summary
    assert queued.status == "succeeded", queued.message  # the immediate queue ran it
    assert site.emulator.control.list_members(site.lists["Germany"]) == {"p1@example.com"}
    # The summary is its author's: someone else opening the link sees the plain page.
    other = site.world.browser("admin").get(summary_url).text
    assert 'id="run-all-summary"' not in other


def test_the_api_refuses_viewers_and_says_why_each_export_was_skipped(site: Site) -> None:
    site.load(_people({1: "DE"}))
    germany = site.segment("Germany", "country = 'DE'")
    site.export("DE newsletter", germany, "Germany")
    with site.world.runtime.sessions.begin() as db:
        db.get(Connection, site.connection.id).status = (  # type: ignore[union-attr]
            "reauthorization_needed")
    refused = site.world.api("viewer").post("/api/exports/run-all")
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"
    answer = site.world.api("admin").post("/api/exports/run-all")
    assert answer.status_code == 202
    assert answer.json() == {"queued": [], "refreshed": [], "skipped": [{
        "export_id": answer.json()["skipped"][0]["export_id"], "export_name": "DE newsletter",
        "reason": "reauthorization_needed", "run_id": None,
        "message": "The connection 'Bakery' needs re-authorization"}]}
