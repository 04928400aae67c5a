"""Activities advance initialized -> processing -> completed with the clock; injected failures."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import FakeClock, api_client, tokens


@pytest.fixture
def list_id(emu: EmulatorServer, api: httpx.Client) -> str:
    return emu.control.seed(lists=["Newsletter"]).lists["Newsletter"]


def _start_import(api: httpx.Client, list_id: str, email: str = "a@example.com") -> str:
    response = api.post("/activities/contacts_json_import",
                        json={"import_data": [{"email": email}], "list_ids": [list_id]})
    assert response.status_code == 201
    activity_id: str = response.json()["activity_id"]
    return activity_id


def _activity(api: httpx.Client, activity_id: str) -> dict[str, Any]:
    response = api.get(f"/activities/{activity_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_states_follow_the_clock_and_effects_wait_for_completion(
    emu: EmulatorServer, api: httpx.Client, clock: FakeClock, list_id: str
) -> None:
    emu.control.set_config(activity_seconds=10)
    activity_id = _start_import(api, list_id)
    first = _activity(api, activity_id)
    assert (first["state"], first["percent_done"]) == ("initialized", 0)
    assert "started_at" not in first
    assert first["_links"] == {"self": {"href": f"/v3/activities/{activity_id}"}}

    clock.advance(6)  # initialized for 2 s, then processing for 8 s
    middle = _activity(api, activity_id)
    assert middle["state"] == "processing"
    assert middle["percent_done"] == 50
    assert emu.control.list_members(list_id) == set()  # nothing applied yet

    clock.advance(4)
    done = _activity(api, activity_id)
    assert (done["state"], done["percent_done"]) == ("completed", 100)
    assert done["completed_at"] == "2027-01-15T08:00:10.000Z"
    assert emu.control.list_members(list_id) == {"a@example.com"}


@pytest.mark.parametrize("outcome", ["failed", "timed_out"])
def test_injected_failure_applies_nothing(
    emu: EmulatorServer, api: httpx.Client, list_id: str, outcome: str
) -> None:
    if outcome == "failed":
        emu.control.fail_activity()
    else:
        emu.control.time_out_activity()
    bad = _activity(api, _start_import(api, list_id, "lost@example.com"))
    assert bad["state"] == outcome
    assert bad["activity_errors"]
    assert emu.control.contacts() == []
    good = _activity(api, _start_import(api, list_id, "kept@example.com"))  # only the next one
    assert good["state"] == "completed"
    assert emu.control.list_members(list_id) == {"kept@example.com"}


def test_activity_faults_can_target_other_kinds(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    emu.control.fail_activity(kind="contact_exports")
    assert _activity(api, _start_import(api, list_id))["state"] == "completed"
    export = api.post("/activities/contact_exports", json={}).json()
    assert _activity(api, export["activity_id"])["state"] == "failed"


def test_list_activities_newest_first_with_state_filter_and_paging(
    emu: EmulatorServer, api: httpx.Client, clock: FakeClock, list_id: str
) -> None:
    ids = [_start_import(api, list_id, f"p{i}@example.com") for i in range(3)]
    emu.control.set_config(activity_seconds=100)
    pending = _start_import(api, list_id, "late@example.com")
    clock.advance(1)

    listing = api.get("/activities", params={"limit": 2}).json()
    assert [a["activity_id"] for a in listing["activities"]] == [pending, ids[2]]
    nxt = listing["_links"]["next"]["href"]
    assert nxt.startswith("/v3/activities?cursor=")
    rest = api.get(nxt.removeprefix("/v3")).json()
    assert [a["activity_id"] for a in rest["activities"]] == [ids[1], ids[0]]
    assert rest["_links"] == {}

    completed = api.get("/activities", params={"state": "completed"}).json()["activities"]
    assert {a["activity_id"] for a in completed} == set(ids)
    assert api.get("/activities", params={"state": "bogus"}).status_code == 400


def test_unknown_activity_is_404(api: httpx.Client) -> None:
    response = api.get("/activities/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()[0]["error_key"] == "activities.api.not_found"


def test_activities_are_kept_ten_days(
    emu: EmulatorServer, clock: FakeClock, list_id: str
) -> None:
    emu.control.set_config(access_token_seconds=30 * 86_400)
    with api_client(emu, tokens(emu)["access_token"]) as api:
        activity_id = _start_import(api, list_id)
        clock.advance(10 * 86_400 - 1)
        assert api.get(f"/activities/{activity_id}").status_code == 200
        clock.advance(2)
        assert api.get(f"/activities/{activity_id}").status_code == 404
