"""The PostgreSQL profile store against the machine's real PostgreSQL, beside the embedded one."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from sqlglot import exp

from segment_export.config import Settings
from segment_export.errors import ConfigurationError, DataError, RetriableError
from segment_export.profiles import DuckDBProfileStore, ProfileStore, generate_profiles
from segment_export.profiles.engines import open_profile_store
from segment_export.profiles.imports import ProfileImport
from segment_export.profiles.postgres import PostgresProfileStore
from segment_export.segments import compile_segment
from tests.services import postgres_schema_url

CSV = "customer_id,email,first_name,country\n1,a@example.com,Ana,DE\n2,b@example.com,Björn,SE\n"


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_schema_url() as fresh:
        yield fresh


@pytest.fixture
def pg(url: str) -> Iterator[PostgresProfileStore]:
    with PostgresProfileStore.from_url(url) as opened:
        yield opened


def sql_admin(url: str, *statements: str) -> None:
    """Run statements in the test's schema as the application would not: set-up only."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def members(store: ProfileStore, *, rule: Any = None, expression: str | None = None) -> set[Any]:
    condition = compile_segment(schema=store.schema(), rule=rule, expression=expression,
                                now=datetime(2025, 6, 1, 12, tzinfo=UTC))
    return {row[store.id_column or "customer_id"] for row in store.sample_where(condition, 1000)}


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# -- the URL (no server needed) ----------------------------------------------------------------


def test_url_names_schema_table_and_id_column_and_passes_the_rest_to_libpq() -> None:
    store = PostgresProfileStore.from_url(
        "postgresql+psycopg://alice:s3cret-pw%21@db.example:6543/crm?schema=sales"
        "&table=people&id_column=cid&sslmode=disable&application_name=segx")
    assert store.location == "PostgreSQL table sales.people at postgresql://alice@db.example:6543/crm"
    assert "s3cret" not in repr(store)
    libpq = psycopg.conninfo.conninfo_to_dict(store._conninfo)
    assert libpq["sslmode"] == "disable"
    assert libpq["application_name"] == "segx"
    assert libpq["password"] == "s3cret-pw!"
    assert not {"schema", "table", "id_column"} & set(libpq)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "not a PostgreSQL URL"),
        ("postgresql://u@localhost/db?table=", "empty table="),
        ("postgresql://u@localhost/db?nonsense=1", "not a valid PostgreSQL URL"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        PostgresProfileStore.from_url(url)


def test_the_setting_opens_this_store(settings: Settings) -> None:
    configured = settings.model_copy(update={"profile_store": "postgres://u@localhost/db"})
    store = open_profile_store(configured)
    assert isinstance(store, PostgresProfileStore)
    assert store.dialect == "postgres"


def test_an_unreachable_server_is_retriable_and_the_password_never_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "hunter2-very-secret"
    store = PostgresProfileStore.from_url(
        f"postgresql://bob:{secret}@127.0.0.1:9/profiles?connect_timeout=2")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RetriableError) as caught:
        store.count()
    logging.getLogger("segment_export.test").error("failed: %s", caught.value)
    assert "cannot be reached" in caught.value.message
    assert secret not in str(caught.value)
    assert secret not in store.location
    assert secret not in caplog.text


# -- imports -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_import_then_read_back_like_the_embedded_store(
    pg: PostgresProfileStore, store: DuckDBProfileStore
) -> None:
    assert (pg.count(), pg.schema(), pg.id_column) == (0, {}, None)
    table = generate_profiles(rows=300, seed=5, as_of=date(2025, 6, 1))
    expected, got = store.import_table(table), pg.import_table(table)
    assert got == expected
    assert pg.count() == 300
    assert pg.id_column == "customer_id"
    assert pg.location.startswith("PostgreSQL table t_")
    condition = compile_segment(schema=pg.schema(), expression="country IN ('DE', 'FR')")
    assert pg.sample_where(condition, 5) == store.sample_where(condition, 5)
    assert pg.count_where(condition) == store.count_where(condition) > 0


