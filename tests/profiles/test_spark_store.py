"""The Spark profile store (PySpark, local mode) answers like the DuckDB store on the same data."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from segment_export.config import Settings
from segment_export.errors import ConfigurationError, DataError
from segment_export.exports.validate import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.engines import open_profile_store
from segment_export.profiles.imports import ProfileImport
from segment_export.profiles.spark import SparkProfileStore, parse_setting
from segment_export.profiles.spark.dialect import spark_sql
from segment_export.segments.compiler import compile_segment
from tests.segments.corpus import CORPUS, corpus_profiles

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

NOW = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
ROWS = 400


def profiles(rows: int = ROWS) -> pa.Table:
    """Profiles with every type a rule can test, blanks, NULLs and shared emails."""
    start = datetime(2024, 2, 20, tzinfo=UTC).replace(tzinfo=None)  # naive: wall-clock time
    return pa.table({
        "customer_id": pa.array([f"c{i:04d}" for i in range(rows)]),
        "email": [f" Person{i % 150}@Example.COM " if i % 9 else f"broken\\{i}"
                  for i in range(rows)],
        "country": [["DE", "FR", "US", None, "", "  ", "de"][i % 7] for i in range(rows)],
        "age": pa.array([i % 80 if i % 13 else None for i in range(rows)], pa.int32()),
        "score": pa.array([Decimal(i) / 8 for i in range(rows)], pa.decimal128(10, 3)),
        "born": [date(1960, 1, 1) + timedelta(days=i * 53) for i in range(rows)],
        "seen": pa.array([start + timedelta(hours=i * 2) for i in range(rows)], pa.timestamp("us")),
        "signed_up": pa.array([start.replace(tzinfo=UTC) + timedelta(minutes=i * 97)
                               for i in range(rows)], pa.timestamp("us", tz="UTC")),
        "subscribed": [i % 3 != 0 for i in range(rows)],
        "tags": [["a", "b"][: i % 3] for i in range(rows)],
    })


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Parquet directory in two files, as a lakehouse job writes it."""
    folder = tmp_path_factory.mktemp("lake") / "profiles"
    folder.mkdir()
    table = profiles()
    pq.write_table(table.slice(0, ROWS // 2), folder / "part-0.parquet")
    pq.write_table(table.slice(ROWS // 2), folder / "part-1.parquet")
    return folder


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBProfileStore]:
    with DuckDBProfileStore(tmp_path_factory.mktemp("duck") / "profiles.duckdb") as store:
        store.import_table(profiles())
        yield store


@pytest.fixture
def spark(spark_session: SparkSession, lake: Path, tmp_path: Path) -> Iterator[SparkProfileStore]:
    with SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "spark",
                           session=spark_session) as store:
        yield store


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "source", "options"), [
    ("spark:lake.crm.profiles", "lake.crm.profiles", {}),
    ("spark:profiles?id_column=person_id", "profiles", {"id_column": "person_id"}),
    ("spark:parquet:/lake/profiles", "parquet:/lake/profiles", {}),
    (" spark:parquet:/lake/p?id_column=id&master=local[1]&driver_memory=2g&members=/shared/m ",
     "parquet:/lake/p",
     {"id_column": "id", "master": "local[1]", "driver_memory": "2g", "members": "/shared/m"}),
])
def test_settings_name_a_table_or_a_parquet_directory(
    setting: str, source: str, options: dict[str, str]
) -> None:
    assert parse_setting(setting) == (source, options)


