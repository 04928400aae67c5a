"""The export run: segment members -> validated contacts -> diff -> batches -> Constant Contact.

Every stage streams into the next; progress is committed batch by batch, so a run that dies
resumes after its last confirmed batch and sends nothing twice that Constant Contact confirmed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session, defer

from segment_export import audit
from segment_export.constant_contact import ConstantContactClient
from segment_export.db.models import Connection, Export, RejectedRow, Run, RunBatch
from segment_export.db.types import utcnow
from segment_export.definitions.connections import client_for
from segment_export.definitions.custom_fields import AccountField, fields_for_run, mapped_names
from segment_export.definitions.lists import deleted_list_error
from segment_export.errors import (
    FatalError,
    NotFoundError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
    SegmentExportError,
)
from segment_export.exports.ahead import Ahead
from segment_export.exports.bodies import BodyCutter, SplitByConsent, prepare_batches
from segment_export.exports.delivery import BatchMembers, compact_members, record_uncertain
from segment_export.exports.dependencies import (
    RunCancelled,
    RunDependencies,
    RunInterrupted,
    RunLost,
)
from segment_export.exports.diff import (
    Delivered,
    DiffTotals,
    iter_changes,
    leavers,
    load_delivered,
)
from segment_export.exports.heartbeat import Heartbeat, heartbeat_interval
from segment_export.exports.members import LocalCounts, store_rejections, stream_members
from segment_export.exports.mirror import remove_leavers, settle_left_over_removals
from segment_export.exports.sending import InFlight, Sender
from segment_export.exports.suppression import (
    SuppressedTally,
    load_suppressed,
    read_before_run,
    without_suppressed,
)
from segment_export.exports.validate import ValidatedMembers
from segment_export.languages import N_, Text, error_text, joined, text
from segment_export.log import run_context
from segment_export.storage import (
    is_database_unreachable,
    is_storage_full,
    storage_full_error,
    unreachable_error,
)

log = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "succeeded_with_rejections", "failed", "cancelled", "skipped"})
# Waiting for Constant Contact's daily quota to reset (counts["retry_at"]); the scheduler's tick
# resumes it then, after its last confirmed batch. Not terminal, but nothing works on it.
PAUSED = "paused"
# A run in one of these holds its export: no second run of the export may start.
ACTIVE = frozenset({"queued", "running", PAUSED})
MAX_ATTEMPTS = 3
# How long a run whose state database went away waits for it to answer again before it gives
# up (and stays `running` until its worker is found gone or stale).
STATE_STORE_WAIT_SECONDS = 120.0
# The one rejection reason a run records from Constant Contact's verdicts, not from validation.
REFUSED_BY_CONSTANT_CONTACT = "rejected_by_constant_contact"


@dataclass(slots=True)
class _Stages:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, started: float) -> None:
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 3)


def execute_run(run_id: str, *, deps: RunDependencies) -> Run:
    """Carry out (or resume) one run and return it in its final state."""
    with run_context(run_id):
        return _execute(run_id, deps)


def worker_alive(worker_id: str | None, heartbeat: datetime | None, *, stale_after: float) -> bool:
    """Whether the worker that holds a run is still at it.

    On this host a dead process is known at once; elsewhere only a stale heartbeat tells.
    """
    if not worker_id or heartbeat is None:
        return False
    host, _, rest = worker_id.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return (utcnow() - heartbeat).total_seconds() < stale_after


def _claim(deps: RunDependencies, run_id: str) -> tuple[Run, bool]:
    """Take the run for this worker unless another live worker holds it (one runner at a time).

    The conditional UPDATE on the row's previous worker and status makes two workers racing
    for the same run see exactly one winner.
    """
    with deps.sessions.begin() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(N_("No run %(run_id)s"),
                                values={"run_id": run_id}, run_id=run_id)
        if run.status in TERMINAL:
            return run, False
        if run.status == "running" and run.worker_id != deps.worker_id and worker_alive(
            run.worker_id, run.heartbeat_at, stale_after=deps.settings.stale_run_seconds
        ):
            return run, False
        # A paused run resumed (by the tick or by hand) no longer waits for a reset.
        counts = {k: v for k, v in run.counts.items() if k != "retry_at"}
        result = session.execute(
            update(Run)
            .where(Run.id == run_id, Run.status == run.status,
                   Run.worker_id.is_(None) if run.worker_id is None
                   else Run.worker_id == run.worker_id)
            .values(status="running", worker_id=deps.worker_id, heartbeat_at=utcnow(),
                    attempt=Run.attempt + 1, started_at=run.started_at or utcnow(),
                    counts=counts)
        )
        claimed = cast("CursorResult[Any]", result).rowcount
        if claimed == 1:
            # Who ran which attempt: the history that shows one worker at a time.
            audit.record(session, actor=None, action="run.claimed", target_type="run",
                         target_id=run_id, worker_id=deps.worker_id, attempt=run.attempt + 1)
    with deps.sessions() as session:
        fresh = session.get(Run, run_id)
        assert fresh is not None
        return fresh, claimed == 1


def _execute(run_id: str, deps: RunDependencies) -> Run:
    try:
        run, claimed = _claim(deps, run_id)
    except Exception as exc:
        if is_database_unreachable(exc):
            raise unreachable_error(exc, engine=deps.engine) from exc
        if is_storage_full(exc):
            raise storage_full_error(exc, engine=deps.engine,
                                     data_dir=str(deps.settings.data_dir)) from exc
        raise
    if not claimed:
        return run
    if run.cancel_requested:
        return _finish(deps, run_id, "cancelled", text(N_("Cancelled before it started.")))
    attempt = run.attempt
    with deps.sessions() as session:
        export = session.get(Export, run.export_id)
        assert export is not None  # runs cascade with their export
        connection = session.get(Connection, export.connection_id) if export.connection_id else None
    log.info("run %s of export %r: attempt %d", run_id, export.name, attempt)
    try:
        with Heartbeat(deps.sessions, run_id=run_id, worker_id=deps.worker_id,
                       interval=heartbeat_interval(deps.settings.stale_run_seconds)):
            return _pipeline(deps, run, export, connection)
    except RunLost as exc:
        log.warning("run %s: %s; this worker stops here", run_id, exc)
        with deps.sessions() as session:
            current = session.get(Run, run_id)
            assert current is not None
            return current
    except RunInterrupted:
        return _finish(deps, run_id, "queued", text(N_(
            "Stopped by a shutdown after its last confirmed batch; it resumes when a worker "
            "runs again.")), error_kind="interrupted")
    except RunCancelled:
        return _finish(deps, run_id, "cancelled",
                       text(N_("Cancelled; confirmed batches stay delivered.")))
    except QuotaExhaustedError as exc:
        resets = exc.resets_at.isoformat()
        log.warning("run %s paused: the daily quota is used up until %s", run_id, resets)
        return _finish(
            deps, run_id, PAUSED,
            text(N_("Paused: Constant Contact's daily request quota for this API key is used "
                    "up. It resets at %(resets)s; then the run resumes by itself after its last "
                    "confirmed batch (a `serve` or `worker` process must be running), and "
                    "nothing confirmed is sent again."), resets=resets),
            error_kind="quota_exhausted", retry_at=resets)
    except ReauthorizationNeededError as exc:
        return _finish(deps, run_id, "failed", error_text(exc),
                       error_kind="reauthorization_needed")
    except RetriableError as exc:
        if attempt < MAX_ATTEMPTS:
            log.warning("run %s attempt %d failed, will retry: %s", run_id, attempt, exc)
            return _finish(deps, run_id, "queued", _retrying(exc), error_kind="retrying")
        return _finish(deps, run_id, "failed", _gave_up(attempt, exc), error_kind="retriable")
    except SegmentExportError as exc:
        return _finish(deps, run_id, "failed", error_text(exc), error_kind=type(exc).__name__)
    except Exception as exc:
        if is_storage_full(exc):
            return _out_of_space(deps, run_id, exc)
        if is_database_unreachable(exc):
            return _state_store_lost(deps, run_id, attempt, exc)
        log.exception("run %s crashed", run_id)
        return _finish(deps, run_id, "failed", text(N_("Internal error: %(error)s"),
                                                     error=repr(exc)), error_kind="internal")


def _out_of_space(deps: RunDependencies, run_id: str, exc: Exception) -> Run:
    """Stop the run with an error that names the full place; keep every confirmed batch."""
    error = storage_full_error(exc, engine=deps.engine, data_dir=str(deps.settings.data_dir))
    log.error("run %s stopped: %s", run_id, error)
    try:
        return _finish(deps, run_id, "failed", error_text(error), error_kind="storage_full")
    except Exception as again:
        if not (is_storage_full(again) or is_database_unreachable(again)):
            raise
        # Not even the run's status fits on the disk: it stays `running` under this worker and
        # is resumed (after its last confirmed batch) once the worker is gone or stale.
        raise error from exc


def _state_store_lost(deps: RunDependencies, run_id: str, attempt: int, exc: Exception) -> Run:
    """The state database went away mid-run (restart, failover): once it answers again, the
    run goes back to the queue and resumes after its last confirmed batch."""
    error = unreachable_error(exc, engine=deps.engine)
    log.warning("run %s attempt %d: %s", run_id, attempt, error)
    deadline = time.monotonic() + STATE_STORE_WAIT_SECONDS
    pause = 0.2
    while True:
        try:
            if attempt < MAX_ATTEMPTS:
                return _finish(deps, run_id, "queued", _retrying(error), error_kind="retrying")
            return _finish(deps, run_id, "failed", _gave_up(attempt, error),
                           error_kind="state_store_unavailable")
        except Exception as again:
            if not is_database_unreachable(again):
                raise
            if time.monotonic() > deadline:
                raise error from exc
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def _retrying(exc: BaseException) -> Text:
    return text(N_("Retrying after: %(error)s"), error=error_text(exc))


def _gave_up(attempt: int, exc: BaseException) -> Text:
    return text(N_("Failed after %(attempts)s attempts: %(error)s"), attempts=attempt,
                error=error_text(exc))


def _finish(deps: RunDependencies, run_id: str, status: str, message: Text | str,
            **extra: Any) -> Run:
    if isinstance(message, str):  # plain English: shown as it is in every language
        message = Text(((message, {}),))
    with deps.sessions.begin() as session:
        run = session.get(Run, run_id)
        assert run is not None
        if run.worker_id != deps.worker_id or run.status != "running":
            log.warning("run %s: not recording %s, another worker took the run over",
                        run_id, status)
            return run
        run.status = status
        run.message, run.message_text = str(message), message.as_json()
        run.error_kind = extra.pop("error_kind", None)
        if extra:
            run.counts = {**run.counts, **extra}
        if status in TERMINAL:
            run.finished_at = utcnow()
    _notify(deps, run)
    deps.metrics.observe_run(run)
    if status in TERMINAL:
        from segment_export.exports.alerts import alert_on_finish

        alert_on_finish(deps, run)
    return run


def _notify(deps: RunDependencies, run: Run) -> None:
    if deps.progress is not None:
        deps.progress(run)


def _check_cancel(deps: RunDependencies, run_id: str, counts: dict[str, Any]) -> None:
    with deps.sessions.begin() as session:
        run = session.get(Run, run_id)
        assert run is not None
        if run.worker_id != deps.worker_id or run.status != "running":
            raise RunLost(f"worker {run.worker_id} holds the run now ({run.status})")
        run.heartbeat_at = utcnow()
        run.counts = {**run.counts, **counts}
        cancel = run.cancel_requested
    _notify(deps, run)
    if cancel:
        raise RunCancelled("cancel requested")
    if deps.stopping is not None and deps.stopping():
        raise RunInterrupted("the process is shutting down")


def _pipeline(deps: RunDependencies, run: Run, export: Export,
              connection: Connection | None) -> Run:
    stages = _Stages()
    limit = export.max_contacts or deps.settings.max_contacts_per_export
    size = deps.store.membership_size(export.segment_ids)
    if size > limit:
        return _finish(
            deps, run.id, "skipped",
            text(N_("The segment(s) hold %(size)s contacts, over this export's limit of "
                    "%(limit)s; nothing was sent. Narrow the segment or raise the export's "
                    "limit."), size=size, limit=limit),
            in_segment=size,
        )
    if connection is None and not run.dry_run:
        return _finish(deps, run.id, "failed",
                       text(N_("The export is detached from its connection; attach one and "
                               "run again.")),
                       error_kind="ConfigurationError")
    local = LocalCounts()
    counts: dict[str, Any] = {"segment_size": size}
    if run.dry_run:
        return _dry_run(deps, run, export, local, counts, stages,
                        _dry_run_reads(deps, connection, export), connection)

    assert connection is not None
    with client_for(connection, settings=deps.settings, engine=deps.engine,
                    transport=deps.transport, on_request=deps.request_hook(),
                    metrics=deps.metrics, **deps.client_options) as client, \
            _naming_a_deleted_list(client, export):
        _confirm_left_over_batches(deps, client, run, export)
        # Read once per run: a custom field deleted since the export was saved fails it here.
        typed = fields_for_run(client, export.mapping, account=_account(connection))
        suppressed = read_before_run(deps.engine, client, connection_id=connection.id,
                                     full=run.full_resync)
        started = time.perf_counter()
        if not run.full_resync:
            compact_members(deps.engine, export.id)
        # A resumed full resync skips only what this run already delivered.
        delivered = load_delivered(deps.engine, export.id,
                                   run_id=run.id if run.full_resync else None)
        stages.add("diff", started)
        totals, held = DiffTotals(keep_keys=export.mode == "mirror"), SuppressedTally()
        chunks = without_suppressed(
            stream_members(deps.store, export, seconds=stages.seconds, counts=local,
                           custom_fields=typed, sms_only_allowed=connection.sms_only_allowed),
            suppressed=suppressed, tally=held, totals=totals)
        _send(deps, client, run, export, chunks, delivered, totals, counts, local, stages)
        counts.update(local.as_dict(), suppressed=held.suppressed)
        if export.mode == "mirror":
            started = time.perf_counter()
            # The state read before the sending, unless it was only this run's (a full
            # resync): the sending added only current members to it, never a leaver, so its
            # leavers are the same, and a second read of a million keys is not needed.
            removal = remove_leavers(
                deps, client, run_id=run.id, export=export,
                delivered=load_delivered(deps.engine, export.id) if run.full_resync
                else delivered,
                current_keys=totals.current_keys,
                check_cancel=lambda: _check_cancel(deps, run.id, {}),
            )
            stages.add("remove", started)
            counts.update(removal)
    return _complete(deps, run.id, counts, stages)


def _account(connection: Connection) -> str:
    return connection.account_name or connection.display_name


@contextmanager
def _naming_a_deleted_list(client: ConstantContactClient, export: Export) -> Iterator[None]:
    """Constant Contact refused an import or a removal: if the export's list was deleted
    there, say so (its 400 names only a list id "not found"). Asked only on a refusal, so a
    run costs no request more."""
    try:
        yield
    except FatalError as exc:
        gone = deleted_list_error(client, list_id=export.list_id, list_name=export.list_name)
        if gone is None:
            raise
        raise gone from exc


def _dry_run_reads(deps: RunDependencies, connection: Connection | None,
                   export: Export) -> dict[str, AccountField] | None:
    """What a dry run asks Constant Contact: that the export's list is still there (a real run
    would fail on a deleted one), and the account's custom fields the mapping fills (none asked
    for when it fills none). A detached export's dry run asks nothing: its values then go
    uncast, as text."""
    if connection is None:
        return None
    with client_for(connection, settings=deps.settings, engine=deps.engine,
                    transport=deps.transport, on_request=deps.request_hook(),
                    metrics=deps.metrics, **deps.client_options) as client:
        gone = deleted_list_error(client, list_id=export.list_id, list_name=export.list_name)
        if gone is not None:
            raise gone
        if not mapped_names(export.mapping):
            return None
        return fields_for_run(client, export.mapping, account=_account(connection))


def _dry_run(deps: RunDependencies, run: Run, export: Export, local: LocalCounts,
             counts: dict[str, Any], stages: _Stages,
             typed: dict[str, AccountField] | None = None,
             connection: Connection | None = None) -> Run:
    delivered = Delivered.empty() if run.full_resync else load_delivered(deps.engine, export.id)
    totals, held = DiffTotals(), SuppressedTally()
    # What the suppression set held at the last read: a dry run reads no unsubscribes.
    sms_only_allowed = bool(connection.sms_only_allowed) if connection is not None else False
    for chunk in without_suppressed(
            stream_members(deps.store, export, seconds=stages.seconds, counts=local,
                           custom_fields=typed, sms_only_allowed=sms_only_allowed),
            suppressed=load_suppressed(deps.engine, connection_id=export.connection_id),
            tally=held, totals=totals):
        store_rejections(deps.engine, run.id, chunk)
        started = time.perf_counter()
        for _ in iter_changes(chunk.contacts, delivered, totals):
            pass
        stages.add("diff", started)
    would_remove = 0
    if export.mode == "mirror":
        would_remove = int(leavers(delivered, totals.current_keys).size)
    counts.update(local.as_dict(), suppressed=held.suppressed)
    counts.update(would_add=totals.new, would_update=totals.changed,
                  unchanged=totals.unchanged, would_remove=would_remove)
    with deps.sessions.begin() as session:
        stored = session.get(Run, run.id)
        assert stored is not None
        stored.counts = {**stored.counts, **counts}
        stored.stage_seconds = stages.seconds
    return _finish(deps, run.id, "succeeded",
                   text(N_("Dry run: would add %(add)s, update %(update)s, remove %(remove)s; "
                           "%(rejected)s rejected, %(no_consent)s without consent, "
                           "%(suppressed)s unsubscribed in Constant Contact. Nothing was sent."),
                        add=totals.new, update=totals.changed, remove=would_remove,
                        rejected=local.rejected_locally, no_consent=local.no_consent,
                        suppressed=held.suppressed))


def _send(deps: RunDependencies, client: ConstantContactClient, run: Run, export: Export,
          chunks: Iterator[ValidatedMembers], delivered: Delivered, totals: DiffTotals,
          counts: dict[str, Any], local: LocalCounts, stages: _Stages) -> None:
    if run.attempt > 1:
        # A resumed attempt validates every row again: it rewrites the local rejections, which
        # the attempt before may have stopped writing halfway (Constant Contact's stay).
        _forget_local_rejections(deps, run.id)

    def settled(contacts: int) -> None:
        counts["sent_so_far"] = counts.get("sent_so_far", 0) + contacts

    # Bodies are read, validated, diffed and serialized in a thread, a few ahead of the sender,
    # so that work overlaps the waits of Constant Contact's pacing.
    bodies = prepare_batches(
        chunks, delivered=delivered, totals=totals,
        cutter=_cutter(export, deps.settings.import_batch_contacts),
        seconds=stages.seconds, on_chunk=lambda chunk: store_rejections(deps.engine, run.id, chunk))
    seq = _next_seq(deps, run.id, "import")
    # One body waits while another is sent: enough to hide the producer's jitter, and each
    # body held costs about 10 MB (its bytes, emails and members).
    with Sender(engine=deps.engine, client=client, run_id=run.id, export_id=export.id,
                poll_interval=deps.poll_interval, on_settled=settled, timing=stages.add
                ) as sender, Ahead(bodies, depth=1, name="prepare-bodies") as ready:
        for batch, members in ready:
            counts.update(to_send=totals.new + totals.changed, unchanged=totals.unchanged,
                          processed=local.in_segment)
            try:
                _check_cancel(deps, run.id, counts)
            except RunCancelled:
                # Stop sending, but settle what Constant Contact already has, so the report
                # and the next run know exactly which contacts arrived.
                sender.settle()
                raise
            sender.send(batch, members, seq=seq)
            seq += 1
        sender.settle()
    counts.update(to_send=totals.new + totals.changed, unchanged=totals.unchanged,
                  new=totals.new, changed=totals.changed, processed=local.in_segment)
    _check_cancel(deps, run.id, counts)


def _cutter(export: Export, max_contacts: int) -> BodyCutter | SplitByConsent:
    """One cutter; two (explicit and not_set bodies) when the export sends phone numbers."""
    if "sms_number" in export.mapping:
        return SplitByConsent(list_ids=[export.list_id], max_contacts=max_contacts)
    return BodyCutter(list_ids=[export.list_id], max_contacts=max_contacts)


def _forget_local_rejections(deps: RunDependencies, run_id: str) -> None:
    with deps.engine.begin() as conn:
        conn.execute(delete(RejectedRow).where(
            RejectedRow.run_id == run_id, RejectedRow.reason != REFUSED_BY_CONSTANT_CONTACT))


def _next_seq(deps: RunDependencies, run_id: str, kind: str) -> int:
    with deps.engine.connect() as conn:
        last = conn.execute(select(RunBatch.seq).where(
            RunBatch.run_id == run_id, RunBatch.kind == kind).order_by(
            RunBatch.seq.desc()).limit(1)).scalar()
    return 0 if last is None else last + 1


def _confirm_left_over_batches(deps: RunDependencies, client: ConstantContactClient, run: Run,
                               export: Export) -> None:
    """After a crash, a lost answer or a failed run: settle the batches sent but never
    confirmed, and remember those whose import may or may not have happened (``pending``:
    the answer that would have named its activity never came).

    That is this run's earlier attempts and also the export's earlier runs that ended
    (failed, cancelled) with batches in flight: their contacts may be on the list, so a
    mirror export must own them. Each is settled under the run that sent it, so its report
    rows and counts stay that run's. Removals first: an attempt removes only after its
    imports are settled, so any left-over removal is the older."""
    # An old activity may still be processing: a cancel (or a shutdown) stops the wait, and
    # what is unsettled stays for the next run.
    def check_cancel() -> None:
        _check_cancel(deps, run.id, {})

    for run_id in _runs_with_left_overs(deps, run, export):
        settle_left_over_removals(deps, client, run_id=run_id, export_id=export.id,
                                  check_cancel=check_cancel)
        _confirm_left_over_imports(deps, client, run_id=run_id, export=export,
                                   check_cancel=check_cancel)
        if run_id != run.id:
            _recount_ended_run(deps, run_id)


def _recount_ended_run(deps: RunDependencies, run_id: str) -> None:
    """An ended run's counts of what its imports delivered, now that a later run settled
    those it left in flight: its report rows and its counts agree (its status and message
    stay as it ended)."""
    with deps.sessions.begin() as session:
        ended = session.get(Run, run_id)
        assert ended is not None
        delivered = _delivered_counts(session, run_id)
        ended.counts = {**ended.counts, **{key: delivered[key] for key in (
            "sent", "accepted", "rejected_by_constant_contact", "unsubscribed_not_added",
            "activities", "requests")}}


def _delivered_counts(session: Session, run_id: str) -> dict[str, Any]:
    """What the run's confirmed imports delivered, by Constant Contact's counts."""
    # Not the members blobs: ~2.5 MB a batch, 60 MB for a 1 M export's 24 batches, at its end.
    batches = session.scalars(select(RunBatch).options(defer(RunBatch.members)).where(
        RunBatch.run_id == run_id, RunBatch.kind == "import",
        RunBatch.state == "confirmed")).all()

    def total(key: str) -> int:
        return sum(int(b.counts.get(key, 0)) for b in batches)

    return {"sent": sum(b.contacts for b in batches), "accepted": total("accepted"),
            "rejected_by_constant_contact": total("rejected"),
            "unsubscribed_not_added": total("unsubscribed_not_added"),
            "rejected_unnamed": total("rejected_unnamed"), "sms_only": total("sms_only"),
            "activities": [b.activity_id for b in batches], "requests": len(batches)}


def _runs_with_left_overs(deps: RunDependencies, run: Run, export: Export) -> list[str]:
    """This run, after the export's ended runs that left batches unconfirmed, oldest first."""
    with deps.sessions() as session:
        earlier = session.scalars(
            select(Run.id).join(RunBatch, RunBatch.run_id == Run.id).where(
                Run.export_id == export.id, Run.id != run.id, Run.status.in_(TERMINAL),
                RunBatch.state.in_(("sent", "pending"))).group_by(Run.id)
            .order_by(func.min(RunBatch.id))).all()
    return [*earlier, run.id]


