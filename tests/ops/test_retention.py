"""Purge removes the rejected rows and batch details of runs past retention, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from segment_export.cli import cli
from segment_export.db.models import (
    AuditEvent,
    Export,
    ExportMember,
    RejectedRow,
    Run,
    RunBatch,
    Segment,
)
from segment_export.ops.retention import purge_expired
from tests.ops.helpers import cli_env, prepare
from tests.world import World

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def _run(session: Session, export: Export, status: str, *, ended_days_ago: float | None,
         queued_days_ago: float, rejected: int = 3, batches: int = 2) -> str:
    run = Run(export_id=export.id, status=status, queued_at=NOW - timedelta(days=queued_days_ago),
              finished_at=None if ended_days_ago is None
              else NOW - timedelta(days=ended_days_ago),
              counts={"in_segment": 10, "sent": 7, "rejected_locally": rejected},
              message=f"{status} run")
    session.add(run)
    session.flush()
    for i in range(rejected):
        session.add(RejectedRow(run_id=run.id, customer_id=str(i), email=f"bad{i}@x",
                                reason="invalid_email", detail="not a valid email address"))
    for seq in range(batches):
        session.add(RunBatch(run_id=run.id, seq=seq, kind="import", state="confirmed",
                             activity_id=f"activity-{run.id[:8]}-{seq}", contacts=5,
                             counts={"accepted": 5}, errors=["row 2: person@x refused"],
                             members=b"\x01" * 80))
    return run.id


def _details(sessions: sessionmaker[Session], run_id: str) -> dict[str, Any]:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        batches = session.scalars(select(RunBatch).where(RunBatch.run_id == run_id)
                                  .order_by(RunBatch.seq)).all()
        return {
            "rejected": session.scalar(select(func.count()).select_from(RejectedRow).where(
                RejectedRow.run_id == run_id)),
            "members": [b.members is not None for b in batches],
            "errors": [list(b.errors) for b in batches],
            "kept": [(b.activity_id, b.contacts, b.state, dict(b.counts)) for b in batches],
            "run": (run.status, dict(run.counts), run.message, run.finished_at),
        }


def test_purge_removes_expired_details_and_nothing_else(
    engine: Engine, sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        segment = Segment(name="all", expression="true")
        session.add(segment)
        session.flush()
        export = Export(name="e", list_id="1b2e3c4d-0000-1111-2222-333344445555",
                        mapping={"email": "email"}, segment_ids=[segment.id])
        session.add(export)
        session.flush()
        session.add(ExportMember(export_id=export.id, email_key=1, email="kept@example.com",
                                 values_hash=2))
        old = _run(session, export, "succeeded_with_rejections", ended_days_ago=20,
                   queued_days_ago=20)
        failed = _run(session, export, "failed", ended_days_ago=15, queued_days_ago=15)
        recent = _run(session, export, "succeeded_with_rejections", ended_days_ago=13,
                      queued_days_ago=13)
        # Cancelled while queued: no finished_at, it ended when it was queued.
        cancelled = _run(session, export, "cancelled", ended_days_ago=None, queued_days_ago=30,
                         batches=0)
        # Old but still running: a resume needs its batch members.
        running = _run(session, export, "running", ended_days_ago=None, queued_days_ago=40)
    before = {rid: _details(sessions, rid) for rid in (old, failed, recent, cancelled, running)}

    forecast = purge_expired(engine=engine, retention_days=14, now=NOW, dry_run=True)
    assert (forecast.runs, forecast.rejected_rows, forecast.batches) == (3, 9, 4)
    assert {rid: _details(sessions, rid) for rid in before} == before

    done = purge_expired(engine=engine, retention_days=14, now=NOW, batch_size=2)
    assert (done.runs, done.rejected_rows, done.batches) == (3, 9, 4)
    assert done.cutoff == NOW - timedelta(days=14)
    for rid in (old, failed, cancelled):
        after = _details(sessions, rid)
        assert after["rejected"] == 0
        assert after["members"] == [False] * len(before[rid]["members"])
        assert after["errors"] == [[]] * len(before[rid]["errors"])
        # The summary stays: status, counts, message, activities and their counts.
        assert after["kept"] == before[rid]["kept"]
        assert after["run"] == before[rid]["run"]
    for rid in (recent, running):
        assert _details(sessions, rid) == before[rid]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExportMember)) == 1
        event = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "retention.purged")).one()
        assert event.details["rejected_rows"] == 9

    nothing = purge_expired(engine=engine, retention_days=14, now=NOW)
    assert (nothing.runs, nothing.rejected_rows, nothing.batches) == (0, 0, 0)
    later = purge_expired(engine=engine, retention_days=14, now=NOW + timedelta(days=2))
    assert (later.runs, later.rejected_rows, later.batches) == (1, 3, 2)
    assert _details(sessions, running) == before[running]


def test_purge_command_uses_the_retention_setting(world: World) -> None:
    export = prepare(world, 40, bad=4)
    run = world.run(export)
    assert run.status == "succeeded_with_rejections"
    env = cli_env(world.settings, SEGMENT_EXPORT_RETENTION_DAYS="3")
    runner = CliRunner()
    kept = runner.invoke(cli, ["purge"], env=env, catch_exceptions=False)
    assert kept.exit_code == 0, kept.output
    assert "Purged 0 rejected rows" in kept.output
    with world.engine.begin() as conn:
        conn.execute(update(Run).where(Run.id == run.id).values(
            finished_at=datetime.now(UTC) - timedelta(days=4)))
    forecast = runner.invoke(cli, ["purge", "--dry-run"], env=env, catch_exceptions=False)
    assert "Would purge 4 rejected rows and the details of 1 batches" in forecast.output
    done = runner.invoke(cli, ["purge"], env=env, catch_exceptions=False)
    assert "Purged 4 rejected rows" in done.output
    report = runner.invoke(cli, ["runs", "rejected", run.id], env=env, catch_exceptions=False)
    assert report.output.strip() == "customer_id,email,reason,detail"
