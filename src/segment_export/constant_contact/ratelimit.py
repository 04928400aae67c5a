"""Pacing per API key: evenly spaced requests and a daily quota, in-process or shared."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, cast

import sqlalchemy as sa
from sqlalchemy import Engine

from segment_export.db.models import RateLimitBucket
from segment_export.errors import QuotaExhaustedError

if TYPE_CHECKING:
    import redis

    from segment_export.config import Settings

log = logging.getLogger(__name__)

_BUCKETS = cast(sa.Table, RateLimitBucket.__table__)

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


def _effective_rate(rate: float, safety_margin: float) -> float:
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
        self.rate = _effective_rate(rate, safety_margin)
        self.daily_quota = daily_quota
        self._clock = clock
        self._sleep = sleep
        self._state: BucketState | None = None
        self._lock = threading.Lock()
        self._window = SendWindow(rate, safety_margin)

    def acquire(self) -> float:
        """Wait for this caller's slot; see RateLimiter.acquire."""
        return _paced(self._reserve, self._admit, self._sleep, self.key)

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


class DatabaseRateLimiter:
    """Pacing for one API key shared by every process using the state database.

    Each acquire is one short transaction on the key's RateLimitBucket row, locked with
    ``SELECT ... FOR UPDATE`` on PostgreSQL and ``BEGIN IMMEDIATE`` on SQLite, so processes
    reserve distinct slots. Slots are computed from each process's wall clock, so the machines
    sharing a key need synchronised clocks (NTP); use the Redis backend across machines.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        key: str,
        rate: float,
        daily_quota: int,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.key = key
        self.rate = _effective_rate(rate, safety_margin)
        self.daily_quota = daily_quota
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> float:
        """Reserve a slot in the shared bucket, then wait for it; see RateLimiter.acquire."""
        return _paced(self._reserve, lambda: 0.0, self._sleep, self.key)

    def _reserve(self) -> float:
        table = _BUCKETS
        with self.engine.connect() as conn:
            row = lock_row(conn, sa.select(table).where(table.c.key == self.key))
            if row is None:
                # PostgreSQL: two processes may both find no row; ON CONFLICT lets one insert win
                # and the other then locks the winner's row. SQLite already holds the write lock.
                conn.execute(_insert_ignore(conn, self.key, self._clock()))
                row = lock_row(conn, sa.select(table).where(table.c.key == self.key), again=True)
                assert row is not None
            state = BucketState(
                tokens=row.tokens, updated_at=row.updated_at, day=row.day, day_count=row.day_count
            )
            try:
                new, wait = take(
                    state,
                    now=self._clock(),
                    rate=self.rate,
                    daily_quota=self.daily_quota,
                    key=self.key,
                )
            except QuotaExhaustedError:
                conn.rollback()
                raise
            conn.execute(
                table.update()
                .where(table.c.key == self.key)
                .values(
                    tokens=new.tokens,
                    updated_at=new.updated_at,
                    day=new.day,
                    day_count=new.day_count,
                )
            )
            conn.commit()
        return wait

    def day_count(self) -> int:
        """Requests let through today (UTC) for this key, by every process."""
        table = _BUCKETS
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(table.c.day, table.c.day_count).where(table.c.key == self.key)
            ).first()
        return int(row.day_count) if row and row.day == utc_day(self._clock()) else 0


def lock_row(
    conn: sa.Connection, query: sa.Select[tuple[object, ...]], *, again: bool = False
) -> sa.Row[tuple[object, ...]] | None:
    """Start a write-locking transaction (unless ``again``) and read one row under it.

    SQLite has no row locks: ``BEGIN IMMEDIATE`` takes the database write lock up front, so a
    second process blocks here (busy_timeout) instead of reading a row that is about to change.
    """
    if conn.dialect.name == "sqlite":
        if not again:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return conn.execute(query).first()
    return conn.execute(query.with_for_update()).first()


def _insert_ignore(conn: sa.Connection, key: str, now: float) -> sa.Insert:
    values = {"key": key, "tokens": 1.0, "updated_at": now, "day": utc_day(now), "day_count": 0}
    table = _BUCKETS
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=["key"])
    return sa.insert(table).values(**values)


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
        self.limit, self.seconds = _window_shape(rate, safety_margin)
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
        self.rate = _effective_rate(rate, safety_margin)
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
        return _paced(self._reserve, self._window.admit, self._sleep, self.key)

    def _reserve(self) -> float:
        result = self._script(keys=[self._redis_key], args=[repr(self.rate), self.daily_quota])
        status, value, count = (v.decode() if isinstance(v, bytes) else str(v) for v in result)
        if status == "quota":
            resets_at = datetime.fromtimestamp(float(value), UTC)
            raise QuotaExhaustedError(
                f"The daily request budget of {self.daily_quota} for this API key is used up",
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


class SendWindow:
    """The last sends of a key: at most ``limit`` in any ``seconds`` (the server's sliding second,
    widened by the safety margin), counted when a request actually leaves.

    The bucket hands out slots, possibly seconds ahead; a process that wakes late for its slot
    (a busy machine, a pause) would land in the same second as slots reserved after it. Checked
    again just before sending, against the times requests really left, it cannot.
    """

    def __init__(self, rate: float, safety_margin: float = DEFAULT_SAFETY_MARGIN) -> None:
        self.limit, self.seconds = _window_shape(rate, safety_margin)
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


def _window_shape(rate: float, safety_margin: float) -> tuple[int, float]:
    # As Constant Contact counts: r whole requests in any second; a fractional rate keeps its
    # average over a longer window (0.5/s: one in any 2 s). Widened by the safety margin.
    _effective_rate(rate, safety_margin)  # the same checks of the arguments
    limit = max(1, math.floor(rate))
    return limit, limit / rate * (1.0 + safety_margin)


def _paced(reserve: Callable[[], float], admit: Callable[[], float],
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
    "DatabaseRateLimiter",
    "InProcessRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisSendWindow",
    "SendWindow",
    "make_rate_limiter",
    "next_utc_midnight",
    "take",
    "utc_day",
]
