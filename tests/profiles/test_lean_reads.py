"""The export's reads run on one thread in a lower memory limit when nothing else uses the
store, never under other work's feet, and fall back to the store's settings when they do not
fit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

import segment_export.profiles.duckdb.store as store_module
from segment_export.exports.validate import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from segment_export.profiles import DuckDBProfileStore

ROWS = 200_000


@pytest.fixture(scope="module")
def profiles() -> pa.Table:
    ids = list(range(1, ROWS + 1))
    # Every 50th address is shared with the next profile, in another case and with blanks.
    emails = [f"p{i - 1 if i % 50 == 1 and i > 1 else i}@example.com" for i in ids]
    emails = [f"  {e.upper()} " if i % 50 == 1 and i > 1 else e
              for i, e in zip(ids, emails, strict=True)]
    return pa.table({"customer_id": pa.array(ids, pa.int64()), "email": emails,
                     "first_name": [f"F{i}" for i in ids]})


@pytest.fixture
def store(tmp_path: Path, profiles: pa.Table) -> Iterator[DuckDBProfileStore]:
    with DuckDBProfileStore(tmp_path / "profiles.duckdb") as opened:
        opened.import_table(profiles)
        opened.store_membership("all", exp.true())
        yield opened


def _settings(store: DuckDBProfileStore) -> tuple[str, int]:
    """The database's memory limit and threads, read beside the store's own cursors."""
    assert store._root is not None
    cur = store._root.cursor()
    try:
        rows = cur.execute("SELECT current_setting('memory_limit'), "
                           "current_setting('threads')").fetchall()
    finally:
        cur.close()
    return str(rows[0][0]), int(rows[0][1])


def _duplicates(store: DuckDBProfileStore) -> pa.Table:
    return store.duplicate_emails(["all"], email_column="email", consent_column=None,
                                  pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)


def _default_threads() -> int:
    conn = duckdb.connect()
    try:
        return int(conn.execute("SELECT current_setting('threads')").fetchall()[0][0])
    finally:
        conn.close()


def test_a_read_alone_runs_lean_and_other_work_gets_the_store_settings(
    store: DuckDBProfileStore,
) -> None:
    reader = store.read_members(["all"], ["email"], batch_size=1000)
    next(reader)
    limit, threads = _settings(store)
    assert threads == 1
    assert limit == "30.5 MiB"  # 32 MB

    # Other work while the read is open: the store's limit and threads for as long as it runs.
    with store._cursor() as cur:
        assert _settings(store) == ("122.0 MiB", _default_threads())  # 128 MB
        assert cur.execute("SELECT count(*) FROM profiles").fetchall() == [(ROWS,)]
    # Then back to the read's own settings.
    assert _settings(store) == ("30.5 MiB", 1)
    assert sum(b.num_rows for b in reader) == ROWS - 1000


def test_a_read_that_starts_during_other_work_runs_as_that_work_does(
    store: DuckDBProfileStore,
) -> None:
    with store._cursor():
        reader = store.read_members(["all"], ["email"], batch_size=1000)
        next(reader)
        assert _settings(store) == ("122.0 MiB", _default_threads())
    # The other work is over, the read is still open (between windows it may go lean again
    # only by saying so): nothing is lowered under a query that started with more.
    assert _settings(store)[0] == "122.0 MiB"
    assert sum(b.num_rows for b in reader) == ROWS - 1000


def test_reads_too_big_for_the_lean_limit_run_with_the_store_settings(
    store: DuckDBProfileStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = _duplicates(store).sort_by("email")
    members = pa.Table.from_batches(list(store.read_members(["all"], ["email", "first_name"])))
    assert expected.num_rows == ROWS // 50 - 1
    assert store.membership_size(["all"]) == ROWS

    # A lean limit nothing fits in: every read still gives the same answer.
    monkeypatch.setattr(store_module, "_LEAN_QUERY_MB", 1)
    store.close()
    with pytest.raises(duckdb.OutOfMemoryException), store._cursor(1) as cur:
        cur.execute("SELECT email, count(*) FROM profiles GROUP BY email HAVING count(*) > 1"
                    ).fetchall()
    assert _duplicates(store).sort_by("email").equals(expected)
    assert store.membership_size(["all"]) == ROWS
    again = pa.Table.from_batches(list(store.read_members(["all"], ["email", "first_name"])))
    assert again.equals(members)


def test_a_wide_read_gets_a_higher_window_limit(tmp_path: Path) -> None:
    columns = {f"c{k}": [f"value {k} of {i}" for i in range(2000)] for k in range(20)}
    table = pa.table({"customer_id": pa.array(range(2000), pa.int64()), **columns})
    with DuckDBProfileStore(tmp_path / "wide.duckdb") as store:
        store.import_table(table)
        store.store_membership("all", exp.true())
        reader = store.read_members(["all"], list(columns), batch_size=500)
        next(reader)
        assert _settings(store) == ("91.5 MiB", 1)  # 21 columns: 3 x 32 MB
        rest = pa.Table.from_batches(list(reader))
        assert rest.num_rows == 1500
        assert rest.column("c19")[-1].as_py() == "value 19 of 1999"
