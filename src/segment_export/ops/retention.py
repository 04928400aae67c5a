"""Retention: rejected rows and batch details of runs that ended long enough ago are purged."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, Select, delete, func, select, update
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.db.models import RejectedRow, Run, RunBatch, User
from segment_export.db.types import utcnow

log = logging.getLogger(__name__)

# Only runs that can no longer resume lose details: a resumed run needs its batch members.
ENDED = ("succeeded", "succeeded_with_rejections", "failed", "cancelled", "skipped")


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge removed (or, for a dry run, would remove)."""

    cutoff: datetime
    runs: int  # ended runs whose details were (or would be) purged
    rejected_rows: int
    batches: int  # batches whose member keys and activity errors were cleared
    dry_run: bool = False


def _expired_runs(cutoff: datetime) -> Select[str]:
    # A run cancelled while queued has no finished_at; it ended when it was queued.
    return select(Run.id).where(Run.status.in_(ENDED),
                                func.coalesce(Run.finished_at, Run.queued_at) < cutoff)


def purge_expired(*, engine: Engine, retention_days: int, now: datetime | None = None,
                  dry_run: bool = False, actor: User | None = None,
                  batch_size: int = 5000) -> Purged:
    """Delete the rejected rows, and clear the batch member keys and activity errors, of every
    run that ended more than ``retention_days`` ago. Runs, their counts and messages, exports,
    what each export delivered, and the audit log are kept.

    Deletes go in batches of ``batch_size`` rows, each its own short transaction, so a purge of
    millions of rows never holds the state store's write lock for long.
    """
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    expired = _expired_runs(cutoff)
    # Every batch is written with its members; a purged one has none (and no errors).
    batch_has_details = RunBatch.run_id.in_(expired) & RunBatch.members.is_not(None)
    with Session(engine) as session:
        rows = session.scalar(select(func.count()).select_from(RejectedRow).where(
            RejectedRow.run_id.in_(expired))) or 0
        batches = session.scalar(select(func.count()).select_from(RunBatch).where(
            batch_has_details)) or 0
        runs = session.scalar(select(func.count(func.distinct(Run.id))).where(
            Run.id.in_(expired),
            Run.id.in_(select(RejectedRow.run_id)) | Run.id.in_(
                select(RunBatch.run_id).where(batch_has_details)))) or 0
    if dry_run or not (rows or batches):
        return Purged(cutoff, runs, rows, batches, dry_run=dry_run)
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = conn.execute(select(RejectedRow.id).where(RejectedRow.run_id.in_(expired))
                               .limit(batch_size)).scalars().all()
            if not ids:
                break
            conn.execute(delete(RejectedRow).where(RejectedRow.id.in_(ids)))
            deleted += len(ids)
    cleared = 0
    while True:
        with engine.begin() as conn:
            ids = conn.execute(select(RunBatch.id).where(batch_has_details)
                               .limit(batch_size)).scalars().all()
            if not ids:
                break
            conn.execute(update(RunBatch).where(RunBatch.id.in_(ids))
                         .values(members=None, errors=[]))
            cleared += len(ids)
    with Session(engine) as session, session.begin():
        audit.record(session, actor=actor, action="retention.purged", target_type="system",
                     cutoff=cutoff.isoformat(), runs=runs, rejected_rows=deleted,
                     batches=cleared, retention_days=retention_days)
    log.info("purged details of %d run(s) that ended before %s: %d rejected rows, %d batches",
             runs, cutoff.isoformat(), deleted, cleared)
    return Purged(cutoff, runs, deleted, cleared)
