"""Which rate budget a connection's client paces against: one Redis shared by every machine,
the state database shared by every process, or this process alone."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from segment_export.constant_contact.ratelimit import (
    DEFAULT_SAFETY_MARGIN,
    InProcessRateLimiter,
    RateLimiter,
    effective_rate,
    paced,
    window_shape,
)
from segment_export.db.rate_budget import DatabaseRateLimiter
from segment_export.errors import QuotaExhaustedError
from segment_export.languages import N_

if TYPE_CHECKING:
    import redis

    from segment_export.config import Settings


# KEYS[1]: the bucket hash. ARGV: rate, daily quota. Uses the Redis server's clock, so every
# machine sharing the key agrees on time. Floats travel as strings: Redis truncates Lua numbers.
_REDIS_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
local day = math.floor(now / 86400)
local s = redis.call('HMGET', KEYS[1], 'tokens', 'updated_at', 'day', 'day_count')
local tokens = tonumber(s[1]) or 1.0
local updated = tonumber(s[2]) or now
local count = tonumber(s[4]) or 0
if tonumber(s[3]) ~= day then count = 0 end
if count + 1 > quota then
  return {'quota', tostring((day + 1) * 86400), tostring(count)}
end
local elapsed = math.max(0, now - updated)
tokens = math.min(1.0, tokens + elapsed * rate) - 1.0
local wait = math.max(0, -tokens / rate)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated_at', tostring(now),
  'day', tostring(day), 'day_count', tostring(count + 1))
redis.call('EXPIRE', KEYS[1], 172800)
return {'ok', tostring(wait), tostring(count + 1)}
"""


# KEYS[1]: the sorted set of the key's recent send times. ARGV: how many sends a window holds,
# the window in seconds, a unique member. Returns the seconds to wait ("0": admitted, recorded).
_REDIS_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('EXPIRE', KEYS[1], 60)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(0.001, tonumber(oldest[2]) + window - now))
"""


class RedisSendWindow:
    """``SendWindow`` kept in Redis (a sorted set of send times, on the server's clock), shared by
    every process and machine sending with one API key."""

    def __init__(self, client: redis.Redis, *, key: str, rate: float,
                 safety_margin: float = DEFAULT_SAFETY_MARGIN) -> None:
        self.limit, self.seconds = window_shape(rate, safety_margin)
        self._key = key
        self._script = client.register_script(_REDIS_ADMIT)

    def admit(self) -> float:
        """Record a send now and return 0, or return how long to wait first."""
        wait = self._script(keys=[self._key],
                            args=[self.limit, repr(self.seconds), uuid.uuid4().hex])
        return float(wait.decode() if isinstance(wait, bytes) else wait)


class RedisRateLimiter:
    """Pacing for one API key shared by every process and machine using one Redis.

    One Lua script reserves the slot atomically on the Redis server, timed by the server's clock.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        key: str,
        rate: float,
        daily_quota: int,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        sleep: Callable[[float], None] = time.sleep,
        prefix: str = "segment_export:ratelimit:",
    ) -> None:
        self.key = key
        self.rate = effective_rate(rate, safety_margin)
        self.daily_quota = daily_quota
        self._sleep = sleep
        self._redis_key = prefix + key
        self._script = client.register_script(_REDIS_TAKE)
        self._window = RedisSendWindow(client, key=self._redis_key + ":sent", rate=rate,
                                       safety_margin=safety_margin)

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisRateLimiter:
        """A limiter on the process's client for ``url`` (keyword arguments as for the
        constructor)."""
        return cls(redis_client(url), **kwargs)  # type: ignore[arg-type]

    def acquire(self) -> float:
        """Reserve a slot in the shared bucket, then wait for it; see RateLimiter.acquire."""
        return paced(self._reserve, self._window.admit, self._sleep, self.key)

    def _reserve(self) -> float:
        result = self._script(keys=[self._redis_key], args=[repr(self.rate), self.daily_quota])
        status, value, count = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        if status == "quota":
            resets_at = datetime.fromtimestamp(float(value), UTC)
            raise QuotaExhaustedError(
                N_("The daily request budget of %(daily_quota)s for this API key is used up"),
                values={"daily_quota": self.daily_quota},
                resets_at=resets_at,
                reason="daily_quota",
                key=self.key,
                day_count=int(count),
            )
        return float(value)


def make_rate_limiter(
    *,
    settings: Settings,
    key: str,
    engine: Engine | None = None,
    redis_url: str | None = None,
) -> RateLimiter:
    """The limiter for one API key: Redis if a URL is given, else the state database, else local."""
    rate, quota = settings.cc_requests_per_second, settings.cc_daily_quota
    if redis_url:
        return RedisRateLimiter.from_url(redis_url, key=key, rate=rate, daily_quota=quota)
    if engine is not None:
        return DatabaseRateLimiter(engine, key=key, rate=rate, daily_quota=quota)
    return InProcessRateLimiter(key=key, rate=rate, daily_quota=quota)


@functools.cache
def redis_client(url: str) -> redis.Redis:
    """One client (and connection pool) per Redis URL per process, shared by its threads: a
    run opens a client per connection, and a pool per run would leave idle sockets behind."""
    import redis as redis_lib

    return redis_lib.Redis.from_url(url)
