"""Pacing per API key: evenly spaced requests and a daily quota, in-process or shared."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from segment_export.errors import QuotaExhaustedError

log = logging.getLogger(__name__)

# Constant Contact counts "at most N requests in any sliding second" at its end; requests leave
# here evenly spaced, but scheduling and network jitter can bunch them on the way. Spacing them
# this much wider than 1/rate keeps a jittered fifth request out of the previous four's second.
DEFAULT_SAFETY_MARGIN = 0.1
MAX_ADMIT_TRIES = 100


class RateLimiter(Protocol):
    """Something every API request passes through first, shared by all users of one API key."""

    def acquire(self) -> float:
        """Wait until one more request may be sent and return the seconds waited.

        Raises QuotaExhaustedError (with ``resets_at``) instead of letting through the request that
        would exceed the daily quota.
        """
        ...


def next_utc_midnight(now: datetime) -> datetime:
    """When a daily quota counted per UTC day starts again."""
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def utc_day(epoch: float) -> str:
    """The UTC date (YYYY-MM-DD) a request sent at ``epoch`` counts against."""
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


@dataclass
class BucketState:
    """A burst-1 token bucket plus the day's request count (the columns of RateLimitBucket)."""

    tokens: float
    updated_at: float
    day: str
    day_count: int


def take(
    state: BucketState | None, *, now: float, rate: float, daily_quota: int, key: str
) -> tuple[BucketState, float]:
    """Reserve the next send slot: the new state and how long the caller must wait for its slot.

    The bucket holds at most one token, so requests leave at least ``1/rate`` apart even after an
    idle spell (a bucket that let four through at once would break the server's sliding second).
    Tokens go negative to queue callers: each caller reserves a distinct future slot under the
    lock and sleeps outside it, so waiting never holds the lock.
    """
    day = utc_day(now)
    if state is None:
        state = BucketState(tokens=1.0, updated_at=now, day=day, day_count=0)
    count = state.day_count if state.day == day else 0
    if count + 1 > daily_quota:
        resets_at = next_utc_midnight(datetime.fromtimestamp(now, UTC))
        raise QuotaExhaustedError(
            f"The daily request budget of {daily_quota} for this API key is used up",
            resets_at=resets_at,
            reason="daily_quota",
            key=key,
            day=day,
            day_count=count,
        )
    elapsed = max(0.0, now - state.updated_at)
    tokens = min(1.0, state.tokens + elapsed * rate) - 1.0
    wait = max(0.0, -tokens / rate)
    return BucketState(tokens=tokens, updated_at=now, day=day, day_count=count + 1), wait


def effective_rate(rate: float, safety_margin: float) -> float:
    if rate <= 0:
        raise ValueError("rate must be positive")
    if not 0 <= safety_margin < 1:
        raise ValueError("safety_margin must be in [0, 1)")
    return rate / (1.0 + safety_margin)


class InProcessRateLimiter:
    """Thread-safe pacing for one API key inside one process; share one instance per key."""

    def __init__(
        self,
        *,
        rate: float,
        daily_quota: int,
        key: str = "default",
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.rate = effective_rate(rate, safety_margin)
        self.daily_quota = daily_quota
        self._clock = clock
        self._sleep = sleep
        self._state: BucketState | None = None
        self._lock = threading.Lock()
        self._window = SendWindow(rate, safety_margin)

    def acquire(self) -> float:
        """Wait for this caller's slot; see RateLimiter.acquire."""
        return paced(self._reserve, self._admit, self._sleep, self.key)

    def _admit(self) -> float:
        with self._lock:
            return self._window.admit(self._clock())

    def _reserve(self) -> float:
        with self._lock:
            self._state, wait = take(
                self._state,
                now=self._clock(),
                rate=self.rate,
                daily_quota=self.daily_quota,
                key=self.key,
            )
        return wait

    @property
    def day_count(self) -> int:
        """Requests let through today (UTC) by this limiter."""
        with self._lock:
            state = self._state
        return state.day_count if state and state.day == utc_day(self._clock()) else 0


class SendWindow:
    """The last sends of a key: at most ``limit`` in any ``seconds`` (the server's sliding second,
    widened by the safety margin), counted when a request actually leaves.

    The bucket hands out slots, possibly seconds ahead; a process that wakes late for its slot
    (a busy machine, a pause) would land in the same second as slots reserved after it. Checked
    again just before sending, against the times requests really left, it cannot.
    """

    def __init__(self, rate: float, safety_margin: float = DEFAULT_SAFETY_MARGIN) -> None:
        self.limit, self.seconds = window_shape(rate, safety_margin)
        self._sent: deque[float] = deque()

    def admit(self, now: float) -> float:
        """Record a send at ``now`` and return 0, or return how long to wait first."""
        # A microsecond of slack: slots are sums of floats, and the fifth of five slots spaced
        # by exactly a window's quarter must not wait on rounding.
        while self._sent and self._sent[0] <= now - self.seconds + 1e-6:
            self._sent.popleft()
        if len(self._sent) < self.limit:
            self._sent.append(now)
            return 0.0
        return max(0.001, self._sent[0] + self.seconds - now)


def window_shape(rate: float, safety_margin: float) -> tuple[int, float]:
    # As Constant Contact counts: r whole requests in any second; a fractional rate keeps its
    # average over a longer window (0.5/s: one in any 2 s). Widened by the safety margin.
    effective_rate(rate, safety_margin)  # the same checks of the arguments
    limit = max(1, math.floor(rate))
    return limit, limit / rate * (1.0 + safety_margin)


def paced(reserve: Callable[[], float], admit: Callable[[], float],
           sleep: Callable[[float], None], key: str) -> float:
    """Sleep until a reserved slot, then until the send window admits; the seconds waited."""
    waited = _sleep(reserve(), sleep, key)
    for _ in range(MAX_ADMIT_TRIES):
        wait = admit()
        if wait <= 0:
            return waited
        log.debug("pacing: the last second's sends still fill the window (key %s)", key)
        waited += _sleep(wait, sleep, key)
    # Only a clock that does not move gets here; a request that bounces is retried anyway.
    log.warning("pacing: the send window never opened for key %s; sending", key)
    return waited


def _sleep(seconds: float, sleep: Callable[[float], None], key: str) -> float:
    if seconds > 0:
        # Pacing waits happen before nearly every request: DEBUG, not a warning.
        log.debug("pacing: waiting %.3f s for a request slot (key %s)", seconds, key)
        sleep(seconds)
    return max(0.0, seconds)


__all__ = [
    "DEFAULT_SAFETY_MARGIN",
    "BucketState",
    "InProcessRateLimiter",
    "RateLimiter",
    "SendWindow",
    "next_utc_midnight",
    "take",
    "utc_day",
]
