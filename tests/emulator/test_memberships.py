"""add_list_memberships / remove_list_memberships: by contact id, limits, never an unsubscribe."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer, SeedResult
from tests.emulator.helpers import FakeClock, api_client, tokens


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(
        lists=["A", "B"],
        contacts=[
            {"email": "one@example.com", "lists": ["A"]},
            {"email": "two@example.com", "lists": ["A", "B"]},
            {"email": "off@example.com", "permission_to_send": "unsubscribed"},
        ],
    )


def _run(api: httpx.Client, path: str, body: Any) -> dict[str, Any]:
    response = api.post(f"/activities/{path}", json=body)
    assert response.status_code == 201, response.text
    activity: dict[str, Any] = api.get(f"/activities/{response.json()['activity_id']}").json()
    assert activity["state"] == "completed"
    return activity


def test_add_by_contact_ids_skips_unsubscribed(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    ids = seeded.contacts
    activity = _run(api, "add_list_memberships", {
        "source": {"contact_ids": [ids["one@example.com"], ids["off@example.com"],
                                   "00000000-0000-4000-8000-000000000000"]},
        "list_ids": [seeded.lists["B"]],
    })
    assert emu.control.list_members(seeded.lists["B"]) == {"one@example.com", "two@example.com"}
    assert activity["status"] == {"items_total_count": 3, "items_completed_count": 1,
                                  "list_count": 1}
    assert len(activity["activity_errors"]) == 2


def test_add_from_lists_and_all_active(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    new = api.post("/contact_lists", json={"name": "C"}).json()["list_id"]
    _run(api, "add_list_memberships",
         {"source": {"list_ids": [seeded.lists["B"]]}, "list_ids": [new]})
    assert emu.control.list_members(new) == {"two@example.com"}
    _run(api, "add_list_memberships", {
        "source": {"all_active_contacts": True},
        "exclude": {"contact_ids": [seeded.contacts["two@example.com"]]},
        "list_ids": [new],
    })
    assert emu.control.list_members(new) == {"one@example.com", "two@example.com"}


def test_remove_takes_members_off_the_list_only(
    emu: EmulatorServer, api: httpx.Client, seeded: SeedResult
) -> None:
    two = seeded.contacts["two@example.com"]
    # 500 ids is the documented maximum, despite the contract's maxItems: 0 (a known defect).
    filler = [f"00000000-0000-4000-8000-{i:012d}" for i in range(499)]
    activity = _run(api, "remove_list_memberships",
                    {"source": {"contact_ids": [two, *filler]}, "list_ids": [seeded.lists["A"]]})
    assert activity["status"]["items_completed_count"] == 1
    assert emu.control.list_members(seeded.lists["A"]) == {"one@example.com"}
    assert emu.control.list_members(seeded.lists["B"]) == {"two@example.com"}
    contact = next(c for c in emu.control.contacts() if c["contact_id"] == two)
    assert contact["permission_to_send"] == "implicit"  # removed from a list, not unsubscribed


@pytest.mark.parametrize("path", ["add_list_memberships", "remove_list_memberships"])
def test_limits_500_contact_ids_and_50_lists(
    api: httpx.Client, seeded: SeedResult, path: str
) -> None:
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(501)]
    too_many_contacts = api.post(f"/activities/{path}", json={
        "source": {"contact_ids": ids}, "list_ids": [seeded.lists["A"]]})
    assert too_many_contacts.status_code == 400
    assert "at most 500" in too_many_contacts.json()[0]["error_message"]
    too_many_lists = api.post(f"/activities/{path}", json={
        "source": {"contact_ids": ids[:1]}, "list_ids": ids[:51]})
    assert too_many_lists.status_code == 400
    assert "at most 50" in too_many_lists.json()[0]["error_message"]
    two_sources = api.post(f"/activities/{path}", json={
        "source": {"contact_ids": ids[:1], "all_active_contacts": True},
        "list_ids": [seeded.lists["A"]]})
    assert two_sources.status_code == 400


def test_unknown_target_list(api: httpx.Client, seeded: SeedResult) -> None:
    body = {"source": {"contact_ids": [seeded.contacts["one@example.com"]]},
            "list_ids": ["00000000-0000-4000-8000-000000000000"]}
    assert api.post("/activities/add_list_memberships", json=body).status_code == 400
    assert api.post("/activities/remove_list_memberships", json=body).status_code == 404


def test_remove_sources_since_2024_06(emu: EmulatorServer, clock: FakeClock) -> None:
    # new_subscriber, engagement_level, tag_ids (and exclude with list/all sources).
    old = emu.control.seed(lists=["T"], contacts=[{"email": "old@example.com", "lists": ["T"]}])
    clock.advance(31 * 86_400)
    api = api_client(emu, tokens(emu)["access_token"])
    seeded = emu.control.seed(
        tags=["VIP"],
        contacts=[
            {"email": "new@example.com", "lists": ["T"], "engagement_level": "high"},
            {"email": "tagged@example.com", "lists": ["T"], "tags": ["VIP"]},
            {"email": "low@example.com", "lists": ["T"], "engagement_level": "low"},
        ],
    )
    target = old.lists["T"]

    def remove(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return _run(api, "remove_list_memberships",
                    {"source": source, "list_ids": [target], **extra})

    everyone = {"old@example.com", "new@example.com", "tagged@example.com", "low@example.com"}
    assert emu.control.list_members(target) == everyone
    remove({"tag_ids": [seeded.tags["VIP"]]})
    assert emu.control.list_members(target) == everyone - {"tagged@example.com"}
    remove({"engagement_level": "HIGH"})  # matched without regard to case ⚠
    assert emu.control.list_members(target) == {"old@example.com", "low@example.com"}
    remove({"new_subscriber": True})  # created in the last 30 days
    assert emu.control.list_members(target) == {"old@example.com"}
    remove({"all_active_contacts": True},
           exclude={"contact_ids": [old.contacts["old@example.com"]]})
    assert emu.control.list_members(target) == {"old@example.com"}
    # exclude goes only with list_ids / all_active_contacts; new_subscriber is remove-only.
    bad = api.post("/activities/remove_list_memberships", json={
        "source": {"new_subscriber": True}, "list_ids": [target],
        "exclude": {"contact_ids": [old.contacts["old@example.com"]]}})
    assert bad.status_code == 400
    add = api.post("/activities/add_list_memberships", json={
        "source": {"new_subscriber": True}, "list_ids": [target]})
    assert add.status_code == 400
    assert "not a known source" in add.json()[0]["error_message"]
    assert emu.control.seed().tags == {"VIP": seeded.tags["VIP"]}
    api.close()
