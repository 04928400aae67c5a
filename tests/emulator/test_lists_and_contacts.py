"""Contact lists CRUD and membership counts; contact queries with filters and cursor paging."""

from __future__ import annotations

import httpx
import pytest

from segment_export.emulator import EmulatorServer, SeedResult


def test_list_crud_and_conflicts(emu: EmulatorServer, api: httpx.Client) -> None:
    created = api.post("/contact_lists", json={"name": "Spring", "favorite": True,
                                               "description": "Seasonal"})
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["favorite"], body["description"]) == ("Spring", True, "Seasonal")
    assert "membership_count" not in body
    list_id = body["list_id"]

    duplicate = api.post("/contact_lists", json={"name": "spring"})
    assert duplicate.status_code == 409
    assert isinstance(duplicate.json(), list)

    renamed = api.put(f"/contact_lists/{list_id}", json={"name": "Summer"})
    assert renamed.status_code == 200
    assert api.get(f"/contact_lists/{list_id}").json()["name"] == "Summer"

    # An account keeps at least one list: the only one cannot go.
    last = api.delete(f"/contact_lists/{list_id}")
    assert last.status_code == 400
    assert "last list" in last.json()[0]["error_message"]
    keeper = api.post("/contact_lists", json={"name": "Keeper"}).json()["list_id"]

    deleted = api.delete(f"/contact_lists/{list_id}")
    assert deleted.status_code == 202
    assert deleted.headers["location"] == deleted.json()["_links"]["self"]["href"]
    assert api.get(deleted.headers["location"].removeprefix("/v3")).json()["state"] == "completed"
    assert "deleted_at" in api.get(f"/contact_lists/{list_id}").json()
    assert [lst["list_id"] for lst in api.get("/contact_lists").json()["lists"]] == [keeper]
    assert len(api.get("/contact_lists", params={"status": "deleted"}).json()["lists"]) == 1
    assert api.delete(f"/contact_lists/{keeper}").status_code == 400

    assert api.post("/contact_lists", json={"favorite": True}).status_code == 400
    assert api.get("/contact_lists/00000000-0000-4000-8000-000000000000").status_code == 404


def test_list_limit_per_account(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.set_config(max_lists=2)
    assert api.post("/contact_lists", json={"name": "a"}).status_code == 201
    assert api.post("/contact_lists", json={"name": "b"}).status_code == 201
    assert api.post("/contact_lists", json={"name": "c"}).status_code == 400


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(
        lists=["A", "B"],
        contacts=[
            *({"email": f"a{i}@example.com", "lists": ["A"]} for i in range(7)),
            {"email": "Both@Example.com", "lists": ["A", "B"], "home_phone": "555-1",
             "city": "Paris"},
            {"email": "off@example.com", "lists": ["A"], "permission_to_send": "unsubscribed"},
        ],
    )


def test_membership_counts(api: httpx.Client, seeded: SeedResult) -> None:
    lists = api.get("/contact_lists", params={"include_membership_count": "all",
                                              "include_count": "true"}).json()
    assert lists["lists_count"] == 2
    counts = {x["name"]: x["membership_count"] for x in lists["lists"]}
    assert counts == {"A": 9, "B": 1}
    one = api.get(f"/contact_lists/{seeded.lists['A']}",
                  params={"include_membership_count": "active"}).json()
    assert one["membership_count"] == 8
    bad = api.get("/contact_lists", params={"include_membership_count": "some"})
    assert bad.status_code == 400
    assert bad.json() == [{"error_key": "contacts.api.validation.error",
                           "error_message": "include_membership_count does not have a valid "
                                            "value"}]


def test_contacts_paging_follows_next_links(api: httpx.Client, seeded: SeedResult) -> None:
    seen: list[str] = []
    page = api.get("/contacts", params={"limit": 4, "lists": seeded.lists["A"]}).json()
    pages = 1
    while True:
        seen += [c["email_address"]["address"] for c in page["contacts"]]
        nxt = page["_links"].get("next")
        if nxt is None:
            break
        assert nxt["href"].startswith("/v3/contacts?cursor=")
        page = api.get(nxt["href"].removeprefix("/v3")).json()
        pages += 1
    assert pages == 3
    assert len(seen) == len(set(seen)) == 9


def test_contact_filters(api: httpx.Client, seeded: SeedResult) -> None:
    def emails(**params: str) -> list[str]:
        body = api.get("/contacts", params=params).json()
        return [c["email_address"]["address"] for c in body["contacts"]]

    assert emails(email="BOTH@example.COM") == ["Both@Example.com"]
    assert emails(lists=seeded.lists["B"]) == ["Both@Example.com"]
    assert emails(status="unsubscribed") == ["off@example.com"]
    assert len(emails(status="active", limit="500")) == 8
    assert len(emails(status="all", limit="500")) == 9
    counted = api.get("/contacts", params={"status": "active", "include_count": "true",
                                           "limit": "1"}).json()
    assert counted["contacts_count"] == 8
    assert api.get("/contacts", params={"limit": "501"}).status_code == 400
    assert api.get("/contacts", params={"status": "gone"}).status_code == 400


def test_contact_resource_and_includes(api: httpx.Client, seeded: SeedResult) -> None:
    contact_id = seeded.contacts["both@example.com"]
    plain = api.get(f"/contacts/{contact_id}").json()
    assert plain["contact_id"] == contact_id
    assert plain["email_address"]["address"] == "Both@Example.com"
    assert plain["email_address"]["permission_to_send"] == "implicit"
    assert "list_memberships" not in plain
    full = api.get(f"/contacts/{contact_id}",
                   params={"include": "list_memberships,phone_numbers,street_addresses"}).json()
    assert sorted(full["list_memberships"]) == sorted([seeded.lists["A"], seeded.lists["B"]])
    assert full["phone_numbers"] == [{"phone_number": "555-1", "kind": "home"}]
    assert full["street_addresses"] == [{"kind": "home", "city": "Paris"}]
    off = api.get(f"/contacts/{seeded.contacts['off@example.com']}").json()
    assert off["email_address"]["opt_out_source"] == "Contact"
    missing = api.get("/contacts/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert missing.json()[0]["error_key"] == "contacts.api.not_found"


def test_unknown_path_and_method_answer_like_the_api(api: httpx.Client) -> None:
    assert api.get("/nothing_here").json()[0]["error_key"] == "not_found"
    response = api.patch("/contacts")
    assert response.status_code == 405
    assert response.json()[0]["error_key"] == "method_not_allowed"
