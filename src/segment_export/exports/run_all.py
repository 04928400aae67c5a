"""Run all: refresh the segments of every export a person may run, then queue a run of each."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.access import permissions
from segment_export.db.models import Connection, Export, Run, Segment, User
from segment_export.definitions.exports import list_exports
from segment_export.errors import ConfigurationError, PermissionDeniedError
from segment_export.exports.engine import ACTIVE
from segment_export.exports.runs import RunRequest, request_run
from segment_export.languages import N_
from segment_export.profiles.store import ProfileStore
from segment_export.segments.refresh import RefreshResult, refresh_segment
from segment_export.users import Role, require_role

SkipReason = Literal["not_permitted", "disabled", "detached", "not_authorized",
                     "reauthorization_needed", "already_running", "segment_not_refreshed"]
TRIGGER = "run_all"
# One Run all at a time in a process: the DuckDB profile store refuses two replacements of one
# segment's membership at once ("Conflict on tuple deletion"), and a second click waits for the
# first and then finds its exports already running instead of refreshing everything again.
# Across processes the unique index keeps one active run per export (and the PostgreSQL profile
# store locks each segment's refresh itself).
_ONE_AT_A_TIME = threading.Lock()
# What each reason means, for the web summary and the CLI (the API sends the code and message).
SKIP_LABELS: dict[str, str] = {
    "not_permitted": N_("you may not run it"),
    "disabled": N_("disabled"),
    "detached": N_("detached from its connection"),
    "not_authorized": N_("its connection is not authorized yet"),
    "reauthorization_needed": N_("its connection needs re-authorization"),
    "already_running": N_("it already has an active run"),
    "segment_not_refreshed": N_("a segment of it could not be refreshed"),
}


@dataclass(frozen=True, slots=True)
class QueuedRun:
    export_id: str
    export_name: str
    run_id: str


@dataclass(frozen=True, slots=True)
class SkippedExport:
    export_id: str
    export_name: str
    reason: SkipReason
    message: str
    run_id: str | None = None  # the active run, when the reason is already_running


@dataclass(frozen=True, slots=True)
class RunAllResult:
    """What a Run all did: runs queued, exports skipped (with why), segments refreshed."""

    queued: list[QueuedRun] = field(default_factory=list)
    skipped: list[SkippedExport] = field(default_factory=list)
    refreshed: list[RefreshResult] = field(default_factory=list)
    audit_event_id: int | None = None


def _skip_reason(session: Session, actor: User, export: Export) -> tuple[SkipReason, str,
                                                                          str | None] | None:
    """Why ``export`` is left out of ``actor``'s Run all before anything is refreshed, or None."""
    connection = session.get(Connection, export.connection_id) if export.connection_id else None
    if "run" not in permissions(actor, export, connection):
        return "not_permitted", f"{actor.username!r} may not run {export.name!r}", None
    if not export.enabled:
        return "disabled", f"{export.name!r} is disabled (it still runs by hand)", None
    if connection is None:
        return "detached", f"{export.name!r} is detached from its connection", None
    if connection.status == "pending":
        return ("not_authorized",
                f"The connection {connection.display_name!r} is not authorized yet", None)
    if connection.status != "connected":
        return ("reauthorization_needed",
                f"The connection {connection.display_name!r} needs re-authorization", None)
    active = session.scalars(select(Run).where(
        Run.export_id == export.id, Run.status.in_(ACTIVE), Run.dry_run.is_(False))).first()
    if active is not None:
        return ("already_running", f"{export.name!r} already has a run {active.status}",
                active.id)
    return None


