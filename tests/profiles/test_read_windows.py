"""read_members in windows of ids: exact, ordered, whole batches, one snapshot; id matching."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlglot import exp

import segment_export.profiles.duckdb.store as store_module
from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.imports import ProfileImport


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DuckDBProfileStore]:
    # Windows of 7 members, so a read of a few dozen crosses many of them.
    monkeypatch.setattr(store_module, "_WINDOW_ROWS", 7)
    with DuckDBProfileStore(tmp_path / "profiles.duckdb") as opened:
        yield opened


def _read(store: DuckDBProfileStore, segments: list[str], columns: list[str],
          batch_size: int) -> tuple[pa.Table, list[int]]:
    batches = list(store.read_members(segments, columns, batch_size=batch_size))
    return pa.Table.from_batches(batches), [b.num_rows for b in batches]


def test_windows_give_the_members_in_id_order_with_their_values(
    store: DuckDBProfileStore,
) -> None:
    rng = random.Random(7)
    ids = rng.sample(range(1, 10_000), 300)  # gaps, and stored in no particular order
    table = pa.table({"customer_id": pa.array(ids, pa.int64()),
                      "email": [f"p{i}@example.com" for i in ids],
                      "score": [rng.randrange(100) for _ in ids]})
    store.import_table(table)
    store.store_membership("high", exp.GTE(this=exp.column("score"),
                                           expression=exp.Literal.number(40)))
    store.store_membership("odd", exp.EQ(
        this=exp.Mod(this=exp.column("customer_id"), expression=exp.Literal.number(2)),
        expression=exp.Literal.number(1)))

    got, sizes = _read(store, ["high", "odd"], ["score", "email"], batch_size=3)

    # The oracle: the same union, filtered and sorted by Arrow from the source table.
    picked = pc.or_(pc.greater_equal(table["score"], 40),
                    pc.equal(pc.bit_wise_and(table["customer_id"], 1), 1))
    expected = table.filter(picked).sort_by("customer_id").select(
        ["customer_id", "score", "email"])
    assert got.num_rows > 100
    assert got.equals(expected)
    # Whole batches in every window (21 rows: 7 batches of 3), only the last one short.
    assert all(size == 3 for size in sizes[:-1])
    assert 1 <= sizes[-1] <= 3
    assert store.membership_size(["high", "odd"]) == expected.num_rows


def test_text_ids_keep_their_byte_order_across_windows(store: DuckDBProfileStore) -> None:
    ids = ["b", "B", "a", "ä", "Z", "10", "9", "_x", " a", "ß", "Ω", "aa", "a a", "0", "~",
           "é", "e", "E", "zz", "Zz"]
    store.import_table(pa.table({"ref": ids, "name": [f"n{i}" for i in range(len(ids))]}),
                       ProfileImport(id_column="ref"))
    store.store_membership("everyone", exp.true())
    got, _ = _read(store, ["everyone"], ["name"], batch_size=2)
    assert got.column("ref").to_pylist() == sorted(ids, key=lambda s: s.encode())
    names = dict(zip(ids, (f"n{i}" for i in range(len(ids))), strict=True))
    assert got.column("name").to_pylist() == [names[r] for r in got.column("ref").to_pylist()]


def test_a_read_sees_one_snapshot_when_profiles_are_replaced_mid_read(
    store: DuckDBProfileStore,
) -> None:
    store.import_table(pa.table({"customer_id": pa.array(range(1, 41), pa.int64()),
                                 "email": [f"old{i}@example.com" for i in range(1, 41)]}))
    store.store_membership("all", exp.true())
    reader = store.read_members(["all"], ["email"], batch_size=2)
    first = next(reader)
    # Another thread's import replaces the profiles while the export is between windows.
    store.import_table(pa.table({"customer_id": pa.array(range(1, 11), pa.int64()),
                                 "email": [f"new{i}@example.com" for i in range(1, 11)]}))
    rest = pa.Table.from_batches([first, *reader])
    assert rest.column("customer_id").to_pylist() == list(range(1, 41))
    assert all(e.startswith("old") for e in rest.column("email").to_pylist())
    # The next read sees the new profiles.
    now, _ = _read(store, ["all"], ["email"], batch_size=100)
    assert now.column("email").to_pylist() == [f"new{i}@example.com" for i in range(1, 11)]


def test_an_abandoned_read_leaves_the_store_usable(store: DuckDBProfileStore) -> None:
    store.import_table(pa.table({"customer_id": pa.array(range(1, 31), pa.int64()),
                                 "email": [f"p{i}@example.com" for i in range(1, 31)]}))
    store.store_membership("all", exp.true())
    reader = store.read_members(["all"], ["email"], batch_size=4)
    next(reader)
    reader.close()  # the run stopped (cancelled, failed) after its first chunk
    store.import_table(pa.table({"customer_id": pa.array([5], pa.int64()),
                                 "email": ["only@example.com"]}))
    store.store_membership("all", exp.true())
    got, _ = _read(store, ["all"], ["email"], batch_size=4)
    assert got.to_pylist() == [{"customer_id": 5, "email": "only@example.com"}]


def test_a_read_abandoned_after_the_store_closed_ends_quietly(
    store: DuckDBProfileStore,
) -> None:
    # A run that fails mid-export closes the store, then its reader is dropped.
    store.import_table(pa.table({"customer_id": pa.array(range(1, 31), pa.int64()),
                                 "email": [f"p{i}@example.com" for i in range(1, 31)]}))
    store.store_membership("all", exp.true())
    reader = store.read_members(["all"], ["email"], batch_size=4)
    next(reader)
    store.close()
    reader.close()  # no "connection already closed" from ending the read transaction
    assert store.membership_size(["all"]) == 30  # and the store reopens


def test_whole_number_ids_match_only_the_exact_stored_text(store: DuckDBProfileStore) -> None:
    # Memberships are stored as text. Text ids refreshed into a segment, then the profiles
    # re-imported with whole-number ids: "007" is not the text of 7 (CAST(7 AS VARCHAR) is
    # "7"), so until the next refresh only 8 is a member, as with a comparison as text.
    store.import_table(pa.table({"customer_id": ["007", "8", "x9"],
                                 "email": ["a@example.com", "b@example.com", "c@example.com"]}))
    store.store_membership("s", exp.true())
    store.import_table(pa.table({"customer_id": pa.array([7, 8, 9], pa.int64()),
                                 "email": ["a@example.com", "b@example.com", "c@example.com"]}))
    assert store.membership_size(["s"]) == 1
    got, _ = _read(store, ["s"], ["email"], batch_size=10)
    assert got.column("customer_id").to_pylist() == [8]
    shared = store.duplicate_emails(["s"], email_column="email", consent_column=None,
                                    pattern=".", max_length=50)
    assert shared.num_rows == 0
    store.store_membership("s", exp.true())
    assert store.membership_size(["s"]) == 3