def _confirm_left_over_imports(deps: RunDependencies, client: ConstantContactClient, *,
                               run_id: str, export: Export,
                               check_cancel: Callable[[], None]) -> None:
    with deps.sessions() as session:
        left = session.scalars(select(RunBatch).where(
            RunBatch.run_id == run_id, RunBatch.kind == "import",
            RunBatch.state.in_(("sent", "pending"))).order_by(RunBatch.id)).all()
    if not left:
        return
    with Sender(engine=deps.engine, client=client, run_id=run_id, export_id=export.id,
                poll_interval=deps.poll_interval, between_polls=check_cancel) as sender:
        for batch in left:
            assert batch.members is not None
            members = BatchMembers.unpack(batch.members)
            if members is None:  # packed before emails were kept with the batch
                keys, hashes = BatchMembers.unpack_keys(batch.members)
                emails, customer_ids = _emails_for(deps, export, run_id, keys)
                members = BatchMembers.of(keys.tolist(), hashes.tolist(), emails, customer_ids)
            if batch.activity_id is None:
                record_uncertain(deps.engine, export_id=export.id, run_id=run_id,
                                 batch_id=batch.id, members=members)
                continue
            sender.adopt(InFlight(batch.id, batch.activity_id, members))
        while sender.in_flight:
            try:
                # A left-over activity that failed is no loss: this attempt sends its
                # contacts again.
                sender.settle(tolerate_failures=True)
            except NotFoundError:
                # An activity Constant Contact no longer has (an old run's): whether its
                # contacts reached the list is unknown, so the diff decides them again. Only
                # the gone ones: the others are still settled with Constant Contact's verdict.
                _drop_gone_activities(deps, client, sender, run_id=run_id, export=export)