@pytest.mark.parametrize(("setting", "message"), [
    ("spark:", "not a Spark table"),
    ("spark:?id_column=x", "needs a table"),
    ("spark:parquet:", "needs a directory"),
    ("spark:t?colour=red", "unknown Spark option 'colour'"),
    ("spark:t?id_column=", "option 'id_column' is empty"),
])
def test_a_wrong_setting_says_what_is_wrong(setting: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_setting(setting)


def test_the_setting_opens_a_spark_store_with_members_in_the_data_dir(
    settings: Settings, lake: Path
) -> None:
    configured = settings.model_copy(
        update={"profile_store": f"spark:parquet:{lake}?id_column=customer_id"})
    store = open_profile_store(configured)  # no JVM yet: sessions start on first use
    assert isinstance(store, SparkProfileStore)
    assert store.location == f"spark:parquet:{lake}"
    assert store.work_dir == settings.data_dir / "spark"
    assert store.members_dir == settings.data_dir / "spark" / "members"
    shared = open_profile_store(settings.model_copy(
        update={"profile_store": f"spark:parquet:{lake}?members=/shared/members"}))
    assert isinstance(shared, SparkProfileStore)
    assert shared.members_dir == Path("/shared/members")


# -- reading profiles -------------------------------------------------------------------------


@pytest.mark.slow
def test_schema_and_counts_match_duckdb(
    spark: SparkProfileStore, duck: DuckDBProfileStore
) -> None:
    assert spark.schema() == duck.schema()
    assert spark.schema()["signed_up"] == "TIMESTAMPTZ"
    assert spark.schema()["seen"] == "TIMESTAMP"
    assert spark.id_column == "customer_id"
    assert spark.count() == ROWS


RULES: list[dict[str, Any]] = [
    {"field": "country", "op": "eq", "value": "DE"},
    {"field": "country", "op": "ne", "value": "DE"},
    {"field": "country", "op": "in", "value": ["FR", "de", "it's"]},
    {"field": "country", "op": "is_empty"},
    {"field": "country", "op": "is_not_empty"},
    {"field": "email", "op": "contains", "value": "PERSON1"},
    {"field": "email", "op": "starts_with", "value": "bro"},
    {"field": "age", "op": "between", "value": [18, "30.5"]},
    {"field": "age", "op": "ne", "value": 40},
    {"field": "score", "op": "gt", "value": 12.125},
    {"field": "born", "op": "le", "value": "1999-12-31"},
    {"field": "born", "op": "within_last_days", "value": 4000},
    {"field": "seen", "op": "within_last_days", "value": 10, "timezone": "Pacific/Auckland"},
    {"field": "seen", "op": "gt", "value": "2024-03-01T09:00:00+05:00"},
    {"field": "signed_up", "op": "within_last_days", "value": 3, "timezone": "America/New_York"},
    {"field": "signed_up", "op": "lt", "value": "2024-02-21T08:00:00"},
    {"field": "subscribed", "op": "eq", "value": False},
    {"field": "tags", "op": "is_empty"},
    {"all": [{"field": "country", "op": "eq", "value": "US"},
             {"any": [{"field": "age", "op": "lt", "value": 20},
                      {"field": "subscribed", "op": "eq", "value": True}]}]},
]

EXPRESSIONS = [
    "lower(country) = 'de' AND age >= 30",
    "born > DATE '2000-01-01' - INTERVAL 3 MONTHS",
    "signed_up >= CURRENT_TIMESTAMP - INTERVAL '5' DAYS OR seen < CURRENT_DATE - INTERVAL 1 YEAR",
    "email ILIKE '%person1_@%' AND NOT subscribed",
    "email LIKE 'broken\\1%' OR email LIKE 'broken\\2!%%' ESCAPE '!'",
    "email LIKE 'broken\\\\3%' ESCAPE '\\'",
    "CAST(age AS VARCHAR) || '!' = '7!'",
    "coalesce(country, 'none') IN ('none', 'FR')",
    "length(trim(email)) BETWEEN 20 AND 22",
    "substring(customer_id, 2, 2) = '01' AND abs(age - 50) < 5",
    "round(score, 0) = 12 OR score % 2 = 0.5",
    "age IS NOT DISTINCT FROM NULL",
    "starts_with(upper(email), ' PERSON') AND strpos(email, '9') > 0",
    "CAST(born AS TIMESTAMP) < signed_up - INTERVAL 20 YEARS",
]


@pytest.mark.slow
def test_rules_and_expressions_select_the_same_profiles_as_duckdb(
    spark: SparkProfileStore, duck: DuckDBProfileStore
) -> None:
    schema = duck.schema()
    conditions = [compile_segment(schema=schema, rule=r, now=NOW) for r in RULES]
    conditions += [compile_segment(schema=schema, expression=e) for e in EXPRESSIONS]
    flags = _flags(spark, conditions)
    for i, condition in enumerate(conditions):
        expected = [row["customer_id"] for row in duck.sample_where(condition, 1000)]
        assert flags[i] == expected, condition.sql(dialect="spark")
    some = [c for c in conditions if duck.count_where(c) not in (0, ROWS)]
    assert len(some) >= len(conditions) - 2, "the corpus must discriminate, not match all/none"
    # And through the store itself, for a zone- and clock-dependent one.
    assert spark.count_where(conditions[14]) == duck.count_where(conditions[14])


def _flags(store: SparkProfileStore, conditions: list[exp.Expr]) -> list[list[Any]]:
    """The ids each condition selects, sorted: every condition is one column of a single
    projection, so one Spark job answers them all (one query each would take minutes)."""
    frame = store.frame()
    id_name = store.id_column
    table = frame.selectExpr(id_name, *[
        f"coalesce(({spark_sql(c, frame)}), false) AS m{i}" for i, c in enumerate(conditions)
    ]).toArrow()
    ids = table.column(0).to_pylist()
    return [sorted(i for i, hit in zip(ids, table.column(f"m{n}").to_pylist(), strict=True)
                   if hit) for n in range(len(conditions))]


@pytest.mark.slow
def test_the_corpus_selects_the_same_members_as_duckdb(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    """Every case of the engine-parity corpus (tests/segments/corpus.py), as on DuckDB."""
    table = corpus_profiles()
    with DuckDBProfileStore(tmp_path / "corpus.duckdb") as duck, SparkProfileStore(
        f"parquet:{tmp_path / 'lake'}", work_dir=tmp_path / "work", session=spark_session
    ) as spark:
        duck.import_table(table)
        spark.import_table(table)
        schema = duck.schema()
        cases = [case for case in CORPUS if not case.refused]
        got = _flags(spark, [case.condition(schema) for case in cases])
        wrong = []
        for case, ids in zip(cases, got, strict=True):
            duck.store_membership("case", case.condition(schema))
            expected = sorted(v for b in duck.read_members(["case"], []) for v in
                              b.column(0).to_pylist())
            if ids != expected:
                wrong.append(f"{case.name}: {len(ids)} members, DuckDB {len(expected)}")
        assert not wrong, "\n".join(wrong)
        for case in CORPUS:
            if case.refused:
                with pytest.raises(DataError, match="cannot be evaluated"):
                    spark.count_where(case.condition(schema))


@pytest.mark.slow
def test_samples_keep_types_and_zones(spark: SparkProfileStore, duck: DuckDBProfileStore) -> None:
    condition = compile_segment(schema=duck.schema(), rule={
        "field": "customer_id", "op": "in", "value": ["c0003", "c0001"]})
    rows = spark.sample_where(condition, limit=5)
    assert rows == duck.sample_where(condition, limit=5)
    assert rows[0]["signed_up"].utcoffset() == timedelta(0)
    assert rows[0]["seen"].tzinfo is None


@pytest.mark.slow
def test_a_condition_spark_cannot_evaluate_is_a_data_error(spark: SparkProfileStore) -> None:
    condition = compile_segment(schema=spark.schema(), expression="CAST(country AS INT) = 3")
    with pytest.raises(DataError, match=r"cannot be evaluated: .*CAST_INVALID_INPUT"):
        spark.count_where(condition)


# -- membership -------------------------------------------------------------------------------


def _ids(batches: Iterator[pa.RecordBatch]) -> list[Any]:
    return pa.Table.from_batches(list(batches)).column(0).to_pylist()


@pytest.mark.slow
def test_members_stream_as_arrow_batches_like_duckdb(
    spark: SparkProfileStore, duck: DuckDBProfileStore
) -> None:
    schema = duck.schema()
    young = compile_segment(schema=schema, rule={"field": "age", "op": "lt", "value": 30})
    french = compile_segment(schema=schema, rule={"field": "country", "op": "eq", "value": "FR"})
    for store in (spark, duck):
        assert store.store_membership("young", young) == duck.count_where(young)
        store.store_membership("french", french)
    both = ["young", "french"]
    assert spark.membership_size(both) == duck.membership_size(both) > 0
    columns = ["signed_up", "email", "customer_id", "score"]
    # Keep the sort's four ranges as four files, so batches are stitched across files.
    spark.frame().sparkSession.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "false")
    stream = spark.read_members(both, columns, batch_size=50)
    got = [next(stream)]
    assert len(list((spark.work_dir / "reads").glob("*/part-*.parquet"))) > 1
    got += list(stream)
    expected = pa.Table.from_batches(list(duck.read_members(both, columns, batch_size=50)))
    assert [b.num_rows for b in got] == [b.num_rows for b in expected.to_batches(50)]
    table = pa.Table.from_batches(got)
    assert table.column_names == ["customer_id", "signed_up", "email", "score"]
    assert table.equals(expected), "same members, order, values and Arrow types"
    assert not any((spark.work_dir / "reads").iterdir()), "the spooled batches are removed"


@pytest.mark.slow
def test_a_refresh_replaces_the_members_and_a_drop_forgets_them(
    spark: SparkProfileStore, duck: DuckDBProfileStore, spark_session: SparkSession, lake: Path,
    tmp_path: Path,
) -> None:
    schema = duck.schema()
    de = compile_segment(schema=schema, rule={"field": "country", "op": "eq", "value": "DE"})
    us = compile_segment(schema=schema, rule={"field": "country", "op": "eq", "value": "US"})
    assert spark.store_membership("s", de) == duck.count_where(de)
    assert spark.store_membership("s", us) == duck.count_where(us) != duck.count_where(de)
    # Another worker, with its own scratch space and the same members directory, sees it.
    with SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "other-worker",
                           members_dir=spark.members_dir, session=spark_session) as other:
        countries = pa.Table.from_batches(list(other.read_members(["s"], ["country"])))
    assert set(countries.column("country").to_pylist()) == {"US"}
    assert countries.num_rows == duck.count_where(us)
    spark.store_membership("s", us)
    versions = list((spark.members_dir / "segment=s").glob("v-*"))
    assert len(versions) == 2, "the current membership and the one before it, no more"
    nobody = compile_segment(schema=schema, rule={"field": "age", "op": "gt", "value": 1000})
    assert spark.store_membership("../nobody", nobody) == 0
    assert list(spark.read_members(["../nobody"], ["country"])) == []
    assert not (spark.work_dir / "nobody").exists(), "a segment id is never used as a path"
    spark.drop_membership("s")
    assert spark.membership_size(["s"]) == 0
    assert list(spark.read_members(["s", "never-refreshed"], ["email"])) == []
    assert list(spark.read_members([], ["email"])) == []


