"""``PUT /contacts/{contact_id}`` (an address edit keeps the id) and ``GET /contacts``'s
``updated_after`` / ``updated_before`` filters."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from segment_export.emulator import EmulatorServer, SeedResult
from tests.emulator.helpers import FakeClock


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(lists=["A", "B"], custom_fields=["tier"], contacts=[
        {"email": "old@example.com", "first_name": "Old", "job_title": "Chef",
         "cf:tier": "gold", "lists": ["A"]},
        {"email": "taken@example.com", "lists": ["A"]},
        {"email": "quiet@example.com", "lists": ["B"]},
    ])


def test_an_address_edit_keeps_the_id_and_moves_updated_at(
    api: httpx.Client, seeded: SeedResult, clock: FakeClock
) -> None:
    contact_id = seeded.contacts["old@example.com"]
    before = api.get(f"/contacts/{contact_id}").json()
    clock.advance(60)
    edited = api.put(f"/contacts/{contact_id}", json={
        "email_address": {"address": "New@Example.com"}, "first_name": "New",
        "update_source": "Account"})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["contact_id"] == contact_id
    assert body["email_address"]["address"] == "New@Example.com"
    assert body["first_name"] == "New"
    assert "job_title" not in body  # a full replace: left out, so null
    assert body["custom_fields"] == [{"custom_field_id": seeded.custom_fields["tier"],
                                      "value": "gold"}]  # sub-resources left out are kept
    assert body["list_memberships"] == [seeded.lists["A"]]
    assert body["updated_at"] > before["updated_at"]
    assert body["created_at"] == before["created_at"]
    # The old address names nobody now; the new one names the same contact.
    assert api.get("/contacts", params={"email": "old@example.com"}).json()["contacts"] == []
    found = api.get("/contacts", params={"email": "new@example.com"}).json()["contacts"]
    assert [c["contact_id"] for c in found] == [contact_id]
    # The old address is free: a new contact may take it, under another id.
    created = api.post("/contacts", json={"email_address": {"address": "old@example.com"},
                                          "create_source": "Account"})
    assert created.status_code == 201
    assert created.json()["contact_id"] != contact_id


def test_an_edit_to_another_contacts_address_is_a_conflict(
    api: httpx.Client, seeded: SeedResult
) -> None:
    contact_id = seeded.contacts["old@example.com"]
    clash = api.put(f"/contacts/{contact_id}", json={
        "email_address": {"address": "TAKEN@example.com"}, "update_source": "Account"})
    assert clash.status_code == 409
    assert clash.json()[0]["error_key"] == "contacts.api.conflict"
    assert seeded.contacts["taken@example.com"] in clash.json()[0]["error_message"]
    assert api.get(f"/contacts/{contact_id}").json()["email_address"]["address"] == \
        "old@example.com"


def test_put_refuses_unknown_ids_and_bad_bodies(api: httpx.Client, seeded: SeedResult) -> None:
    missing = api.put("/contacts/00000000-0000-4000-8000-000000000000", json={
        "email_address": {"address": "x@example.com"}, "update_source": "Account"})
    assert missing.status_code == 404
    assert missing.json()[0]["error_key"] == "contacts.api.not_found"
    contact_id = seeded.contacts["old@example.com"]
    no_source = api.put(f"/contacts/{contact_id}", json={
        "email_address": {"address": "x@example.com"}})
    assert no_source.status_code == 400
    bad = api.put(f"/contacts/{contact_id}", json={
        "email_address": {"address": "not an address"}, "update_source": "Account"})
    assert bad.status_code == 400
    assert api.put(f"/contacts/{contact_id}", content=b"{}").status_code == 415


def test_a_deleted_contact_comes_back_with_update_source_account(
    api: httpx.Client, seeded: SeedResult
) -> None:
    contact_id = seeded.contacts["quiet@example.com"]
    assert api.delete(f"/contacts/{contact_id}").status_code == 204
    body = {"email_address": {"address": "quiet@example.com"}, "update_source": "Contact"}
    assert api.put(f"/contacts/{contact_id}", json=body).status_code == 400
    revived = api.put(f"/contacts/{contact_id}", json={**body, "update_source": "Account"})
    assert revived.status_code == 200
    assert "deleted_at" not in revived.json()
    listed = api.get("/contacts", params={"email": "quiet@example.com"}).json()["contacts"]
    assert [c["contact_id"] for c in listed] == [contact_id]


def test_updated_after_and_before_filter_by_updated_at(
    api: httpx.Client, seeded: SeedResult, clock: FakeClock
) -> None:
    start = clock.now
    clock.advance(100)
    edited = seeded.contacts["old@example.com"]
    assert api.put(f"/contacts/{edited}", json={
        "email_address": {"address": "new@example.com"}, "update_source": "Account"}
    ).status_code == 200
    clock.advance(100)

    def ids(**params: str) -> list[str]:
        page = api.get("/contacts", params={"limit": "1", **params}).json()
        out = [c["contact_id"] for c in page["contacts"]]
        while "next" in page["_links"]:  # the cursor keeps the filters
            page = api.get(page["_links"]["next"]["href"].removeprefix("/v3")).json()
            out += [c["contact_id"] for c in page["contacts"]]
        return out

    assert ids(updated_after=_iso(start + 50)) == [edited]
    assert ids(updated_after=_iso(start + 150)) == []
    assert sorted(ids(updated_before=_iso(start + 50))) == sorted(
        seeded.contacts[e] for e in ("taken@example.com", "quiet@example.com"))
    assert ids(updated_after=_iso(start + 50), updated_before=_iso(start + 150)) == [edited]
    assert ids(updated_after=_iso(start + 50), lists=seeded.lists["B"]) == []
    counted = api.get("/contacts", params={"updated_after": _iso(start + 50),
                                           "include_count": "true"}).json()
    assert counted["contacts_count"] == 1
    assert counted["contacts"][0]["email_address"]["address"] == "new@example.com"
    # A zone is required, as for the other date filters.
    assert api.get("/contacts", params={"updated_after": "2027-01-01T00:00:00"}
                   ).status_code == 400