BAD_FILES: list[tuple[str, str | bytes, dict[str, Any]]] = [
    ("empty.csv", "", {}),
    ("header.csv", "customer_id,email\n", {}),
    ("dupes.csv", "customer_id,email\n1,a@x.com\n2,b@x.com\n1,c@x.com\n", {}),
    ("noid.csv", "id,email\n1,a@x.com\n", {}),
    ("noemail.csv", CSV, {"email_column": "mail"}),
    ("blankid.csv", "customer_id,email\n1,a@x.com\n,b@x.com\n", {}),
    ("ragged.csv", "customer_id,email\n1,a@x.com\n2,b@x.com,extra,more\n", {}),
    ("floatid.csv", "customer_id,email\n1.5,a@x.com\n", {}),
    ("binary.csv", b"customer_id\x00\x01\x02", {}),
    ("latin1.csv", "customer_id,name\n1,Jos\xe9\n".encode("latin-1"), {}),
    ("broken.jsonl", '{"customer_id": 1}\n{"customer_id": \n', {}),
    ("fake.parquet", "not parquet", {}),
    ("p.csv", CSV, {"mode": "merge"}),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("name", "content", "options"), BAD_FILES,
                         ids=[f[0] + str(f[2] or "") for f in BAD_FILES])
def test_bad_files_are_refused_with_the_embedded_stores_message(
    tmp_path: Path, pg: PostgresProfileStore, store: DuckDBProfileStore, name: str,
    content: str | bytes, options: dict[str, Any],
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as expected:
        store.import_file(path, ProfileImport(**options))
    with pytest.raises(DataError) as got:
        pg.import_file(path, ProfileImport(**options))
    assert got.value.message == expected.value.message
    assert pg.count() == 0


@pytest.mark.postgres
def test_upsert_replaces_rows_adds_columns_and_widens_types_like_the_embedded_store(
    tmp_path: Path, pg: PostgresProfileStore, store: DuckDBProfileStore
) -> None:
    first = write(tmp_path, "a.csv", "customer_id,email,visits\n1,a@x.com,1\n2,b@x.com,2\n"
                                     "3,c@x.com,3\n")
    second = write(tmp_path, "b.jsonl", "\n".join(json.dumps(r) for r in [
        {"customer_id": 3, "email": "new3@x.com", "visits": 2.5, "tier": "gold"},
        {"customer_id": 4, "email": "first4@x.com", "visits": 4, "tier": "silver"},
        {"customer_id": 4, "email": "last4@x.com", "visits": 5, "tier": None},
    ]) + "\n")
    for target in (store, pg):
        target.import_file(first)
    expected = store.import_file(second, ProfileImport(mode="upsert"))
    got = pg.import_file(second, ProfileImport(mode="upsert"))
    assert got == expected
    assert (got.total, got.superseded, got.schema["visits"]) == (4, 1, "DOUBLE")
    everyone = exp.true()
    assert pg.sample_where(everyone, 10) == store.sample_where(everyone, 10)
    assert pg.sample_where(everyone, 10)[3] == {"customer_id": 4, "email": "last4@x.com",
                                                 "visits": 5.0, "tier": None}


@pytest.mark.postgres
def test_upsert_refuses_another_id_column_with_the_same_message(
    tmp_path: Path, pg: PostgresProfileStore, store: DuckDBProfileStore
) -> None:
    other = write(tmp_path, "o.csv", "ref,customer_id\nx,1\n")
    messages = []
    for target in (store, pg):
        target.import_file(write(tmp_path, "p.csv", CSV))
        with pytest.raises(DataError) as caught:
            target.import_file(other, ProfileImport(id_column="ref", mode="upsert"))
        messages.append(caught.value.message)
    assert messages[0] == messages[1]
    assert "keyed by 'customer_id'" in messages[1]


@pytest.mark.postgres
def test_replace_swaps_the_whole_table_and_leaves_nothing_behind(
    tmp_path: Path, pg: PostgresProfileStore, url: str
) -> None:
    pg.import_file(write(tmp_path, "p.csv", CSV))
    pg.import_table(pa.table({"ref": ["b", "a"], "score": [1.5, 2.5]}),
                    ProfileImport(id_column="ref"))
    assert pg.schema() == {"ref": "VARCHAR", "score": "DOUBLE"}
    assert pg.id_column == "ref"
    schema = pg.location.split()[2].split(".")[0]
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        names = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s", [schema])}
    assert names == {"profiles", "profiles_pkey"}


@pytest.mark.postgres
def test_values_postgresql_cannot_store_are_named_by_row_and_customer(
    pg: PostgresProfileStore,
) -> None:
    pg.import_table(pa.table({"customer_id": [1], "name": ["kept"]}))
    table = pa.table({"customer_id": [7, 8, 9], "name": ["ok", "nul\x00byte", "ok"]})
    with pytest.raises(DataError) as caught:
        pg.import_table(table)
    assert caught.value.message.startswith(
        "the table, row 2 (customer id 8), column 'name': PostgreSQL cannot store this value")
    assert pg.sample_where(exp.true()) == [{"customer_id": 1, "name": "kept"}]


@pytest.mark.postgres
def test_nested_and_exact_types_survive_the_copy(pg: PostgresProfileStore) -> None:
    table = pa.table({
        "customer_id": pa.array(["c1", "c2"]),
        "price": pa.array([Decimal("12.30"), None], pa.decimal128(10, 2)),
        "seen": pa.array([datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), None],
                         pa.timestamp("us", tz="UTC")),
        "scores": pa.array([[1, 2], []], pa.list_(pa.int64())),
        "address": pa.array([{"city": "Köln", "zip": "50667"}, None]),
        "raw": pa.array([b"\x00\x01", None]),
    })
    pg.import_table(table)
    assert pg.schema() == {"customer_id": "VARCHAR", "price": "DOUBLE", "seen": "TIMESTAMPTZ",
                           "scores": "BIGINT[]", "address": "JSON", "raw": "BLOB"}
    pg.store_membership("all", exp.true())
    rows = pa.Table.from_batches(list(pg.read_members(["all"], list(table.column_names))))
    assert rows.to_pylist()[0] == {
        "customer_id": "c1", "price": Decimal("12.30"),
        "seen": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "scores": [1, 2],
        "address": '{"zip": "50667", "city": "Köln"}', "raw": b"\x00\x01"}


