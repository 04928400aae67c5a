"""OAuth 2 with Constant Contact: PKCE, the authorize URL, code exchange, refresh and revoke."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import orjson

from segment_export.constant_contact.http_errors import map_http_error
from segment_export.constant_contact.ratelimit import InProcessRateLimiter, RateLimiter
from segment_export.constant_contact.retry import retrying
from segment_export.errors import ConfigurationError, DataError, RetriableError
from segment_export.log import register_secret

log = logging.getLogger(__name__)

# contact_data: lists, contacts and bulk activities; offline_access: a refresh token at all;
# account_read: GET /account/summary (the contract's security for it), which the connection
# test uses to show which account a connection reaches.
DEFAULT_SCOPES: tuple[str, ...] = ("account_read", "contact_data", "offline_access")
# Constant Contact's token endpoint allows 1 request/s per application.
TOKEN_ENDPOINT_RATE = 1.0
# A value this large is an epoch, not a lifetime (the contract's wording allows either).
_EPOCH_THRESHOLD = 1_000_000_000


def utc_now() -> datetime:
    """The current time, aware, in UTC (the default clock of this package)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Token:
    """An OAuth grant as the product keeps it; the secrets stay out of ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scope: str = ""

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("Token.expires_at must be timezone-aware")
        register_secret(self.access_token)
        register_secret(self.refresh_token)

    def expires_within(self, margin: timedelta, *, now: datetime) -> bool:
        """True when the access token is expired or will be within ``margin`` of ``now``."""
        return self.expires_at - now <= margin

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes."""
        return frozenset(self.scope.split())


