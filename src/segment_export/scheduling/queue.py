"""The task queue seam: Huey on SQLite in-process by default, on Redis across machines."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from sqlalchemy import Engine, text

from segment_export.exports.engine import execute_run
from segment_export.scheduling.runtime import Runtime
from segment_export.scheduling.watchdog import requeue_orphans, watch_interval

log = logging.getLogger(__name__)

# A run that failed for a passing reason waits this long per attempt before it is tried again.
RETRY_DELAY_SECONDS = 15


class TaskQueue:
    """Enqueue runs; consumers (``segment-export worker`` or ``serve``) execute them.

    The database is the truth about runs: a task only carries a run id, and a run executes on
    one worker at a time because workers claim it in the state store before starting. A task
    may be delivered twice (the minute tick and the watchdog re-send what looks stuck); the
    claim makes the second delivery a no-op.
    """

    def __init__(self, runtime: Runtime, *, immediate: bool = False) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.huey: Huey
        if immediate:
            self.huey = MemoryHuey(settings.queue_name, immediate=True)
        elif settings.redis_url:
            self.huey = RedisHuey(settings.queue_name, url=settings.redis_url)
        else:
            path = Path(settings.ensure_data_dir()) / "queue.db"
            self.huey = SqliteHuey(settings.queue_name, filename=str(path))
        self._run_task = self.huey.task(name="run_export")(self._execute)
        self.huey.periodic_task(crontab(minute="*"), name="tick")(self.tick)
        self.huey.periodic_task(crontab(minute="17", hour="3"), name="purge")(self._purge)
        self._consumer: Consumer | None = None

    def enqueue_run(self, run_id: str, *, delay: float = 0) -> None:
        """Hand a queued run to whichever worker is free (after ``delay`` seconds)."""
        if delay > 0:
            self._run_task.schedule((run_id,), delay=delay)
        else:
            self._run_task(run_id)

    def _execute(self, run_id: str) -> None:
        deps = self.runtime.deps()
        if self._consumer is not None:
            deps.stopping = self._consumer.stop_flag.is_set
        run = execute_run(run_id, deps=deps)
        if run.worker_id != deps.worker_id:
            # A second delivery of the task (the tick and the watchdog re-send what looks stuck).
            log.debug("run %s is %s (worker %s); nothing to do", run_id, run.status,
                      run.worker_id)
            return
        log.info("run %s ended its attempt as %s", run_id, run.status)
        if run.status == "queued":
            # Stopped by a shutdown: another worker may take it at once. Retrying after a
            # passing failure: give the cause time to pass.
            interrupted = run.error_kind == "interrupted"
            self.enqueue_run(run_id, delay=0 if interrupted else RETRY_DELAY_SECONDS * run.attempt)

    def _purge(self) -> None:
        from segment_export.ops.retention import purge_expired

        purge_expired(engine=self.runtime.engine,
                      retention_days=self.runtime.settings.retention_days)

    def tick(self) -> None:
        """The scheduler's minute: start what is due, hand stuck runs to a worker."""
        from segment_export.scheduling.schedules import tick

        # Every consumer enqueues the minute's tick; one of them at a time does the work, so two
        # workers never both start the same scheduled run or refresh the segments together.
        with one_at_a_time(self.runtime.engine, "tick") as mine:
            if not mine:
                log.info("another worker is running the scheduler tick; skipping this one")
                return
            tick(self.runtime, enqueue=self.enqueue_run)

    def watch(self) -> list[str]:
        """Requeue the runs whose worker died (see ``requeue_orphans``)."""
        return requeue_orphans(self.runtime, enqueue=self.enqueue_run)

    def consumer(self, *, workers: int | None = None) -> Consumer:
        """A consumer with thread workers, the once-a-minute scheduler tick and the watchdog."""
        # SIGTERM (what service managers send) stops gracefully: running exports see the stop
        # flag at their next batch boundary and go back to the queue; SIGINT stops at once.
        self._consumer = WatchingConsumer(
            self.huey, watch=self.watch,
            interval=watch_interval(self.runtime.settings.stale_run_seconds),
            workers=workers or self.runtime.settings.worker_threads, worker_type="thread",
            periodic=True, check_worker_health=True, graceful_signal="TERM",
            # An idle thread polls a SQLite queue ever less often (Huey's default: up to 10 s);
            # a run someone just started should begin within a second. Redis blocks instead.
            max_delay=1.0)
        return self._consumer


class WatchingConsumer(Consumer):  # type: ignore[misc]  # huey ships no type hints
    """A Huey consumer that also runs ``watch`` every ``interval`` seconds on its own thread.

    Huey's periodic tasks fire once a minute at best; a dead worker's run should be resumed
    within seconds of its death being known.
    """

    def __init__(self, huey: Huey, *, watch: Callable[[], object], interval: float,
                 **options: Any) -> None:
        super().__init__(huey, **options)
        self._watch = watch
        self._interval = interval
        self.watchdog = threading.Thread(target=self._watch_loop, name="watchdog", daemon=True)

    def start(self) -> None:
        super().start()
        self.watchdog.start()

    def _watch_loop(self) -> None:
        while not self.stop_flag.wait(self._interval):
            try:
                self._watch()
            except Exception:
                # The state store or the queue is unreachable for a moment: look again later.
                log.exception("watchdog: looking for runs of dead workers failed")


@contextmanager
def one_at_a_time(engine: Engine, name: str) -> Iterator[bool]:
    """Yield whether this process may do ``name`` now, while no other process does it.

    On PostgreSQL a session advisory lock, keyed by the schema too (deployments may share a
    database); the server drops it with the connection if the process dies. On SQLite (one
    machine, normally one process) always True.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = text("SELECT hashtext(current_schema() || :name)")
    with engine.connect() as conn:
        lock_id = conn.execute(key, {"name": f"/segment-export/{name}"}).scalar_one()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:id)"),
                                {"id": lock_id}).scalar_one())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
                conn.commit()


__all__ = ["RETRY_DELAY_SECONDS", "TaskQueue", "WatchingConsumer", "one_at_a_time"]
