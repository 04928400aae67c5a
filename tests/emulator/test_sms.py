"""SMS (2025-02 / 2025-05): SMS numbers and consent in imports, SMS-only contacts, the
contact's sms_channel, SMS columns in exports when asked for."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import rejected


@pytest.fixture
def list_id(emu: EmulatorServer, api: httpx.Client) -> str:
    return emu.control.seed(lists=["Texts"]).lists["Texts"]


def _import(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/activities/contacts_json_import", json=body)
    assert response.status_code == 201, response.text
    activity: dict[str, Any] = api.get(f"/activities/{response.json()['activity_id']}").json()
    assert activity["state"] == "completed"
    return activity


def _by_number(api: httpx.Client) -> dict[str, dict[str, Any]]:
    contacts = api.get("/contacts", params={"limit": "500"}).json()["contacts"]
    return {c["sms_channel"]["sms_address"]: c for c in contacts if "sms_channel" in c}


def test_sms_numbers_consent_and_sms_only_contacts(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    activity = _import(api, {
        "import_data": [
            {"email": "both@example.com", "sms_number": "617-555-0101",
             "sms_consent_date": "07-03-2024"},
            {"sms_number": "6175550102", "sms_consent_date": "2024-07-03", "first_name": "Sam"},
            {"sms_number": "+16175550103", "sms_consent_date": "2024-07-03"},  # not a US form
            {"sms_number": "6175550104"},  # explicit needs a consent date
            {"first_name": "Nobody"},
        ],
        "list_ids": [list_id], "sms_permission_to_send": "explicit"})
    assert activity["status"]["person_count"] == 2
    assert activity["status"]["correctable_count"] == 2
    assert activity["status"]["error_count"] == 1
    assert rejected(emu, activity) == [
        "Row 3: sms_number is not a US number (1231231234 or 123-123-1234)",
        "Row 4: sms_consent_date is required when sms_permission_to_send is explicit",
        "Row 5: no email address or SMS number",
    ]
    contacts = _by_number(api)
    assert set(contacts) == {"6175550101", "6175550102"}
    both, sms_only = contacts["6175550101"], contacts["6175550102"]
    assert both["email_address"]["address"] == "both@example.com"
    assert "email_address" not in sms_only  # an SMS-only contact has no email
    assert sms_only["first_name"] == "Sam"
    channel = sms_only["sms_channel"]
    assert (channel["dial_code"], channel["country_code"]) == ("1", "US")
    assert channel["sms_channel_consents"][0]["sms_consent_permission"] == "explicit"
    assert channel["sms_channel_consents"][0]["consent_type"] == "promotional_sms"
    # Both are on the list (list_members shows emails only).
    members = api.get("/contacts", params={"lists": list_id}).json()["contacts"]
    assert len(members) == 2
    assert emu.control.list_members(list_id) == {"both@example.com"}


def test_sms_only_rows_are_matched_by_number_and_consent_is_not_lowered(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    _import(api, {"import_data": [{"sms_number": "6175550102", "sms_consent_date": "1/2/2024"}],
                  "list_ids": [list_id], "sms_permission_to_send": "explicit"})
    again = _import(api, {"import_data": [{"sms_number": "617-555-0102", "last_name": "Lee"}],
                          "list_ids": [list_id]})  # sms_permission_to_send left out: not_set
    assert again["status"]["person_count"] == 1
    (contact,) = _by_number(api).values()
    assert contact["last_name"] == "Lee"
    assert contact["sms_channel"]["sms_channel_consents"][0]["sms_consent_permission"] == (
        "explicit")  # not_set does not take back an explicit consent ⚠
    # The number's email-less contact takes the email a later row gives it.
    _import(api, {"import_data": [{"email": "lee@example.com", "sms_number": "6175550102"}],
                  "list_ids": [list_id]})
    (contact,) = _by_number(api).values()
    assert contact["email_address"]["address"] == "lee@example.com"
    assert len(emu.control.contacts()) == 1
    assert api.post("/activities/contacts_json_import", json={
        "import_data": [{"email": "x@example.com"}], "list_ids": [list_id],
        "sms_permission_to_send": "implicit"}).status_code == 400


def test_exports_carry_sms_fields_only_when_asked(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    _import(api, {"import_data": [
        {"email": "both@example.com", "sms_number": "6175550101", "sms_consent_date": "7/3/2024"},
        {"sms_number": "6175550102", "sms_consent_date": "7/3/2024"},
        {"email": "mail@example.com"}],
        "list_ids": [list_id], "sms_permission_to_send": "explicit"})

    def export(body: dict[str, Any]) -> list[str]:
        done = _run_export(api, body)
        return api.get(done["_links"]["results"]["href"].removeprefix("/v3")).text.splitlines()

    default = export({"list_ids": [list_id]})
    assert "sms_number" not in default[0]
    rows = export({"list_ids": [list_id], "fields": ["email_address", "sms_number",
                                                     "sms_permission", "sms_consent_date"]})
    assert rows[0] == "contact_id,email_address,sms_number,sms_permission,sms_consent_date"
    cells = sorted(r.split(",")[1:] for r in rows[1:])
    assert cells == [["", "6175550102", "explicit", "7/3/2024"],
                     ["both@example.com", "6175550101", "explicit", "7/3/2024"],
                     ["mail@example.com", "", "", ""]]


def _run_export(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/activities/contact_exports", json=body)
    assert response.status_code == 201, response.text
    done: dict[str, Any] = api.get(f"/activities/{response.json()['activity_id']}").json()
    assert done["state"] == "completed"
    return done
