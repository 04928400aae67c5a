"""Deleted contacts persist: DELETE marks them, a create answers 409, an import re-activates
them, GET /contacts hides them unless asked; POST /contacts creates one contact."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer, SeedResult


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(
        lists=["A", "B"],
        contacts=[
            {"email": "keep@example.com", "lists": ["A"]},
            {"email": "Gone@Example.com", "first_name": "Gina", "lists": ["A", "B"],
             "permission_to_send": "explicit"},
            {"email": "off@example.com", "permission_to_send": "unsubscribed"},
        ],
    )


def _completed(api: httpx.Client, path: str, body: Any) -> dict[str, Any]:
    response = api.post(f"/activities/{path}", json=body)
    assert response.status_code == 201, response.text
    activity: dict[str, Any] = api.get(f"/activities/{response.json()['activity_id']}").json()
    assert activity["state"] == "completed"
    return activity


def _emails(api: httpx.Client, **params: str) -> set[str]:
    contacts = api.get("/contacts", params=params).json()["contacts"]
    return {c["email_address"]["address"].lower() for c in contacts}


def test_delete_marks_the_contact_deleted_and_takes_it_off_every_list(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    gone = seeded.contacts["gone@example.com"]
    assert api.delete(f"/contacts/{gone}").status_code == 204
    assert emu.control.list_members(seeded.lists["A"]) == {"keep@example.com"}
    assert emu.control.list_members(seeded.lists["B"]) == set()
    # Hidden by default and from every status but deleted/all (the contract's default).
    assert _emails(api) == {"keep@example.com", "off@example.com"}
    assert _emails(api, status="active") == {"keep@example.com"}
    assert _emails(api, status="explicit") == set()
    assert _emails(api, email="gone@example.com") == set()
    assert _emails(api, status="deleted") == {"gone@example.com"}
    assert _emails(api, status="all") == {"keep@example.com", "gone@example.com",
                                          "off@example.com"}
    assert _emails(api, status="deleted", email="GONE@example.com") == {"gone@example.com"}
    # The contact itself is still there, with the contract's deleted_at (a date) and opt-out.
    body = api.get(f"/contacts/{gone}").json()
    assert len(body["deleted_at"]) == 10
    assert body["email_address"]["opt_out_source"] == "Account"
    assert body["email_address"]["permission_to_send"] == "explicit"
    assert api.delete(f"/contacts/{gone}").status_code == 404  # already deleted
    assert api.delete("/contacts/00000000-0000-4000-8000-000000000000").status_code == 404
    # Not in a default export, nor an active one; "removed" is the deleted ones ⚠.
    export = _completed(api, "contact_exports", {"fields": ["email_address"]})
    csv = api.get(export["_links"]["results"]["href"].removeprefix("/v3")).text
    assert "Gone@Example.com" not in csv
    removed = _completed(api, "contact_exports", {"status": "removed",
                                                  "fields": ["email_address"]})
    csv = api.get(removed["_links"]["results"]["href"].removeprefix("/v3")).text
    assert csv.splitlines()[1:] == [f"{gone},Gone@Example.com"]
    # A deleted contact is not added to a list by id, nor by all_active_contacts.
    added = _completed(api, "add_list_memberships", {
        "source": {"contact_ids": [gone]}, "list_ids": [seeded.lists["B"]]})
    assert added["status"]["items_completed_count"] == 0
    assert "deleted" in added["activity_errors"][0]
    _completed(api, "add_list_memberships", {
        "source": {"all_active_contacts": True}, "list_ids": [seeded.lists["B"]]})
    assert emu.control.list_members(seeded.lists["B"]) == {"keep@example.com"}


def test_creating_a_deleted_contact_is_a_conflict(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    gone = seeded.contacts["gone@example.com"]
    api.delete(f"/contacts/{gone}")
    conflict = api.post("/contacts", json={
        "email_address": {"address": "gone@EXAMPLE.com"}, "create_source": "Account"})
    assert conflict.status_code == 409
    assert conflict.json() == [{"error_key": "contacts.api.conflict",
                                "error_message": "Validation failed: Email already exists "
                                f"for contact {gone}"}]


def test_an_import_reactivates_a_deleted_contact_keeping_its_permission(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    gone, off = seeded.contacts["gone@example.com"], seeded.contacts["off@example.com"]
    api.delete(f"/contacts/{gone}")
    api.delete(f"/contacts/{off}")
    activity = _completed(api, "contacts_json_import", {
        "import_data": [{"email": "gone@example.com", "last_name": "Back"},
                        {"email": "off@example.com"}],
        "list_ids": [seeded.lists["B"]]})
    # Re-activated, same contact, permission untouched (an import never changes it), so the
    # one unsubscribed before its deletion stays unsubscribed and off the list.
    assert activity["status"]["person_count"] == 2
    assert activity["status"]["cannot_add_to_list_count"] == 1
    assert emu.control.list_members(seeded.lists["B"]) == {"gone@example.com"}
    body = api.get(f"/contacts/{gone}").json()
    assert "deleted_at" not in body
    assert (body["first_name"], body["last_name"]) == ("Gina", "Back")
    assert body["email_address"]["permission_to_send"] == "explicit"
    assert _emails(api, status="deleted") == set()
    assert _emails(api, status="unsubscribed") == {"off@example.com"}


def test_post_contacts_creates_one_contact(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    created = api.post("/contacts", json={
        "email_address": {"address": "new@example.com", "permission_to_send": "explicit"},
        "first_name": "Nia", "create_source": "Contact",
        "list_memberships": [seeded.lists["A"]]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["email_address"]["permission_to_send"] == "explicit"
    assert body["list_memberships"] == [seeded.lists["A"]]
    assert "new@example.com" in emu.control.list_members(seeded.lists["A"])
    assert api.post("/contacts", json={
        "email_address": {"address": "keep@example.com"}, "create_source": "Account",
    }).status_code == 409
    for bad in ({"email_address": {"address": "x@example.com"}},  # no create_source
                {"first_name": "Only", "create_source": "Account"},  # nothing to key it by ⚠
                {"email_address": {"address": "not an email"}, "create_source": "Account"}):
        assert api.post("/contacts", json=bad).status_code == 400
