"""The emulated authorization server: apps, consent, codes (+PKCE), access tokens and refresh
tokens that rotate (single use; a reused one revokes its whole chain) or live long."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson

from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.errors import OAuthError
from segment_export.emulator.ratelimit import SlidingWindow

RefreshTokenType = Literal["rotating", "long_lived"]
ROTATING: RefreshTokenType = "rotating"
KNOWN_SCOPES = frozenset(
    {
        "account_read",
        "account_update",
        "billing_data",
        "campaign_data",
        "contact_data",
        "email",
        "offline_access",
        "openid",
        "profile",
    }
)
ISSUER = "https://authz.constantcontact.com/oauth2/default"
PARTNER_SCOPE = "v3api/general.partner"
AUDIENCE = "https://api.cc.email/v3"


@dataclass(slots=True)
class App:
    """A registered application (API key): its client id is the key the rate limits count by."""

    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    refresh_token_type: RefreshTokenType = ROTATING
    name: str = "Sandbox app"
    partner: bool = False
    """A technology partner: may use the partner token URL (client credentials)."""


@dataclass(slots=True)
class AuthorizeRequest:
    """A checked authorization request, waiting for consent."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str | None
    login_required: bool = False
    """``prompt=login``: the user must sign in again before the consent page answers."""


@dataclass(slots=True, eq=False)
class Grant:
    """One consent and every token that descends from it; revoking it ends them all."""

    client_id: str
    scope: str
    public: bool
    access_tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    revoked: bool = False