@pytest.mark.slow
def test_duplicate_emails_are_found_in_spark_like_duckdb(
    spark: SparkProfileStore, duck: DuckDBProfileStore
) -> None:
    everyone = compile_segment(schema=duck.schema(), expression="age IS NULL OR age >= 0")
    for store in (spark, duck):
        store.store_membership("all", everyone)
    for consent in ("subscribed", None):
        got = spark.duplicate_emails(["all"], email_column="email", consent_column=consent,
                                     pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)
        expected = duck.duplicate_emails(["all"], email_column="email", consent_column=consent,
                                         pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)
        assert got.num_rows > 10
        assert sorted(got.to_pylist(), key=str) == sorted(expected.to_pylist(), key=str)
    assert "person1@example.com" in got.column("email").to_pylist()  # trimmed, lower-cased
    with pytest.raises(DataError, match="Unknown profile column 'mail'"):
        spark.duplicate_emails(["all"], email_column="mail", consent_column=None,
                               pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)


@pytest.mark.slow
def test_numeric_ids_stream_in_numeric_order(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / "numeric"
    folder.mkdir()
    ids = [10, 2, 300, 1, 25, 7]
    pq.write_table(pa.table({"id": ids, "email": [f"{i}@example.com" for i in ids]}),
                   folder / "p.parquet")
    with SparkProfileStore(f"parquet:{folder}", work_dir=tmp_path / "work", id_column="ID",
                           session=spark_session) as store:
        assert store.id_column == "id"  # the table's own spelling
        everyone = compile_segment(schema=store.schema(), expression="id > 0")
        assert store.store_membership("all", everyone) == 6
        assert _ids(store.read_members(["all"], ["email"], batch_size=4)) == sorted(ids)


@pytest.mark.slow
def test_profiles_removed_from_the_lake_are_not_exported(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    pq.write_table(profiles(20), folder / "a.parquet")
    with SparkProfileStore(f"parquet:{folder}", work_dir=tmp_path / "work",
                           session=spark_session) as store:
        everyone = compile_segment(schema=store.schema(), expression="customer_id <> ''")
        assert store.store_membership("all", everyone) == 20
        pq.write_table(profiles(20).slice(0, 5), folder / "a.parquet")
        assert store.membership_size(["all"]) == 5
        assert _ids(store.read_members(["all"], [])) == [f"c{i:04d}" for i in range(5)]


@pytest.mark.slow
def test_a_catalog_table_serves_as_the_profile_table(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    frame = spark_session.createDataFrame(profiles(30).select(["customer_id", "country"]))
    frame.write.saveAsTable("crm_profiles")
    try:
        with SparkProfileStore("crm_profiles", work_dir=tmp_path / "work",
                               session=spark_session) as store:
            assert store.schema() == {"customer_id": "VARCHAR", "country": "VARCHAR"}
            de = compile_segment(schema=store.schema(), expression="country = 'DE'")
            assert store.store_membership("de", de) == 5
            assert _ids(store.read_members(["de"], ["country"])) == [
                f"c{i:04d}" for i in range(0, 30, 7)]
    finally:
        spark_session.sql("DROP TABLE crm_profiles")


@pytest.mark.slow
def test_spools_left_by_a_killed_process_are_removed_after_a_day(
    spark_session: SparkSession, lake: Path, tmp_path: Path
) -> None:
    reads = tmp_path / "work" / "reads"
    old, recent = reads / "old", reads / "recent"
    for spool in (old, recent):
        spool.mkdir(parents=True)
        (spool / "part-00000.parquet").write_bytes(b"PAR1")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (two_days_ago, two_days_ago))
    with SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "work",
                           session=spark_session) as store:
        assert store.count() == ROWS
    assert not old.exists()
    assert recent.exists(), "another process may be reading this one"


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_missing_table_reads_as_no_profiles(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    for source in (f"parquet:{tmp_path / 'nothing'}", "no_such_table"):
        with SparkProfileStore(source, work_dir=tmp_path / "work",
                               session=spark_session) as store:
            assert (store.schema(), store.count(), store.id_column) == ({}, 0, None)
            with pytest.raises(ConfigurationError, match="No profiles at spark:"):
                store.membership_size(["a"])


@pytest.mark.slow
def test_a_missing_or_unusable_id_column_names_the_option(
    spark_session: SparkSession, lake: Path, tmp_path: Path
) -> None:
    with SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "w", id_column="person_id",
                           session=spark_session) as store:
        with pytest.raises(ConfigurationError, match="no 'person_id' column") as caught:
            store.count_where(compile_segment(schema=store.schema(), expression="age > 1"))
        assert "?id_column=NAME" in str(caught.value)
    with (
        SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "w", id_column="born",
                          session=spark_session) as store,
        pytest.raises(ConfigurationError, match=r"'born' .* holds DATE values"),
    ):
        next(store.read_members(["a"], []))


