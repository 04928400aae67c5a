"""Per-key request limits: a sliding one-second window and a quota per UTC day."""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, date, datetime


class SlidingWindow:
    """At most ``rate`` accepted requests per key in any window of one second.

    A whole rate r allows r requests in every (t-1 s, t]; a fractional rate allows
    max(1, floor(r)) in a window stretched to keep the same average (0.5/s: 1 per 2 s).
    """

    def __init__(self, rate: float) -> None:
        self._hits: dict[str, deque[float]] = {}
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Change the rate; requests already counted stay counted."""
        self.limit = max(1, math.floor(rate))
        self.window = self.limit / rate

    def allows(self, key: str, now: float) -> bool:
        """Whether one more request from ``key`` at ``now`` fits (nothing is counted)."""
        hits = self._hits.get(key)
        if hits is None:
            return True
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return len(hits) < self.limit

    def record(self, key: str, now: float) -> None:
        """Count an accepted request."""
        self._hits.setdefault(key, deque()).append(now)

    def try_acquire(self, key: str, now: float) -> bool:
        """Count the request and return True if it fits; return False and count nothing if not."""
        if not self.allows(key, now):
            return False
        self.record(key, now)
        return True

    def clear(self) -> None:
        """Forget every request counted."""
        self._hits.clear()


class DailyQuota:
    """At most ``quota`` accepted requests per key per UTC day; the count resets at 00:00 UTC."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self._used: dict[str, tuple[date, int]] = {}

    @staticmethod
    def _day(now: float) -> date:
        return datetime.fromtimestamp(now, UTC).date()

    def used(self, key: str, now: float) -> int:
        """Requests ``key`` has made on the UTC day of ``now``."""
        day, count = self._used.get(key, (None, 0))
        return count if day == self._day(now) else 0

    def allows(self, key: str, now: float) -> bool:
        """Whether one more request fits in today's quota."""
        return self.used(key, now) < self.quota

    def record(self, key: str, now: float) -> None:
        """Count an accepted request."""
        self._used[key] = (self._day(now), self.used(key, now) + 1)

    def clear(self) -> None:
        """Forget every request counted."""
        self._used.clear()
