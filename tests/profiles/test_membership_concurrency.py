"""Refreshes of one segment at the same time (the worker's schedule and a person's "refresh
now", or Run all) must leave exactly one copy of its members, and none may fail."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
from sqlglot import exp

from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.imports import ProfileImport

THREADS = 8
ROUNDS = 5


def _refresh_at_once(store: DuckDBProfileStore, condition: exp.Expr) -> tuple[list[int],
                                                                              list[BaseException]]:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    sizes: list[int] = []

    def refresh() -> None:
        barrier.wait()
        try:
            sizes.append(store.store_membership("s", condition))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sizes, errors


def test_parallel_refreshes_of_one_segment_store_its_members_once(tmp_path: Path) -> None:
    with DuckDBProfileStore(tmp_path / "p.duckdb") as store:
        store.import_table(pa.table({"customer_id": list(range(2_000)),
                                     "email": [f"p{i}@example.com" for i in range(2_000)]}),
                           ProfileImport(id_column="customer_id"))
        condition = exp.condition("customer_id < 1500")
        for _ in range(ROUNDS):
            store.drop_membership("s")
            sizes, errors = _refresh_at_once(store, condition)
            assert errors == []
            assert sizes == [1500] * THREADS
            with store._cursor() as cur:
                stored = cur.execute("SELECT count(*), count(DISTINCT customer_id) FROM "
                                     "segment_members WHERE segment_id = 's'").fetchone()
            assert stored == (1500, 1500)
            assert store.membership_size(["s"]) == 1500
