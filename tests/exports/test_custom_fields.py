"""Typed custom fields in a run, against the emulator over HTTP: every type cast or refused per
row (invalid_custom_field), the account's fields read once at run start, a field deleted since
the export was saved failing the run before anything is sent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select

from segment_export.db.models import RejectedRow
from segment_export.definitions.custom_fields import AccountField, cast_values
from tests.emulator.helpers import api_client, tokens
from tests.world import World

FIELDS: list[dict[str, Any]] = [
    {"name": "score", "type": "number"},
    {"name": "balance", "type": "number", "metadata": {"allow_negative": True}},
    {"name": "price", "type": "currency"},
    {"name": "member", "type": "boolean"},
    {"name": "joined", "type": "date"},
    {"name": "renewal", "type": "date"},
    {"name": "seen", "type": "datetime"},
    {"name": "tier", "type": "single_select", "choices": ["Gold", "Silver"]},
    {"name": "likes", "type": "multi_select", "choices": ["Tea", "Cake"]},
    {"name": "bio", "type": "text_area"},
]
MAPPING = {"email": "email", "cf:score": "score", "cf:balance": "balance", "cf:price": "price",
           "cf:member": "member", "cf:joined": "joined", "cf:renewal": "renewal",
           "cf:seen": "seen", "cf:tier": "tier", "cf:likes": "likes", "cf:bio": "bio"}
# A timestamp without a zone, as DuckDB's TIMESTAMP holds it: read as UTC.
NAIVE_SEEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).replace(tzinfo=None)
GOOD: dict[str, Any] = {"score": "007.50", "balance": -12, "price": 9.5, "member": "Yes",
                        "joined": date(2024, 2, 29), "renewal": "2025-01-31",
                        "seen": NAIVE_SEEN, "tier": " gold ",
                        "likes": "cake, Tea", "bio": "Bakes."}
# What Constant Contact is sent for GOOD: each value in the form its type takes.
SENT = {"cf:score": "7.5", "cf:balance": "-12", "cf:price": "9.5", "cf:member": "true",
        "cf:joined": "2024-02-29", "cf:renewal": "2025-01-31", "cf:seen": "2024-01-02T03:04:05Z",
        "cf:tier": "Gold", "cf:likes": "Cake,Tea", "cf:bio": "Bakes."}
# One bad value per row (the rest as GOOD), and the detail each gets.
BAD: list[tuple[str, Any, str]] = [
    ("score", "forty-two", "cf:score (number): 'forty-two' is not a number"),
    ("score", "-3", "cf:score (number): '-3' is negative (the field does not allow negative "
     "numbers)"),
    ("score", "1e3", "cf:score (number): '1e3' is not a number"),
    ("price", 9.999, "cf:price (currency): '9.999' has more than 2 decimal places"),
    ("price", float("inf"), "cf:price (currency): 'inf' is not a finite number"),
    ("member", "maybe", "cf:member (boolean): 'maybe' is not true or false (true/false, "
     "yes/no, 1/0)"),
    ("renewal", "2025-02-30", "cf:renewal (date): '2025-02-30' is not a date (YYYY-MM-DD)"),
    ("renewal", "31/01/2025", "cf:renewal (date): '31/01/2025' is not a date (YYYY-MM-DD)"),
    ("tier", "Platinum", "cf:tier (single_select): 'Platinum' is not one of the choices"),
    ("likes", "Tea, Coffee", "cf:likes (multi_select): 'Tea, Coffee' names a choice the field "
     "does not have"),
    ("tier", "x" * 60, "cf:tier (single_select): '" + "x" * 40 + "…' is not one of the choices"),
]


def _profiles() -> list[dict[str, Any]]:
    rows = [{"customer_id": 1, "email": "good@example.com", "country": "DE", **GOOD},
            {"customer_id": 2, "email": "empty@example.com", "country": "DE",
             **dict.fromkeys(GOOD)}]
    for n, (column, value, _) in enumerate(BAD, start=10):
        rows.append({"customer_id": n, "email": f"bad{n}@example.com", "country": "DE",
                     **{**GOOD, column: value}})
    rows.append({"customer_id": 99, "email": "twice@example.com", "country": "DE",
                 **{**GOOD, "score": "x", "tier": "Bronze"}})
    return rows


def _rejections(world: World, run_id: str) -> dict[str, tuple[str, str | None]]:
    with world.sessions() as session:
        rows = session.scalars(select(RejectedRow).where(RejectedRow.run_id == run_id)).all()
        return {r.email or "": (r.reason, r.detail) for r in rows}


def test_every_type_is_cast_or_refused_per_row(world: World) -> None:
    world.control.seed(custom_fields=FIELDS)
    world.load_profiles(_profiles())
    export = world.export("typed", [world.segment("all", "country = 'DE'")], mapping=MAPPING)
    since = world.control.requests()[-1].seq
    run = world.run(export)

    assert run.status == "succeeded_with_rejections", run.message
    assert run.counts["rejected_locally"] == len(BAD) + 1
    # What was sent fits the emulator's type checks: Constant Contact refused nothing.
    assert run.counts["rejected_by_constant_contact"] == 0
    assert run.counts["accepted"] == 2
    rejected = _rejections(world, run.id)
    for n, (_, _, detail) in enumerate(BAD, start=10):
        assert rejected[f"bad{n}@example.com"] == ("invalid_custom_field", detail)
    # A row refused by two fields names both.
    assert rejected["twice@example.com"] == (
        "invalid_custom_field", "cf:score (number): 'x' is not a number; "
        "cf:tier (single_select): 'Bronze' is not one of the choices")
    contacts = {c["email"]: c for c in world.control.contacts()}
    assert set(contacts) == {"good@example.com", "empty@example.com"}
    assert {k: v for k, v in contacts["good@example.com"].items() if k.startswith("cf:")} == SENT
    # Empty values are not refused: they are not sent.
    assert not [k for k in contacts["empty@example.com"] if k.startswith("cf:")]
    # The account's fields were read once, at run start.
    reads = [r for r in world.control.requests(since) if r.path == "/v3/contact_custom_fields"]
    assert len(reads) == 1


def test_a_dry_run_reports_the_same_refusals(world: World) -> None:
    world.control.seed(custom_fields=FIELDS)
    world.load_profiles(_profiles())
    export = world.export("typed dry", [world.segment("all", "country = 'DE'")],
                          mapping=MAPPING)
    run = world.run(export, dry_run=True)
    assert run.status == "succeeded", run.message
    assert run.counts["rejected_locally"] == len(BAD) + 1
    assert {reason for reason, _ in _rejections(world, run.id).values()} == {
        "invalid_custom_field"}
    assert world.control.contacts() == []


def test_no_custom_field_mapped_costs_no_request(world: World) -> None:
    world.load_profiles(_profiles())
    export = world.export("plain", [world.segment("all", "country = 'DE'")],
                          mapping={"email": "email"})
    since = world.control.requests()[-1].seq
    run = world.run(export)
    assert run.status == "succeeded", run.message
    assert not [r for r in world.control.requests(since) if "custom_fields" in r.path]


def test_a_field_deleted_since_saving_fails_the_run_before_sending(world: World) -> None:
    seeded = world.control.seed(custom_fields=FIELDS)
    world.load_profiles(_profiles())
    export = world.export("deleted field", [world.segment("all", "country = 'DE'")],
                          mapping={"email": "email", "cf:tier": "tier", "cf:bio": "bio"})
    with api_client(world.emulator, tokens(world.emulator)["access_token"]) as api:
        gone = api.delete(f"/contact_custom_fields/{seeded.custom_fields['tier']}")
        assert gone.status_code == 204
    since = world.control.requests()[-1].seq
    run = world.run(export)
    assert run.status == "failed"
    assert run.error_kind == "ConfigurationError"
    assert "cf:tier, which no longer exists in the Constant Contact account" in run.message
    assert "nothing was sent" in run.message
    assert not [r for r in world.control.requests(since) if "import" in r.path]
    assert world.members() == set()


@pytest.mark.parametrize(("field", "values", "sent", "refused"), [
    (AccountField("n", "number", allow_negative=True), ["+1.50", "-0", ".5", "7x", "  "],
     ["1.5", "0", "0.5", None, None], [False, False, False, True, False]),
    (AccountField("n", "number", integer=True), ["3", "3.0", "3.1"],
     ["3", "3", None], [False, False, True]),
    (AccountField("n", "number", decimal_places=1), [1.25, 1.2],
     [None, "1.2"], [True, False]),
    (AccountField("c", "currency", decimal_places=3), ["1.234", "1.2345"],
     ["1.234", None], [False, True]),
    # Float arithmetic noise is not a third decimal; a real one is.
    (AccountField("c", "currency"), [0.1 + 0.2, 19.99 * 3, 19.999, 1e15 + 0.01, -0.0],
     ["0.3", "59.97", None, "1000000000000000", "0"], [False, False, True, False, False]),
    (AccountField("n", "number", integer=True), [2.0000000000000004, 2.5],
     ["2", None], [False, True]),
    (AccountField("b", "boolean"), ["TRUE", "n", "0", "2"],
     ["true", "false", "false", None], [False, False, False, True]),
    (AccountField("d", "datetime"), ["2024-06-01T12:00:00+02:00", "2024-06-01"],
     ["2024-06-01T10:00:00Z", None], [False, True]),
    (AccountField("s", "string"), ["anything", None], ["anything", None], [False, False]),
])
def test_casts(field: AccountField, values: list[Any], sent: list[str | None],
               refused: list[bool]) -> None:
    cast, problem = cast_values(pa.array(values), field)
    assert cast.to_pylist() == sent
    assert [p is not None for p in problem.to_pylist()] == refused


def test_typed_columns_are_cast_without_text() -> None:
    ints, _ = cast_values(pa.array([1, -2, None]), AccountField("n", "number",
                                                                allow_negative=True))
    assert ints.to_pylist() == ["1", "-2", None]
    big, _ = cast_values(pa.array([1e20, 1e-7]), AccountField("n", "number"))
    assert big.to_pylist() == ["100000000000000000000", "0.0000001"]
    stamps = pa.array([datetime(2024, 1, 2, 23, 30, tzinfo=UTC)],
                      pa.timestamp("us", "America/New_York"))
    assert cast_values(stamps, AccountField("d", "date"))[0].to_pylist() == ["2024-01-02"]
    assert cast_values(stamps, AccountField("t", "datetime"))[0].to_pylist() == [
        "2024-01-02T23:30:00Z"]
    choices = pa.array([["tea", "Tea", "cake"], []])
    likes = AccountField("l", "multi_select", choices=("Tea", "Cake"))
    assert cast_values(choices, likes)[0].to_pylist() == ["Tea,Cake", None]
