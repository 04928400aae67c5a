"""OAuth: PKCE, the authorize URL, the checked callback, and the token endpoint calls."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from segment_export.constant_contact.auth import (
    AuthorizationDeniedError,
    OAuthClient,
    Token,
    build_authorize_url,
    make_pkce_pair,
    parse_callback,
)
from segment_export.errors import ConfigurationError, ReauthorizationNeededError, RetriableError
from segment_export.log import RedactingFilter
from tests.constant_contact.fakes import FakeClock, Recorder, json_response

AUTH_URL = "https://authz.example.test/oauth2/default/v1"


def test_pkce_pair_is_s256() -> None:
    verifier, challenge = make_pkce_pair()
    assert 43 <= len(verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge == expected.decode()
    assert make_pkce_pair()[0] != verifier


def test_authorize_url_asks_for_the_scopes_with_pkce() -> None:
    url = build_authorize_url(AUTH_URL, "cid", "https://app.test/cb", "st4te", "ch4llenge")
    parts = urlsplit(url)
    assert parts.path == "/oauth2/default/v1/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "client_id": "cid",
        "redirect_uri": "https://app.test/cb",
        "response_type": "code",
        "scope": "account_read contact_data offline_access",
        "state": "st4te",
        "code_challenge": "ch4llenge",
        "code_challenge_method": "S256",
    }


def test_parse_callback_checks_state() -> None:
    assert parse_callback("https://app.test/cb?code=abc123&state=good", "good") == "abc123"
    assert parse_callback("code=abc123&state=good", "good") == "abc123"
    with pytest.raises(AuthorizationDeniedError, match="does not match"):
        parse_callback("https://app.test/cb?code=abc123&state=evil", "good")
    with pytest.raises(AuthorizationDeniedError, match="no state"):
        parse_callback("https://app.test/cb?code=abc123", "good")
    with pytest.raises(AuthorizationDeniedError, match="no code"):
        parse_callback("https://app.test/cb?state=good", "good")
    with pytest.raises(AuthorizationDeniedError, match="access_denied") as info:
        parse_callback("?error=access_denied&error_description=nope&state=good", "good")
    assert info.value.context["error_description"] == "nope"
    # A state check that compared against an empty expectation would accept anything.
    with pytest.raises(AuthorizationDeniedError):
        parse_callback("?code=abc&state=", "")


def _token_body(n: int, *, refresh: bool = True) -> dict[str, object]:
    body: dict[str, object] = {
        "access_token": f"new-access-{n}-abcdefgh",
        "token_type": "Bearer",
        "expires_in": 86400,
        "scope": "contact_data offline_access",
    }
    if refresh:
        body["refresh_token"] = f"new-refresh-{n}-abcdefgh"
    return body


def _oauth(
    recorder: Recorder,
    clock: FakeClock,
    secret: str | None = "s3cret-value",  # noqa: S107
) -> OAuthClient:
    return OAuthClient(
        auth_url=AUTH_URL,
        client_id="the-client-id",
        client_secret=secret,
        transport=recorder.transport(),
        now=clock.now,
        sleep=clock.sleep,
    )


def test_code_exchange_is_form_encoded_with_basic_auth_and_the_verifier() -> None:
    clock = FakeClock()
    recorder = Recorder(lambda r: json_response(200, _token_body(1)))
    token = _oauth(recorder, clock).exchange_code(
        code="the-code-123", redirect_uri="https://app.test/cb", code_verifier="v" * 50
    )
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url == f"{AUTH_URL}/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(b"the-client-id:s3cret-value").decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code-123",
        "redirect_uri": "https://app.test/cb",
        "code_verifier": "v" * 50,
    }
    assert token.access_token == "new-access-1-abcdefgh"
    assert token.refresh_token == "new-refresh-1-abcdefgh"
    assert token.expires_at == clock.now() + timedelta(days=1)
    assert token.scopes == {"contact_data", "offline_access"}


def test_a_public_client_names_itself_in_the_form() -> None:
    clock = FakeClock()
    recorder = Recorder(lambda r: json_response(200, _token_body(1)))
    _oauth(recorder, clock, secret=None).refresh("old-refresh-token")
    (request,) = recorder.requests
    assert "Authorization" not in request.headers
    form = parse_qs(request.content.decode())
    assert form["client_id"] == ["the-client-id"]
    assert form["grant_type"] == ["refresh_token"]


def test_refresh_without_rotation_and_an_epoch_expiry() -> None:
    clock = FakeClock()
    body = {**_token_body(2, refresh=False), "expires_in": int(clock.time()) + 7200}
    token = _oauth(Recorder(lambda r: json_response(200, body)), clock).refresh("old-refresh")
    assert token.refresh_token is None
    assert token.expires_at == clock.now() + timedelta(hours=2)


def test_invalid_grant_means_reauthorization() -> None:
    clock = FakeClock()
    recorder = Recorder(
        lambda r: json_response(400, {"error": "invalid_grant", "error_description": "used"})
    )
    with pytest.raises(ReauthorizationNeededError) as info:
        _oauth(recorder, clock).refresh("spent-refresh-token")
    assert info.value.context["errors"][0]["error_key"] == "invalid_grant"
    assert len(recorder.requests) == 1  # never retried


def test_invalid_client_is_configuration() -> None:
    clock = FakeClock()
    recorder = Recorder(lambda r: json_response(401, {"error": "invalid_client"}))
    with pytest.raises(ConfigurationError):
        _oauth(recorder, clock).refresh("r-token-123")


def test_token_endpoint_faults_are_retried_at_most_one_request_per_second() -> None:
    clock = FakeClock()
    answers = iter(
        [
            json_response(503, []),
            json_response(429, {"error": "too_many"}),
            json_response(200, _token_body(3)),
        ]
    )
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(clock.time())
        return next(answers)

    token = _oauth(Recorder(handler), clock).refresh("r-token-123")
    assert token.access_token == "new-access-3-abcdefgh"
    assert len(times) == 3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


def test_token_endpoint_gives_up_after_its_attempts() -> None:
    clock = FakeClock()
    recorder = Recorder(lambda r: json_response(500, []))
    with pytest.raises(RetriableError):
        _oauth(recorder, clock).refresh("r-token-123")
    assert len(recorder.requests) == 4


def test_revoke_posts_the_token() -> None:
    clock = FakeClock()
    recorder = Recorder(lambda r: httpx.Response(200))
    _oauth(recorder, clock).revoke("refresh-to-revoke-1")
    (request,) = recorder.requests
    assert request.url == f"{AUTH_URL}/revoke"
    assert parse_qs(request.content.decode()) == {
        "token": ["refresh-to-revoke-1"],
        "token_type_hint": ["refresh_token"],
    }


def test_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    token = _oauth(Recorder(lambda r: json_response(200, _token_body(7))), clock).refresh("r-1x")
    assert "new-access-7" not in repr(token)
    record = logging.makeLogRecord(
        {"msg": "got %s and %s", "args": (token.access_token, token.refresh_token)}
    )
    RedactingFilter().filter(record)
    assert "new-access-7" not in record.getMessage()
    assert "new-refresh-7" not in record.getMessage()


def test_token_requires_an_aware_expiry() -> None:
    from datetime import datetime

    with pytest.raises(ValueError, match="timezone-aware"):
        Token("a-token-123", None, datetime(2026, 1, 1))  # noqa: DTZ001
