"""One typed input for importing profiles: the same `ProfileImport` gives the same profiles in
the embedded (DuckDB) store and the PostgreSQL one, and a bad option is refused by name."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError
from sqlglot import exp

from segment_export.errors import ConfigurationError, DataError
from segment_export.profiles import DuckDBProfileStore, ImportSummary, ProfileImport, ProfileStore
from tests.services import postgres_schema_url

# Named .txt so that only the options' format makes it readable; ids repeat in the update.
PEOPLE = "ref,mail,name\nr1,a@example.com,Ana\nr2,b@example.com,Bo\nr3,c@example.com,Cy\n"
UPDATE = "ref,mail,name\nr2,b2@example.com,Bob\nr4,d@example.com,Di\nr2,b3@example.com,Bobby\n"
FIRST = ProfileImport(id_column="ref", format="csv", email_column="mail")
UPSERT = ProfileImport(id_column="ref", mode="upsert", format="csv", email_column="mail")


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProfileStore]:
    if request.param == "duckdb":
        with DuckDBProfileStore(tmp_path / "profiles.duckdb") as duck:
            yield duck
        return
    from segment_export.profiles.postgres import PostgresProfileStore

    with postgres_schema_url() as url, PostgresProfileStore.from_url(url) as pg:
        yield pg


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def profiles(store: ProfileStore) -> dict[str, dict[str, Any]]:
    return {row["ref"]: row for row in store.sample_where(exp.true(), 100)}


def by_csv(*contents: str) -> dict[str, dict[str, Any]]:
    """The oracle: the files read with the csv module, a later row of an id replacing it."""
    rows: dict[str, dict[str, Any]] = {}
    for content in contents:
        for row in csv.DictReader(content.splitlines()):
            rows[row["ref"]] = row
    return rows


def shape(summary: ImportSummary) -> tuple[Any, ...]:
    return (summary.rows, summary.columns, summary.id_column, summary.mode, summary.total,
            summary.superseded, summary.schema)


def test_the_same_options_give_the_same_profiles_in_every_store(
    tmp_path: Path, any_store: ProfileStore, store: DuckDBProfileStore,
) -> None:
    people, update = write(tmp_path, "people.txt", PEOPLE), write(tmp_path, "update.txt", UPDATE)
    # `store` (always DuckDB) is the reference the parametrized store is held to.
    first = [s.import_file(people, FIRST) for s in (store, any_store)]
    assert shape(first[0]) == shape(first[1])
    assert (first[1].rows, first[1].id_column, first[1].mode) == (3, "ref", "replace")
    assert profiles(any_store) == by_csv(PEOPLE)

    upserted = [s.import_file(update, UPSERT) for s in (store, any_store)]
    assert shape(upserted[0]) == shape(upserted[1])
    assert (upserted[1].mode, upserted[1].superseded, upserted[1].total) == ("upsert", 1, 4)
    assert profiles(any_store) == profiles(store) == by_csv(PEOPLE, UPDATE)
    assert profiles(any_store)["r2"]["name"] == "Bobby"  # the last row of a repeated id
    assert any_store.id_column == "ref"


def test_a_table_takes_the_same_options(any_store: ProfileStore) -> None:
    table = pa.Table.from_pylist([dict(r) for r in by_csv(PEOPLE).values()])
    summary = any_store.import_table(table, ProfileImport(id_column="ref", email_column="mail"))
    assert (summary.rows, summary.id_column, summary.mode) == (3, "ref", "replace")
    assert profiles(any_store) == by_csv(PEOPLE)


def test_no_options_are_the_defaults(tmp_path: Path, any_store: ProfileStore) -> None:
    path = write(tmp_path, "p.csv", "customer_id,email\n1,a@example.com\n")
    assert shape(any_store.import_file(path)) == shape(
        any_store.import_file(path, ProfileImport(id_column="customer_id", mode="replace")))


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(ValidationError) as refused:
        ProfileImport(id_col="ref")  # type: ignore[call-arg]
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [
        (("id_col",), "extra_forbidden")]


def test_an_option_of_the_wrong_type_is_refused_by_name() -> None:
    with pytest.raises(ValidationError) as refused:
        ProfileImport.model_validate({"email_column": 7})
    assert [e["loc"] for e in refused.value.errors()] == [("email_column",)]


def test_an_unknown_mode_gets_the_stores_message_naming_the_field() -> None:
    with pytest.raises(DataError) as refused:
        ProfileImport.model_validate({"mode": "merge"})
    assert refused.value.message == "Unknown import mode 'merge'; use replace or upsert"
    assert refused.value.context["field"] == "mode"


def test_an_unknown_format_is_refused_naming_the_field(tmp_path: Path,
                                                       any_store: ProfileStore) -> None:
    with pytest.raises(DataError) as refused:
        any_store.import_file(write(tmp_path, "p.csv", PEOPLE), ProfileImport(format="xls"))
    assert refused.value.message.startswith("Unknown profile file format 'xls'")
    assert refused.value.context["field"] == "format"
    assert any_store.count() == 0


def test_a_table_refuses_a_format(any_store: ProfileStore) -> None:
    with pytest.raises(ConfigurationError) as refused:
        any_store.import_table(pa.table({"customer_id": [1]}), ProfileImport(format="csv"))
    assert refused.value.context["field"] == "format"
    assert "format" in refused.value.message
    assert any_store.count() == 0
