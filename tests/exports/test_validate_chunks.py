"""Validation chunk by chunk: one contact per email, the highest id winning across chunks."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from segment_export.exports.validate import plan_dedupe, validate_members

MAPPING = {"email": "email", "first_name": "first_name"}


def _members(ids: list[int], rng: random.Random, *, text_ids: bool) -> pa.Table:
    emails = [f" Person{rng.randint(1, 40)}@Example.com " for _ in ids]
    emails[::17] = ["not-an-email"] * len(emails[::17])
    id_values = [f"c{i:05d}" for i in ids] if text_ids else ids
    return pa.table({"customer_id": id_values, "email": emails,
                     "first_name": [f"N{i}" for i in ids]})


@pytest.mark.parametrize("text_ids", [False, True])
def test_the_highest_id_wins_across_chunks_and_rows_keep_their_order(text_ids: bool) -> None:
    rng = random.Random(3)
    ids = rng.sample(range(1, 10_000), 400)
    table = _members(ids, rng, text_ids=text_ids)
    chunks = [table.slice(start, 70) for start in range(0, table.num_rows, 70)]
    plan = plan_dedupe((c for chunk in chunks for c in chunk.to_batches()),
                       id_column="customer_id", email_column="email")
    sent: list[tuple[str, str]] = []
    superseded: list[str] = []
    for chunk in chunks:
        result = validate_members(chunk, id_column="customer_id", mapping=MAPPING, dedupe=plan)
        sent += list(zip(result.contacts.column("customer_id").to_pylist(),
                         result.contacts.column("email").to_pylist(), strict=True))
        rejected = result.rejected.to_pylist()
        superseded += [r["customer_id"] for r in rejected if r["reason"] == "superseded"]

    rows = table.to_pylist()
    best: dict[str, object] = {}
    for row in rows:
        email = row["email"].strip().lower()
        if "@" in email:
            best[email] = max(best.get(email, row["customer_id"]), row["customer_id"])
    assert sorted(e for _, e in sent) == sorted(best)
    assert dict(sent) == {str(v): k for k, v in best.items()}
    winners = {str(v) for v in best.values()}
    losers = [str(r["customer_id"]) for r in rows if "@" in r["email"]]
    assert sorted(superseded) == sorted(c for c in losers if c not in winners)
    # Within a chunk, contacts whose email is not repeated come first, in their input order.
    first = validate_members(chunks[0], id_column="customer_id", mapping=MAPPING, dedupe=plan)
    order = [str(v) for v in chunks[0].column("customer_id").to_pylist()]
    kept = first.contacts.column("customer_id").to_pylist()
    repeated = {str(v) for v in plan.winners.column("sort_id_max").to_pylist()}
    assert kept == sorted(kept, key=lambda c: (c in repeated, order.index(c)))
