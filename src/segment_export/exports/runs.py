"""Runs: start, dry-run, cancel, resume and read runs and their rejected-rows reports."""

from __future__ import annotations

import csv
import io
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from segment_export import audit
from segment_export.access import permissions
from segment_export.db.models import Connection, Export, RejectedRow, Run, RunBatch, User
from segment_export.definitions.exports import hold_export
from segment_export.errors import ConfigurationError, NotFoundError, PermissionDeniedError
from segment_export.exports.dependencies import RunDependencies
from segment_export.exports.engine import (
    ACTIVE,
    PAUSED,
    TERMINAL,
    execute_run,
)
from segment_export.languages import N_, Text, text

# Spreadsheets run cells that start with these as formulas (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
REJECTED_COLUMNS = ("customer_id", "email", "reason", "detail")
# What each count of a run means, in the order reports (CLI and web) list them.
COUNT_LABELS = [
    ("in_segment", N_("In the segment(s)")), ("no_consent", N_("Without marketing consent")),
    ("rejected_locally", N_("Rejected before sending")), ("valid", N_("Valid contacts")),
    ("suppressed", N_("Unsubscribed in Constant Contact, held back")),
    ("unchanged", N_("Unchanged since the last run")), ("to_send", N_("To send")),
    ("sent", N_("Sent to Constant Contact")), ("accepted", N_("Accepted by Constant Contact")),
    ("rejected_by_constant_contact", N_("Refused by Constant Contact")),
    ("refused_unnamed", N_("Refused, rows not named (sent again next run)")),
    ("unsubscribed_not_added", N_("Unsubscribed, not re-added")),
    ("left_segment", N_("Left the segment")), ("removed", N_("Removed from the list")),
    ("already_off_list", N_("Already off the list")),
    ("sms_refused", N_("Phone numbers refused (SMS)")),
    ("sms_phone_dropped", N_("Of them, sent by email without the number")),
    ("sms_only", N_("SMS-only contacts (no email)")),
    ("sms_only_sent", N_("SMS-only contacts sent")), ("would_add", N_("Would add")),
    ("would_update", N_("Would update")), ("would_remove", N_("Would remove")),
]


# What is asked of a run, the one input of `request_run` from the API (its request body), the
# pages, the CLI, the scheduler and run-all. No docstring: the API document shows none.
class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = Field(default=False, description="Report what would change; send nothing.")
    full_resync: bool = Field(default=False, description="Send every member again.")


def request_run(
    session: Session, *, actor: User | None, export: Export, request: RunRequest | None = None,
    trigger: str = "manual",
) -> Run:
    """Queue a run of ``export`` as ``request`` asks (None: a plain run; ``actor`` None = the
    scheduler)."""
    request = request or RunRequest()
    dry_run, full_resync = request.dry_run, request.full_resync
    if actor is not None:
        connection = session.get(Connection, export.connection_id) if export.connection_id else None
        if "run" not in permissions(actor, export, connection):
            raise PermissionDeniedError(N_("%(user)s may not run %(export)s"), values={
                "user": repr(actor.username), "export": repr(export.name)})
    if not export.enabled and trigger != "manual":
        raise ConfigurationError(N_("The export %(export)s is disabled"),
                                 values={"export": repr(export.name)})
    if not dry_run:
        # A change of the export's list waits for this request, or this for the change.
        hold_export(session, export.id)
    active = session.scalars(select(Run).where(
        Run.export_id == export.id, Run.status.in_(ACTIVE),
        Run.dry_run.is_(False))).first()
    if active is not None and not dry_run:
        raise ConfigurationError(
            N_("The export %(export)s already has a run %(status)s (%(run)s)"),
            values={"export": repr(export.name), "status": active.status, "run": active.id},
            run_id=active.id)
    run = Run(export_id=export.id, dry_run=dry_run, full_resync=full_resync, trigger=trigger,
              requested_by_id=actor.id if actor else None)
    try:
        # A savepoint: a request that loses the race leaves the caller's session usable.
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError as exc:
        # Another request queued a run between the check above and this insert (the unique
        # index uq_runs_one_active_per_export decided).
        raise ConfigurationError(
            N_("The export %(export)s already has an active run"),
            values={"export": repr(export.name)}) from exc
    audit.record(session, actor=actor, action="run.dry_run" if dry_run else "run.requested",
                 target_type="export", target_id=export.id, run_id=run.id,
                 full_resync=full_resync, trigger=trigger)
    return run


def run_to_completion(run_id: str, *, deps: RunDependencies, backoff: float = 2.0) -> Run:
    """Execute a run in this process, re-attempting it while it asks to be retried.

    Returns when the run ended, or paused until the daily quota resets (a worker's tick resumes
    it then), or the process is stopping.
    """
    while True:
        run = execute_run(run_id, deps=deps)
        if run.status in TERMINAL or run.status == PAUSED or (
                deps.stopping is not None and deps.stopping()):
            return run
        time.sleep(backoff * run.attempt)


