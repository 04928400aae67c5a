"""Run all over a real state store (SQLite and PostgreSQL): what is queued, what is skipped and
why, each segment refreshed once before any run exists, one audit event, and two Run alls at
the same moment queueing one run per export."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select

from segment_export.config import Settings
from segment_export.db.models import AuditEvent, Connection, Export, Run, SegmentSize, User
from segment_export.definitions.connections import ConnectionSpec, create_connection
from segment_export.errors import PermissionDeniedError
from segment_export.exports.run_all import RunAllResult, run_all
from segment_export.exports.runs import request_run
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import Role, UserSpec, create_user
from tests.world import World, open_world


@pytest.fixture
def any_world(settings: Settings, engine: Engine) -> Iterator[World]:
    """The emulator world over SQLite and over PostgreSQL."""
    with open_world(settings, engine) as opened:
        yield opened


def _people(*countries: str) -> list[dict[str, Any]]:
    return [{"customer_id": i, "email": f"p{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": country} for i, country in enumerate(countries, 1)]


def _connection(world: World, name: str, *, status: str, shared: bool = True) -> Connection:
    """A connection in ``status`` without a trip through OAuth (nothing here reaches it)."""
    with world.sessions.begin() as db:
        conn = create_connection(db, actor=db.merge(world.admin), spec=ConnectionSpec(
            display_name=name, client_id=f"client-{name}", client_secret="s" * 20,
            consent=True, shared_with_contributors=shared))
        conn.status = status
        return conn


def _user(world: World, role: Role) -> User:
    with world.sessions.begin() as db:
        return create_user(db, spec=UserSpec(username=f"{role.value}-1", role=role), actor=None)


def _sizes(world: World, segment_id: str) -> int:
    with world.sessions() as db:
        return db.scalar(select(func.count()).select_from(SegmentSize).where(
            SegmentSize.segment_id == segment_id)) or 0


def _run_all(world: World, actor: User) -> RunAllResult:
    with world.sessions() as db:
        return run_all(db, actor=db.merge(actor), store=world.store)


def test_queues_what_may_run_and_says_why_the_rest_is_skipped(any_world: World) -> None:
    world = any_world
    world.load_profiles(_people("DE", "DE", "FR"))
    de = world.segment("Germany", "country = 'DE'")
    fr = world.segment("France", "country = 'FR'")
    only_skipped = world.segment("Austria", "country = 'AT'")
    with world.sessions.begin() as db:
        frozen = create_segment(
            db,
            world.store,
            spec=SegmentSpec(name="Frozen", expression="country = 'DE'", active=False),
        ).id
    ready = world.export("a ready", [de])
    both = world.export("b both", [de, fr, frozen])
    world.export("c disabled", [only_skipped], enabled=False)
    busy = world.export("d busy", [fr])
    with world.sessions.begin() as db:
        active = request_run(db, actor=world.admin, export=db.merge(busy)).id
    reauth = _connection(world, "Lapsed", status="reauthorization_needed")
    pending = _connection(world, "Pending", status="pending")
    private = _connection(world, "Admins only", status="connected", shared=False)
    exports: dict[str, Export] = {}
    for name, conn in (("e lapsed", reauth), ("f pending", pending), ("g private", private)):
        with world.sessions.begin() as db:
            exports[name] = world.export(name, [only_skipped])
            db.get(Export, exports[name].id).connection_id = conn.id  # type: ignore[union-attr]
    contributor = _user(world, Role.CONTRIBUTOR)
    # Someone joins the segment after its last refresh: only a refresh puts them in it.
    world.load_profiles(_people("DE", "DE", "FR", "DE"))
    assert world.store.membership_size([de]) == 2
    before = {s: _sizes(world, s) for s in (de, fr, only_skipped, frozen)}

    result = _run_all(world, contributor)

    assert [(q.export_name, q.export_id) for q in result.queued] == [
        ("a ready", ready.id), ("b both", both.id)]
    assert [(s.export_name, s.reason) for s in result.skipped] == [
        ("c disabled", "disabled"), ("d busy", "already_running"),
        ("e lapsed", "reauthorization_needed"), ("f pending", "not_authorized"),
        ("g private", "not_permitted")]
    assert result.skipped[1].run_id == active
    # Each active segment of a queued export refreshed once; the inactive one and those of
    # skipped exports are left as they are.
    assert sorted(r.name for r in result.refreshed) == ["France", "Germany"]
    assert world.store.membership_size([de]) == 3
    after = {s: _sizes(world, s) for s in before}
    assert after == {de: before[de] + 1, fr: before[fr] + 1, only_skipped: before[only_skipped],
                     frozen: before[frozen]}
    with world.sessions() as db:
        runs = db.scalars(select(Run).where(Run.id.in_([q.run_id for q in result.queued]))).all()
        assert {r.status for r in runs} == {"queued"}
        assert {r.trigger for r in runs} == {"run_all"}
        assert {r.requested_by_id for r in runs} == {contributor.id}
        segments_done = max(r.refreshed_at for r in result.refreshed)
        assert all(r.queued_at >= segments_done for r in runs)
        events = db.scalars(select(AuditEvent).where(
            AuditEvent.action == "exports.run_all")).all()
        assert [e.id for e in events] == [result.audit_event_id]
        assert events[0].actor_id == contributor.id
        assert events[0].details["queued"] == [
            {"export": q.export_name, "run_id": q.run_id} for q in result.queued]
        assert {"export": "d busy", "reason": "already_running",
                "run_id": active} in events[0].details["skipped"]
        requested = db.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "run.requested", AuditEvent.actor_id == contributor.id)).all()
        assert [d["trigger"] for d in requested] == ["run_all", "run_all"]

    # Again at once: everything of the first is still queued, so nothing is queued twice.
    again = _run_all(world, contributor)
    assert again.queued == []
    assert [s.reason for s in again.skipped] == [
        "already_running", "already_running", "disabled", "already_running",
        "reauthorization_needed", "not_authorized", "not_permitted"]
    assert again.refreshed == []


def test_an_admin_runs_exports_on_every_connection(world: World) -> None:
    world.load_profiles(_people("DE"))
    de = world.segment("Germany", "country = 'DE'")
    private = _connection(world, "Admins only", status="connected", shared=False)
    export = world.export("private", [de])
    with world.sessions.begin() as db:
        db.get(Export, export.id).connection_id = private.id  # type: ignore[union-attr]
    result = _run_all(world, world.admin)
    assert [q.export_name for q in result.queued] == ["private"]


def test_a_viewer_may_not_and_nothing_happens(world: World) -> None:
    world.load_profiles(_people("DE"))
    de = world.segment("Germany", "country = 'DE'")
    world.export("one", [de])
    viewer = _user(world, Role.VIEWER)
    sizes = _sizes(world, de)
    with pytest.raises(PermissionDeniedError):
        _run_all(world, viewer)
    assert _sizes(world, de) == sizes
    with world.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Run)) == 0


def test_a_failing_segment_skips_its_exports_only(world: World) -> None:
    world.load_profiles([{**p, "tier": "gold"} for p in _people("DE", "FR")])
    de = world.segment("Germany", "country = 'DE'")
    gold = world.segment("Gold", "tier = 'gold'")
    world.export("fine", [de])
    world.export("broken", [gold])
    # A re-import without the column the segment's rule needs.
    world.load_profiles(_people("DE", "FR"))
    result = _run_all(world, world.admin)
    assert [q.export_name for q in result.queued] == ["fine"]
    assert [(s.export_name, s.reason) for s in result.skipped] == [
        ("broken", "segment_not_refreshed")]
    assert "Gold" in result.skipped[0].message


def test_two_run_alls_at_once_queue_one_run_per_export(any_world: World) -> None:
    world = any_world
    world.load_profiles(_people("DE", "FR"))
    de = world.segment("Germany", "country = 'DE'")
    fr = world.segment("France", "country = 'FR'")
    names = ["one", "two", "three"]
    for name, segment in zip(names, [de, fr, de], strict=True):
        world.export(name, [segment])
    contributor = _user(world, Role.CONTRIBUTOR)
    start = threading.Barrier(2, timeout=20)
    outcomes: list[RunAllResult | BaseException] = []

    def click(actor: User) -> None:
        start.wait()
        with world.sessions() as db:
            try:
                outcomes.append(run_all(db, actor=db.merge(actor), store=world.store))
            except BaseException as exc:  # the test reports any failure
                outcomes.append(exc)

    threads = [threading.Thread(target=click, args=(who,)) for who in (world.admin, contributor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    results = [o for o in outcomes if isinstance(o, RunAllResult)]
    assert len(results) == 2, outcomes
    # One of them queued everything; the other found it all running and refreshed nothing
    # (a refresh of the same segment at the same moment is not attempted).
    first, second = sorted(results, key=lambda r: -len(r.queued))
    assert sorted(q.export_name for q in first.queued) == sorted(names)
    assert second.queued == []
    assert [(s.export_name, s.reason) for s in second.skipped] == [
        (n, "already_running") for n in sorted(names)]
    assert {s.run_id for s in second.skipped} == {q.run_id for q in first.queued}
    assert second.refreshed == []
    with world.sessions() as db:
        per_export = db.execute(select(Run.export_id, func.count()).group_by(
            Run.export_id)).all()
    assert sorted(n for _, n in per_export) == [1, 1, 1]


def test_a_run_queued_between_the_check_and_the_insert_is_skipped(
    any_world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single run (or the scheduler) queues one after Run all found none: the unique index
    refuses Run all's insert, and Run all reports the export as already running. The row hold
    (hold_export) keeps the two requests from passing the check together; it is bypassed
    here, to show the index still decides without it (tests/exports/test_one_active_run.py
    has them meet the hold)."""
    from segment_export.exports import runs as run_service

    monkeypatch.setattr(run_service, "hold_export", lambda session, export_id: None)
    world = any_world
    world.load_profiles(_people("DE"))
    de = world.segment("Germany", "country = 'DE'")
    # Run all queues in the order of the exports' ids: the racy one comes first, before Run
    # all has written anything (on SQLite a write would hold the single run's commit back).
    racy, calm = sorted([world.export("one", [de]), world.export("two", [de])],
                        key=lambda e: e.id)
    both_checked = threading.Barrier(2, timeout=20)
    single_committed = threading.Event()
    outcomes: dict[str, Any] = {}

    def flushing_a_run(session: Any, hold: bool) -> None:
        waited = False

        def before_flush(flushing: Any, *_: Any) -> None:
            nonlocal waited
            if waited or not any(isinstance(r, Run) and r.export_id == racy.id
                                 for r in flushing.new):
                return
            waited = True
            both_checked.wait()
            if hold:  # Run all inserts only once the single run is committed
                assert single_committed.wait(timeout=20)

        event.listen(session, "before_flush", before_flush)

    def all_of_them() -> None:
        with world.sessions() as db:
            flushing_a_run(db, hold=True)
            try:
                outcomes["all"] = run_all(db, actor=db.merge(world.admin), store=world.store)
            except BaseException as exc:  # the test reports any failure
                outcomes["all"] = exc
                both_checked.abort()

    def single() -> None:
        with world.sessions() as db:
            flushing_a_run(db, hold=False)
            try:
                outcomes["single"] = request_run(db, actor=db.merge(world.admin),
                                                 export=db.merge(racy)).id
                db.commit()
            except BaseException as exc:
                outcomes["single"] = exc
            finally:
                single_committed.set()

    threads = [threading.Thread(target=all_of_them), threading.Thread(target=single)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    result = outcomes["all"]
    assert isinstance(result, RunAllResult), outcomes
    assert isinstance(outcomes["single"], str), outcomes
    assert [q.export_name for q in result.queued] == [calm.name]
    assert [(s.export_name, s.reason) for s in result.skipped] == [(racy.name, "already_running")]
    assert "already has an active run" in result.skipped[0].message
    with world.sessions() as db:
        runs = db.execute(select(Run.export_id, Run.id)).all()
    assert sorted(runs) == sorted([(racy.id, outcomes["single"]),
                                   (calm.id, result.queued[0].run_id)])


def _cli(world: World, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from click.testing import CliRunner

    from segment_export.cli import cli

    settings = world.settings
    for key, value in {
            "SEGMENT_EXPORT_DATA_DIR": str(settings.data_dir),
            "SEGMENT_EXPORT_SECRET_KEY": ",".join(k.decode() for k in settings.encryption_keys),
            "SEGMENT_EXPORT_CC_API_URL": settings.cc_api_url,
            "SEGMENT_EXPORT_CC_AUTH_URL": settings.cc_auth_url, "COLUMNS": "200"}.items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(cli, list(args))


def test_the_command_runs_all_here_or_queues_them(world: World,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    world.load_profiles(_people("DE", "DE"))
    de = world.segment("Germany", "country = 'DE'")
    world.export("a newsletter", [de])
    world.export("b off", [de], enabled=False)
    world.load_profiles(_people("DE", "DE", "DE"))  # a third joins after the last refresh

    done = _cli(world, monkeypatch, "exports", "run-all")

    assert done.exit_code == 0, done.output
    assert "Refreshed segment 'Germany': 3 members" in done.output
    assert "Skipped 'b off': disabled" in done.output
    assert "succeeded" in done.output
    assert world.members() == {"p1@example.com", "p2@example.com", "p3@example.com"}

    queued = _cli(world, monkeypatch, "exports", "run-all", "--no-wait")
    assert queued.exit_code == 0, queued.output
    assert "Queued 1 run(s)" in queued.output
    again = _cli(world, monkeypatch, "exports", "run-all", "--no-wait")
    assert again.exit_code == 0, again.output
    assert "Skipped 'a newsletter': it already has an active run" in again.output
    assert "No run queued." in again.output

    _user(world, Role.VIEWER)
    refused = _cli(world, monkeypatch, "--as-user", "viewer-1", "exports", "run-all")
    assert refused.exit_code != 0
    assert isinstance(refused.exception, PermissionDeniedError)
