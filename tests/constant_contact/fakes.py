"""Test doubles for the client's seams: a frozen clock and recording fake transports."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from segment_export.constant_contact.auth import Token

START = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


class FakeClock:
    """Wall time, monotonic time and sleep on one frozen timeline: sleeping advances it."""

    def __init__(self, start: datetime = START) -> None:
        self._t = start.timestamp()
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def time(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        return self.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._t += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds


class NoLimit:
    """A limiter that lets everything through and counts."""

    def __init__(self) -> None:
        self.calls = 0

    def acquire(self) -> float:
        self.calls += 1
        return 0.0


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=orjson.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Recorder:
    """A MockTransport handler that answers from a script and keeps every request."""

    handler: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def token(clock: FakeClock, n: int = 1, *, hours: float = 24) -> Token:
    return Token(
        access_token=f"access-token-{n:04d}-xxxxxxxx",
        refresh_token=f"refresh-token-{n:04d}-yyyyyyyy",
        expires_at=clock.now() + timedelta(hours=hours),
        scope="contact_data offline_access",
    )


ACTIVITY_ID = "9f0c1d4e-3b52-4d7a-8f8e-0a1b2c3d4e5f"
LIST_ID = "0d6a0c5e-1111-4a2b-9c3d-4e5f60718293"


def activity(state: str = "initialized", **extra: Any) -> dict[str, Any]:
    return {
        "activity_id": ACTIVITY_ID,
        "state": state,
        "percent_done": 100 if state == "completed" else 0,
        "activity_errors": [],
        "status": {"items_total_count": 2, "person_count": 2},
        "_links": {"self": {"href": f"/v3/activities/{ACTIVITY_ID}"}},
        **extra,
    }