def cancel_run(session: Session, *, actor: User, run: Run) -> Run:
    """Ask a queued or running run to stop; it stops at its next batch boundary."""
    export = session.get(Export, run.export_id)
    assert export is not None
    connection = session.get(Connection, export.connection_id) if export.connection_id else None
    if "run" not in permissions(actor, export, connection):
        raise PermissionDeniedError(N_("%(user)s may not cancel runs of %(export)s"), values={
            "user": repr(actor.username), "export": repr(export.name)})
    if run.status in TERMINAL:
        raise ConfigurationError(N_("The run already ended (%(status)s)"),
                                 values={"status": run.status})
    run.cancel_requested = True
    if run.status == "queued":
        run.status = "cancelled"
        _say(run, text(N_("Cancelled before it started.")))
    elif run.status == PAUSED:
        run.status = "cancelled"
        _say(run, text(N_("Cancelled while paused; confirmed batches stay delivered.")))
    audit.record(session, actor=actor, action="run.cancel_requested", target_type="run",
                 target_id=run.id)
    return run


def _say(run: Run, message: Text) -> None:
    """Set the run's message: English for the API, and as a Text for pages and the CLI."""
    run.message, run.message_text = str(message), message.as_json()


def retry_at(run: Run) -> datetime | None:
    """When a paused run may resume (the daily quota's reset), or None."""
    value = run.counts.get("retry_at") if run.status == PAUSED else None
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def requeue_paused_runs(session: Session, *, now: datetime) -> list[str]:
    """Put back in the queue every paused run whose quota reset has come; returns their ids.

    They resume after their last confirmed batch, so nothing confirmed is sent again.
    """
    resumed = []
    for run in session.scalars(select(Run).where(Run.status == PAUSED)):
        resets = retry_at(run)
        if resets is not None and resets > now:
            continue
        run.status = "queued"
        _say(run, text(N_("Resuming after the daily quota reset (%(resets)s)"),
                       resets=resets.isoformat()) if resets else text(N_("Resuming")))
        audit.record(session, actor=None, action="run.resumed", target_type="run",
                     target_id=run.id, reason="quota_reset")
        resumed.append(run.id)
    return resumed


def get_run(session: Session, *, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        matches = session.scalars(select(Run).where(Run.id.startswith(run_id))).all()
        if len(matches) == 1:
            return matches[0]
        raise NotFoundError(N_("No run %(run)s"), values={"run": repr(run_id)}, run_id=run_id)
    return run


def list_runs(session: Session, *, export: Export | None = None, limit: int = 50) -> list[Run]:
    stmt = select(Run).order_by(Run.queued_at.desc()).limit(limit)
    if export is not None:
        stmt = stmt.where(Run.export_id == export.id)
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class RunDetails:
    """What a run's report shows beyond the run itself: its Constant Contact activities, and
    its rejected rows counted by reason with the first few of them."""

    batches: list[RunBatch]
    rejected_by_reason: dict[str, int]
    rejected_sample: list[RejectedRow]


def run_details(session: Session, run: Run, *, sample: int = 0) -> RunDetails:
    """The report's activities (imports first, in the order sent) and rejections; ``sample``:
    how many rejected rows to include."""
    # Not the members blobs (~2.5 MB a batch): the report shows none of them.
    batches = session.scalars(select(RunBatch).options(defer(RunBatch.members))
                              .where(RunBatch.run_id == run.id)
                              .order_by(RunBatch.kind, RunBatch.seq)).all()
    reasons = session.execute(select(RejectedRow.reason, func.count()).where(
        RejectedRow.run_id == run.id).group_by(RejectedRow.reason)).all()
    rows = session.scalars(select(RejectedRow).where(RejectedRow.run_id == run.id)
                           .order_by(RejectedRow.id).limit(sample)).all() if sample else []
    return RunDetails(list(batches), {str(reason): int(count) for reason, count in reasons},
                      list(rows))


def _ignored_before_a_formula(char: str) -> bool:
    """Whitespace, control and format characters (Unicode Z* and C*): spreadsheets skip or
    trim them, so a formula may hide behind them (`" =1+1"`, `"\\n=1+1"`, a zero-width space)."""
    return char.isspace() or unicodedata.category(char)[0] in "CZ"


def would_be_formula(text: str) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula: it starts with ``= + - @``, a tab
    or a carriage return, once compatibility forms are folded (NFKC: fullwidth `＝` is `=`) and
    leading whitespace and control characters are skipped."""
    if text.startswith(_FORMULA_START):
        return True
    folded = unicodedata.normalize("NFKC", text)
    start = next((i for i, c in enumerate(folded) if not _ignored_before_a_formula(c)), None)
    return start is not None and folded.startswith(_FORMULA_START, start)


def formula_safe(value: str | None) -> str:
    """``value`` as a CSV cell no spreadsheet runs: prefixed with a quote when it would be a
    formula."""
    text = "" if value is None else str(value)
    return "'" + text if would_be_formula(text) else text


def rejected_rows_csv(session: Session, *, run: Run) -> Iterator[str]:
    """The run's rejected rows as CSV text chunks, each cell safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REJECTED_COLUMNS)
    rows = session.execute(
        select(RejectedRow.customer_id, RejectedRow.email, RejectedRow.reason,
               RejectedRow.detail).where(RejectedRow.run_id == run.id).order_by(RejectedRow.id)
    ).yield_per(5000)
    for count, row in enumerate(rows, 1):
        writer.writerow([formula_safe(v) for v in row])
        if count % 5000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
