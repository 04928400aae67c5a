"""The emulated authorization server: consent, code (+PKCE), token lifetimes, refresh rotation."""

from __future__ import annotations

import re
from html import unescape

import pytest

from segment_export.emulator import EmulatorServer
from tests.emulator.helpers import (
    APP,
    CLIENT_ID,
    CLIENT_SECRET,
    HTTP,
    REDIRECT_URI,
    FakeClock,
    api_client,
    authorize_url,
    exchange,
    get_code,
    pkce_pair,
    query_of,
    refresh,
    tokens,
)

UNAUTHORIZED = b'{"error_key":"unauthorized","error_message":"Unauthorized"}'


def _status_with(emu: EmulatorServer, access_token: str) -> int:
    with api_client(emu, access_token) as client:
        return client.get("/contact_lists").status_code


def test_consent_page_then_allow_redirects_back_with_code_and_state(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[{**APP, "name": "Segment Export"}],
                     account={"organization_name": "Acme Shop"})
    page = HTTP.get(authorize_url(emu, state="s-42"))
    assert page.status_code == 200
    assert "Allow Segment Export to access Acme Shop?" in unescape(page.text)
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert request_id is not None

    answer = HTTP.post(f"{emu.auth_url}/authorize",
                        data={"request_id": request_id.group(1), "decision": "allow"})
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    assert query_of(location)["state"] == "s-42"

    token = exchange(emu, query_of(location)["code"])
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86_400
    assert body["scope"] == "contact_data offline_access account_read"
    assert body["refresh_token"]
    assert token.headers["cache-control"] == "no-store"
    assert _status_with(emu, body["access_token"]) == 200