@pytest.mark.slow
def test_repeated_or_missing_ids_fail_the_refresh_and_keep_the_old_members(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    folder = tmp_path / "lake"
    folder.mkdir()
    pq.write_table(pa.table({"customer_id": ["a", "b", "c"], "n": [1, 2, 3]}),
                   folder / "1.parquet")
    with SparkProfileStore(f"parquet:{folder}", work_dir=tmp_path / "work",
                           session=spark_session) as store:
        everyone = compile_segment(schema=store.schema(), expression="n > 0")
        assert store.store_membership("s", everyone) == 3
        pq.write_table(pa.table({"customer_id": ["b", "d"], "n": [4, 5]}), folder / "2.parquet")
        with pytest.raises(DataError, match=r"1 matching profile.* repeat an id"):
            store.store_membership("s", everyone)
        pq.write_table(pa.table({"customer_id": [" ", None], "n": [4, 5]}),
                       folder / "2.parquet")
        with pytest.raises(DataError, match=r"2 matching profile.* have no customer id"):
            store.store_membership("s", everyone)
        assert _ids(store.read_members(["s"], [])) == ["a", "b", "c"]


def test_a_catalog_table_refuses_imports_because_the_lakehouse_owns_it(tmp_path: Path) -> None:
    store = SparkProfileStore("lake.profiles", work_dir=tmp_path)  # refused before Spark starts
    with pytest.raises(ConfigurationError, match="managed in the lakehouse"):
        store.import_table(profiles(3))
    with pytest.raises(ConfigurationError, match="managed in the lakehouse"):
        store.import_file(tmp_path / "p.csv")


def test_an_import_under_another_id_than_the_setting_names_is_refused(tmp_path: Path) -> None:
    store = SparkProfileStore(f"parquet:{tmp_path / 'lake'}", work_dir=tmp_path / "w",
                              id_column="person_id")
    with pytest.raises(ConfigurationError, match="import with --id-column person_id"):
        store.import_table(profiles(3))


@pytest.mark.slow
def test_imports_into_a_parquet_directory_replace_or_upsert_with_duckdbs_checks(
    spark_session: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    with SparkProfileStore(f"parquet:{lake}", work_dir=tmp_path / "work",
                           session=spark_session) as store:
        people = pa.table({"ref": ["b", "a", "c"], "email": ["b@x.io", "a@x.io", "c@x.io"]})
        summary = store.import_table(people, ProfileImport(id_column="REF"))
        assert (summary.rows, summary.total, summary.id_column) == (3, 3, "ref")
        assert store.id_column == "ref"  # remembered for this directory
        csv = tmp_path / "changes.csv"
        csv.write_text("ref,email,vip\nc,c@new.io,true\nd,d@x.io,false\n", encoding="utf-8")
        summary = store.import_file(csv, ProfileImport(id_column="ref", mode="upsert"))
        assert (summary.rows, summary.total) == (2, 4)
        assert store.schema() == {"ref": "VARCHAR", "email": "VARCHAR", "vip": "BOOLEAN"}
        rows = store.sample_where(compile_segment(schema=store.schema(),
                                                  expression="ref <> ''"), 10)
        assert [(r["ref"], r["email"], r["vip"]) for r in rows] == [
            ("a", "a@x.io", None), ("b", "b@x.io", None), ("c", "c@new.io", True),
            ("d", "d@x.io", False)]
        before = sorted(p.name for p in lake.iterdir())
        with pytest.raises(DataError, match="customer ids must be unique"):
            store.import_table(pa.table({"ref": ["x", "x"], "email": ["1@x.io", "2@x.io"]}),
                               ProfileImport(id_column="ref"))
        assert sorted(p.name for p in lake.iterdir()) == before, "a refused import changes nothing"
        assert store.count() == 4
        assert not list(lake.parent.glob(".lake.*")), "no staging directory is left behind"


# -- the export, end to end --------------------------------------------------------------------


@pytest.mark.slow
def test_an_export_reads_its_members_from_spark(
    world: Any, spark_session: SparkSession, tmp_path: Path
) -> None:
    settings = world.settings.model_copy(
        update={"profile_store": f"spark:parquet:{tmp_path / 'lake'}"})
    store = open_profile_store(settings)  # joins the test run's session: it is the active one
    assert isinstance(store, SparkProfileStore)
    world.store = store
    try:
        rows = [{"customer_id": i, "email": f"sp{i}@example.com", "first_name": f"S{i}",
                 "last_name": "Park", "country": "DE" if i % 3 else "FR"} for i in range(1, 61)]
        rows.append({"customer_id": 99, "email": " SP1@example.com", "first_name": "Dup",
                     "last_name": "Park", "country": "DE"})
        world.load_profiles(rows)
        export = world.export("Spark profiles", [world.segment("de", "country = 'DE'")])
        run = world.run(export)
        assert run.status == "succeeded_with_rejections", run.message
        expected = {f"sp{i}@example.com" for i in range(1, 61) if i % 3}
        assert world.members() == expected
        assert run.counts["in_segment"] == len(expected) + 1
        assert run.counts["rejected_locally"] == 1  # the duplicate, found by Spark
        assert not settings.profiles_path.exists()  # DuckDB's store was never opened
    finally:
        store.close()
    assert spark_session.range(1).count() == 1, "closing the store left the shared session up"
