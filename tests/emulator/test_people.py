"""What people do in the account, through control endpoints: unsubscribe (off every list, and
no import adds them back) and add contacts to a list by hand."""

from __future__ import annotations

import httpx

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import FakeClock


def test_an_unsubscribe_leaves_every_list_and_an_import_does_not_re_add(
        emu: EmulatorServer, api: httpx.Client, clock: FakeClock) -> None:
    control = emu.control
    lists = control.seed(lists=["A", "B"]).lists
    control.seed(contacts=[{"email": "Ann@Example.com", "lists": ["A", "B"]},
                           {"email": "bob@example.com", "lists": ["A"]}])
    assert control.unsubscribe(["ann@example.com", "nobody@example.com"]) == ["ann@example.com"]
    assert control.list_members(lists["A"]) == {"bob@example.com"}
    assert control.list_members(lists["B"]) == set()
    ann = next(c for c in control.contacts() if c["email"] == "Ann@Example.com")
    assert ann["permission_to_send"] == "unsubscribed"

    created = api.post("/activities/contacts_json_import", json={
        "import_data": [{"email": "ann@example.com"}], "list_ids": [lists["A"]]})
    assert created.status_code == 201
    clock.advance(60)
    done = api.get(f"/activities/{created.json()['activity_id']}").json()
    assert done["state"] == "completed"
    assert done["status"]["cannot_add_to_list_count"] == 1
    assert control.list_members(lists["A"]) == {"bob@example.com"}


def test_adding_by_hand_creates_missing_contacts_and_skips_unsubscribed(
        emu: EmulatorServer) -> None:
    control = emu.control
    list_id = control.seed(lists=["A"]).lists["A"]
    control.seed(contacts=[{"email": "gone@example.com", "permission_to_send": "unsubscribed"},
                           {"email": "kept@example.com", "first_name": "Kept"}])
    added = control.add_by_hand(list_id, ["new@example.com", "Kept@example.com",
                                          "gone@example.com"])
    assert added == ["new@example.com", "kept@example.com"]
    assert control.list_members(list_id) == {"new@example.com", "kept@example.com"}
    contacts = {c["email"]: c for c in control.contacts()}
    assert contacts["new@example.com"]["permission_to_send"] == "implicit"
    assert contacts["kept@example.com"]["first_name"] == "Kept"  # left as it was
    assert "list_ids" in contacts["gone@example.com"]
    assert contacts["gone@example.com"]["list_ids"] == []
