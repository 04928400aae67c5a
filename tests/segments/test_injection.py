"""Hostile rules and expressions can neither read nor change anything beyond the profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlglot import exp

from segment_export.errors import DataError
from segment_export.profiles import DuckDBProfileStore
from segment_export.segments import compile_segment

SENTINEL = "/tmp/segment-export-injection-sentinel"  # must never be created

HOSTILE_VALUES = [
    "'; DROP TABLE profiles; --",
    "DE' OR '1'='1",
    "DE\" OR \"1\"=\"1",
    "x'); DELETE FROM segment_members; --",
    "1=1; ATTACH '/tmp/evil.db' AS evil",
    f"'; COPY profiles TO '{SENTINEL}'; --",
    "' UNION SELECT * FROM segment_members --",
    "\\'; DROP TABLE profiles; --",
    "’ OR ’1’=’1",  # unicode quotes
    "ʼ OR 1=1 --",
    "DE\x00' OR 1=1 --",
    "%' OR 1=1 --",
    "/* */ OR 1=1",
    "'||(SELECT current_setting('threads'))||'",
    "$$; DROP TABLE profiles; $$",
    "\n; PRAGMA database_list; --",
]

HOSTILE_FIELDS = [
    "country; DROP TABLE profiles",
    "country\" = 'DE' OR \"1",
    "(SELECT 1)",
    "*",
    "profile_store_meta.value",
    "read_csv('/etc/passwd')",
    "country' OR '1'='1",
]

HOSTILE_EXPRESSIONS = [
    "country = 'DE'; DROP TABLE profiles",
    "1=1; ATTACH '/tmp/evil.db' AS evil",
    "read_csv('/etc/passwd') IS NOT NULL",
    "read_text('/etc/passwd') <> ''",
    "country IN (SELECT customer_id FROM segment_members)",
    "EXISTS (SELECT * FROM profile_store_meta)",
    "(SELECT count(*) FROM profiles) > 0",
    "country = 'DE' UNION SELECT * FROM segment_members",
    "country = 'DE' -- AND 1=0",
    "country = 'DE' /* comment */ OR 1=1",
    f"COPY profiles TO '{SENTINEL}'",
    "PRAGMA database_list",
    "current_setting('home_directory') IS NOT NULL",
    "getenv('HOME') <> ''",
    "profile_store_meta.value = 'x'",
    "main.profiles.country = 'DE'",
    "country = ’DE’ OR ’1’=’1’",
    "query('SELECT 1') IS NOT NULL",
    "country = (SELECT value FROM profile_store_meta LIMIT 1)",
    "glob('/etc/*') IS NOT NULL",
    "cast(country AS evil_type) = 'x'",
    "install_extension('httpfs') IS NULL",
]


@pytest.fixture
def guarded(store: DuckDBProfileStore) -> DuckDBProfileStore:
    store.import_table(pa.table({
        "customer_id": pa.array([1, 2, 3], pa.int64()),
        "country": ["DE", "FR", "DE' OR 'x'='x"],
    }))
    store.store_membership("other", exp.true())
    return store


def snapshot(store: DuckDBProfileStore) -> dict[str, Any]:
    with store._cursor() as cur:  # the test inspects the engine directly on purpose
        tables = cur.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        databases = cur.execute(
            "SELECT database_name FROM duckdb_databases() ORDER BY 1"
        ).fetchall()
        # The probe segment's own membership is the one thing a run may change.
        members = cur.execute(
            "SELECT * FROM segment_members WHERE segment_id <> 'probe' ORDER BY ALL"
        ).fetchall()
    return {"count": store.count(), "schema": store.schema(), "tables": tables,
            "databases": databases, "members": members, "id": store.id_column}


def run(store: DuckDBProfileStore, **definition: Any) -> list[int] | None:
    """Evaluate the definition completely (count, sample, store) or return None if refused."""
    try:
        condition = compile_segment(schema=store.schema(), **definition)
        count = store.count_where(condition)
        rows = store.sample_where(condition, 10)
        assert store.store_membership("probe", condition) == count
    except DataError:
        return None
    return [r["customer_id"] for r in rows]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_values_are_matched_literally(guarded: DuckDBProfileStore, value: str) -> None:
    before = snapshot(guarded)
    for op in ("eq", "contains", "starts_with"):
        found = run(guarded, rule={"field": "country", "op": op, "value": value})
        assert found == [], (op, value)  # no row holds the hostile text, so nothing matches
    assert run(guarded, rule={"field": "country", "op": "in", "value": [value, "FR"]}) == [2]
    assert snapshot(guarded) == before
    assert not Path(SENTINEL).exists()


def test_a_value_that_looks_like_sql_is_found_as_text(guarded: DuckDBProfileStore) -> None:
    assert run(guarded, rule={"field": "country", "op": "eq", "value": "DE' OR 'x'='x"}) == [3]


@pytest.mark.parametrize("field", HOSTILE_FIELDS)
def test_hostile_field_names_are_refused(guarded: DuckDBProfileStore, field: str) -> None:
    before = snapshot(guarded)
    with pytest.raises(DataError, match="Unknown field"):
        compile_segment(schema=guarded.schema(),
                        rule={"field": field, "op": "eq", "value": "DE"})
    assert snapshot(guarded) == before


@pytest.mark.parametrize("expression", HOSTILE_EXPRESSIONS)
def test_hostile_expressions_are_refused(guarded: DuckDBProfileStore, expression: str) -> None:
    before = snapshot(guarded)
    assert run(guarded, expression=expression) is None
    assert snapshot(guarded) == before
    assert not Path(SENTINEL).exists()


def test_corpus_size() -> None:
    assert len(HOSTILE_VALUES) + len(HOSTILE_FIELDS) + len(HOSTILE_EXPRESSIONS) >= 40