# -- tables that already live in PostgreSQL ----------------------------------------------------


@pytest.mark.postgres
def test_an_existing_table_is_keyed_by_its_primary_key(url: str) -> None:
    sql_admin(
        url,
        "CREATE TABLE customers (id bigint PRIMARY KEY, email varchar(200), country char(2), "
        "spent numeric(12, 2), created timestamptz, tags text[], active boolean)",
        "INSERT INTO customers VALUES (1, 'a@x.com', 'DE', 10.50, '2025-01-01 10:00+00', "
        "'{a,b}', true), (2, 'b@x.com', 'FR', NULL, NULL, NULL, false)",
    )
    with PostgresProfileStore.from_url(f"{url}&table=customers") as store:
        assert store.id_column == "id"
        assert store.schema() == {"id": "BIGINT", "email": "VARCHAR", "country": "VARCHAR",
                                  "spent": "DOUBLE", "created": "TIMESTAMPTZ",
                                  "tags": "VARCHAR[]", "active": "BOOLEAN"}
        assert members(store, rule={"field": "spent", "op": "gt", "value": 10}) == {1}
        assert members(store, rule={"field": "tags", "op": "is_empty"}) == {2}
        summary = store.import_table(pa.table({"id": [2, 3], "email": ["b2@x.com", "c@x.com"]}),
                                     ProfileImport(id_column="id", mode="upsert"))
        assert (summary.rows, summary.total) == (2, 3)
        rows = store.sample_where(exp.true())
        assert [r["email"] for r in rows] == ["a@x.com", "b2@x.com", "c@x.com"]
        assert rows[1]["country"] is None  # the whole row is replaced, as in the embedded store


@pytest.mark.postgres
def test_a_table_without_primary_key_needs_id_column(url: str) -> None:
    sql_admin(url, "CREATE TABLE people (ref text, email text)",
              "INSERT INTO people VALUES ('p1', 'a@x.com'), ('p2', 'b@x.com')")
    with PostgresProfileStore.from_url(f"{url}&table=people") as store:
        assert store.id_column is None
        with pytest.raises(ConfigurationError) as caught:
            store.count_where(exp.true())
        assert "id_column=" in str(caught.value)
    with PostgresProfileStore.from_url(f"{url}&table=people&id_column=REF") as store:
        assert store.id_column == "ref"
        assert members(store, rule={"field": "email", "op": "contains", "value": "B@"}) == {"p2"}
        # No unique index to conflict on: the rows are replaced by delete and insert.
        store.import_table(pa.table({"ref": ["p2", "p3"], "email": ["new@x.com", "c@x.com"]}),
                           ProfileImport(id_column="ref", mode="upsert"))
        assert [(r["ref"], r["email"]) for r in store.sample_where(exp.true())] == [
            ("p1", "a@x.com"), ("p2", "new@x.com"), ("p3", "c@x.com")]
        with pytest.raises(DataError, match="keyed by 'REF'"):
            store.import_table(pa.table({"customer_id": [1]}))
    with PostgresProfileStore.from_url(f"{url}&table=people&id_column=nope") as store, \
            pytest.raises(ConfigurationError, match="id_column='nope' names no column"):
        _ = store.id_column


