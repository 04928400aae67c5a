"""Schedules: the system refresh (segments, then every export "with every refresh"), per-export
cron schedules, and picking up runs that need a worker (paused ones once the quota resets)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.db.models import Export, Run, SystemSetting, User
from segment_export.db.types import utcnow
from segment_export.definitions.exports import next_cron_time
from segment_export.errors import ConfigurationError, SegmentExportError
from segment_export.exports.engine import worker_alive
from segment_export.exports.runs import RunRequest, request_run, requeue_paused_runs
from segment_export.languages import N_
from segment_export.scheduling.runtime import Runtime
from segment_export.segments.refresh import refresh_segments

log = logging.getLogger(__name__)
REFRESH_SETTING = "refresh_schedule"


@dataclass(frozen=True, slots=True)
class RefreshSchedule:
    cron: str | None
    timezone: str
    next_run_at: datetime | None


def get_refresh_schedule(session: Session) -> RefreshSchedule:
    setting = session.get(SystemSetting, REFRESH_SETTING)
    value = setting.value if setting else {}
    next_at = value.get("next_run_at")
    return RefreshSchedule(value.get("cron"), value.get("timezone", "UTC"),
                           datetime.fromisoformat(next_at) if next_at else None)


def set_refresh_schedule(session: Session, *, actor: User | None, cron: str | None,
                         timezone: str = "UTC") -> RefreshSchedule:
    """Set (or with ``cron=None`` clear) the system refresh schedule."""
    if cron is not None and not croniter.is_valid(cron):
        raise ConfigurationError(N_("Not a valid cron expression: %(cron)s"),
                                 values={"cron": repr(cron)}, field="cron")
    ZoneInfo(timezone)
    next_at = next_cron_time(cron, timezone, utcnow()) if cron else None
    setting = session.get(SystemSetting, REFRESH_SETTING) or SystemSetting(key=REFRESH_SETTING,
                                                                           value={})
    setting.value = {"cron": cron, "timezone": timezone,
                     "next_run_at": next_at.isoformat() if next_at else None}
    session.merge(setting)
    audit.record(session, actor=actor, action="schedule.refresh_set", target_type="system",
                 cron=cron, timezone=timezone)
    return RefreshSchedule(cron, timezone, next_at)


def system_refresh(runtime: Runtime, *, enqueue: Callable[[str], None],
                   now: datetime | None = None) -> list[str]:
    """Read every connection's unsubscribes (for the segment rule that tests them), refresh
    every segment, then queue every enabled export scheduled with the refresh."""
    from segment_export.exports.suppression import sync_all_connections

    sync_all_connections(runtime.sessions, settings=runtime.settings, engine=runtime.engine,
                         metrics=runtime.metrics)
    with runtime.sessions() as session:
        refresh_segments(session, runtime.store, now=now)
        session.commit()
    run_ids = []
    with runtime.sessions.begin() as session:
        # In the order of their ids, as every transaction that holds several exports.
        exports = session.scalars(select(Export).where(
            Export.enabled.is_(True), Export.schedule_kind == "refresh")
            .order_by(Export.id)).all()
        for export in exports:
            try:
                run_ids.append(request_run(session, actor=None, export=export,
                                           request=RunRequest(), trigger="refresh").id)
            except SegmentExportError as exc:
                log.warning("export %r not queued after refresh: %s", export.name, exc)
    for run_id in run_ids:
        enqueue(run_id)
    return run_ids


def tick(runtime: Runtime, *, enqueue: Callable[[str], None],
         now: datetime | None = None) -> None:
    """Once a minute: start what is due and give orphaned, retrying or (after the daily quota's
    reset) paused runs to a worker."""
    now = now or utcnow()
    with runtime.sessions.begin() as session:
        schedule = get_refresh_schedule(session)
        refresh_due = bool(schedule.cron and schedule.next_run_at and schedule.next_run_at <= now)
        if refresh_due and schedule.cron:
            set_refresh_schedule(session, actor=None, cron=schedule.cron,
                                 timezone=schedule.timezone)
    if refresh_due:
        system_refresh(runtime, enqueue=enqueue, now=now)
    due: list[str] = []
    with runtime.sessions.begin() as session:
        for export in session.scalars(select(Export).where(
                Export.enabled.is_(True), Export.schedule_kind == "cron",
                Export.next_run_at <= now).order_by(Export.id)):
            assert export.cron is not None
            export.next_run_at = next_cron_time(export.cron, export.timezone, now)
            try:
                due.append(request_run(session, actor=None, export=export,
                                       request=RunRequest(), trigger="schedule").id)
            except SegmentExportError as exc:
                log.warning("scheduled run of %r not queued: %s", export.name, exc)
        # Runs paused for the daily quota go back to the queue once it has reset.
        requeue_paused_runs(session, now=now)
        session.flush()
        for run in session.scalars(select(Run).where(Run.status.in_(("queued", "running")))):
            if run.status == "queued" or not worker_alive(
                    run.worker_id, run.heartbeat_at,
                    stale_after=runtime.settings.stale_run_seconds):
                due.append(run.id)
    for run_id in dict.fromkeys(due):
        enqueue(run_id)
