"""Three `segment-export worker` processes on PostgreSQL state, a Redis queue and one emulator
process: one worker is SIGKILLed mid-run, another resumes its run, every run ends once, every
list is exact, and together they stay inside one API key's 4 requests/s."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest
from bench.cluster import (
    EmulatorProcess,
    Workers,
    emulator_process,
    max_in_any_second,
    worker_pid,
)
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.db.models import AuditEvent, Connection, Export, Run, RunBatch, User
from segment_export.definitions import connections
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.exports.engine import TERMINAL, execute_run
from segment_export.exports.heartbeat import Heartbeat
from segment_export.exports.runs import request_run
from segment_export.profiles import ProfileStore
from segment_export.profiles.engines import open_profile_store
from segment_export.profiles.imports import ProfileImport
from segment_export.scheduling.queue import TaskQueue, one_at_a_time
from segment_export.scheduling.runtime import Runtime
from segment_export.scheduling.watchdog import requeue_orphans
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import ensure_admin
from tests.services import REDIS_URL, port_open, postgres_schema_url, require
from tests.world import World

EXPORTS = 4
CONTACTS_PER_EXPORT = 600
BATCH = 50  # 12 imports a run: runs last long enough to be killed in the middle
RATE = 4.0
CLIENT_SECRET = "sandbox-client-secret-0123456789"


@dataclass
class Cluster:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ProfileStore
    emulator: EmulatorProcess
    admin: User
    connection: Connection
    lists: list[str]


def _profile_store_url(state_url: str) -> str:
    """The PostgreSQL profile store in the test's own schema of the state database."""
    parts = urlsplit(state_url)
    options = parse_qs(parts.query)["options"][0]  # -csearch_path=<schema>
    schema = options.split("=", 1)[1]
    return f"postgresql://{parts.netloc}{parts.path}?schema={schema}&table=profiles"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    with postgres_schema_url() as state_url, emulator_process(
            tmp_path / "emulator.log", requests_per_second=RATE,
            activity_seconds=0.2) as emulator:
        # A client id of its own: the rate budget in Redis is keyed by it, so test runs on the
        # same Redis never share a budget; the queue name keeps their tasks apart.
        client_id = f"client-{uuid.uuid4().hex[:12]}"
        seeded = emulator.control.seed(
            apps=[{"client_id": client_id, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [connections.DEFAULT_REDIRECT_URI]}],
            account={"organization_name": "Scale-out Bakery"},
            lists=[f"List {i}" for i in range(EXPORTS)])
        settings = load_settings(
            data_dir=tmp_path / "driver", database_url=state_url,
            secret_key=Fernet.generate_key().decode(), redis_url=REDIS_URL,
            queue_name=f"test-{uuid.uuid4().hex}", profile_store=_profile_store_url(state_url),
            cc_api_url=emulator.api_url, cc_auth_url=emulator.auth_url,
            cc_requests_per_second=RATE, import_batch_contacts=BATCH, stale_run_seconds=4,
            worker_threads=1, log_level="INFO")
        engine = make_engine(settings)
        upgrade_database(engine)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            admin = ensure_admin(session)
        connection = connect_sandbox(
            sessions, engine=engine, settings=settings, control=emulator.control, actor=admin,
            display_name="Bakery", client_id=client_id, client_secret=CLIENT_SECRET)
        store = open_profile_store(settings)
        try:
            yield Cluster(settings, engine, sessions, store, emulator, admin, connection,
                          [seeded.lists[f"List {i}"] for i in range(EXPORTS)])
        finally:
            store.close()
            engine.dispose()


def _expected(group: int) -> set[str]:
    return {f"g{group}.p{i}@example.com" for i in range(CONTACTS_PER_EXPORT)}


def _prepare_exports(cluster: Cluster) -> list[Export]:
    rows = [{"customer_id": f"{g}-{i}", "email": f"g{g}.p{i}@example.com",
             "first_name": f"P{i}", "last_name": f"Group{g}", "grp": g}
            for g in range(EXPORTS) for i in range(CONTACTS_PER_EXPORT)]
    cluster.store.import_table(pa.Table.from_pylist(rows), ProfileImport(id_column="customer_id"))
    exports = []
    for g in range(EXPORTS):
        with cluster.sessions.begin() as session:
            segment_id = create_segment(
                session, cluster.store, spec=SegmentSpec(name=f"group {g}", expression=f"grp = {g}")
            ).id
        with cluster.sessions.begin() as session:
            exports.append(create_export(session, actor=cluster.admin, spec=ExportSpec(
                name=f"group {g}", connection_id=cluster.connection.id,
                list_id=cluster.lists[g], segment_ids=[segment_id],
                mapping={"email": "email", "first_name": "first_name",
                         "last_name": "last_name"})))
    return exports