@pytest.mark.postgres
def test_a_view_is_read_but_never_replaced(url: str) -> None:
    sql_admin(url, "CREATE TABLE src (id int PRIMARY KEY, mail text)",
              "INSERT INTO src VALUES (1, 'a@x.com'), (2, 'b@x.com')",
              "CREATE VIEW contacts AS SELECT 'c' || id AS customer_id, mail AS email FROM src")
    with PostgresProfileStore.from_url(f"{url}&table=contacts&id_column=customer_id") as store:
        assert members(store, expression="email LIKE 'b%'") == {"c2"}
        with pytest.raises(ConfigurationError, match="not a table"):
            store.import_table(pa.table({"customer_id": ["c9"], "email": ["z@x.com"]}))
        assert store.count() == 2


@pytest.mark.postgres
def test_text_is_compared_byte_by_byte_whatever_the_collation(
    url: str, store: DuckDBProfileStore
) -> None:
    # Under a linguistic collation 'B' sorts after 'a'; DuckDB compares bytes, so 'B' < 'a'.
    sql_admin(url, 'CREATE TABLE words (id text COLLATE "und-x-icu" PRIMARY KEY, '
                   'word text COLLATE "und-x-icu")',
              "INSERT INTO words VALUES ('b', 'b'), ('B', 'B'), ('a', 'a'), ('Z', 'Z'), "
              "('ä', 'ä')")
    store.import_table(pa.table({"id": ["b", "B", "a", "Z", "ä"],
                                 "word": ["b", "B", "a", "Z", "ä"]}), ProfileImport(id_column="id"))
    with PostgresProfileStore.from_url(f"{url}&table=words") as pg:
        for rule in ({"field": "word", "op": "lt", "value": "a"},
                     {"field": "word", "op": "between", "value": ["B", "b"]}):
            assert members(pg, rule=rule) == members(store, rule=rule)
        higher = "lower(word) > 'b'"
        assert members(pg, expression=higher) == members(store, expression=higher) == {"Z", "ä"}
        for target in (pg, store):
            target.store_membership("all", exp.true())
        assert [b.column(0).to_pylist() for b in pg.read_members(["all"], [])] == [
            b.column(0).to_pylist() for b in store.read_members(["all"], [])]


@pytest.mark.postgres
def test_rounding_and_integer_casts_match_duckdb(
    pg: PostgresProfileStore, store: DuckDBProfileStore
) -> None:
    values = [2.5, -2.5, 0.5, 1.5, 3.5, 0.25, 80.45, 2.675]
    table = pa.table({"customer_id": list(range(1, len(values) + 1)), "ltv": values})
    for target in (pg, store):
        target.import_table(table)
    for expression in ("cast(ltv AS INTEGER) = 3", "cast(ltv AS BIGINT) = -3",
                       "cast(ltv AS INTEGER) IN (0, 1)", "round(ltv) = 4", "round(ltv, 1) = 0.3",
                       "round(ltv, 2) = 2.67", "round(round(ltv, 1)) = 3",
                       "round(ltv, -1) = 80"):
        assert members(pg, expression=expression) == members(store, expression=expression), (
            expression)
    # Casts round half to even in both engines; ROUND takes halves away from zero in DuckDB,
    # of the double's exact value (2.675 is a little less than 2.675).
    assert members(pg, expression="cast(ltv AS INTEGER) = 2") == {1, 4}  # 2.5, 1.5
    assert members(pg, expression="round(ltv) = 3") == {1, 8}
    assert members(pg, expression="round(ltv, 2) = 2.67") == {8}


@pytest.mark.postgres
def test_conditions_the_engine_cannot_evaluate_are_data_errors(pg: PostgresProfileStore) -> None:
    pg.import_table(pa.table({"customer_id": [1], "ltv": [1.0], "visits": [2**62]}))
    for expression in ("ltv > 'lots'", "visits * 4 > 0"):
        condition = compile_segment(schema=pg.schema(), expression=expression)
        with pytest.raises(DataError, match="cannot be evaluated"):
            pg.count_where(condition)
    assert pg.count() == 1  # the connection is still usable


