"""Sample profiles: deterministic, realistic, with the bad emails an export must handle."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from segment_export.profiles import DuckDBProfileStore, generate_profiles, write_profiles
from segment_export.profiles.generate import TIERS
from segment_export.profiles.imports import ProfileImport

AS_OF = date(2025, 6, 1)
ROWS = 20_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return generate_profiles(rows=ROWS, seed=7, as_of=AS_OF)


def test_same_seed_same_profiles_and_other_seed_differs() -> None:
    first = generate_profiles(rows=2_000, seed=11, as_of=AS_OF)
    assert first.equals(generate_profiles(rows=2_000, seed=11, as_of=AS_OF))
    assert not first.equals(generate_profiles(rows=2_000, seed=12, as_of=AS_OF))


def test_columns_and_types(table: pa.Table) -> None:
    assert table.num_rows == ROWS
    assert table.schema.field("customer_id").type == pa.int64()
    assert table.schema.field("lifetime_value").type == pa.float64()
    assert table.schema.field("last_purchase_date").type == pa.date32()
    assert table.schema.field("signup_date").type == pa.date32()
    assert table.schema.field("marketing_consent").type == pa.bool_()
    for name in ("email", "first_name", "last_name", "country", "city", "phone", "loyalty_tier",
                 "company", "job_title"):
        assert table.schema.field(name).type == pa.string(), name


def test_ids_are_unique_and_sorted(table: pa.Table) -> None:
    ids = table["customer_id"].to_pylist()
    assert ids == sorted(set(ids))
    assert ids[0] == 1


def test_email_anomaly_shares(table: pa.Table) -> None:
    email = table["email"]
    missing = email.null_count / ROWS
    present = email.drop_null()
    too_long = pc.sum(pc.greater(pc.utf8_length(present), 50)).as_py() / ROWS
    syntax = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
    invalid = sum(1 for e in present.to_pylist() if not syntax.fullmatch(e)) / ROWS
    valid = [e for e in present.to_pylist() if syntax.fullmatch(e)]
    lowered = [e.lower() for e in valid]
    case_dupes = (len(lowered) - len(set(lowered))) / ROWS
    exact_dupes = len(valid) - len(set(valid))
    assert 0.015 < missing < 0.025
    assert 0.024 < invalid < 0.036
    assert 0.003 < too_long < 0.008
    assert 0.007 < case_dupes < 0.013
    assert exact_dupes == 0  # duplicates differ only by letter case


def test_names_in_several_scripts(table: pa.Table) -> None:
    names = " ".join(table["first_name"].to_pylist() + table["last_name"].to_pylist())
    scripts = {
        "latin accents": r"[À-ž]",
        "cyrillic": r"[\u0400-\u04FF]",
        "greek": r"[\u0370-\u03FF]",
        "cjk": r"[\u4E00-\u9FFF]",
        "arabic": r"[\u0600-\u06FF]",
        "devanagari": r"[\u0900-\u097F]",
    }
    for script, pattern in scripts.items():
        assert re.search(pattern, names), script


def test_dates_tiers_and_consent_are_plausible(table: pa.Table) -> None:
    rows = table.select(["signup_date", "last_purchase_date", "lifetime_value", "loyalty_tier",
                         "marketing_consent"]).to_pylist()
    for row in rows:
        assert row["signup_date"] <= AS_OF
        if row["last_purchase_date"] is None:
            assert row["lifetime_value"] == 0
        else:
            assert row["signup_date"] <= row["last_purchase_date"] <= AS_OF
        assert row["loyalty_tier"] in TIERS
    platinum = [r["lifetime_value"] for r in rows if r["loyalty_tier"] == "platinum"]
    bronze = [r["lifetime_value"] for r in rows if r["loyalty_tier"] == "bronze"]
    assert min(platinum) > max(bronze)
    consent = sum(r["marketing_consent"] for r in rows) / ROWS
    assert 0.8 < consent < 0.95


def test_zero_rows_and_negative_rows() -> None:
    assert generate_profiles(rows=0).num_rows == 0
    from segment_export.errors import DataError

    with pytest.raises(DataError):
        generate_profiles(rows=-1)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_written_files_import_back(
    tmp_path: Path, store: DuckDBProfileStore, suffix: str
) -> None:
    table = generate_profiles(rows=500, seed=3, as_of=AS_OF)
    path = write_profiles(table, tmp_path / f"profiles{suffix}")
    summary = store.import_file(path, ProfileImport(email_column="email"))
    assert summary.rows == 500
    assert summary.columns == table.column_names
    schema = store.schema()
    assert schema["customer_id"] == "BIGINT"
    assert schema["lifetime_value"] == "DOUBLE"
    assert schema["signup_date"] == "DATE"
    assert schema["marketing_consent"] == "BOOLEAN"
    from sqlglot import exp

    first = store.sample_where(exp.true(), 1)[0]
    assert first == table.slice(0, 1).to_pylist()[0]