def test_deny_redirects_with_access_denied(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    location = emu.control.approve_url(authorize_url(emu), allow=False)
    assert query_of(location) == {
        "error": "access_denied", "error_description": "The user denied access.",
        "state": "state-1",
    }


def test_auto_approve_redirects_without_a_page(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    emu.control.set_config(auto_approve=True)
    response = HTTP.get(authorize_url(emu))
    assert response.status_code == 302
    assert "code" in query_of(response.headers["location"])


def test_unregistered_redirect_uri_is_shown_not_redirected(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = HTTP.get(authorize_url(emu, redirect_uri="http://127.0.0.1:9/evil"))
    assert response.status_code == 400
    assert "redirect_uri is not registered" in response.text
    assert "location" not in response.headers


def test_bad_response_type_is_redirected_as_an_error(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = HTTP.get(authorize_url(emu, response_type="token"))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "unsupported_response_type"


def test_pkce_public_client_needs_the_right_verifier(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[{"client_id": "public-app", "client_secret": None,
                            "redirect_uris": [REDIRECT_URI]}])
    verifier, challenge = pkce_pair()

    code = get_code(emu, client_id="public-app", challenge=challenge)
    missing = exchange(emu, code, secret=None, client_id="public-app")
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_grant"

    code = get_code(emu, client_id="public-app", challenge=challenge)
    wrong = exchange(emu, code, secret=None, client_id="public-app", verifier=verifier + "x")
    assert wrong.json() == {"error": "invalid_grant",
                            "error_description": "PKCE verification failed."}

    code = get_code(emu, client_id="public-app", challenge=challenge)
    right = exchange(emu, code, secret=None, client_id="public-app", verifier=verifier)
    assert right.status_code == 200
    # A public client refreshes with its client_id alone.
    again = refresh(emu, right.json()["refresh_token"], secret=None, client_id="public-app")
    assert again.status_code == 200


def test_public_client_without_pkce_is_refused(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = exchange(emu, get_code(emu), secret=None)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_confidential_client_with_pkce_must_also_send_the_verifier(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    verifier, challenge = pkce_pair()
    assert exchange(emu, get_code(emu, challenge=challenge)).json()["error"] == "invalid_grant"
    assert exchange(emu, get_code(emu, challenge=challenge), verifier=verifier).status_code == 200


def test_wrong_client_secret_is_401_invalid_client(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = exchange(emu, get_code(emu), secret="not-it")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_code_is_single_use_and_a_replay_revokes_its_tokens(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    code = get_code(emu)
    first = exchange(emu, code)
    assert first.status_code == 200
    replay = exchange(emu, code)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert _status_with(emu, first.json()["access_token"]) == 401
    assert refresh(emu, first.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_expires_after_five_minutes(emu: EmulatorServer, clock: FakeClock) -> None:
    emu.control.seed(apps=[APP])
    code = get_code(emu)
    clock.advance(300.5)
    response = exchange(emu, code)
    assert response.json() == {"error": "invalid_grant",
                               "error_description": "The authorization code expired."}


def test_redirect_uri_must_match_the_authorize_request(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[{**APP, "redirect_uris": [REDIRECT_URI, "http://127.0.0.1:9/other"]}])
    code = get_code(emu, redirect_uri="http://127.0.0.1:9/other")
    response = exchange(emu, code)  # sends REDIRECT_URI
    assert response.json()["error"] == "invalid_grant"


def test_access_token_expires_after_its_lifetime(emu: EmulatorServer, clock: FakeClock) -> None:
    emu.control.set_config(access_token_seconds=30)
    body = tokens(emu)
    assert body["expires_in"] == 30
    clock.advance(29)
    assert _status_with(emu, body["access_token"]) == 200
    clock.advance(1)
    with api_client(emu, body["access_token"]) as client:
        response = client.get("/contact_lists")
    assert response.status_code == 401
    assert response.content == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer realm=api.cc.email"


def test_rotating_refresh_token_is_single_use_and_reuse_revokes_the_chain(
    emu: EmulatorServer,
) -> None:
    first = tokens(emu)
    second = refresh(emu, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    third = refresh(emu, second["refresh_token"]).json()
    assert _status_with(emu, third["access_token"]) == 200

    reuse = refresh(emu, first["refresh_token"])  # already rotated away
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    # Like Constant Contact: the whole chain is gone, the newest tokens included.
    assert refresh(emu, third["refresh_token"]).json()["error"] == "invalid_grant"
    assert _status_with(emu, third["access_token"]) == 401


def test_long_lived_refresh_token_returns_the_same_value(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[{**APP, "refresh_token_type": "long_lived"}])
    first = tokens(emu)
    again = refresh(emu, first["refresh_token"]).json()
    assert again["refresh_token"] == first["refresh_token"]
    assert again["access_token"] != first["access_token"]
    assert refresh(emu, first["refresh_token"]).status_code == 200


def test_refresh_token_expires_when_unused(emu: EmulatorServer, clock: FakeClock) -> None:
    first = tokens(emu)
    clock.advance(180 * 86_400 + 1)
    assert refresh(emu, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_offline_access_means_no_refresh_token(emu: EmulatorServer) -> None:
    body = tokens(emu, scope="contact_data")
    assert "refresh_token" not in body


def test_token_endpoint_allows_one_request_per_second_per_client(
    emu: EmulatorServer, clock: FakeClock
) -> None:
    emu.control.set_config(token_requests_per_second=1.0)
    first = tokens(emu)
    limited = refresh(emu, first["refresh_token"])
    assert limited.status_code == 429
    clock.advance(1.0)
    assert refresh(emu, first["refresh_token"]).status_code == 200


def test_token_endpoint_is_form_encoded_only(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = HTTP.post(
        f"{emu.auth_url}/token",
        json={"grant_type": "authorization_code", "code": get_code(emu)},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 415
    assert response.json()["error"] == "invalid_request"


def test_unsupported_grant_type(emu: EmulatorServer) -> None:
    emu.control.seed(apps=[APP])
    response = HTTP.post(f"{emu.auth_url}/token", data={"grant_type": "client_credentials"},
                          auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.json()["error"] == "unsupported_grant_type"


def test_revoking_a_refresh_token_ends_the_grant(emu: EmulatorServer) -> None:
    body = tokens(emu)
    response = HTTP.post(f"{emu.auth_url}/revoke", data={"token": body["refresh_token"]},
                          auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200
    assert _status_with(emu, body["access_token"]) == 401
    assert refresh(emu, body["refresh_token"]).json()["error"] == "invalid_grant"


def test_expire_tokens_forces_a_refresh(emu: EmulatorServer) -> None:
    body = tokens(emu)
    assert emu.control.expire_tokens() == 1
    assert _status_with(emu, body["access_token"]) == 401
    fresh = refresh(emu, body["refresh_token"])
    assert fresh.status_code == 200
    assert _status_with(emu, fresh.json()["access_token"]) == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic abc"])
def test_401_body_is_exactly_constant_contacts(emu: EmulatorServer, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = HTTP.get(f"{emu.api_url}/contacts", headers=headers)
    assert response.status_code == 401
    assert response.content == UNAUTHORIZED
    assert response.headers["content-length"] == "59"
    assert response.headers["www-authenticate"] == "Bearer realm=api.cc.email"


def test_prompt_login_shows_the_sign_in_page_before_consent(emu: EmulatorServer) -> None:
    # The emulator's browser counts as signed in (consent at once); prompt=login (2025-09)
    # asks for the sign-in page first all the same.
    emu.control.seed(apps=[APP])
    plain = HTTP.get(authorize_url(emu))
    assert "Allow" in plain.text
    assert 'name="password"' not in plain.text
    page = HTTP.get(authorize_url(emu, prompt="login", state="s-9"))
    assert page.status_code == 200
    assert "Sign in to Constant Contact" in page.text
    found = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert found is not None
    request_id = found.group(1)
    # Answering the consent form without signing in is refused.
    early = HTTP.post(f"{emu.auth_url}/authorize", data={"request_id": request_id,
                                                         "decision": "allow"})
    assert early.status_code == 400
    wrong = HTTP.post(f"{emu.auth_url}/authorize", data={
        "request_id": request_id, "action": "sign_in", "username": "owner", "password": ""})
    assert wrong.status_code == 400
    assert "Sign in to Constant Contact" in wrong.text
    signed_in = HTTP.post(f"{emu.auth_url}/authorize", data={
        "request_id": request_id, "action": "sign_in", "username": "owner", "password": "pw"})
    assert signed_in.status_code == 200
    assert "Allow" in unescape(signed_in.text)
    answer = HTTP.post(f"{emu.auth_url}/authorize", data={"request_id": request_id,
                                                          "decision": "allow"})
    assert answer.status_code == 302
    assert query_of(answer.headers["location"])["state"] == "s-9"
    assert exchange(emu, query_of(answer.headers["location"])["code"]).status_code == 200
    # The control API's approve stands for a user who signs in and allows.
    assert "code" in query_of(emu.control.approve_url(authorize_url(emu, prompt="login")))


def test_partner_token_url_gives_partners_a_client_credentials_token(
    emu: EmulatorServer,
) -> None:
    emu.control.seed(apps=[APP, {"client_id": "partner", "client_secret": "p-secret",
                                 "partner": True}])
    url = f"{emu.base_url}/partners/oauth2/default/v1/token"
    token = HTTP.post(url, data={"grant_type": "client_credentials"},
                      auth=("partner", "p-secret"))
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["scope"] == "v3api/general.partner"
    assert "refresh_token" not in body
    # Not a contact_data token: the contact endpoints refuse it (403).
    assert _status_with(emu, body["access_token"]) == 403
    not_partner = HTTP.post(url, data={"grant_type": "client_credentials"},
                            auth=(CLIENT_ID, CLIENT_SECRET))
    assert not_partner.status_code == 400
    assert not_partner.json()["error"] == "unauthorized_client"
    assert HTTP.post(url, data={"grant_type": "client_credentials"},
                     auth=("partner", "wrong")).status_code == 401
    code_grant = HTTP.post(url, data={"grant_type": "authorization_code", "code": "x"},
                           auth=("partner", "p-secret"))
    assert code_grant.json()["error"] == "unsupported_grant_type"
    # The account token URL still has no client-credentials grant.
    assert HTTP.post(f"{emu.auth_url}/token", data={"grant_type": "client_credentials"},
                     auth=("partner", "p-secret")).json()["error"] == "unsupported_grant_type"
    assert [r.path for r in emu.control.requests()][:1] == [
        "/partners/oauth2/default/v1/token"]
