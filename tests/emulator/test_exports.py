"""contact_exports: an activity, then a CSV at _links.results.href with contact ids and emails."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer, SeedResult
from tests.emulator.helpers import FakeClock


@pytest.fixture
def seeded(emu: EmulatorServer, api: httpx.Client) -> SeedResult:
    return emu.control.seed(
        custom_fields=["tier"],
        lists=["A", "B"],
        contacts=[
            {"email": "One@Example.com", "first_name": "Uno", "cf:tier": "gold", "lists": ["A"]},
            {"email": "two@example.com", "work_city": "Oslo", "lists": ["A", "B"]},
            {"email": "off@example.com", "permission_to_send": "unsubscribed", "lists": ["A"]},
        ],
    )


def _export(api: httpx.Client, body: dict[str, Any]) -> list[dict[str, str]]:
    created = api.post("/activities/contact_exports", json=body)
    assert created.status_code == 201, created.text
    activity = api.get(created.json()["_links"]["self"]["href"].removeprefix("/v3")).json()
    assert activity["state"] == "completed"
    href = activity["_links"]["results"]["href"]
    assert href == f"/v3/contact_exports/{activity['activity_id']}"
    response = api.get(href.removeprefix("/v3"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert activity["status"]["items_total_count"] == len(rows)
    return rows


def test_export_of_a_list_maps_emails_to_contact_ids(
    api: httpx.Client, seeded: SeedResult
) -> None:
    rows = _export(api, {"list_ids": [seeded.lists["A"]], "fields": ["email_address"]})
    assert {r["email_address"].lower(): r["contact_id"] for r in rows} == {
        "one@example.com": seeded.contacts["one@example.com"],
        "two@example.com": seeded.contacts["two@example.com"],
        "off@example.com": seeded.contacts["off@example.com"],
    }
    assert list(rows[0]) == ["contact_id", "email_address"]


def test_export_filters_and_fields(api: httpx.Client, seeded: SeedResult) -> None:
    active = _export(api, {"list_ids": [seeded.lists["A"]], "status": "active",
                           "fields": ["first_name", "email_permission", "cf:tier", "city"]})
    assert {r["email_address"] for r in active} == {"One@Example.com", "two@example.com"}
    one = next(r for r in active if r["email_address"] == "One@Example.com")
    assert list(one) == ["contact_id", "email_address", "first_name", "email_permission",
                         "cf:tier", "city"]
    assert (one["first_name"], one["email_permission"], one["cf:tier"]) == (
        "Uno", "implicit", "gold")
    unsubscribed = _export(api, {"status": "unsubscribed"})
    assert [r["email_address"] for r in unsubscribed] == ["off@example.com"]
    by_id = _export(api, {"contact_ids": [seeded.contacts["two@example.com"]],
                          "fields": ["email_lists"]})
    assert by_id[0]["email_lists"].split(";") == [seeded.lists["A"], seeded.lists["B"]]
    everyone = _export(api, {})
    assert len(everyone) == 3
    assert "cf:tier" in everyone[0]


def test_export_request_errors(api: httpx.Client, seeded: SeedResult) -> None:
    for body in ({"fields": ["no_such_column"]}, {"segment_id": 3},
                 {"contact_ids": ["x"], "list_ids": [seeded.lists["A"]]},
                 {"status": "weird"}):
        response = api.post("/activities/contact_exports", json=body)
        assert response.status_code == 400, body


def test_file_is_not_there_until_the_export_completes(
    emu: EmulatorServer, api: httpx.Client, clock: FakeClock, seeded: SeedResult
) -> None:
    emu.control.set_config(activity_seconds=5)
    activity = api.post("/activities/contact_exports", json={}).json()
    assert "results" not in activity["_links"]
    assert api.get(f"/contact_exports/{activity['activity_id']}").status_code == 404
    clock.advance(5)
    assert api.get(f"/contact_exports/{activity['activity_id']}").status_code == 200
