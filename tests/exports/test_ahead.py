"""Ahead: a source worked by a thread, its items and its errors handed over in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from segment_export.errors import DataError
from segment_export.exports.ahead import Ahead


def test_items_arrive_in_order_and_the_source_runs_in_another_thread() -> None:
    threads: set[str] = set()

    def source() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    with Ahead(source(), depth=3, name="worker-under-test") as items:
        assert list(items) == list(range(50))
    assert threads == {"worker-under-test"}


def test_the_source_error_is_raised_to_the_consumer_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        raise DataError("row 2 is bad", row=2)

    got: list[int] = []

    def consume() -> None:
        with Ahead(source()) as items:
            got.extend(items)

    with pytest.raises(DataError, match="row 2 is bad"):
        consume()
    assert got == [1]


def test_leaving_early_stops_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()
    made = []

    def source() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                made.append(i)
                yield i
        finally:
            closed.set()

    with Ahead(source(), depth=2) as items:
        assert next(items) == 0
    assert closed.wait(5)
    assert len(made) <= 5  # the thread stayed at most a few items ahead
