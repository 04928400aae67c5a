"""contacts_json_import: who is created, updated, added to lists, rejected; size limits."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from segment_export.emulator import EmulatorServer, SeedResult
from tests.emulator.helpers import names_no_row, rejected


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(
        custom_fields=["tier"],
        lists=["Newsletter", "VIP"],
        contacts=[
            {"email": "Kept@Example.com", "first_name": "Kim", "last_name": "Keeper",
             "permission_to_send": "explicit", "job_title": "Buyer"},
            {"email": "gone@example.com", "first_name": "Gina",
             "permission_to_send": "unsubscribed"},
        ],
    )


def _import(api: httpx.Client, rows: list[Any], list_ids: list[str]) -> httpx.Response:
    return api.post("/activities/contacts_json_import",
                    json={"import_data": rows, "list_ids": list_ids})


def _completed(api: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "initialized"
    activity: dict[str, Any] = api.get(f"/activities/{response.json()['activity_id']}").json()
    assert activity["state"] == "completed"
    return activity


def test_new_existing_and_unsubscribed_contacts(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    newsletter = seeded.lists["Newsletter"]
    activity = _completed(api, _import(api, [
        {"email": "new@example.com", "first_name": "Nia"},
        {"email": "KEPT@example.com", "first_name": "Kimberly"},
        {"email": "Gone@Example.com", "last_name": "Gone"},
    ], [newsletter]))

    assert activity["status"] == {
        "items_total_count": 3, "person_count": 3, "error_count": 0, "correctable_count": 0,
        "cannot_add_to_list_count": 1,
    }
    assert activity["percent_done"] == 100
    assert emu.control.list_members(newsletter) == {"new@example.com", "kept@example.com"}
    by_email = {c["email"].lower(): c for c in emu.control.contacts()}
    assert len(by_email) == 3  # matched case-insensitively: nobody duplicated
    assert by_email["new@example.com"]["permission_to_send"] == "implicit"
    kept = by_email["kept@example.com"]
    assert kept["permission_to_send"] == "explicit"  # an import never changes permission
    # Partial update: only first_name was sent; last_name and job_title stay.
    assert (kept["first_name"], kept["last_name"], kept["job_title"]) == (
        "Kimberly", "Keeper", "Buyer")
    gone = by_email["gone@example.com"]
    assert gone["permission_to_send"] == "unsubscribed"
    assert gone["list_ids"] == []
    assert gone["last_name"] == "Gone"


def test_invalid_rows_are_counted_and_described(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    # Strict: an unknown custom field fails its row (Constant Contact would ignore the key).
    emu.control.set_config(strict_custom_fields=True)
    rows: list[Any] = [
        {"email": "ok@example.com", "cf:tier": "gold"},
        {"email": "bad@"},
        {"first_name": "No Email"},
        {"email": "x" * 40 + "@example.com"},
        {"email": "long@example.com", "first_name": "F" * 51},
        {"email": "cf@example.com", "cf:unknown": "1"},
        {"email": "bday@example.com", "birthday_month": 13, "birthday_day": 1},
        {"email": "anniv@example.com", "anniversary": "2024-02-30x"},
        {"email": "typo@example.com", "frist_name": "Ann"},
        "not an object",
        {"email": "dates@example.com", "birthday_month": 2, "birthday_day": 29,
         "anniversary": "7/4/2020"},
    ]
    activity = _completed(api, _import(api, rows, [seeded.lists["VIP"]]))
    assert activity["status"]["items_total_count"] == 11
    assert activity["status"]["person_count"] == 2
    assert activity["status"]["correctable_count"] == 5
    assert activity["status"]["error_count"] == 4
    # Constant Contact names no rows: free text, the counts say how many.
    assert len(activity["activity_errors"]) == 2
    assert activity["activity_errors"][0].startswith("5 contact(s)")
    assert activity["activity_errors"][1].startswith("4 contact(s)")
    assert names_no_row(activity)
    assert rejected(emu, activity) == [
        "Row 2 (bad@): invalid email address",
        "Row 3: no email address or SMS number",
        f"Row 4 ({'x' * 40}@example.com): email address longer than 50 characters",
        "Row 5 (long@example.com): first_name longer than 50 characters",
        "Row 6 (cf@example.com): custom field 'cf:unknown' does not exist in the account",
        "Row 7 (bday@example.com): birthday_month and birthday_day must both be given as "
        "1-12 and 1-31",
        "Row 8 (anniv@example.com): anniversary is not in a supported date format",
        "Row 9 (typo@example.com): unknown field 'frist_name'",
        "Row 10: not a JSON object",
    ]
    assert emu.control.list_members(seeded.lists["VIP"]) == {"ok@example.com",
                                                             "dates@example.com"}
    ok = next(c for c in emu.control.contacts() if c["email"] == "ok@example.com")
    assert ok["cf:tier"] == "gold"


def test_more_than_25_custom_fields_is_an_error(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    names = [f"f{i}" for i in range(26)]
    result = emu.control.seed(custom_fields=names, lists=["L"])
    row = {"email": "many@example.com", **{f"cf:{n}": "v" for n in names}}
    activity = _completed(api, _import(api, [row], [result.lists["L"]]))
    assert activity["status"]["error_count"] == 1
    assert rejected(emu, activity) == ["Row 1 (many@example.com): more than 25 custom fields"]


def test_duplicate_email_in_one_payload_last_row_wins(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    activity = _completed(api, _import(api, [
        {"email": "dup@example.com", "first_name": "First", "last_name": "Only-In-First"},
        {"email": "DUP@example.com", "first_name": "Second"},
    ], [seeded.lists["VIP"]]))
    assert activity["status"]["person_count"] == 1
    dup = next(c for c in emu.control.contacts() if c["email"].lower() == "dup@example.com")
    assert dup["first_name"] == "Second"
    assert "last_name" not in dup
    assert dup["email"] == "DUP@example.com"


def test_request_errors_are_400_arrays(api: httpx.Client, seeded: SeedResult) -> None:
    vip = seeded.lists["VIP"]
    cases: list[tuple[Any, str]] = [
        ({"import_data": [{"email": "a@example.com"}]}, "list_ids"),
        ({"import_data": [{"email": "a@example.com"}], "list_ids": []}, "list_ids"),
        ({"import_data": [{"email": "a@example.com"}], "list_ids": [vip] * 1 + [
            f"00000000-0000-4000-8000-{i:012d}" for i in range(50)]}, "at most 50"),
        ({"import_data": [{"email": "a@example.com"}],
          "list_ids": ["00000000-0000-4000-8000-000000000000"]}, "was not found"),
        ({"import_data": [], "list_ids": [vip]}, "import_data"),
        ([1, 2], "JSON object"),
    ]
    for body, expected in cases:
        response = api.post("/activities/contacts_json_import", json=body)
        assert response.status_code == 400, body
        errors = response.json()
        assert isinstance(errors, list)
        assert set(errors[0]) == {"error_key", "error_message"}
        assert expected in errors[0]["error_message"]
    malformed = api.post("/activities/contacts_json_import", content=b'{"import_data": [',
                         headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()[0]["error_key"] == "api.malformed.json"
    wrong_type = api.post("/activities/contacts_json_import", content=b"{}",
                          headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


def test_more_than_40000_contacts_is_rejected(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    rows = [{"email": f"u{i}@x.io"} for i in range(40_001)]
    response = _import(api, rows, [seeded.lists["VIP"]])
    assert response.status_code == 400
    assert "40,001 contacts; at most 40,000" in response.json()[0]["error_message"]
    assert emu.control.state()["contacts_count"] == 2


def test_body_over_4_mb_is_cut_and_only_whole_contacts_before_the_cut_import(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    vip = seeded.lists["VIP"]
    rows = [{"email": f"person{i:06d}@example.com", "first_name": "A" * 40, "last_name": "B" * 40}
            for i in range(38_000)]
    body = orjson.dumps({"list_ids": [vip], "import_data": rows})
    assert len(body) > 4_000_000
    # Every row serialises to the same length, so the contacts that end before byte 4,000,000
    # (the ones the real service keeps) can be counted exactly.
    start = body.index(b'"import_data":[') + len(b'"import_data":[')
    row_length = len(orjson.dumps(rows[0]))
    kept = (4_000_000 - start - row_length) // (row_length + 1) + 1
    response = api.post("/activities/contacts_json_import", content=body,
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 201  # silently: nothing in the response says so
    activity = _completed(api, response)
    assert activity["status"]["items_total_count"] == activity["status"]["person_count"]
    assert activity["status"]["person_count"] == kept < len(rows)
    members = emu.control.list_members(vip)
    assert "person000000@example.com" in members
    assert f"person{kept - 1:06d}@example.com" in members
    assert f"person{kept:06d}@example.com" not in members

    record = next(r for r in emu.control.requests() if r.path.endswith("contacts_json_import"))
    assert record.truncated is True
    assert record.request_bytes == len(body)
    assert record.imported_bytes == 4_000_000
    (truncation,) = emu.control.state()["truncations"]
    assert truncation["received_bytes"] == len(body)
    assert truncation["activity_id"] == activity["activity_id"]
    assert truncation["contacts_kept"] == activity["status"]["person_count"]


def test_truncation_that_cuts_list_ids_is_a_400(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    emu.control.set_config(max_body_bytes=1_000)
    rows = [{"email": f"p{i}@example.com"} for i in range(100)]
    response = _import(api, rows, [seeded.lists["VIP"]])  # list_ids come after import_data
    assert response.status_code == 400
    assert "list_ids" in response.json()[0]["error_message"]
    assert emu.control.requests()[-1].truncated is True


def test_queued_activity_limit_is_a_429(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    emu.control.set_config(max_queued_activities=2, activity_seconds=60)
    rows = [{"email": "q@example.com"}]
    assert _import(api, rows, [seeded.lists["VIP"]]).status_code == 201
    assert _import(api, rows, [seeded.lists["VIP"]]).status_code == 201
    response = _import(api, rows, [seeded.lists["VIP"]])
    assert response.status_code == 429
    assert "1,000" not in response.json()["error_message"]
    assert "2 queued activities" in response.json()["error_message"]


def test_the_email_rule_is_lenient_by_default_and_strict_on_request(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    # Lenient is support's description of what Constant Contact takes: dots, quotes and
    # non-ASCII pass; spaces, commas, brackets, a second @ or a bare domain do not.
    rows = [{"email": "first..last@example.com"}, {"email": "zoë+news@example.com"},
            {"email": "a b@example.com"}, {"email": "a@b@example.com"}, {"email": "a@example"}]
    lenient = _completed(api, _import(api, rows, [seeded.lists["VIP"]]))
    assert (lenient["status"]["person_count"], lenient["status"]["correctable_count"]) == (2, 3)
    emu.control.set_config(email_rule="strict")
    strict = _completed(api, _import(api, [{"email": "other..x@example.com"},
                                           {"email": "fine+tag@example.com"}],
                                     [seeded.lists["VIP"]]))
    assert (strict["status"]["person_count"], strict["status"]["correctable_count"]) == (1, 1)
    assert rejected(emu, strict) == ["Row 1 (other..x@example.com): invalid email address"]
    assert emu.control.config().email_rule == "strict"
    emu.control.reset()
    assert emu.control.config().email_rule == "lenient"