def _drop_gone_activities(deps: RunDependencies, client: ConstantContactClient, sender: Sender,
                          *, run_id: str, export: Export) -> None:
    """Record as uncertain, and stop waiting for, the adopted activities Constant Contact no
    longer has; all of them if none is found gone one by one."""
    gone = []
    for activity_id in list(sender.in_flight):
        try:
            client.get_activity(activity_id)
        except NotFoundError:
            gone.append(activity_id)
    for activity_id in gone or list(sender.in_flight):
        flight = sender.in_flight.pop(activity_id)
        record_uncertain(deps.engine, export_id=export.id, run_id=run_id,
                         batch_id=flight.batch_id, members=sender.members_of(flight))


def _emails_for(deps: RunDependencies, export: Export, run_id: str,
                keys: np.ndarray[Any, Any]) -> tuple[list[str], list[str]]:
    """The emails of a left-over batch, re-derived from the current members by key."""
    from segment_export.exports.diff import fingerprints

    wanted = {int(k): i for i, k in enumerate(keys.tolist())}
    emails, ids = [""] * len(keys), [""] * len(keys)
    for chunk in stream_members(deps.store, export, seconds={}, counts=LocalCounts()):
        chunk_keys, _ = fingerprints(chunk.contacts)
        chunk_emails = chunk.contacts.column("email").to_pylist()
        chunk_ids = chunk.contacts.column("customer_id").to_pylist()
        for position, key in enumerate(chunk_keys.tolist()):
            index = wanted.get(int(key))
            if index is not None:
                emails[index], ids[index] = chunk_emails[position], chunk_ids[position]
    return emails, ids


