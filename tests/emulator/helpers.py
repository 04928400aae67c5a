"""Shared by the emulator and contract tests: a fake clock and the OAuth dance in a few lines."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from segment_export.emulator import EmulatorServer, pkce_challenge

REDIRECT_URI = "http://127.0.0.1:9/callback"
CLIENT_ID = "test-app"
CLIENT_SECRET = "test-app-secret"
SCOPE = "contact_data offline_access account_read"
APP = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]}


class _SharedTransport(httpx.HTTPTransport):
    """One connection pool for every test client: building an ``httpx.Client`` from scratch
    costs ~0.1 s (its SSL context), which a few hundred tests would feel."""

    def close(self) -> None:
        pass  # shared: closing one client must not close the pool under the others


TRANSPORT = _SharedTransport()
HTTP = httpx.Client(transport=TRANSPORT, timeout=30)


def client(**kwargs: Any) -> httpx.Client:
    """An httpx client on the shared connection pool."""
    return httpx.Client(transport=TRANSPORT, timeout=30, **kwargs)


class FakeClock:
    """A clock the backend reads; tests move it instead of sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.start = self.now = start

    def __call__(self) -> float:
        return self.now

    def reset(self) -> None:
        self.now = self.start

    def advance(self, seconds: float) -> None:
        self.now += seconds


def authorize_url(
    emu: EmulatorServer,
    *,
    client_id: str = CLIENT_ID,
    scope: str = SCOPE,
    state: str = "state-1",
    challenge: str | None = None,
    redirect_uri: str = REDIRECT_URI,
    **extra: str,
) -> str:
    params = {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
              "scope": scope, "state": state, **extra}
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return f"{emu.auth_url}/authorize?{urlencode(params)}"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def get_code(emu: EmulatorServer, **kwargs: Any) -> str:
    redirect = emu.control.approve_url(authorize_url(emu, **kwargs))
    return query_of(redirect)["code"]


def exchange(
    emu: EmulatorServer,
    code: str,
    *,
    secret: str | None = CLIENT_SECRET,
    client_id: str = CLIENT_ID,
    verifier: str | None = None,
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    if secret is None:
        data["client_id"] = client_id
        return HTTP.post(f"{emu.auth_url}/token", data=data)
    return HTTP.post(f"{emu.auth_url}/token", data=data, auth=(client_id, secret))


def refresh(
    emu: EmulatorServer, refresh_token: str, *, secret: str | None = CLIENT_SECRET,
    client_id: str = CLIENT_ID,
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if secret is None:
        data["client_id"] = client_id
        return HTTP.post(f"{emu.auth_url}/token", data=data)
    return HTTP.post(f"{emu.auth_url}/token", data=data, auth=(client_id, secret))


def tokens(emu: EmulatorServer, **kwargs: Any) -> dict[str, Any]:
    """Seed the test app if needed and run the code flow; returns the token response."""
    if CLIENT_ID not in emu.backend.oauth.apps:
        emu.control.seed(apps=[APP])
    client_id = kwargs.get("client_id", CLIENT_ID)
    response = exchange(emu, get_code(emu, **kwargs), client_id=client_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def api_client(emu: EmulatorServer, access_token: str) -> httpx.Client:
    return client(base_url=emu.api_url, headers={"Authorization": f"Bearer {access_token}"})


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, pkce_challenge(verifier)


def rejected(emu: EmulatorServer, activity: dict[str, Any]) -> list[str]:
    """The rows an import refused, as ``Row <n> (<email>): <reason>``: from the control API,
    since Constant Contact's activity_errors name no rows."""
    out = []
    for item in emu.control.rejections(activity["activity_id"]):
        who = f" ({item['email']})" if item["email"] else ""
        out.append(f"Row {item['row']}{who}: {item['reason']}")
    return out


def names_no_row(activity: dict[str, Any]) -> bool:
    """Whether activity_errors are free text only, as Constant Contact's: no row, no email."""
    return not any(re.search(r"\bRow \d|@", m) for m in activity["activity_errors"])