@pytest.mark.postgres
def test_nothing_is_read_before_an_import(pg: PostgresProfileStore) -> None:
    with pytest.raises(ConfigurationError, match="No profiles have been imported yet"):
        pg.count_where(exp.true())
    with pytest.raises(ConfigurationError, match="No profiles"):
        pg.membership_size(["x"])
    pg.import_table(pa.table({"customer_id": [1], "email": ["a@x.com"]}))
    # No membership was ever stored: the members table does not exist yet.
    assert pg.membership_size(["x"]) == 0
    assert list(pg.read_members(["x"], ["email"])) == []
    dupes = pg.duplicate_emails(["x"], email_column="email", consent_column=None,
                                pattern=".", max_length=50)
    assert dupes.num_rows == 0
    with pytest.raises(DataError, match="Unknown profile column"):
        next(iter(pg.read_members(["x"], ["nope"])))
    pg.drop_membership("x")


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_replaced(
    pg: PostgresProfileStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segment_export.profiles.postgres import store as store_module

    pg.import_table(pa.table({"customer_id": [1], "email": ["a@x.com"]}))

    def drop_pooled() -> None:
        pids = [conn.info.backend_pid for conn, _ in pg._idle]
        assert pids
        sql_admin(url, *[f"SELECT pg_terminate_backend({pid})" for pid in pids])

    drop_pooled()
    with pytest.raises(RetriableError, match="connection to the profile store"):
        pg.count()  # a run would be retried; the broken connection is dropped
    assert pg.count() == 1
    monkeypatch.setattr(store_module, "_TRUSTED_IDLE_SECONDS", 0.0)
    drop_pooled()
    assert pg.count() == 1  # idle for a while: tested before use and replaced


# -- memberships and reading -------------------------------------------------------------------


@pytest.mark.postgres
def test_read_members_streams_through_a_server_side_cursor(
    pg: PostgresProfileStore, url: str
) -> None:
    pg.import_table(generate_profiles(rows=2500, seed=9))
    assert pg.store_membership("all", exp.true()) == 2500
    assert pg.store_membership("all", exp.true()) == 2500  # replaced, not appended
    reader = pg.read_members(["all", "all"], ["email", "customer_id"], batch_size=1000)
    first = next(reader)
    assert first.schema.names == ["customer_id", "email"]
    assert first.column(0).to_pylist() == list(range(1, 1001))
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    # Autocommit: pg_stat_activity is read once per transaction.
    with psycopg.connect(conninfo, autocommit=True) as conn:
        fetching = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE query LIKE 'FETCH FORWARD 1000 FROM "
            "\"members_%%'").fetchall()
        assert fetching == [("idle in transaction",)]
        assert [b.num_rows for b in reader] == [1000, 500]
        for _ in range(50):  # the server ends the reader's backend a moment after it closes
            left = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                "WHERE query LIKE 'FETCH FORWARD 1000%%'").fetchone()
            if left == (0,):
                break
            time.sleep(0.05)
        assert left == (0,)
    assert pg.membership_size(["all"]) == 2500
    pg.drop_membership("all")
    assert pg.membership_size(["all"]) == 0


@pytest.mark.postgres
def test_concurrent_refreshes_of_one_segment_never_double_its_members(
    pg: PostgresProfileStore,
) -> None:
    pg.import_table(generate_profiles(rows=2000, seed=3))
    condition = compile_segment(schema=pg.schema(), expression="customer_id % 2 = 0")
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            for _ in range(5):
                pg.store_membership("even", condition)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    ids = [v for b in pg.read_members(["even"], []) for v in b.column(0).to_pylist()]
    assert len(ids) == 1000 == pg.membership_size(["even"])
    assert pg.count_where(condition) == 1000


# -- the export, end to end --------------------------------------------------------------------


@pytest.mark.postgres
def test_an_export_reads_its_members_from_postgresql(world: Any, url: str) -> None:
    settings = world.settings.model_copy(update={"profile_store": url})
    store = open_profile_store(settings)
    assert isinstance(store, PostgresProfileStore)
    world.store = store
    try:
        rows = [{"customer_id": i, "email": f"pg{i}@example.com", "first_name": f"P{i}",
                 "last_name": "Gres", "country": "DE" if i % 3 else "FR"} for i in range(1, 61)]
        rows.append({"customer_id": 99, "email": " PG1@example.com", "first_name": "Dup",
                     "last_name": "Gres", "country": "DE"})
        world.load_profiles(rows)
        export = world.export("PostgreSQL profiles", [world.segment("de", "country = 'DE'")])
        run = world.run(export)
        assert run.status == "succeeded_with_rejections", run.message
        expected = {f"pg{i}@example.com" for i in range(1, 61) if i % 3}
        assert world.members() == expected
        assert run.counts["in_segment"] == len(expected) + 1
        assert run.counts["rejected_locally"] == 1  # the duplicate, found in PostgreSQL
        assert not settings.profiles_path.exists()  # DuckDB was never touched
    finally:
        store.close()
