"""Typed custom fields (Constant Contact since 2025-09): create, list, delete; import values
checked by type; unknown cf: keys ignored (or refused in strict mode)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import names_no_row, rejected


def _create(api: httpx.Client, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = api.post("/contact_custom_fields", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def _import(api: httpx.Client, rows: list[dict[str, Any]], list_id: str) -> dict[str, Any]:
    created = api.post("/activities/contacts_json_import",
                       json={"import_data": rows, "list_ids": [list_id]})
    assert created.status_code == 201, created.text
    activity: dict[str, Any] = api.get(f"/activities/{created.json()['activity_id']}").json()
    assert activity["state"] == "completed"
    return activity


def test_fields_are_created_with_their_type_and_choices(api: httpx.Client) -> None:
    tier = _create(api, {"label": "Loyalty tier", "type": "single_select",
                         "choices": [{"choice_label": "Gold"}, {"choice_label": "Silver"}]})
    assert tier["name"] == "Loyalty_tier"  # the label with blanks as underscores
    assert tier["type"] == "single_select"
    assert [(c["choice_id"], c["choice_label"]) for c in tier["choices"]] == [
        (1, "Gold"), (2, "Silver")]
    _create(api, {"label": "Score", "type": "number",
                  "metadata": {"decimal_places": 1, "allow_negative": True}})
    _create(api, {"label": "Notes", "type": "text_area"})
    listed = api.get("/contact_custom_fields").json()
    assert [(f["name"], f["type"]) for f in listed["custom_fields"]] == [
        ("Loyalty_tier", "single_select"), ("Notes", "text_area"), ("Score", "number")]
    assert listed["custom_fields"][2]["metadata"] == {"decimal_places": 1,
                                                      "allow_negative": True}
    assert listed["_links"] == {}
    one = api.get(f"/contact_custom_fields/{tier['custom_field_id']}").json()
    assert one == tier


def test_the_listing_pages_by_cursor(api: httpx.Client) -> None:
    for n in range(5):
        _create(api, {"label": f"f{n}", "type": "string"})
    names, page = [], api.get("/contact_custom_fields", params={"limit": 2}).json()
    names += [f["name"] for f in page["custom_fields"]]
    while page["_links"]:
        page = api.get(page["_links"]["next"]["href"].removeprefix("/v3")).json()
        names += [f["name"] for f in page["custom_fields"]]
    assert names == ["f0", "f1", "f2", "f3", "f4"]
    assert api.get("/contact_custom_fields", params={"limit": 101}).status_code == 400


@pytest.mark.parametrize(("body", "message"), [
    ({"label": "x", "type": "colour"}, "type must be one of"),
    ({"label": "x", "type": "single_select"}, "needs choices"),
    ({"label": "x", "type": "string", "choices": [{"choice_label": "a"}]}, "Only single_select"),
    ({"type": "string"}, "label is required"),
    ({"label": "x" * 51, "type": "string"}, "longer than 50"),
    ({"label": "x", "type": "number", "metadata": {"decimal_places": 9}}, "decimal_places"),
])
def test_bad_definitions_are_refused(api: httpx.Client, body: dict[str, Any],
                                     message: str) -> None:
    refused = api.post("/contact_custom_fields", json=body)
    assert refused.status_code == 400
    assert message in refused.json()[0]["error_message"]


def test_a_taken_name_is_a_conflict_and_delete_takes_the_values(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    field = _create(api, {"label": "tier", "type": "string"})
    _create(api, {"label": "tier", "type": "number"}, status=409)
    list_id = emu.control.seed(lists=["L"]).lists["L"]
    _import(api, [{"email": "a@example.com", "cf:tier": "gold"}], list_id)
    deleted = api.delete(f"/contact_custom_fields/{field['custom_field_id']}")
    assert deleted.status_code == 204
    assert api.get(f"/contact_custom_fields/{field['custom_field_id']}").status_code == 404
    assert "cf:tier" not in emu.control.contacts()[0]


def test_values_are_checked_by_type_per_contact(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.seed(lists=["L"], custom_fields=[
        {"name": "score", "type": "number"},
        {"name": "price", "type": "currency"},
        {"name": "member", "type": "boolean"},
        {"name": "joined", "type": "date"},
        {"name": "seen", "type": "datetime"},
        {"name": "tier", "type": "single_select", "choices": ["Gold", "Silver"]},
        {"name": "likes", "type": "multi_select", "choices": ["Tea", "Cake"]},
        {"name": "bio", "type": "text_area"},
    ])
    list_id = emu.control.state()["lists"][0]["list_id"]
    good = {"email": "good@example.com", "cf:score": "42", "cf:price": "9.99",
            "cf:member": "true", "cf:joined": "2024-02-29", "cf:seen": "2024-01-02T03:04:05Z",
            "cf:tier": "Gold", "cf:likes": "Tea,Cake", "cf:bio": "Bakes."}
    bad: list[dict[str, Any]] = [
        {"email": "b1@example.com", "cf:score": "forty"},
        {"email": "b2@example.com", "cf:score": "-1"},  # allow_negative defaults to false
        {"email": "b3@example.com", "cf:price": "9.999"},
        {"email": "b4@example.com", "cf:member": "yes"},
        {"email": "b5@example.com", "cf:joined": "2024-02-30"},
        {"email": "b6@example.com", "cf:seen": "2024-01-02T03:04:05"},
        {"email": "b7@example.com", "cf:tier": "Platinum"},
        {"email": "b8@example.com", "cf:likes": "Tea,Coffee"},
        {"email": "b9@example.com", "cf:score": 42},
    ]
    activity = _import(api, [good, *bad], list_id)
    assert activity["status"]["person_count"] == 1
    assert activity["status"]["error_count"] == len(bad)
    assert names_no_row(activity)
    assert rejected(emu, activity) == [
        "Row 2 (b1@example.com): cf:score (number) 'forty' is not a number",
        "Row 3 (b2@example.com): cf:score (number) '-1' is negative (the field does not "
        "allow negative numbers)",
        "Row 4 (b3@example.com): cf:price (currency) '9.999' has more than 2 decimal places",
        "Row 5 (b4@example.com): cf:member (boolean) 'yes' is not true or false",
        "Row 6 (b5@example.com): cf:joined (date) '2024-02-30' is not a calendar date",
        "Row 7 (b6@example.com): cf:seen (datetime) '2024-01-02T03:04:05' has no time zone "
        "offset",
        "Row 8 (b7@example.com): cf:tier (single_select) 'Platinum' is not one of the field's "
        "choices",
        "Row 9 (b8@example.com): cf:likes (multi_select) 'Tea,Coffee' names choices the field "
        "does not have: Coffee",
        "Row 10 (b9@example.com): cf:score (number) 42 must be a string",
    ]
    assert emu.control.list_members(list_id) == {"good@example.com"}
    stored = emu.control.contacts()[0]
    assert {k: v for k, v in stored.items() if k.startswith("cf:")} == {
        k: v for k, v in good.items() if k.startswith("cf:")}


def test_unknown_custom_fields_are_ignored_unless_strict(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    list_id = emu.control.seed(lists=["L"], custom_fields=["tier"]).lists["L"]
    row = {"email": "a@example.com", "cf:tier": "gold", "cf:nope": "lost"}
    lenient = _import(api, [row], list_id)
    # What Constant Contact does: the row is imported, the unknown key silently dropped.
    assert lenient["status"]["error_count"] == 0
    assert lenient["activity_errors"] == []
    contact = emu.control.contacts()[0]
    assert contact["cf:tier"] == "gold"
    assert "cf:nope" not in contact

    emu.control.set_config(strict_custom_fields=True)
    strict = _import(api, [{**row, "email": "b@example.com"}], list_id)
    assert strict["status"]["error_count"] == 1
    assert names_no_row(strict)
    assert len(strict["activity_errors"]) == 1
    assert rejected(emu, strict) == [
        "Row 1 (b@example.com): custom field 'cf:nope' does not exist in the account"]
    assert emu.control.list_members(list_id) == {"a@example.com"}
