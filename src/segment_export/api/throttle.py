"""Failed sign-ins slow password guessing down: per user name, and per client address.

Counted in a moving window by the ``limits`` library: in this process by default, in Redis
when ``SEGMENT_EXPORT_REDIS_URL`` is set (then every web process shares the counts).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

# Five wrong passwords for one name lock that name for up to 15 minutes (from the oldest
# failure); one address may fail more often, as colleagues share an office's address, but a
# sweep over many names from one address still stops.
PER_USER = parse("5/15 minutes")
PER_ADDRESS = parse("30/15 minutes")


class SignInThrottle:
    """Counts failed sign-ins and says how long a new attempt must wait."""

    def __init__(self, storage_url: str | None = None) -> None:
        storage = storage_from_string(storage_url, key_prefix="segment-export:sign-in") \
            if storage_url else storage_from_string("memory://")
        self._limiter = MovingWindowRateLimiter(storage)

    def _checks(self, username: str, address: str) -> list[tuple[RateLimitItem, str]]:
        return [(PER_USER, "user:" + username.strip().casefold()),
                (PER_ADDRESS, "address:" + address)]

    def wait_seconds(self, username: str, address: str) -> int:
        """0 when an attempt may be made now; else the seconds until one may."""
        waits = [0.0]
        for limit, key in self._checks(username, address):
            if not self._limiter.test(limit, key):
                reset_at, _remaining = self._limiter.get_window_stats(limit, key)
                waits.append(reset_at - time.time())
        return max(1, math.ceil(max(waits))) if max(waits) > 0 else 0

    def failed(self, username: str, address: str) -> None:
        for limit, key in self._checks(username, address):
            self._limiter.hit(limit, key)

    def succeeded(self, username: str) -> None:
        """A right password ends the name's count (the address keeps its own)."""
        limit, key = self._checks(username, "")[0]
        self._limiter.clear(limit, key)
