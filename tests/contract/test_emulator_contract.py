"""Every request and response of a representative scenario, over real HTTP against the threaded
emulator, validated against Constant Contact's official contract (../shared/reference)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from segment_export.emulator import Backend, EmulatorConfig, EmulatorServer
from tests.contract.contract import SWAGGER, Contract
from tests.emulator.helpers import (
    APP,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    SCOPE,
    TRANSPORT,
    authorize_url,
    query_of,
)
from tests.services import require


@pytest.fixture(scope="module")
def contract() -> Contract:
    require(SWAGGER.exists(), f"Constant Contact's contract at {SWAGGER}")
    return Contract.load()


class Recorder:
    """An httpx client that keeps every response (with its request) it sees."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []
        self.http = httpx.Client(transport=TRANSPORT, timeout=30,
                                 event_hooks={"response": [self._keep]})

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)


@pytest.fixture(scope="module")
def scenario() -> Iterator[tuple[EmulatorServer, list[httpx.Response]]]:
    """Run the whole scenario once; each test checks a different side of what it recorded."""
    config = EmulatorConfig(requests_per_second=1_000, token_requests_per_second=1_000)
    with EmulatorServer(backend=Backend(config)) as emu:
        recorder = Recorder()
        _run_scenario(emu, recorder.http)
        yield emu, recorder.responses


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    return response.json() if "json" in response.headers.get("content-type", "") else None


