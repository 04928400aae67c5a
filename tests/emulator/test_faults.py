"""Injected faults: status answers, slow answers and lost connections, before or after the
request is processed; and the request log that shows them."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from segment_export.emulator import EmulatorServer
from segment_export.emulator.errors import ControlError
from tests.emulator.helpers import APP, CLIENT_ID, CLIENT_SECRET, HTTP, get_code

IMPORT = "/activities/contacts_json_import"


@pytest.fixture
def list_id(emu: EmulatorServer, api: httpx.Client) -> str:
    return emu.control.seed(lists=["L"]).lists["L"]


def _import(api: httpx.Client, list_id: str, email: str) -> httpx.Response:
    return api.post(IMPORT, json={"import_data": [{"email": email}], "list_ids": [list_id]})


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"error_key": "throttled", "error_message": "Too Many Requests"}),
        (500, [{"error_key": "server_error",
                "error_message": "There was a problem with our internal service."}]),
        (503, [{"error_key": "service_unavailable",
                "error_message": "Our internal service is temporarily unavailable."}]),
    ],
)
def test_status_fault_before_processing(
    emu: EmulatorServer, api: httpx.Client, list_id: str, status: int, body: object
) -> None:
    emu.control.inject_fault(kind="status", status=status, count=2)
    for _ in range(2):
        response = _import(api, list_id, "x@example.com")
        assert response.status_code == status
        assert response.json() == body
    assert emu.control.contacts() == []  # not processed
    assert _import(api, list_id, "x@example.com").status_code == 201  # the faults are used up
    faults = [r.fault for r in emu.control.requests() if r.path.endswith("contacts_json_import")]
    assert faults == [f"status:{status}", f"status:{status}", None]


def test_status_fault_after_processing_loses_only_the_answer(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    emu.control.inject_fault(kind="status", status=503, when="after")
    assert _import(api, list_id, "done@example.com").status_code == 503
    api.get("/contact_lists")  # any read lets the accepted activity complete
    assert emu.control.list_members(list_id) == {"done@example.com"}


def test_faults_match_path_prefix_and_method(emu: EmulatorServer, api: httpx.Client,
                                             list_id: str) -> None:
    emu.control.inject_fault(kind="status", status=500, path_prefix="/v3/activities",
                             method="POST")
    assert api.get("/contact_lists").status_code == 200
    assert api.get("/activities").status_code == 200
    assert _import(api, list_id, "p@example.com").status_code == 500


def test_slow_fault(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.inject_fault(kind="slow", delay=0.3)
    started = time.perf_counter()
    assert api.get("/contact_lists").status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    api.get("/contact_lists")
    assert time.perf_counter() - started < 0.3


def test_slow_fault_can_trip_a_client_timeout(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.inject_fault(kind="slow", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/contact_lists", timeout=0.1)


def test_drop_before_processing(emu: EmulatorServer, api: httpx.Client, list_id: str) -> None:
    emu.control.inject_fault(kind="drop")
    with pytest.raises(httpx.RemoteProtocolError):
        _import(api, list_id, "never@example.com")
    assert _import(api, list_id, "later@example.com").status_code == 201
    assert {c["email"] for c in emu.control.contacts()} == {"later@example.com"}
    dropped = emu.control.requests()[-2]
    assert (dropped.fault, dropped.status) == ("drop", 0)


def test_drop_after_processing(emu: EmulatorServer, api: httpx.Client, list_id: str) -> None:
    emu.control.inject_fault(kind="drop", when="after")
    with pytest.raises(httpx.RemoteProtocolError):
        _import(api, list_id, "processed@example.com")
    api.get("/contact_lists")
    assert emu.control.list_members(list_id) == {"processed@example.com"}


def test_drop_during_the_upload_cuts_the_body_short(emu: EmulatorServer, api: httpx.Client,
                                                   list_id: str) -> None:
    # 2,000 contacts (~110 KB): more than the server reads at once, so the cut is mid-body.
    rows = [{"email": f"p{i}@example.com", "first_name": "x" * 30} for i in range(2000)]
    emu.control.inject_fault(kind="drop", when="during", path_prefix="/v3" + IMPORT)
    with pytest.raises((httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        api.post(IMPORT, json={"import_data": rows, "list_ids": [list_id]})
    assert emu.control.contacts() == []  # nothing processed
    cut = emu.control.requests()[-1]
    assert (cut.fault, cut.status) == ("drop:during", 0)
    body = {"import_data": rows, "list_ids": [list_id]}
    assert 0 < cut.request_bytes < len(orjson.dumps(body))
    assert _import(api, list_id, "after@example.com").status_code == 201


def test_during_is_only_for_drops(emu: EmulatorServer) -> None:
    with pytest.raises(ControlError, match="during"):
        emu.control.inject_fault(kind="status", status=503, when="during")


def test_a_new_quota_day_restarts_the_count(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.set_config(daily_quota=2)
    assert [api.get("/contact_lists").status_code for _ in range(3)] == [200, 200, 429]
    emu.control.reset_quota()
    assert api.get("/contact_lists").status_code == 200
    assert emu.control.state()["usage_today"][CLIENT_ID] == 1


def test_drop_after_a_token_refresh_loses_the_rotated_token(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    first = HTTP.post(f"{emu.auth_url}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": get_code(emu),
        "redirect_uri": APP["redirect_uris"][0]}).json()
    emu.control.inject_fault(kind="drop", when="after", path_prefix="/oauth2")
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    with pytest.raises(httpx.RemoteProtocolError):
        HTTP.post(f"{emu.auth_url}/token", data=refresh, auth=(CLIENT_ID, CLIENT_SECRET))
    # The rotation happened on the server: retrying with the old token is a reuse.
    retry = HTTP.post(f"{emu.auth_url}/token", data=refresh, auth=(CLIENT_ID, CLIENT_SECRET))
    assert retry.json()["error"] == "invalid_grant"


def test_clear_faults(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.control.inject_fault(kind="status", status=503, count=5)
    emu.control.fail_activity(3)
    assert len(emu.control.state()["faults"]) == 1
    emu.control.clear_faults()
    assert api.get("/contact_lists").status_code == 200
    assert emu.control.state()["activity_faults"] == []


def test_request_log_records_sizes_statuses_and_keys(
    emu: EmulatorServer, api: httpx.Client, list_id: str
) -> None:
    emu.control.clear_requests()
    response = _import(api, list_id, "logged@example.com")
    api.get("/contacts", params={"limit": 5})
    HTTP.get(f"{emu.api_url}/contacts")
    first, second, third = emu.control.requests()
    assert (first.method, first.path, first.status, first.client_id) == (
        "POST", "/v3" + IMPORT, 201, CLIENT_ID)
    assert first.request_bytes == len(response.request.content)
    assert first.truncated is False
    assert (second.query, second.status) == ("limit=5", 200)
    assert (third.status, third.client_id) == (401, None)
    assert [r.seq for r in emu.control.requests(since=second.seq)] == [third.seq]
