"""Import bodies built column-wise from Arrow: the bytes and cuts of the per-contact batcher."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from segment_export.constant_contact import ImportBatch, iter_import_bodies
from segment_export.errors import DataError
from segment_export.exports.bodies import BodyCutter, contact_objects

ALPHABET = ["a", "Z", "0", " ", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "😀",
            "\u2028", ",", "{", ":"]


def _text(rng: random.Random) -> str | None:
    if rng.random() < 0.2:
        return None
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


def _table(rng: random.Random, n: int, *, first: int = 0) -> pa.Table:
    return pa.table({
        "customer_id": pa.array([str(first + i) for i in range(n)], pa.string()),
        "email": pa.array([f"p{first + i}@example.com" for i in range(n)], pa.string()),
        "first_name": pa.array([_text(rng) for _ in range(n)], pa.string()),
        "cf:note": pa.array([_text(rng) for _ in range(n)], pa.large_string()),
        "birthday_month": pa.array([rng.choice([None, 1, 12]) for _ in range(n)], pa.int64()),
    })


def _dicts(table: pa.Table) -> list[dict[str, Any]]:
    names = [n for n in table.column_names if n != "customer_id"]
    return [{k: v for k, v in row.items() if v is not None and k in names}
            for row in table.to_pylist()]


def test_each_contact_is_what_orjson_writes_of_its_non_null_fields() -> None:
    table = _table(random.Random(7), 2_000)
    objects = contact_objects(table).to_pylist()
    expected = [orjson.dumps(d).decode() + "," for d in _dicts(table)]
    assert objects == expected


def test_a_contact_whose_every_field_is_null_is_an_empty_object() -> None:
    # Arrow's "skip" join drops such rows altogether; every row must keep its place.
    table = pa.table({"customer_id": ["1", "2"], "email": pa.array([None, "a@b.co"], pa.string())})
    assert contact_objects(table).to_pylist() == ["{},", '{"email":"a@b.co"},']


def _cut(chunks: list[pa.Table], **limits: int) -> list[ImportBatch]:
    cutter = BodyCutter(list_ids=["list-1"], **limits)
    batches = []
    for chunk in chunks:
        n = chunk.num_rows
        for batch, members in cutter.add(chunk, np.arange(n, dtype=np.int64),
                                         np.zeros(n, dtype=np.int64)):
            assert len(members) == batch.count
            assert members.emails.to_pylist() == batch.emails
            batches.append(batch)
    for batch, _ in cutter.finish():
        batches.append(batch)
    return batches


@pytest.mark.parametrize(("max_contacts", "max_bytes"), [(40_000, 3_900_000), (7, 3_900_000),
                                                         (40_000, 900), (5, 700)])
def test_bodies_match_the_per_contact_batcher_across_chunks(max_contacts: int,
                                                              max_bytes: int) -> None:
    rng = random.Random(max_contacts + max_bytes)
    chunks = [_table(rng, n, first=i * 1000) for i, n in enumerate([0, 13, 1, 250, 40, 3])]
    dicts = [d for chunk in chunks for d in _dicts(chunk)]
    expected = list(iter_import_bodies(dicts, list_ids=["list-1"], max_contacts=max_contacts,
                                       max_bytes=max_bytes))
    got = _cut(chunks, max_contacts=max_contacts, max_bytes=max_bytes)
    assert [(b.body, b.count, b.start, b.emails) for b in got] == [
        (b.body, b.count, b.start, b.emails) for b in expected]
    assert all(b.nbytes == len(b.body) <= max_bytes for b in got)
    assert sum(b.count for b in got) == len(dicts)


def test_a_contact_too_big_for_any_body_fails_after_the_ones_before_it_are_cut() -> None:
    table = pa.table({"customer_id": ["1", "2", "3"],
                      "email": ["a@b.co", "c@d.co", "e@f.co"],
                      "first_name": ["A", "x" * 900, "C"]})
    cutter = BodyCutter(list_ids=["l"], max_bytes=600)
    produced: list[ImportBatch] = []

    def cut_all() -> None:
        for batch, _ in cutter.add(table, np.arange(3, dtype=np.int64),
                                   np.zeros(3, dtype=np.int64)):
            produced.append(batch)

    with pytest.raises(DataError, match="Contact #1 alone serializes"):
        cut_all()
    assert [b.emails for b in produced] == [["a@b.co"]]