def _refresh_and_queue(session: Session, *, actor: User, store: ProfileStore,
                       now: datetime) -> RunAllResult:
    """Run all's work under its lock: check, refresh, queue, audit and commit."""
    result = RunAllResult()
    exports = list_exports(session)
    candidates: list[Export] = []
    for export in exports:
        why = _skip_reason(session, actor, export)
        if why is None:
            candidates.append(export)
        else:
            result.skipped.append(SkippedExport(export.id, export.name, *why))

    segment_ids = list(dict.fromkeys(s for e in candidates for s in e.segment_ids))
    segments = session.scalars(select(Segment).where(
        Segment.id.in_(segment_ids), Segment.active.is_(True)).order_by(Segment.name)).all()
    if segments:
        schema = store.schema()
        if not schema:
            raise ConfigurationError(
                N_("No profiles have been imported yet, so no segment can be refreshed"),
                hint=N_("Run `segment-export profiles import FILE` (or `profiles generate`) "
                        "first."))
        for segment in segments:
            result.refreshed.append(
                refresh_segment(session, store, segment=segment, now=now, schema=schema))
            session.commit()  # its membership is in the store already: keep its size with it
    failed = {r.segment_id: r for r in result.refreshed if not r.ok}

    # Queued in the order of the exports' ids, as every transaction that holds several
    # exports (hold_export), so that this and the scheduler's tick never wait for each other.
    for export in sorted(candidates, key=lambda e: e.id):
        broken = [failed[s] for s in export.segment_ids if s in failed]
        if broken:
            result.skipped.append(SkippedExport(
                export.id, export.name, "segment_not_refreshed",
                f"The segment {broken[0].name!r} could not be refreshed: {broken[0].error}"))
            continue
        try:
            run = request_run(session, actor=actor, export=export, request=RunRequest(),
                              trigger=TRIGGER)
        except PermissionDeniedError as exc:
            result.skipped.append(SkippedExport(export.id, export.name, "not_permitted",
                                                exc.message))
            continue
        except ConfigurationError as exc:
            # Queued by a single run, the scheduler or another Run all since the check above;
            # the unique index decided if both got past it (request_run's savepoint keeps this
            # session usable).
            result.skipped.append(SkippedExport(
                export.id, export.name, "already_running", exc.message,
                exc.context.get("run_id")))
            continue
        result.queued.append(QueuedRun(export.id, export.name, run.id))

    order = {e.id: i for i, e in enumerate(exports)}
    result.queued.sort(key=lambda q: order[q.export_id])
    result.skipped.sort(key=lambda s: order[s.export_id])
    event = audit.record(
        session, actor=actor, action="exports.run_all", target_type="system",
        queued=[{"export": q.export_name, "run_id": q.run_id} for q in result.queued],
        skipped=[{"export": s.export_name, "reason": s.reason}
                 | ({"run_id": s.run_id} if s.run_id else {}) for s in result.skipped],
        refreshed=[r.name for r in result.refreshed])
    session.flush()
    session.commit()
    return RunAllResult(result.queued, result.skipped, result.refreshed, event.id)


def run_all(
    session: Session, *, actor: User, store: ProfileStore,
    enqueue: Callable[[str], None] | None = None, now: datetime | None = None,
) -> RunAllResult:
    """Refresh the segments of every enabled export ``actor`` may run, then queue a run of each.

    Every export is either queued or skipped with a reason: not permitted, disabled, detached,
    its connection not authorized or needing re-authorization, an active run already (the one
    active run per export rule; a run queued by someone else in the meantime is skipped the
    same way), or one of its segments failing to refresh. Each active segment those exports
    send is refreshed once, in this call, **before** any run is created, so no worker (in
    process or on Redis) can start a run on the segments' previous membership. Inactive
    segments are sent as they were last refreshed, as with the system refresh.

    Commits (each refreshed segment, then the runs and the audit events), then hands each
    queued run to ``enqueue``; with ``enqueue`` None the caller executes them.
    """
    require_role(actor, Role.ADMIN, Role.CONTRIBUTOR)
    with _ONE_AT_A_TIME:
        result = _refresh_and_queue(session, actor=actor, store=store,
                                    now=now or datetime.now(UTC))
    if enqueue is not None:
        for queued in result.queued:
            enqueue(queued.run_id)
    return result


__all__ = ["SKIP_LABELS", "QueuedRun", "RunAllResult", "SkipReason", "SkippedExport", "run_all"]
