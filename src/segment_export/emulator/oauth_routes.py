"""Routes of the emulated authorization server (``/oauth2/default/v1``): sign-in page
(``prompt=login``), consent page, token, revoke; and the partner token URL
(``/partners/oauth2/default/v1/token``)."""

from __future__ import annotations

import base64
import binascii
from html import escape
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from segment_export.emulator.errors import OAuthError, RedirectError
from segment_export.emulator.oauth import AuthorizeRequest
from segment_export.emulator.routes import backend_of, record_of
from segment_export.emulator.wire import json_response

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:4rem auto;line-height:1.5}}
button{{font-size:1rem;padding:.5rem 1.5rem;margin-right:1rem}}
.note{{color:#666;font-size:.9rem}}</style></head>
<body>{content}
<p class="note">Constant Contact emulator (sandbox mode): no real account is involved.</p>
</body></html>"""


def _page(title: str, content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), content=content), status_code=status)


async def authorize(request: Request) -> Response:
    """Start an authorization: a consent page, after a sign-in page with ``prompt=login`` (or,
    with auto-approve, straight back to the app)."""
    backend = backend_of(request)
    try:
        auth_request = backend.authorize(dict(request.query_params))
    except OAuthError as exc:
        if isinstance(exc, RedirectError):
            raise  # back to the app's redirect URI (the app's error handler)
        return _page(
            "Authorization error",
            f"<h1>Authorization error</h1><p><code>{escape(exc.error)}</code>: "
            f"{escape(exc.description)}</p>",
            400,
        )
    if backend.config.auto_approve:
        return RedirectResponse(backend.approve(auth_request), status_code=302)
    request_id = backend.hold_consent(auth_request)
    if auth_request.login_required:
        return _sign_in_page(request, request_id)
    return _consent_page(request, auth_request, request_id)


def _sign_in_page(request: Request, request_id: str, error: str | None = None) -> HTMLResponse:
    """What ``prompt=login`` shows first, even to a browser already signed in."""
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    return _page(
        "Sign in",
        f"<h1>Sign in to Constant Contact</h1>{problem}"
        f'<form method="post" action="{escape(str(request.url.path))}">'
        f'<input type="hidden" name="request_id" value="{escape(request_id)}">'
        '<input type="hidden" name="action" value="sign_in">'
        '<p><label>Username <input name="username" autocomplete="username"></label></p>'
        '<p><label>Password <input name="password" type="password" '
        'autocomplete="current-password"></label></p>'
        '<button type="submit">Sign in</button></form>',
        400 if error else 200,
    )


def _consent_page(
    request: Request, auth_request: AuthorizeRequest, request_id: str
) -> HTMLResponse:
    backend = backend_of(request)
    app_name = backend.app_name(auth_request.client_id)
    account = backend.account_summary(extra_fields=set()).get("organization_name", "your account")
    scopes = "".join(f"<li><code>{escape(s)}</code></li>" for s in auth_request.scope.split())
    return _page(
        "Allow access?",
        f"<h1>Allow {escape(app_name)} to access {escape(str(account))}?</h1>"
        f"<p>It asks for:</p><ul>{scopes}</ul>"
        f'<form method="post" action="{escape(str(request.url.path))}">'
        f'<input type="hidden" name="request_id" value="{escape(request_id)}">'
        '<button type="submit" name="decision" value="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button></form>',
    )


async def consent(request: Request) -> Response:
    """The sign-in form's answer (then the consent page), or the consent form's: back to the
    app with a code, or with ``access_denied``."""
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    request_id = form.get("request_id", "")
    backend = backend_of(request)
    try:
        if form.get("action") == "sign_in":
            try:
                auth_request = backend.sign_in(request_id, username=form.get("username", ""),
                                               password=form.get("password", ""))
            except OAuthError as exc:
                if exc.error != "access_denied":
                    raise
                return _sign_in_page(request, request_id, exc.description)
            return _consent_page(request, auth_request, request_id)
        location = backend.decide_consent(request_id, allow=form.get("decision") == "allow")
    except OAuthError as exc:
        return _page("Authorization error", f"<h1>{escape(exc.description)}</h1>", 400)
    return RedirectResponse(location, status_code=302)


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Only HTTP Basic client authentication is supported.",
                         status=401)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
        client_id, sep, secret = decoded.partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "Malformed Basic credentials.", status=401) from None
    if not sep:
        raise OAuthError("invalid_client", "Malformed Basic credentials.", status=401)
    # RFC 6749 §2.3.1: both parts are form-encoded before base64.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


async def _form(request: Request) -> dict[str, str]:
    """Form parameters; the query string counts too (Constant Contact's own examples use it)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request",
            "The request must be application/x-www-form-urlencoded.",
            status=415,
        )
    params = dict(request.query_params)
    params.update(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    return params


async def token(request: Request) -> Response:
    """Exchange a code, or a refresh token, for tokens."""
    params = await _form(request)
    basic = _basic(request)
    record = record_of(request)
    if record is not None:  # so a test can count token calls per client
        record.client_id = basic[0] if basic else params.get("client_id")
    body = backend_of(request).token(params, basic=basic)
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def partner_token(request: Request) -> Response:
    """The partner token URL (2025-09): a technology partner's client-credentials token."""
    params = await _form(request)
    basic = _basic(request)
    record = record_of(request)
    if record is not None:
        record.client_id = basic[0] if basic else params.get("client_id")
    body = backend_of(request).partner_token(params, basic=basic)
    return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def revoke(request: Request) -> Response:
    """Revoke an access or refresh token (a refresh token takes its whole grant with it)."""
    params = await _form(request)
    backend_of(request).revoke(params, basic=_basic(request))
    return Response(status_code=200)


OAUTH_ROUTES = [
    Route("/authorize", authorize, methods=["GET"]),
    Route("/authorize", consent, methods=["POST"]),
    Route("/token", token, methods=["POST"]),
    Route("/revoke", revoke, methods=["POST"]),
]
PARTNER_ROUTES = [Route("/token", partner_token, methods=["POST"])]
