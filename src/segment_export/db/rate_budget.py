"""The rate budget of an API key in the state database, shared by every process using it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import sqlalchemy as sa
from sqlalchemy import Engine

from segment_export.constant_contact.ratelimit import (
    DEFAULT_SAFETY_MARGIN,
    BucketState,
    effective_rate,
    paced,
    take,
    utc_day,
)
from segment_export.db.models import RateLimitBucket
from segment_export.errors import QuotaExhaustedError

_BUCKETS = cast(sa.Table, RateLimitBucket.__table__)


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
        self.rate = effective_rate(rate, safety_margin)
        self.daily_quota = daily_quota
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> float:
        """Reserve a slot in the shared bucket, then wait for it; see RateLimiter.acquire."""
        return paced(self._reserve, lambda: 0.0, self._sleep, self.key)

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