def _run_scenario(emu: EmulatorServer, http: httpx.Client) -> None:
    control = emu.control
    control.seed(
        apps=[APP],
        custom_fields=["tier"],
        lists=["Existing"],
        contacts=[{"email": "gone@example.com", "permission_to_send": "unsubscribed"}],
    )
    # OAuth: consent page, code, token, refresh.
    url = authorize_url(emu, scope=SCOPE)
    assert http.get(url).status_code == 200
    assert "Sign in" in http.get(authorize_url(emu, scope=SCOPE, prompt="login")).text
    code = query_of(control.approve_url(url))["code"]
    token = _ok(http.post(f"{emu.auth_url}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}))
    token = _ok(http.post(f"{emu.auth_url}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"]}))
    # (Replaying `code` would revoke the grant, refreshed tokens included: use an unknown one.)
    unknown = http.post(f"{emu.auth_url}/token", auth=(CLIENT_ID, CLIENT_SECRET),
                        data={"grant_type": "authorization_code", "code": "not-a-code",
                              "redirect_uri": REDIRECT_URI})
    assert unknown.status_code == 400
    api = emu.api_url
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    def get(path: str, **params: str) -> Any:
        return _ok(http.get(f"{api}{path}", params=params, headers=headers))

    def send(method: str, path: str, body: Any, status: int) -> Any:
        return _ok(http.request(method, f"{api}{path}", json=body, headers=headers), status)

    def finished(activity: dict[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = get(activity["_links"]["self"]["href"].removeprefix("/v3"))
        assert done["state"] == "completed"
        return done

    get("/account/summary", extra_fields="physical_address")
    # Typed custom fields (2025-09): create, list with types and choices, read, delete.
    send("POST", "/contact_custom_fields", {
        "label": "Loyalty tier", "type": "single_select",
        "choices": [{"choice_label": "Gold", "display_order": 1},
                    {"choice_label": "Silver", "display_order": 2}],
        "metadata": {"display_type": "dropdown"}}, 201)
    score = send("POST", "/contact_custom_fields", {
        "label": "Score", "type": "number",
        "metadata": {"decimal_places": 1, "allow_negative": True}}, 201)
    listed = get("/contact_custom_fields", limit="2")
    assert {f["type"] for f in listed["custom_fields"]} == {"single_select", "number"}
    get("/contact_custom_fields", limit="100")
    get(f"/contact_custom_fields/{score['custom_field_id']}")
    deleted = http.delete(f"{api}/contact_custom_fields/{score['custom_field_id']}",
                          headers=headers)
    assert deleted.status_code == 204
    # Lists.
    created = send("POST", "/contact_lists", {"name": "Segment: VIP", "favorite": False}, 201)
    list_id = created["list_id"]
    get("/contact_lists", include_membership_count="all", include_count="true", limit="10")
    get(f"/contact_lists/{list_id}", include_membership_count="active")
    send("PUT", f"/contact_lists/{list_id}", {"name": "Segment: VIP customers"}, 200)
    # Import, with a custom field, an invalid row and an unsubscribed contact.
    rows = [{"email": f"vip{i}@example.com", "first_name": "Vip", "last_name": str(i),
             "cf:tier": "gold"} for i in range(5)]
    rows += [{"email": "broken@"}, {"email": "gone@example.com"}]
    imported = finished(send("POST", "/activities/contacts_json_import",
                             {"import_data": rows, "list_ids": [list_id]}, 201))
    assert imported["status"]["cannot_add_to_list_count"] == 1
    # Contacts: paging by cursor, filters, one contact.
    page = get("/contacts", lists=list_id, limit="2", include="list_memberships,custom_fields",
               include_count="true")
    while "next" in page["_links"]:
        page = _ok(http.get(f"{emu.base_url}{page['_links']['next']['href']}", headers=headers))
    found = get("/contacts", email="VIP0@example.com", status="all")
    contact_id = found["contacts"][0]["contact_id"]
    get(f"/contacts/{contact_id}", include="list_memberships,phone_numbers,street_addresses")
    # An address edit keeps the id (PUT, a full replace); 409 for another contact's address;
    # the contacts updated since a moment.
    edited = send("PUT", f"/contacts/{contact_id}", {
        "email_address": {"address": "vip0.new@example.com"}, "first_name": "Vip",
        "update_source": "Account"}, 200)
    assert edited["contact_id"] == contact_id
    send("PUT", f"/contacts/{contact_id}", {"email_address": {"address": "vip1@example.com"},
                                             "update_source": "Account"}, 409)
    send("PUT", "/contacts/00000000-0000-4000-8000-000000000000", {
        "email_address": {"address": "nobody@example.com"}, "update_source": "Account"}, 404)
    updated = get("/contacts", updated_after=edited["updated_at"],
                  updated_before="2100-01-01T00:00:00.000Z", include_count="true")
    assert contact_id in [c["contact_id"] for c in updated["contacts"]]
    # SMS (2025-02/05): numbers with consent, an SMS-only contact; the contact's sms_channel.
    texts = send("POST", "/contact_lists", {"name": "Texts"}, 201)["list_id"]
    finished(send("POST", "/activities/contacts_json_import", {
        "import_data": [{"email": "sms@example.com", "sms_number": "617-555-0101",
                         "sms_consent_date": "07-03-2024"},
                        {"sms_number": "6175550102", "sms_consent_date": "2024-07-03"}],
        "list_ids": [texts], "sms_permission_to_send": "explicit"}, 201))
    get("/contacts", lists=texts)
    # A contact created, deleted (it persists: 409 on a create), listed as deleted, and
    # re-activated by an import.
    person = send("POST", "/contacts", {
        "email_address": {"address": "one@example.com", "permission_to_send": "implicit"},
        "first_name": "One", "create_source": "Account", "list_memberships": [texts]}, 201)
    assert http.delete(f"{api}/contacts/{person['contact_id']}", headers=headers
                       ).status_code == 204
    send("POST", "/contacts", {"email_address": {"address": "one@example.com"},
                               "create_source": "Account"}, 409)
    get("/contacts", status="deleted", include_count="true")
    get(f"/contacts/{person['contact_id']}")
    finished(send("POST", "/activities/contacts_json_import",
                  {"import_data": [{"email": "one@example.com"}], "list_ids": [texts]}, 201))
    # The 2024-06 removal sources.
    finished(send("POST", "/activities/remove_list_memberships",
                  {"source": {"engagement_level": "high"}, "list_ids": [texts]}, 201))
    finished(send("POST", "/activities/remove_list_memberships",
                  {"source": {"new_subscriber": True}, "list_ids": [texts]}, 201))
    finished(send("POST", "/activities/remove_list_memberships", {
        "source": {"list_ids": [texts]}, "list_ids": [texts],
        "exclude": {"contact_ids": [person["contact_id"]]}}, 201))
    # Memberships by contact id.
    other = send("POST", "/contact_lists", {"name": "Other"}, 201)["list_id"]
    finished(send("POST", "/activities/add_list_memberships",
                  {"source": {"contact_ids": [contact_id]}, "list_ids": [other]}, 201))
    finished(send("POST", "/activities/remove_list_memberships",
                  {"source": {"contact_ids": [contact_id]}, "list_ids": [list_id]}, 201))
    # Export and its CSV.
    export = finished(send("POST", "/activities/contact_exports",
                           {"list_ids": [list_id], "fields": ["email_address", "first_name"]},
                           201))
    finished(send("POST", "/activities/contact_exports",
                  {"list_ids": [texts], "fields": ["email_address", "sms_number",
                                                   "sms_permission", "sms_consent_date"]}, 201))
    csv_response = http.get(f"{emu.base_url}{export['_links']['results']['href']}",
                            headers=headers)
    assert csv_response.status_code == 200
    # Activities.
    get("/activities", limit="5")
    get("/activities", state="completed")
    # Deleting a list is an activity too.
    deleted = http.delete(f"{api}/contact_lists/{other}", headers=headers)
    assert deleted.status_code == 202
    # Errors: 400, 401, 404, 429.
    # (The 400 comes from a request the contract accepts: every request here is valid.)
    unknown_list = "00000000-0000-4000-8000-000000000000"
    send("POST", "/activities/contacts_json_import",
         {"import_data": rows, "list_ids": [unknown_list]}, 400)
    assert http.get(f"{api}/contacts", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get(f"{api}/activities/{list_id}", headers=headers).status_code == 404
    control.set_config(requests_per_second=1)
    statuses = [http.get(f"{api}/contact_lists", headers=headers).status_code for _ in range(3)]
    assert 429 in statuses


def test_every_api_exchange_matches_the_contract(
    contract: Contract, scenario: tuple[EmulatorServer, list[httpx.Response]]
) -> None:
    _, responses = scenario
    api = [r for r in responses if r.request.url.path.startswith(contract.base_path)]
    assert len(api) >= 25
    problems = [p for r in api for p in contract.check_exchange(r)]
    assert problems == []


def test_every_oauth_exchange_matches_the_contract(
    contract: Contract, scenario: tuple[EmulatorServer, list[httpx.Response]]
) -> None:
    _, responses = scenario
    oauth = [r for r in responses if r.request.url.path.startswith("/oauth2/")]
    assert [r.status_code for r in oauth] == [200, 200, 200, 200, 400]
    problems = [p for r in oauth for p in contract.check_oauth(r)]
    assert problems == []


def test_the_scenario_covers_the_operations_the_product_uses(
    contract: Contract, scenario: tuple[EmulatorServer, list[httpx.Response]]
) -> None:
    _, responses = scenario
    seen = set()
    for response in responses:
        found = contract.operation(response.request.method, response.request.url.path)
        if found is not None:
            seen.add((response.request.method, found[0], response.status_code))
    operations = {(m, t) for m, t, _ in seen}
    assert operations >= {
        ("GET", "/account/summary"), ("GET", "/contact_lists"), ("POST", "/contact_lists"),
        ("GET", "/contact_custom_fields"), ("POST", "/contact_custom_fields"),
        ("GET", "/contact_custom_fields/{custom_field_id}"),
        ("DELETE", "/contact_custom_fields/{custom_field_id}"),
        ("GET", "/contact_lists/{list_id}"), ("PUT", "/contact_lists/{list_id}"),
        ("DELETE", "/contact_lists/{list_id}"), ("GET", "/contacts"),
        ("GET", "/contacts/{contact_id}"), ("PUT", "/contacts/{contact_id}"), ("POST", "/contacts"),
        ("DELETE", "/contacts/{contact_id}"), ("POST", "/activities/contacts_json_import"),
        ("POST", "/activities/add_list_memberships"),
        ("POST", "/activities/remove_list_memberships"), ("POST", "/activities/contact_exports"),
        ("GET", "/contact_exports/{file_export_id}"), ("GET", "/activities/{activity_id}"),
        ("GET", "/activities"),
    }
    assert {s for _, _, s in seen} >= {200, 201, 202, 204, 400, 401, 404, 409, 429}


def test_every_api_request_was_recorded(
    scenario: tuple[EmulatorServer, list[httpx.Response]],
) -> None:
    # What the emulator saw is exactly what was validated: nothing slipped past the recorder.
    emu, responses = scenario
    seen = [(r.method, r.path) for r in emu.control.requests()]
    recorded = [(r.request.method, r.request.url.path) for r in responses]
    assert seen == recorded


def test_the_contract_checker_catches_a_wrong_body(contract: Contract) -> None:
    # The validator must be able to fail: a list without its required name, a bad status.
    request = httpx.Request("GET", "http://127.0.0.1/v3/contact_lists/abc")
    bad = httpx.Response(200, json={"list_id": 5}, request=request)
    problems = contract.check_exchange(bad)
    assert any("name" in p for p in problems)
    assert any("5" in p for p in problems)
    undocumented = httpx.Response(418, json=[], request=request)
    assert any("418" in p for p in contract.check_exchange(undocumented))
    assert contract.check_query(
        contract.swagger["paths"]["/contacts"]["get"], {"limit": "501", "status": "gone"}
    ) == ["limit=501 is out of range", "status='gone' is not one of "
          "['all', 'active', 'deleted', 'not_set', 'pending_confirmation', 'temp_hold', "
          "'unsubscribed']"]