def _mid_run_victim(cluster: Cluster, workers: Workers) -> tuple[int, str] | None:
    """A live worker holding a run in the middle of its imports, if there is one."""
    with cluster.sessions() as session:
        running = session.execute(select(Run.id, Run.worker_id).where(
            Run.status == "running")).all()
        for run_id, worker_id in running:
            counted = session.execute(
                select(RunBatch.state, func.count()).where(RunBatch.run_id == run_id)
                .group_by(RunBatch.state)).all()
            states: dict[str, int] = dict(counted)  # type: ignore[arg-type]
            pid = worker_pid(worker_id)
            total = CONTACTS_PER_EXPORT // BATCH
            worker = workers.by_pid(pid) if pid else None
            # Several imports out (Constant Contact holds them; this attempt may not have
            # confirmed them yet) and more to send.
            if (worker is not None and worker.process.poll() is None
                    and 4 <= sum(states.values()) <= total - 3):
                return pid, run_id
    return None


def _wait(condition: str, check: object, timeout: float, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {w.name}\n{w.log_text()[-2500:]}" for w in workers.workers)
    pytest.fail(f"timed out waiting for {condition}\n{logs}")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_three_workers_share_runs_and_one_rate_budget_and_resume_a_killed_one(
        cluster: Cluster, tmp_path: Path) -> None:
    workers = Workers(cluster.settings, tmp_path / "workers")
    try:
        # One thread each: the first three runs go to three different workers.
        workers.start(3, threads=1)
        exports = _prepare_exports(cluster)  # while the workers start
        workers.wait_ready()
        cluster.emulator.control.clear_requests()
        queue = TaskQueue(Runtime(cluster.settings, engine=cluster.engine, store=cluster.store))
        run_ids = []
        for export in exports:
            with cluster.sessions.begin() as session:
                run_ids.append(request_run(session, actor=cluster.admin, export=export).id)
        for run_id in run_ids:
            queue.enqueue_run(run_id)

        victim: list[tuple[int, str]] = []

        def found_victim() -> bool:
            chosen = _mid_run_victim(cluster, workers)
            if chosen is not None:
                victim.append(chosen)
            return chosen is not None

        _wait("a run in the middle of its batches", found_victim, 45, workers)
        killed_pid, killed_run = victim[0]
        worker = workers.by_pid(killed_pid)
        assert worker is not None
        workers.kill(worker)

        def all_ended() -> bool:
            with cluster.sessions() as session:
                statuses = session.scalars(select(Run.status).where(Run.id.in_(run_ids))).all()
            return all(status in TERMINAL for status in statuses)

        _wait("every run to end", all_ended, 60, workers)
    finally:
        workers.stop()
        # Duplicate deliveries left in this test's queue would outlive it in Redis.
        TaskQueue(Runtime(cluster.settings, engine=cluster.engine)).huey.flush()

    with cluster.sessions() as session:
        runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(run_ids)))}
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(("run.claimed", "run.requeued")),
            AuditEvent.target_id.in_(run_ids)).order_by(AuditEvent.id)).all()

    # Every run ended once and well, and its list holds exactly its segment: nothing lost,
    # nothing doubled, nothing from a neighbouring export.
    for group, run_id in enumerate(run_ids):
        run = runs[run_id]
        assert run.status == "succeeded", (run.status, run.message)
        assert cluster.emulator.control.list_members(cluster.lists[group]) == _expected(group)
        c = run.counts
        assert c["in_segment"] == CONTACTS_PER_EXPORT
        assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c[
            "no_consent"]
    contacts = cluster.emulator.control.contacts()
    emails = [contact["email"].lower() for contact in contacts]
    assert len(emails) == len(set(emails)) == EXPORTS * CONTACTS_PER_EXPORT
    assert all(len(c["list_ids"]) == len(set(c["list_ids"])) == 1 for c in contacts)

    # The claims history: one worker at a time on each run. A run changes hands only after its
    # holder was killed, and the killed worker's run was finished by another worker.
    claims: dict[str, list[AuditEvent]] = {run_id: [] for run_id in run_ids}
    for event in events:
        if event.action == "run.claimed":
            claims[event.target_id or ""].append(event)
    kill_time = datetime.fromtimestamp(workers.killed[killed_pid], UTC)
    for run_id, taken in claims.items():
        assert len(taken) == runs[run_id].attempt, (run_id, taken)
        for before, after in itertools.pairwise(taken):
            holder = worker_pid(before.details["worker_id"])
            assert holder == killed_pid, f"run {run_id} changed hands from a live worker"
            assert after.at > kill_time, f"run {run_id} was taken from {holder} while it lived"
            assert worker_pid(after.details["worker_id"]) != killed_pid
    assert len(claims[killed_run]) == 2
    assert worker_pid(runs[killed_run].worker_id) != killed_pid
    assert any(e.action == "run.requeued" and e.target_id == killed_run for e in events)
    claimants = {worker_pid(e.details["worker_id"]) for e in events if e.action == "run.claimed"}
    assert len(claimants) == 3, "every worker took part"

    # One rate budget for the key across the three processes: no 429, never over 4 a second.
    api = [r for r in cluster.emulator.control.requests() if r.path.startswith("/v3/")]
    assert api, "the emulator saw no API requests"
    assert [r for r in api if r.status == 429] == []
    assert max_in_any_second([r.time for r in api]) <= RATE
    imports = [r for r in api if r.path.endswith("/contacts_json_import")]
    # The resumed attempt confirmed what the killed one had sent instead of sending it again;
    # only an import whose answer died with the worker may have gone twice.
    assert len(imports) <= EXPORTS * CONTACTS_PER_EXPORT // BATCH + 1


