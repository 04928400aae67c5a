"""Every corpus rule selects the same members on every profile engine as on DuckDB.

DuckDB (the embedded store) is the reference; each engine in ENGINES loads the same corpus
table and must agree on members, exported rows, their order and duplicate emails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from segment_export.errors import DataError
from segment_export.exports.validate import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from segment_export.profiles import DuckDBProfileStore, ProfileStore
from segment_export.profiles.imports import ProfileImport
from tests.segments.corpus import CORPUS, Case, c, corpus_profiles
from tests.services import postgres_schema_url


@dataclass(frozen=True)
class Engine:
    """A profile engine under test.

    ``open(folder, profiles, id_column)`` yields a store of that engine holding ``profiles``
    keyed by ``id_column``: imported, or written where a read-only engine reads (``folder``
    is the test's own scratch directory).
    """

    name: str
    open: Callable[[Path, pa.Table, str], AbstractContextManager[ProfileStore]]
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())
    # False where a refresh per corpus case would take minutes (a Spark job has a fixed
    # cost); such an engine checks the whole corpus in one pass in its own tests.
    per_case: bool = True


@contextmanager
def _postgres(_folder: Path, profiles: pa.Table, id_column: str) -> Iterator[ProfileStore]:
    from segment_export.profiles.postgres import PostgresProfileStore

    with postgres_schema_url() as url, PostgresProfileStore.from_url(url) as store:
        store.import_table(profiles, ProfileImport(id_column=id_column))
        yield store


@contextmanager
def _spark(folder: Path, profiles: pa.Table, id_column: str) -> Iterator[ProfileStore]:
    from segment_export.profiles.spark import SparkProfileStore
    from tests.spark_session import shared_session

    with SparkProfileStore(f"parquet:{folder / 'lake'}", work_dir=folder / "spark",
                           session=shared_session(folder / "session")) as store:
        # Written as Parquet to the lake.
        store.import_table(profiles, ProfileImport(id_column=id_column))
        yield store


# The engines compared with DuckDB. To check another one, add one Engine to this list (e.g.
# Spark's store in local mode, with marks=(pytest.mark.slow,)): every corpus case, the
# exported rows and their order, the duplicate emails and text-id ordering are then compared.
ENGINES: list[Engine] = [
    Engine("postgres", _postgres, marks=(pytest.mark.postgres,)),
    # Its corpus check, all cases in one Spark job: tests/profiles/test_spark_store.py.
    Engine("spark", _spark, marks=(pytest.mark.slow,), per_case=False),
]


@pytest.fixture(scope="module")
def profiles() -> pa.Table:
    return corpus_profiles()


@pytest.fixture(scope="module")
def reference(profiles: pa.Table, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[ProfileStore]:
    with DuckDBProfileStore(tmp_path_factory.mktemp("duckdb") / "profiles.duckdb") as store:
        store.import_table(profiles)
        yield store


@pytest.fixture(scope="module",
                params=[pytest.param(e, id=e.name, marks=e.marks) for e in ENGINES])
def engine(request: pytest.FixtureRequest, profiles: pa.Table,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfileStore]:
    spec: Engine = request.param
    with spec.open(tmp_path_factory.mktemp(spec.name), profiles, "customer_id") as store:
        yield store


def _members(store: ProfileStore, segment_id: str, case: Case, schema: dict[str, str]
             ) -> set[Any]:
    store.store_membership(segment_id, case.condition(schema))
    batches = store.read_members([segment_id], [])
    return {value for batch in batches for value in batch.column(0).to_pylist()}


def test_the_engine_sees_the_same_columns(reference: ProfileStore, engine: ProfileStore) -> None:
    assert engine.schema() == reference.schema()
    assert engine.id_column == reference.id_column == "customer_id"
    assert engine.count() == reference.count() == len(corpus_profiles())


# Engines with per_case=False check the whole corpus in one pass in their own tests.
@pytest.mark.parametrize("engine", [pytest.param(e, id=e.name, marks=e.marks)
                                    for e in ENGINES if e.per_case], indirect=True)
@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_every_rule_selects_the_same_members(
    reference: ProfileStore, engine: ProfileStore, case: Case
) -> None:
    schema = reference.schema()
    segment_id = f"case-{CORPUS.index(case)}"
    if case.refused:
        for store in (reference, engine):
            with pytest.raises(DataError, match="cannot be evaluated"):
                store.count_where(case.condition(schema))
        return
    expected = _members(reference, segment_id, case, schema)
    if not case.may_be_empty:
        assert expected, f"{case.name}: matches nobody on DuckDB, so it proves nothing"
    assert _members(engine, segment_id, case, schema) == expected
    assert engine.count_where(case.condition(schema)) == len(expected)
    assert engine.membership_size([segment_id]) == len(expected)


def test_the_corpus_is_discriminating(reference: ProfileStore) -> None:
    """Most cases select a part of the profiles, not none or all of them."""
    schema, total = reference.schema(), reference.count()
    evaluated = [case for case in CORPUS if not case.refused]
    sizes = [reference.count_where(case.condition(schema)) for case in evaluated]
    partial = [s for s in sizes if 0 < s < total]
    assert len(partial) >= 0.9 * len(evaluated)
    assert len(set(sizes)) >= 0.6 * len(evaluated)


def _comparable(table: pa.Table) -> list[dict[str, Any]]:
    # NaN never equals itself; list children are named differently by each engine.
    def fix(value: Any) -> Any:
        return "NaN" if isinstance(value, float) and math.isnan(value) else value
    return [{k: fix(v) for k, v in row.items()} for row in table.to_pylist()]


def _type_names(table: pa.Table) -> list[str]:
    return [str(pa.list_(t.value_type)) if pa.types.is_list(t) else str(t)
            for t in table.schema.types]


def test_exported_rows_are_identical(reference: ProfileStore, engine: ProfileStore) -> None:
    schema = reference.schema()
    segments = ["export-a", "export-b"]
    for store in (reference, engine):
        store.store_membership(segments[0], CORPUS[0].condition(schema))  # country = DE
        store.store_membership(segments[1], next(
            case for case in CORPUS if case.name == "nested").condition(schema))
    columns = [c for c in schema if c != "customer_id"]
    expected = pa.Table.from_batches(list(reference.read_members(segments, columns,
                                                                 batch_size=97)))
    got_batches = list(engine.read_members(segments, columns, batch_size=97))
    got = pa.Table.from_batches(got_batches)
    assert got.num_rows == expected.num_rows > 97
    assert [b.num_rows for b in got_batches][:2] == [97, 97]
    assert got.column_names == expected.column_names == ["customer_id", *columns]
    assert _type_names(got) == _type_names(expected)
    assert _comparable(got) == _comparable(expected)


def test_duplicate_emails_are_identical(reference: ProfileStore, engine: ProfileStore) -> None:
    schema = reference.schema()
    everyone = Case("everyone", c("customer_id", "ge", 0)).condition(schema)
    results = []
    for store in (reference, engine):
        store.store_membership("everyone", everyone)
        table = store.duplicate_emails(["everyone"], email_column="email",
                                       consent_column="marketing_consent",
                                       pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)
        results.append(sorted(table.to_pylist(), key=lambda r: r["email"]))
    expected, got = results
    emails = {r["email"] for r in expected}
    assert {"sofia@example.com", "dup@example.org"} <= emails  # the edge rows' duplicates
    assert "bob@example.com" not in emails  # one of the two has no consent
    assert len(expected) > 5  # and the generator's case-only duplicates
    assert got == expected


ENGINE_PARAMS = [pytest.param(e, id=e.name, marks=e.marks) for e in ENGINES]


@pytest.mark.parametrize("spec", ENGINE_PARAMS)
def test_text_ids_sort_the_same(spec: Engine, tmp_path: Path) -> None:
    ids = ["b", "B", "a", "ä", "Z", "10", "9", "_x", " a", "ß", "Ω", "aa"]
    table = pa.table({"ref": ids, "name": [f"n{i}" for i in range(len(ids))]})
    orders = []
    with DuckDBProfileStore(tmp_path / "ids.duckdb") as duck, \
            spec.open(tmp_path, table, "ref") as other:
        duck.import_table(table, ProfileImport(id_column="ref"))
        for store in (duck, other):
            schema = store.schema()
            everyone = Case("names", c("name", "starts_with", "n")).condition(schema)
            store.store_membership("ids", everyone)
            orders.append([v for b in store.read_members(["ids"], ["name"], batch_size=5)
                           for v in b.column(0).to_pylist()])
            orders.append([r["ref"] for r in store.sample_where(everyone, 100)])
            before_a = Case("lt", c("ref", "lt", "a")).condition(schema)
            orders.append(sorted(r["ref"] for r in store.sample_where(before_a, 100)))
            orders.append(store.duplicate_emails(
                ["ids"], email_column="name", consent_column=None, pattern=".", max_length=50,
            ).column_names)
    assert orders[0] == sorted(ids, key=lambda s: s.encode())
    assert orders[:4] == orders[4:]



@contextmanager
def _duckdb(folder: Path, profiles: pa.Table, id_column: str) -> Iterator[ProfileStore]:
    with DuckDBProfileStore(folder / "profiles.duckdb") as store:
        store.import_table(profiles, ProfileImport(id_column=id_column))
        yield store


@pytest.mark.parametrize("spec", [pytest.param(Engine("duckdb", _duckdb), id="duckdb"),
                                  *ENGINE_PARAMS])
def test_an_address_lower_case_folds_into_ascii_supersedes_nobody(
        spec: Engine, tmp_path: Path) -> None:
    # U+212A KELVIN SIGN lower-cases to k: matched after lower(), it passed for kim@... and,
    # holding the higher id, superseded the genuine address, which the export then dropped.
    table = pa.table({"customer_id": [100, 200, 300, 400],
                      "email": ["kim@example.com", "\u212aim@example.com",
                                " Ann@Example.com", "ann@example.com\t"]})
    with spec.open(tmp_path, table, "customer_id") as store:
        everyone = Case("all", c("customer_id", "ge", 0)).condition(store.schema())
        store.store_membership("all", everyone)
        found = store.duplicate_emails(["all"], email_column="email", consent_column=None,
                                       pattern=EMAIL_PATTERN, max_length=EMAIL_MAX_LENGTH)
    assert [(r["email"], int(r["sort_id_max"])) for r in found.to_pylist()] == [
        ("ann@example.com", 400)]
