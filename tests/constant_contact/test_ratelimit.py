"""Pacing: evenly spaced slots, a daily quota, shared through the database or Redis."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select

from segment_export.config import Settings
from segment_export.constant_contact.ratelimit import (
    InProcessRateLimiter,
    SendWindow,
    next_utc_midnight,
    take,
)
from segment_export.db.models import RateLimitBucket
from segment_export.db.rate_budget import DatabaseRateLimiter
from segment_export.errors import QuotaExhaustedError
from segment_export.pacing import RedisRateLimiter, RedisSendWindow, make_rate_limiter
from tests.constant_contact.fakes import START, FakeClock
from tests.services import REDIS_URL, port_open, require


def test_next_utc_midnight() -> None:
    assert next_utc_midnight(datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC)) == datetime(
        2026, 3, 15, tzinfo=UTC
    )
    # A local time is converted first: 01:00 at UTC+2 is still the previous UTC day.
    from zoneinfo import ZoneInfo

    local = datetime(2026, 3, 15, 1, 0, tzinfo=ZoneInfo("Europe/Helsinki"))
    assert next_utc_midnight(local) == datetime(2026, 3, 15, tzinfo=UTC)


def test_slots_are_evenly_spaced_and_an_idle_spell_earns_no_burst() -> None:
    now = START.timestamp()
    state = None
    waits = []
    for _ in range(6):
        state, wait = take(state, now=now, rate=4.0, daily_quota=100, key="k")
        waits.append(wait)
    assert waits == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25])
    # After an hour idle only one request goes at once; the next waits a full interval.
    assert state is not None
    later = now + 3600
    state, first = take(state, now=later, rate=4.0, daily_quota=100, key="k")
    state, second = take(state, now=later, rate=4.0, daily_quota=100, key="k")
    assert first == 0
    assert second == pytest.approx(0.25)


def test_the_daily_quota_stops_before_the_request_that_would_exceed_it() -> None:
    clock = FakeClock(datetime(2026, 3, 14, 23, 59, tzinfo=UTC))
    limiter = InProcessRateLimiter(
        rate=4.0, daily_quota=3, clock=clock.time, sleep=clock.sleep, key="api-key-hash"
    )
    for _ in range(3):
        limiter.acquire()
    assert limiter.day_count == 3
    with pytest.raises(QuotaExhaustedError) as info:
        limiter.acquire()
    assert info.value.resets_at == datetime(2026, 3, 15, tzinfo=UTC)
    assert info.value.context["key"] == "api-key-hash"
    # A refused request costs no budget, and the next UTC day starts from zero.
    clock.advance(61)
    limiter.acquire()
    assert limiter.day_count == 1


def test_in_process_limiter_sleeps_for_its_slot_with_a_safety_margin() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(rate=4.0, daily_quota=100, clock=clock.time, sleep=clock.sleep)
    start = clock.time()
    for _ in range(9):
        limiter.acquire()
    # 8 intervals of 1/4 s widened by the 10 % margin.
    assert clock.time() - start == pytest.approx(8 * 0.25 * 1.1)


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_in_process_limiter_paces_many_threads() -> None:
    limiter = InProcessRateLimiter(rate=40.0, daily_quota=1000, safety_margin=0.25)
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(8):
            limiter.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 32
    assert time.monotonic() - started >= 31 / 32 - 0.01  # 32 slots at 32/s
    # At most 40 in any 1 s and never a burst: at most 2 inside any 1/40 s.
    assert _max_in_window(sent, 1.0) <= 40
    assert _max_in_window(sent, 1 / 40) <= 2


def test_database_limiter_shares_one_budget_between_instances(engine: Engine) -> None:
    clock = FakeClock()
    a, b = (
        DatabaseRateLimiter(
            engine,
            key="shared",
            rate=4.0,
            daily_quota=5,
            safety_margin=0,
            clock=clock.time,
            sleep=lambda s: None,
        )
        for _ in range(2)
    )
    waits = [a.acquire(), b.acquire(), a.acquire(), b.acquire()]
    assert waits == pytest.approx([0, 0.25, 0.5, 0.75])
    assert a.day_count() == b.day_count() == 4
    with engine.connect() as conn:
        row = conn.execute(select(RateLimitBucket.__table__)).one()
    assert (row.key, row.day, row.day_count) == ("shared", "2026-03-14", 4)
    b.acquire()
    with pytest.raises(QuotaExhaustedError) as info:
        a.acquire()
    assert info.value.resets_at == datetime(2026, 3, 15, tzinfo=UTC)
    clock.advance(timedelta(days=1).total_seconds())
    assert a.day_count() == 0
    assert a.acquire() == 0


def _acquire_in_process(settings: Settings, url: str, go: object, out: object, n: int) -> None:
    from segment_export.db import make_engine

    engine = make_engine(settings, url=url)
    limiter = DatabaseRateLimiter(engine, key="k", rate=20.0, daily_quota=1000, safety_margin=0.1)
    go.wait()  # type: ignore[attr-defined]
    for _ in range(n):
        limiter.acquire()
        out.put(time.time())  # type: ignore[attr-defined]
    engine.dispose()


def test_database_limiter_paces_two_processes(engine: Engine, settings: Settings) -> None:
    # fork: a spawned child spends seconds re-importing SQLAlchemy and Alembic on this machine;
    # the child builds its own engine, so nothing of the parent's pool is shared.
    ctx = multiprocessing.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    url = engine.url.render_as_string(hide_password=False)
    procs = [
        ctx.Process(target=_acquire_in_process, args=(settings, url, go, out, 10)) for _ in range(2)
    ]
    for p in procs:
        p.start()
    time.sleep(0.1)
    go.set()
    sent = sorted(out.get(timeout=60) for _ in range(20))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    interval = 1.1 / 20
    # 20 slots one interval apart; scheduling may delay a send but never bunch a whole second.
    assert sent[-1] - sent[0] >= 19 * interval - 0.02
    assert _max_in_window(sent, 1.0) <= 20


@pytest.fixture
def redis_client() -> redis.Redis:
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    return redis.Redis.from_url(REDIS_URL)


@pytest.mark.redis
def test_redis_limiter_paces_and_counts_per_day(redis_client: redis.Redis) -> None:
    key = f"test-{uuid.uuid4().hex}"
    slept: list[float] = []
    a = RedisRateLimiter(
        redis_client, key=key, rate=10.0, daily_quota=4, safety_margin=0, sleep=slept.append
    )
    b = RedisRateLimiter(
        redis_client, key=key, rate=10.0, daily_quota=4, safety_margin=0, sleep=slept.append
    )
    waits = [a.acquire(), b.acquire(), a.acquire(), b.acquire()]
    # Nothing really slept, so each reservation queues behind the previous one.
    assert waits[0] == 0
    assert waits[1:] == pytest.approx([0.1, 0.2, 0.3], abs=0.02)
    assert slept == waits[1:]
    with pytest.raises(QuotaExhaustedError) as info:
        a.acquire()
    assert info.value.resets_at == next_utc_midnight(datetime.now(UTC))
    redis_client.delete(f"segment_export:ratelimit:{key}")


@pytest.mark.redis
def test_redis_limiter_really_waits(redis_client: redis.Redis) -> None:
    limiter = RedisRateLimiter(
        redis_client, key=f"test-{uuid.uuid4().hex}", rate=50.0, daily_quota=100
    )
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert time.monotonic() - started >= 10 * 1.1 / 50 - 0.005


def test_factory_picks_the_backend(
    settings: Settings, sqlite_engine: Engine, tmp_path: Path
) -> None:
    assert isinstance(make_rate_limiter(settings=settings, key="k"), InProcessRateLimiter)
    db = make_rate_limiter(settings=settings, key="k", engine=sqlite_engine)
    assert isinstance(db, DatabaseRateLimiter)
    assert db.rate == pytest.approx(settings.cc_requests_per_second / 1.1)
    red = make_rate_limiter(settings=settings, key="k", redis_url=REDIS_URL)
    assert isinstance(red, RedisRateLimiter)



def test_the_send_window_holds_the_rate_in_any_window_of_actual_sends() -> None:
    window = SendWindow(rate=4.0, safety_margin=0.1)
    assert (window.limit, window.seconds) == (4, pytest.approx(1.1))
    # Four sends bunched together (a late sleeper among them) fill the window; the fifth waits
    # for the oldest to be 1.1 s old, whatever slots were handed out.
    assert [window.admit(t) for t in (10.0, 10.05, 10.1, 10.3)] == [0, 0, 0, 0]
    assert window.admit(10.5) == pytest.approx(0.6)
    assert window.admit(11.1) == 0
    assert window.admit(11.1) == pytest.approx(0.05)
    half = SendWindow(rate=0.5, safety_margin=0)
    assert (half.limit, half.seconds) == (1, 2.0)


@pytest.mark.redis
def test_the_redis_send_window_is_shared_by_every_process(redis_client: redis.Redis) -> None:
    key = f"test-window-{uuid.uuid4().hex}"
    a, b = (RedisSendWindow(redis_client, key=key, rate=4.0, safety_margin=0.1)
            for _ in range(2))
    try:
        assert [a.admit(), b.admit(), a.admit(), b.admit()] == [0, 0, 0, 0]
        wait = a.admit()
        assert 1.0 < wait <= 1.1
        assert b.admit() > 1.0  # refused sends are not recorded
        time.sleep(wait)
        assert b.admit() == 0
    finally:
        redis_client.delete(key)
