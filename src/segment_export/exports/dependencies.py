"""What a run needs from outside (RunDependencies) and how it is stopped: kept apart from the
engine so that the stages it calls (mirror removals, alerts) can name them without importing it.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings
from segment_export.constant_contact import RequestHook
from segment_export.db.models import Run
from segment_export.errors import SegmentExportError
from segment_export.metrics import Metrics
from segment_export.profiles import ProfileStore

_worker_numbers = itertools.count(1)


class RunCancelled(SegmentExportError):
    """Someone asked the run to stop."""


class RunInterrupted(RunCancelled):
    """The process is stopping: the run settles what is in flight and goes back to the queue."""


class RunLost(SegmentExportError):
    """Another worker took the run over (this one looked dead): stop without writing."""


@dataclass(slots=True)
class RunDependencies:
    """What a run needs from outside; tests and the benchmark pass their own."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ProfileStore
    transport: httpx.BaseTransport | None = None
    # Where the run's series go (finished runs, contacts, requests, rate waits, token
    # refreshes): the runtime's; left out, a registry of its own, recorded into all the same.
    metrics: Metrics = field(default_factory=Metrics)
    # Hears of every request too, after the metrics (tests watch the traffic with it).
    on_request: RequestHook | None = None
    # How alert webhooks are posted (None: over the network, as httpx does by default).
    webhook_transport: httpx.BaseTransport | None = None
    poll_interval: float = 1.0
    # Extra ConstantContactClient arguments (tests shorten the backoff with these).
    client_options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[Run], None] | None = None
    # True once the process is shutting down (SIGTERM): runs stop at their next batch boundary.
    stopping: Callable[[], bool] | None = None
    # host:pid:n: a process can tell a dead holder on its own host (see worker_alive).
    worker_id: str = field(default_factory=lambda: (
        f"{socket.gethostname()}:{os.getpid()}:{next(_worker_numbers)}"))

    def request_hook(self) -> RequestHook:
        """What the run's clients call after every request: the metrics, then ``on_request``."""
        record, extra = self.metrics.observe_request, self.on_request
        if extra is None:
            return record

        def both(method: str, path: str, status: int | None, bytes_sent: int,
                 seconds: float) -> None:
            record(method, path, status, bytes_sent, seconds)
            extra(method, path, status, bytes_sent, seconds)

        return both