@dataclass(slots=True)
class AccessToken:
    """A bearer token of ``grant``, valid until ``expires_at``."""

    grant: Grant
    expires_at: float

    @property
    def client_id(self) -> str:
        """The API key this token's requests count against."""
        return self.grant.client_id

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the user consented to."""
        return frozenset(self.grant.scope.split())


@dataclass(slots=True)
class _Code:
    request: AuthorizeRequest
    expires_at: float
    grant: Grant | None = None  # set when redeemed, so a replay can revoke what it produced


@dataclass(slots=True)
class _Refresh:
    grant: Grant
    expires_at: float
    used: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636)."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """``url`` with ``params`` added to its query string (None values left out)."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class AuthorizationServer:
    """State and rules of ``/oauth2/default/v1``; not thread-safe (the backend holds the lock)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._key = secrets.token_bytes(32)
        self.apps: dict[str, App] = {}
        self._pending: dict[str, tuple[AuthorizeRequest, float]] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._window = SlidingWindow(config.token_requests_per_second)
        self.configure(config)

    def configure(self, config: EmulatorConfig) -> None:
        """Apply new lifetimes and the token endpoint's rate."""
        self.config = config
        self._window.set_rate(config.token_requests_per_second)

    def reset(self) -> None:
        """Forget every app, code and token."""
        self.apps.clear()
        self._pending.clear()
        self._codes.clear()
        self._access.clear()
        self._refresh.clear()
        self._window.clear()

    def register(self, app: App) -> None:
        """Register (or replace) an application."""
        self.apps[app.client_id] = app

    # -- authorize -------------------------------------------------------------------------

    def check_client(self, params: Mapping[str, str]) -> tuple[App, str]:
        """The app and redirect URI of an authorize request.

        These errors are shown on a page, never redirected: the redirect target is not trusted.
        """
        app = self.apps.get(params.get("client_id", ""))
        if app is None:
            raise OAuthError("invalid_client", "The client_id is not a registered application.")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise OAuthError(
                "invalid_request",
                "The redirect_uri is not registered for this application.",
            )
        return app, redirect_uri

    def check_request(
        self, app: App, redirect_uri: str, params: Mapping[str, str]
    ) -> AuthorizeRequest:
        """The rest of an authorize request; these errors are redirected back to the app."""
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "Only response_type=code is supported.")
        scope = " ".join(params.get("scope", "").replace("+", " ").split())
        if not scope:
            raise OAuthError("invalid_scope", "The scope parameter is required.")
        unknown = sorted(set(scope.split()) - KNOWN_SCOPES)
        if unknown:
            raise OAuthError("invalid_scope", f"Unknown scope: {' '.join(unknown)}.")
        challenge = params.get("code_challenge") or None
        if challenge is not None and params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256.")
        return AuthorizeRequest(
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            scope=scope,
            state=params.get("state"),
            code_challenge=challenge,
            login_required="login" in params.get("prompt", "").split(),
        )

    def hold(self, request: AuthorizeRequest, now: float) -> str:
        """Keep ``request`` while the consent page is shown; returns the id the form posts back."""
        self._pending = {k: v for k, v in self._pending.items() if v[1] > now}
        request_id = secrets.token_urlsafe(16)
        self._pending[request_id] = (request, now + 600)
        return request_id

    def held(self, request_id: str, now: float) -> AuthorizeRequest:
        """A request whose page is shown, or an error when it expired."""
        held = self._pending.get(request_id)
        if held is None or held[1] <= now:
            raise OAuthError("invalid_request", "The consent request expired; start again.")
        return held[0]

    def sign_in(self, request_id: str, *, username: str, password: str, now: float) -> None:
        """The sign-in form (``prompt=login``): any non-empty username and password sign in
        to the sandbox account ⚠ (the emulator has no users)."""
        request = self.held(request_id, now)
        if not username.strip() or not password:
            raise OAuthError("access_denied", "Enter your username and password.")
        request.login_required = False

    def decide(self, request_id: str, *, allow: bool, now: float) -> str:
        """The consent form's answer: the redirect URL, with a code or with ``access_denied``."""
        if self.held(request_id, now).login_required:
            raise OAuthError("login_required", "Sign in first (the request asked prompt=login).")
        request = self._pending.pop(request_id)[0]
        if not allow:
            return with_query(
                request.redirect_uri,
                {"error": "access_denied", "error_description": "The user denied access.",
                 "state": request.state},
            )
        return self.approve(request, now=now)

    def approve(self, request: AuthorizeRequest, *, now: float) -> str:
        """Issue a single-use code for ``request``; returns the redirect URL carrying it."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(request=request, expires_at=now + self.config.code_seconds)
        return with_query(request.redirect_uri, {"code": code, "state": request.state})

    # -- token -----------------------------------------------------------------------------

    def _client(
        self, params: Mapping[str, str], basic: tuple[str, str] | None
    ) -> tuple[App, bool]:
        """The calling app and whether it proved itself with its secret."""
        secret: str | None
        if basic is not None:
            client_id, secret = basic
            if params.get("client_id", client_id) != client_id:
                raise OAuthError("invalid_request", "client_id differs from the Basic credentials.")
        else:
            client_id, secret = params.get("client_id", ""), params.get("client_secret")
        app = self.apps.get(client_id)
        if app is None:
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)
        if secret is None:
            return app, False
        if app.client_secret is None or not hmac.compare_digest(secret, app.client_secret):
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)
        return app, True

    def _jwt(self, claims: dict[str, object]) -> str:
        header = _b64(orjson.dumps({"kid": "emulator", "alg": "HS256", "typ": "JWT"}))
        payload = _b64(orjson.dumps(claims))
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def _issue(self, grant: Grant, now: float, refresh_token: str | None) -> dict[str, object]:
        lifetime = self.config.access_token_seconds
        access = self._jwt(
            {
                "ver": 1,
                "jti": secrets.token_urlsafe(12),
                "iss": ISSUER,
                "aud": AUDIENCE,
                "iat": int(now),
                "exp": int(now + lifetime),
                "cid": grant.client_id,
                "scp": grant.scope.split(),
            }
        )
        self._access[access] = AccessToken(grant=grant, expires_at=now + lifetime)
        grant.access_tokens.append(access)
        body: dict[str, object] = {
            "token_type": "Bearer",
            "expires_in": round(lifetime),
            "access_token": access,
            "scope": grant.scope,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if "openid" in grant.scope.split():
            body["id_token"] = self._jwt({"iss": ISSUER, "aud": grant.client_id, "iat": int(now)})
        return body

    def _new_refresh(self, grant: Grant, now: float) -> str | None:
        if "offline_access" not in grant.scope.split():
            return None  # as Constant Contact: no error, just no refresh token
        token = secrets.token_urlsafe(32)
        expires_at = now + self.config.refresh_token_seconds
        self._refresh[token] = _Refresh(grant=grant, expires_at=expires_at)
        grant.refresh_tokens.append(token)
        return token

    def revoke_grant(self, grant: Grant) -> None:
        """End a grant: every access and refresh token it produced stops working."""
        grant.revoked = True
        for token in grant.access_tokens:
            self._access.pop(token, None)
        for token in grant.refresh_tokens:
            self._refresh.pop(token, None)

    def token(
        self, params: Mapping[str, str], *, basic: tuple[str, str] | None, now: float
    ) -> dict[str, object]:
        """Answer the token endpoint: ``authorization_code`` or ``refresh_token`` grants."""
        client_key = basic[0] if basic else params.get("client_id", "")
        if not self._window.try_acquire(client_key, now):
            raise OAuthError(
                "too_many_requests",
                "The token endpoint allows "
                f"{self.config.token_requests_per_second:g} request(s) per second.",
                status=429,
            )
        grant_type = params.get("grant_type")
        if grant_type == "authorization_code":
            return self._redeem_code(params, basic, now)
        if grant_type == "refresh_token":
            return self._refresh_grant(params, basic, now)
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required.")
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type} is not supported.")

    def partner_token(
        self, params: Mapping[str, str], *, basic: tuple[str, str] | None, now: float
    ) -> dict[str, object]:
        """The partner token URL (2025-09): a technology partner's client credentials for a
        token of the partner scope; no refresh token ⚠ (the partner flow is undocumented
        beyond its URL and scope)."""
        client_key = basic[0] if basic else params.get("client_id", "")
        if not self._window.try_acquire(client_key, now):
            raise OAuthError("too_many_requests", "The token endpoint allows "
                             f"{self.config.token_requests_per_second:g} request(s) per second.",
                             status=429)
        grant_type = params.get("grant_type")
        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type",
                             "The partner token URL takes grant_type=client_credentials.")
        app, confidential = self._client(params, basic)
        if not confidential:
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)
        if not app.partner:
            raise OAuthError("unauthorized_client", "The client is not a technology partner.")
        grant = Grant(client_id=app.client_id, scope=PARTNER_SCOPE, public=False)
        return self._issue(grant, now, None)

    def _redeem_code(
        self, params: Mapping[str, str], basic: tuple[str, str] | None, now: float
    ) -> dict[str, object]:
        app, confidential = self._client(params, basic)
        code = self._codes.get(params.get("code", ""))
        if code is None or code.request.client_id != app.client_id:
            raise OAuthError("invalid_grant", "The authorization code is invalid.")
        if code.grant is not None:
            # A replayed code: RFC 6749 §4.1.2 says to revoke what the first use produced.
            self.revoke_grant(code.grant)
            raise OAuthError("invalid_grant", "The authorization code was already used.")
        if code.expires_at <= now:
            raise OAuthError("invalid_grant", "The authorization code expired.")
        request = code.request
        if params.get("redirect_uri") != request.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorize request.")
        verifier = params.get("code_verifier")
        if request.code_challenge is not None:
            if not verifier:
                raise OAuthError("invalid_grant", "code_verifier is required (PKCE).")
            if not hmac.compare_digest(pkce_challenge(verifier), request.code_challenge):
                raise OAuthError("invalid_grant", "PKCE verification failed.")
        elif not confidential:
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)
        grant = Grant(client_id=app.client_id, scope=request.scope, public=not confidential)
        code.grant = grant
        return self._issue(grant, now, self._new_refresh(grant, now))

    def _refresh_grant(
        self, params: Mapping[str, str], basic: tuple[str, str] | None, now: float
    ) -> dict[str, object]:
        app, confidential = self._client(params, basic)
        record = self._refresh.get(params.get("refresh_token", ""))
        if record is None or record.grant.client_id != app.client_id:
            raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
        grant = record.grant
        if not grant.public and not confidential:
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)
        if record.used:
            # Reuse of a rotated token: like Constant Contact, the whole chain is revoked.
            self.revoke_grant(grant)
            raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
        if record.expires_at <= now:
            raise OAuthError("invalid_grant", "The refresh token is invalid or expired.")
        if app.refresh_token_type == ROTATING:
            record.used = True
            refresh_token = self._new_refresh(grant, now)
        else:
            # Long-lived: the same value each time, and using it keeps it alive.
            record.expires_at = now + self.config.refresh_token_seconds
            refresh_token = params["refresh_token"]
        return self._issue(grant, now, refresh_token)

    def revoke(
        self, params: Mapping[str, str], *, basic: tuple[str, str] | None, now: float
    ) -> None:
        """RFC 7009 revocation; revoking a refresh token ends its whole grant."""
        app, _ = self._client(params, basic)
        token = params.get("token", "")
        access = self._access.get(token)
        if access is not None and access.client_id == app.client_id:
            del self._access[token]
            return
        refresh = self._refresh.get(token)
        if refresh is not None and refresh.grant.client_id == app.client_id:
            self.revoke_grant(refresh.grant)

    # -- resource server side --------------------------------------------------------------

    def authenticate(self, token: str, now: float) -> AccessToken | None:
        """The live access token ``token``, or None (unknown, expired or revoked)."""
        access = self._access.get(token)
        if access is None or access.expires_at <= now or access.grant.revoked:
            return None
        return access

    def expire_all(self, now: float) -> int:
        """Make every access token expired now (refresh tokens keep working); returns how many."""
        for access in self._access.values():
            access.expires_at = min(access.expires_at, now)
        return len(self._access)
