"""The task queue seam: Huey on SQLite in-process by default, on Redis across machines."""

from __future__ import annotations

import logging
from pathlib import Path

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from segment_export.exports.engine import execute_run
from segment_export.scheduling.runtime import Runtime

log = logging.getLogger(__name__)


class TaskQueue:
    """Enqueue runs; a consumer (``segment-export worker`` or ``serve``) executes them.

    The database is the truth about runs: a task only carries a run id, and a run executes on
    one worker at a time because workers claim it in the state store before starting.
    """

    def __init__(self, runtime: Runtime, *, immediate: bool = False) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.huey: Huey
        if immediate:
            self.huey = MemoryHuey("segment-export", immediate=True)
        elif settings.redis_url:
            self.huey = RedisHuey("segment-export", url=settings.redis_url)
        else:
            path = Path(settings.ensure_data_dir()) / "queue.db"
            self.huey = SqliteHuey("segment-export", filename=str(path))
        self._run_task = self.huey.task(name="run_export")(self._execute)
        self.huey.periodic_task(crontab(minute="*"), name="tick")(self._tick)
        self.huey.periodic_task(crontab(minute="17", hour="3"), name="purge")(self._purge)
        self._consumer: Consumer | None = None

    def enqueue_run(self, run_id: str) -> None:
        """Hand a queued run to whichever worker is free."""
        self._run_task(run_id)

    def _execute(self, run_id: str) -> None:
        deps = self.runtime.deps()
        if self._consumer is not None:
            deps.stopping = self._consumer.stop_flag.is_set
        run = execute_run(run_id, deps=deps)
        log.info("run %s ended its attempt as %s", run_id, run.status)

    def _purge(self) -> None:
        from segment_export.ops.retention import purge_expired

        purge_expired(engine=self.runtime.engine,
                      retention_days=self.runtime.settings.retention_days)

    def _tick(self) -> None:
        from segment_export.scheduling.schedules import tick

        tick(self.runtime, enqueue=self.enqueue_run)

    def consumer(self, *, workers: int | None = None) -> Consumer:
        """A consumer with thread workers and the once-a-minute scheduler tick."""
        # SIGTERM (what service managers send) stops gracefully: running exports see the stop
        # flag at their next batch boundary and go back to the queue; SIGINT stops at once.
        self._consumer = self.huey.create_consumer(
            workers=workers or self.runtime.settings.worker_threads, worker_type="thread",
            periodic=True, check_worker_health=True, graceful_signal="TERM")
        return self._consumer