def _complete(deps: RunDependencies, run_id: str, counts: dict[str, Any],
               stages: _Stages) -> Run:
    with deps.sessions.begin() as session:
        run = session.get(Run, run_id)
        assert run is not None
        delivered = _delivered_counts(session, run_id)
        sent, accepted = delivered["sent"], delivered["accepted"]
        refused = delivered["rejected_by_constant_contact"]
        unsubscribed = delivered["unsubscribed_not_added"]
        unnamed = delivered["rejected_unnamed"]
        if unnamed:
            counts["refused_unnamed"] = unnamed
        if "sms_refused" in counts:  # the export maps phone numbers
            counts["sms_only_sent"] = delivered["sms_only"]
        counts.update(
            sent=sent, accepted=accepted, rejected_by_constant_contact=refused,
            unsubscribed_not_added=unsubscribed,
            # Suppressed members are valid but neither sent nor unchanged.
            unchanged=counts.get("valid", 0) - sent - counts.get("suppressed", 0),
            activities=delivered["activities"], requests=delivered["requests"],
        )
        run.counts = {**run.counts, **counts}
        run.stage_seconds = stages.seconds
        # A number left out of a sent contact is a rejection too: the report has its row.
        rejected = (counts.get("rejected_locally", 0) + refused
                    + counts.get("sms_phone_dropped", 0))
    status = "succeeded_with_rejections" if rejected else "succeeded"
    removed = counts.get("removed", 0)
    sent_part = text(
        N_("Sent %(sent)s contacts (%(accepted)s accepted, %(refused)s refused by Constant "
           "Contact of which %(unnamed)s unnamed, their requests sent again next run, "
           "%(unsubscribed)s unsubscribed and not re-added)") if unnamed else
        N_("Sent %(sent)s contacts (%(accepted)s accepted, %(refused)s refused by Constant "
           "Contact, %(unsubscribed)s unsubscribed and not re-added)"),
        sent=sent, accepted=accepted, refused=refused, unnamed=unnamed,
        unsubscribed=unsubscribed)
    parts = [sent_part, text(N_("%(count)s unchanged"), count=counts["unchanged"]),
             text(N_("%(count)s rejected before sending"),
                  count=counts.get("rejected_locally", 0)),
             text(N_("%(count)s without consent"), count=counts.get("no_consent", 0))]
    if counts.get("suppressed"):
        parts.append(text(N_("%(count)s unsubscribed in Constant Contact and held back"),
                          count=counts["suppressed"]))
    if removed:
        parts.append(text(N_("%(count)s removed from the list"), count=removed))
    if "sms_refused" in counts:  # the export maps phone numbers
        parts.append(text(N_("SMS: %(sent)s SMS-only contacts sent of %(of)s, %(refused)s "
                             "numbers refused"), sent=counts.get("sms_only_sent", 0),
                          of=counts.get("sms_only", 0), refused=counts["sms_refused"]))
    return _finish(deps, run_id, status, joined(*parts))