# -- the pieces, one at a time (the embedded store and SQLite: fast) --------------------------

def _people(n: int) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"p{i}@example.com", "first_name": "A",
             "last_name": "B", "country": "DE"} for i in range(1, n + 1)]


def _running_run(world: World, *, worker_id: str, heartbeat: datetime) -> str:
    world.load_profiles(_people(3))
    export = world.export("held", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
        run.status, run.worker_id, run.heartbeat_at = "running", worker_id, heartbeat
        return run.id


def test_the_watchdog_requeues_a_dead_workers_run_once(world: World) -> None:
    run_id = _running_run(world, worker_id="gone-host:4242:1",
                          heartbeat=datetime.now(UTC) - timedelta(minutes=10))
    runtime = Runtime(world.settings, engine=world.engine, store=world.store)
    first: list[str] = []
    second: list[str] = []
    assert requeue_orphans(runtime, enqueue=first.append) == [run_id]
    # A second worker looking at the same moment finds nothing left to do.
    assert requeue_orphans(runtime, enqueue=second.append) == []
    assert (first, second) == ([run_id], [])
    with world.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert run.status == "queued"
        assert "gone-host:4242:1" in (run.message or "")
        (event,) = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "run.requeued")).all()
        assert event.details["worker_id"] == "gone-host:4242:1"


def test_the_watchdog_leaves_a_beating_run_alone(world: World) -> None:
    _running_run(world, worker_id="other-host:4242:1", heartbeat=datetime.now(UTC))
    runtime = Runtime(world.settings, engine=world.engine, store=world.store)
    assert requeue_orphans(runtime, enqueue=lambda run_id: None) == []


def test_a_heartbeat_keeps_the_claim_fresh_until_it_is_lost(world: World) -> None:
    old = datetime.now(UTC) - timedelta(minutes=10)
    run_id = _running_run(world, worker_id="me:1:1", heartbeat=old)
    with Heartbeat(world.sessions, run_id=run_id, worker_id="me:1:1", interval=0.05) as beat:
        time.sleep(0.3)
        with world.sessions() as session:
            fresh = session.get(Run, run_id)
            assert fresh is not None
            assert fresh.heartbeat_at is not None
            assert fresh.heartbeat_at > old
        with world.sessions.begin() as session:
            taken = session.get(Run, run_id)
            assert taken is not None
            taken.worker_id, taken.heartbeat_at = "other:2:1", old
        assert beat.beat() is False
        time.sleep(0.2)
    with world.sessions() as session:
        after = session.get(Run, run_id)
        assert after is not None
        assert after.heartbeat_at == old  # nothing touched the new holder's row


def test_a_worker_that_lost_its_run_stops_without_writing(world: World) -> None:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 10})
    world.load_profiles(_people(100))
    export = world.export("taken over", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id

    def taken_over(run: Run) -> None:
        # Another machine decides this worker is dead and claims the run after batch one.
        if run.status == "running" and run.counts.get("processed"):
            with world.sessions.begin() as session:
                stored = session.get(Run, run_id)
                assert stored is not None
                if stored.worker_id != "other-host:1:1":
                    stored.worker_id = "other-host:1:1"

    result = execute_run(run_id, deps=world.deps(progress=taken_over))
    assert result.status == "running"
    assert result.worker_id == "other-host:1:1"
    assert result.finished_at is None
    imports = [r for r in world.control.requests() if r.path.endswith("contacts_json_import")]
    assert len(imports) <= 1


@pytest.mark.postgres
def test_one_tick_at_a_time_across_processes(settings: Settings) -> None:
    with postgres_schema_url() as url:
        engine = make_engine(settings, url=url)
        try:
            with one_at_a_time(engine, "tick") as first:
                with one_at_a_time(engine, "tick") as second:
                    assert (first, second) == (True, False)
                with one_at_a_time(engine, "purge") as other:
                    assert other is True
            with one_at_a_time(engine, "tick") as again:
                assert again is True
        finally:
            engine.dispose()


def test_a_run_stopped_by_a_shutdown_goes_straight_back_to_the_queue(world: World) -> None:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 10})
    world.load_profiles(_people(50))
    export = world.export("interrupted", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    queue = TaskQueue(Runtime(world.settings, engine=world.engine, store=world.store))
    consumer = queue.consumer(workers=1)
    consumer.stop_flag.set()  # SIGTERM arrived: the run stops at its first batch boundary
    queue.huey.flush()
    queue._execute(run_id)
    with world.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert (run.status, run.error_kind) == ("queued", "interrupted")
    # Handed on at once (not after the next minute's tick), with no delay.
    assert queue.huey.pending_count() == 1
    assert queue.huey.scheduled_count() == 0