def make_pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` pair, S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    register_secret(verifier)
    return verifier, challenge


def new_state() -> str:
    """An unguessable OAuth ``state`` value to store with the pending connection."""
    return secrets.token_urlsafe(32)


def build_authorize_url(
    auth_url: str,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    scopes: Sequence[str] = DEFAULT_SCOPES,
) -> str:
    """The URL to send a Constant Contact admin to, asking for ``scopes`` with PKCE (S256)."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(scopes),
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{auth_url.rstrip('/')}/authorize?{query}"


class AuthorizationDeniedError(DataError):
    """The OAuth callback carried an error, a wrong ``state`` or no code."""

    hint = "Start the connection again from Admin > Connections."


def parse_callback(url_or_query: str, expected_state: str) -> str:
    """The authorization code from the redirect back to us, after checking ``state``.

    Accepts the full callback URL or just its query string. A missing or different ``state``
    (a forged or replayed callback) and an ``error=`` answer raise AuthorizationDeniedError.
    """
    query = urlsplit(url_or_query).query if "?" in url_or_query else url_or_query.lstrip("?")
    params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    state = params.get("state")
    if not state or not expected_state or not secrets.compare_digest(state, expected_state):
        raise AuthorizationDeniedError(
            "The authorization callback's state does not match this connection's request"
            if state
            else "The authorization callback carries no state",
        )
    if "error" in params:
        raise AuthorizationDeniedError(
            f"Constant Contact did not authorize the connection: {params['error']}",
            error=params["error"],
            error_description=params.get("error_description", ""),
        )
    code = params.get("code")
    if not code:
        raise AuthorizationDeniedError("The authorization callback carries no code")
    register_secret(code)
    return code


class OAuthClient:
    """Calls to Constant Contact's authorization server for one application (API key).

    Every token-endpoint call goes through ``pacer`` (at most 1 request/s). The default pacer is
    in-process: share one OAuthClient per application within a process; across processes the
    per-connection refresh lock already keeps refreshes of one connection apart, or pass a
    shared limiter.
    """

    def __init__(
        self,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str | None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        pacer: RateLimiter | None = None,
        max_attempts: int = 4,
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        register_secret(client_secret)
        self._http = httpx.Client(transport=transport, timeout=timeout)
        self._pacer = pacer or InProcessRateLimiter(
            rate=TOKEN_ENDPOINT_RATE, daily_quota=10**9, key=f"token:{client_id}", sleep=sleep
        )
        self._max_attempts = max_attempts
        self._now = now
        self._sleep = sleep

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        scopes: Sequence[str] = DEFAULT_SCOPES,
    ) -> str:
        """build_authorize_url for this application."""
        return build_authorize_url(
            self.auth_url, self.client_id, redirect_uri, state, code_challenge, scopes
        )

    def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> Token:
        """Trade an authorization code (single use, lives 5 minutes) for a Token."""
        register_secret(code)
        return self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )

    def refresh(self, refresh_token: str) -> Token:
        """A new Token for ``refresh_token``.

        With rotating refresh tokens the answer carries a new refresh token and the old one is
        dead: the caller must persist it before using the new access token. Long-lived refresh
        tokens may come back unchanged or absent; absent means "keep the one you have".
        Raises ReauthorizationNeededError on ``invalid_grant``.
        """
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(
        self,
        token: str,
        *,
        token_type_hint: Literal["refresh_token", "access_token"] = "refresh_token",  # noqa: S107
    ) -> None:
        """Revoke a token at the authorization server (RFC 7009), e.g. when a connection goes."""
        register_secret(token)
        self._post("revoke", {"token": token, "token_type_hint": token_type_hint}, attempts=2)

    def _token_request(self, form: dict[str, str]) -> Token:
        # Retried on 429/5xx/transport faults like any call. If an answer was lost after the
        # server used a single-use code or rotating refresh token, the retry earns invalid_grant,
        # i.e. ReauthorizationNeededError, which is the truth: the grant chain is gone.
        response = self._post("token", form, attempts=self._max_attempts)
        return self._parse_token(response)

    def _post(self, endpoint: str, form: dict[str, str], *, attempts: int) -> httpx.Response:
        url = f"{self.auth_url}/{endpoint}"
        extra: dict[str, Any] = {}
        if self._client_secret:
            extra["auth"] = httpx.BasicAuth(self.client_id, self._client_secret)
        else:  # a public (PKCE-only) client identifies itself in the form
            form = {**form, "client_id": self.client_id}
        for attempt in retrying(what=f"POST {endpoint}", max_attempts=attempts, sleep=self._sleep):
            with attempt:
                self._pacer.acquire()
                try:
                    response = self._http.post(
                        url, data=form, headers={"Accept": "application/json"}, **extra
                    )
                except httpx.TransportError as exc:
                    raise _mapped(exc, self._now()) from exc
                error = map_http_error(response, now=self._now())
                if error is not None:
                    raise error
        return response

    def _parse_token(self, response: httpx.Response) -> Token:
        try:
            body: dict[str, Any] = orjson.loads(response.content)
            access = str(body["access_token"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise RetriableError(
                "The token endpoint answered without an access token", status=response.status_code
            ) from exc
        register_secret(access)
        refresh = body.get("refresh_token")
        expires_in = float(body.get("expires_in") or 86_400)
        now = self._now()
        if expires_in > _EPOCH_THRESHOLD:
            expires_at = datetime.fromtimestamp(expires_in, UTC)
        else:
            expires_at = now + timedelta(seconds=expires_in)
        scope = str(body.get("scope") or "")
        if scope and "offline_access" not in scope.split() and not refresh:
            log.warning("the grant has no offline_access scope: it cannot be refreshed")
        return Token(
            access_token=access,
            refresh_token=str(refresh) if refresh else None,
            expires_at=expires_at,
            scope=scope,
        )


def _mapped(exc: httpx.TransportError, now: datetime) -> Exception:
    error = map_http_error(exc, now=now)
    return error if error is not None else ConfigurationError(str(exc))


__all__ = [
    "DEFAULT_SCOPES",
    "AuthorizationDeniedError",
    "OAuthClient",
    "Token",
    "build_authorize_url",
    "make_pkce_pair",
    "new_state",
    "parse_callback",
    "utc_now",
]
