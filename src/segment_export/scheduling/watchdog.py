"""Runs whose worker died go back to the queue, for another worker to resume."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from segment_export import audit
from segment_export.db.models import Run
from segment_export.exports.engine import worker_alive
from segment_export.languages import N_, text
from segment_export.scheduling.runtime import Runtime

log = logging.getLogger(__name__)


def watch_interval(stale_run_seconds: float) -> float:
    """How often each worker looks for orphans: twice per staleness period, at most a minute."""
    return min(60.0, max(0.5, stale_run_seconds / 2))


def requeue_orphans(runtime: Runtime, *, enqueue: Callable[[str], None]) -> list[str]:
    """Queue again every running run whose worker is gone; returns their ids.

    Every worker calls this every few seconds. The UPDATE only matches while the row still
    shows the dead worker and its last heartbeat, so of several workers noticing the same
    orphan exactly one requeues it, and a worker that beat in the meantime keeps its run.
    The run resumes after its last confirmed batch on whichever worker takes it.
    """
    stale_after = runtime.settings.stale_run_seconds
    with runtime.sessions() as session:
        held = session.execute(
            select(Run.id, Run.worker_id, Run.heartbeat_at).where(Run.status == "running")
        ).all()
    requeued = []
    for run_id, worker_id, heartbeat in held:
        if worker_alive(worker_id, heartbeat, stale_after=stale_after):
            continue
        said = text(N_("Its worker (%(worker)s) stopped; another worker resumes it after its "
                       "last confirmed batch."), worker=str(worker_id))
        with runtime.sessions.begin() as session:
            result = session.execute(
                update(Run)
                .where(Run.id == run_id, Run.status == "running",
                       Run.worker_id.is_(None) if worker_id is None
                       else Run.worker_id == worker_id,
                       Run.heartbeat_at.is_(None) if heartbeat is None
                       else Run.heartbeat_at == heartbeat)
                .values(status="queued", message=str(said), message_text=said.as_json())
            )
            if cast("CursorResult[Any]", result).rowcount != 1:
                continue
            audit.record(session, actor=None, action="run.requeued", target_type="run",
                         target_id=run_id, worker_id=worker_id, reason="worker_gone")
        log.warning("run %s: its worker %s is gone; queued for another worker", run_id, worker_id)
        requeued.append(run_id)
    for run_id in requeued:
        enqueue(run_id)
    return requeued


__all__ = ["requeue_orphans", "watch_interval"]
