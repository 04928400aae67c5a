"""A claimed run's heartbeat, kept fresh by a thread while the run works."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Self, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from segment_export.db.models import Run
from segment_export.db.types import utcnow

log = logging.getLogger(__name__)


def heartbeat_interval(stale_run_seconds: float) -> float:
    """How often a running run beats: four beats fit in the time after which it counts as dead."""
    return max(0.2, stale_run_seconds / 4)


class Heartbeat:
    """``with Heartbeat(...):`` touches ``Run.heartbeat_at`` every ``interval`` seconds.

    Batch boundaries beat too, but one batch can outlast ``stale_run_seconds`` (slots of a rate
    budget shared with other workers, slow activities); without these beats another machine
    would take a live run for an orphan and run it twice. A beat only lands while this worker
    still holds the claim; once it does not, beating stops (the run's next batch boundary
    notices and the run stops without writing).
    """

    def __init__(self, sessions: sessionmaker[Session], *, run_id: str, worker_id: str,
                 interval: float) -> None:
        self.run_id = run_id
        self.worker_id = worker_id
        self.interval = interval
        self._sessions = sessions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> bool:
        """Touch the heartbeat once; False when this worker no longer holds the run."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Run)
                .where(Run.id == self.run_id, Run.worker_id == self.worker_id,
                       Run.status == "running")
                .values(heartbeat_at=utcnow())
            )
        return cast("CursorResult[Any]", result).rowcount == 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                held = self.beat()
            except SQLAlchemyError as exc:
                # A database blip: the run's own writes will fail loudly; beat again next time.
                log.warning("run %s: heartbeat not written: %s", self.run_id, exc)
                continue
            if not held:
                return


__all__ = ["Heartbeat", "heartbeat_interval"]
