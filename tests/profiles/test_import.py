"""Importing profile files: formats, re-import modes, and a clear message for every bad file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from sqlglot import exp

from segment_export.errors import ConfigurationError, DataError
from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.importer import FORMATS
from segment_export.profiles.imports import ProfileImport

CSV = "customer_id,email,first_name,country\n1,a@example.com,Ana,DE\n2,b@example.com,Björn,SE\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def ids(store: DuckDBProfileStore) -> list[object]:
    return [row["customer_id"] for row in store.sample_where(exp.true(), 1000)]


def refused(store: DuckDBProfileStore, path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as caught:
        store.import_file(path, ProfileImport(**kwargs))  # type: ignore[arg-type]
    message = caught.value.message
    assert len(message) < 600, "messages stay short even for huge input"
    return message


# -- good files --------------------------------------------------------------------------------


def test_csv_import_infers_the_schema(tmp_path: Path, store: DuckDBProfileStore) -> None:
    summary = store.import_file(write(tmp_path, "p.csv", CSV))
    assert (summary.rows, summary.total, summary.id_column) == (2, 2, "customer_id")
    assert summary.columns == ["customer_id", "email", "first_name", "country"]
    assert store.schema() == {"customer_id": "BIGINT", "email": "VARCHAR",
                              "first_name": "VARCHAR", "country": "VARCHAR"}
    assert store.count() == 2
    assert store.id_column == "customer_id"


def test_jsonl_and_format_override(tmp_path: Path, store: DuckDBProfileStore) -> None:
    lines = [{"id": "C1", "email": "x@example.com", "vip": True, "since": "2024-01-31"},
             {"id": "C2", "email": None, "vip": False, "since": "2023-05-01"}]
    path = write(tmp_path, "p.txt", "\n".join(json.dumps(x) for x in lines) + "\n")
    store.import_file(path, ProfileImport(id_column="id", format="jsonl"))
    assert store.schema() == {"id": "VARCHAR", "email": "VARCHAR", "vip": "BOOLEAN",
                              "since": "DATE"}
    assert [r["id"] for r in store.sample_where(exp.true(), 10)] == ["C1", "C2"]


def test_parquet_import(tmp_path: Path, store: DuckDBProfileStore) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"customer_id": [3, 1, 2], "email": ["c@x.io", "a@x.io", None]}),
                   path)
    assert store.import_file(path).rows == 3
    assert ids(store) == [1, 2, 3]


def test_id_column_is_matched_ignoring_case(tmp_path: Path, store: DuckDBProfileStore) -> None:
    summary = store.import_file(write(tmp_path, "p.csv", "Customer_ID,email\n7,a@b.co\n"))
    assert summary.id_column == "Customer_ID"


def test_formats_constant_matches_cli() -> None:
    from segment_export.cli.profiles import FORMAT_CHOICES

    assert tuple(FORMATS) == FORMAT_CHOICES


# -- re-import ---------------------------------------------------------------------------------


def test_replace_swaps_everything(tmp_path: Path, store: DuckDBProfileStore) -> None:
    store.import_file(write(tmp_path, "a.csv", CSV))
    store.import_file(write(tmp_path, "b.csv", "customer_id,email\n9,z@example.com\n"))
    assert ids(store) == [9]
    assert list(store.schema()) == ["customer_id", "email"]


def test_upsert_adds_and_replaces_by_id_last_row_wins(
    tmp_path: Path, store: DuckDBProfileStore
) -> None:
    store.import_file(write(tmp_path, "a.csv", CSV))
    update = "customer_id,email,first_name,tier\n2,b2@example.com,B1,gold\n3,c@example.com,C,\n" \
             "2,b3@example.com,B2,silver\n"
    summary = store.import_file(write(tmp_path, "b.csv", update), ProfileImport(mode="upsert"))
    assert (summary.rows, summary.total, summary.superseded) == (3, 3, 1)
    rows = {r["customer_id"]: r for r in store.sample_where(exp.true(), 10)}
    assert rows[1]["first_name"] == "Ana"
    assert rows[1]["tier"] is None  # untouched, new column
    assert rows[2]["email"] == "b3@example.com"
    assert rows[2]["first_name"] == "B2"
    assert rows[2]["country"] is None  # upsert replaces the whole row
    assert rows[3]["email"] == "c@example.com"


def test_upsert_into_an_empty_store_is_an_import(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert store.import_file(write(tmp_path, "a.csv", CSV), ProfileImport(mode="upsert")).total == 2


def test_upsert_refuses_another_id_column(tmp_path: Path, store: DuckDBProfileStore) -> None:
    store.import_file(write(tmp_path, "a.csv", CSV))
    message = refused(store, write(tmp_path, "b.csv", "email,customer_id\n1,2\n"),
                      id_column="email", mode="upsert")
    assert "keyed by 'customer_id'" in message


def test_failed_import_keeps_the_previous_profiles(
    tmp_path: Path, store: DuckDBProfileStore
) -> None:
    store.import_file(write(tmp_path, "a.csv", CSV))
    refused(store, write(tmp_path, "b.csv", "customer_id,email\n1,a\n1,b\n"))
    assert ids(store) == [1, 2]
    assert store.schema()["first_name"] == "VARCHAR"


def test_duplicate_ids_refused_in_replace_with_rows_named(
    tmp_path: Path, store: DuckDBProfileStore
) -> None:
    path = write(tmp_path, "d.csv", "customer_id,email\n1,a\n2,b\n1,c\n3,d\n2,e\n")
    message = refused(store, path)
    assert "2 row(s) repeat" in message
    assert "'1' 2 times (lines 2, 4)" in message
    assert "'2' 2 times (lines 3, 6)" in message


# -- bad files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "does not exist" in refused(store, tmp_path / "nope.csv")


def test_unknown_extension(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "--format" in refused(store, write(tmp_path, "p.xlsx", "x"))


def test_empty_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "is empty" in refused(store, write(tmp_path, "p.csv", b""))


def test_blank_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "blank space" in refused(store, write(tmp_path, "p.jsonl", "\n\n  \n"))


def test_header_only(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "no rows" in refused(store, write(tmp_path, "p.csv", "customer_id,email\n"))


def test_binary_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    message = refused(store, write(tmp_path, "p.csv", png))
    assert "binary file" in message
    assert "byte offset 8" in message


def test_latin1_file_names_byte_and_line(tmp_path: Path, store: DuckDBProfileStore) -> None:
    data = "customer_id,name\n1,Ana\n2,J\u00fcrgen\n".encode("latin-1")
    message = refused(store, write(tmp_path, "p.csv", data))
    assert "not UTF-8" in message
    assert "byte 0xfc at byte offset 26 (line 3)" in message


def test_bad_utf8_far_into_the_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    rows = "".join(f"{i},n{i}@example.com\n" for i in range(1, 8000))
    data = ("customer_id,email\n" + rows).encode() + b"8000,\xe9t\xe9@example.com\n"
    message = refused(store, write(tmp_path, "p.csv", data))
    assert "not UTF-8" in message
    assert "(line 8001)" in message


def test_utf16_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    message = refused(store, write(tmp_path, "p.csv", CSV.encode("utf-16")))
    assert "UTF-16" in message


def test_utf8_bom_is_fine(tmp_path: Path, store: DuckDBProfileStore) -> None:
    store.import_file(write(tmp_path, "p.csv", CSV.encode("utf-8-sig")))
    assert "customer_id" in store.schema()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("1,a@x.io,Ana\n2,b@x.io\n3,c@x.io,C\n", "line 3: expected 3 fields but found 2"),
        ("1,a@x.io,Ana\n2,b@x.io,B,extra\n3,c@x.io,C\n", "line 3: expected 3 fields but found 4"),
    ],
)
def test_ragged_rows_early(
    tmp_path: Path, store: DuckDBProfileStore, body: str, expected: str
) -> None:
    path = write(tmp_path, "p.csv", "customer_id,email,name\n" + body)
    assert expected in refused(store, path)


def test_ragged_row_late(tmp_path: Path, store: DuckDBProfileStore) -> None:
    rows = "".join(f"{i},n{i}@example.com\n" for i in range(1, 30_001))
    path = write(tmp_path, "p.csv", "customer_id,email\n" + rows + "30001,x@y.z,surplus\n")
    assert "line 30002: expected 2 fields but found 3" in refused(store, path)


def test_type_change_late_in_the_file_names_line_and_column(
    tmp_path: Path, store: DuckDBProfileStore
) -> None:
    rows = "".join(f"{i},n{i}@example.com,{i}\n" for i in range(1, 30_001))
    path = write(tmp_path, "p.csv", "customer_id,email,score\n" + rows + "30001,a@b.co,high\n")
    message = refused(store, path)
    assert "line 30002, column 'score'" in message
    assert "high" in message


def test_missing_id_column(tmp_path: Path, store: DuckDBProfileStore) -> None:
    message = refused(store, write(tmp_path, "p.csv", "id,email\n1,a@b.co\n"))
    assert "no 'customer_id' column" in message
    assert "'id'" in message
    assert "--id-column" in message


def test_missing_email_column(tmp_path: Path, store: DuckDBProfileStore) -> None:
    path = write(tmp_path, "p.csv", "customer_id,name\n1,Ana\n")
    message = refused(store, path, email_column="email")
    assert "no 'email' column for the email address" in message
    assert store.import_file(path).rows == 1  # without the check it imports


def test_row_without_id(tmp_path: Path, store: DuckDBProfileStore) -> None:
    path = write(tmp_path, "p.csv", "customer_id,email\nA1,a@b.co\n,b@b.co\n  ,c@b.co\n")
    message = refused(store, path)
    assert "line 3: no customer id" in message
    assert "2 row(s)" in message


def test_id_column_of_wrong_type(tmp_path: Path, store: DuckDBProfileStore) -> None:
    path = write(tmp_path, "p.csv", "customer_id,email\n1.5,a@b.co\n2.5,b@b.co\n")
    assert "ids must be text or whole numbers" in refused(store, path)


def test_ten_million_character_csv_field(tmp_path: Path, store: DuckDBProfileStore) -> None:
    path = write(tmp_path, "p.csv", "customer_id,note\n1,ok\n2," + "x" * 10_000_000 + "\n3,ok\n")
    message = refused(store, path)
    assert "line 3" in message
    assert "longer than" in message


def test_ten_million_character_jsonl_field_imports(
    tmp_path: Path, store: DuckDBProfileStore
) -> None:
    # JSON Lines has no line limit in DuckDB: the value is kept, nothing crashes.
    big = json.dumps({"customer_id": 2, "note": "x" * 10_000_000})
    path = write(tmp_path, "p.jsonl", '{"customer_id": 1, "note": "ok"}\n' + big + "\n")
    assert store.import_file(path).rows == 2


def test_malformed_json_line(tmp_path: Path, store: DuckDBProfileStore) -> None:
    body = '{"customer_id": 1}\n{"customer_id": 2,\n{"customer_id": 3}\n'
    path = write(tmp_path, "p.jsonl", body)
    message = refused(store, path)
    assert "line 3" in message
    assert "malformed JSON" in message


def test_not_a_parquet_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "not a Parquet file" in refused(store, write(tmp_path, "p.parquet", CSV))


def test_truncated_parquet_file(tmp_path: Path, store: DuckDBProfileStore) -> None:
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"customer_id": list(range(100))}), good)
    path = write(tmp_path, "p.parquet", good.read_bytes()[:60])
    assert "p.parquet" in refused(store, path)


def test_unknown_mode(tmp_path: Path, store: DuckDBProfileStore) -> None:
    assert "Unknown import mode" in refused(store, write(tmp_path, "p.csv", CSV), mode="merge")


# -- queries before and after import -----------------------------------------------------------


def test_queries_before_any_import(store: DuckDBProfileStore) -> None:
    assert store.count() == 0
    assert store.schema() == {}
    assert store.id_column is None
    with pytest.raises(ConfigurationError, match="No profiles"):
        store.count_where(exp.true())


def test_store_is_shared_by_threads(tmp_path: Path, store: DuckDBProfileStore) -> None:
    table = pa.table({"customer_id": list(range(1, 5001)),
                      "n": [i % 10 for i in range(1, 5001)]})
    store.import_table(table)
    cond = exp.column("n", quoted=True).eq(exp.Literal.number(3))
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                results.append(store.count_where(cond))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results == [500] * 80


def test_second_process_gets_a_clear_error(tmp_path: Path, store: DuckDBProfileStore) -> None:
    import subprocess
    import sys

    store.import_table(pa.table({"customer_id": [1]}))
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from segment_export.profiles import DuckDBProfileStore\n"
        "from segment_export.errors import ConfigurationError\n"
        "try:\n    DuckDBProfileStore(Path(sys.argv[1])).count()\n"
        "except ConfigurationError as exc:\n    print(exc.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(store.path)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "cannot be opened" in out.stdout
