"""Schedules and the task queue: due exports start, the refresh runs its exports, workers run
queued runs through a real Huey consumer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from segment_export.db.models import Export, Run
from segment_export.definitions.exports import next_cron_time
from segment_export.errors import ConfigurationError
from segment_export.exports.runs import get_run, request_run
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime
from segment_export.scheduling.schedules import get_refresh_schedule, set_refresh_schedule, tick
from tests.world import World


def _people(n: int) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"p{i}@example.com", "first_name": "A",
             "last_name": "B", "country": "DE"} for i in range(1, n + 1)]


def _runtime(world: World) -> Runtime:
    return Runtime(world.settings, engine=world.engine, store=world.store)


def test_cron_time_is_computed_in_the_export_time_zone() -> None:
    after = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    # 06:00 in Berlin on 29 March 2026 is 04:00 UTC (summer time starts that night).
    assert next_cron_time("0 6 * * *", "Europe/Berlin", after) == datetime(
        2026, 3, 29, 4, 0, tzinfo=UTC)


def test_bad_refresh_schedule_is_refused(world: World) -> None:
    with world.sessions() as session, pytest.raises(ConfigurationError, match="cron"):
        set_refresh_schedule(session, actor=world.admin, cron="every day", timezone="UTC")


def test_tick_starts_due_cron_exports_and_the_refresh(world: World) -> None:
    world.load_profiles(_people(5))
    segment = world.segment("all", "country = 'DE'")
    cron_export = world.export("nightly", [segment], schedule_kind="cron", cron="0 3 * * *",
                               timezone="Europe/Berlin")
    world.export("with refresh", [segment], schedule_kind="refresh")
    manual = world.export("manual one", [segment])
    past = datetime.now(UTC) - timedelta(minutes=5)
    with world.sessions.begin() as session:
        session.get(Export, cron_export.id).next_run_at = past  # type: ignore[union-attr]
        set_refresh_schedule(session, actor=world.admin, cron="*/5 * * * *")
    with world.sessions.begin() as session:
        schedule = get_refresh_schedule(session)
        assert schedule.next_run_at is not None
        from segment_export.db.models import SystemSetting

        setting = session.get(SystemSetting, "refresh_schedule")
        assert setting is not None
        setting.value = {**setting.value, "next_run_at": past.isoformat()}

    queued: list[str] = []
    tick(_runtime(world), enqueue=queued.append)
    with world.sessions() as session:
        runs = {session.get(Export, r.export_id).name: r  # type: ignore[union-attr]
                for r in session.scalars(select(Run))}
        nightly = session.get(Export, cron_export.id)
        assert nightly is not None
        assert nightly.next_run_at is not None
        assert nightly.next_run_at > datetime.now(UTC)
    assert set(runs) == {"nightly", "with refresh"}
    assert runs["nightly"].trigger == "schedule"
    assert runs["with refresh"].trigger == "refresh"
    assert set(queued) == {r.id for r in runs.values()}
    assert manual.name not in runs
    with world.sessions() as session:
        assert get_refresh_schedule(session).next_run_at > datetime.now(UTC)  # type: ignore[operator]


def test_a_worker_runs_what_is_queued(world: World) -> None:
    world.load_profiles(_people(20))
    export = world.export("queued", [world.segment("all", "country = 'DE'")])
    queue = TaskQueue(_runtime(world))
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
    queue.enqueue_run(run.id)
    consumer = queue.consumer(workers=1)
    consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with world.sessions() as session:
                status = get_run(session, run_id=run.id).status
            if status not in {"queued", "running"}:
                break
            time.sleep(0.1)
    finally:
        consumer.stop(graceful=True)
    assert status == "succeeded"
    assert len(world.members()) == 20


def test_orphaned_running_run_is_handed_to_a_worker_again(world: World) -> None:
    world.load_profiles(_people(3))
    export = world.export("orphan", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
        stored = session.get(Run, run.id)
        assert stored is not None
        stored.status = "running"
        stored.worker_id = "another-host:999:1"
        stored.heartbeat_at = datetime.now(UTC) - timedelta(hours=1)
    queued: list[str] = []
    tick(_runtime(world), enqueue=queued.append)
    assert queued == [run.id]
