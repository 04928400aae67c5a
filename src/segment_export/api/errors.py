"""The one place errors become responses: problem+json for the API, an HTML page for the UI."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segment_export.api.auth import CsrfError
from segment_export.api.throttle import TooManyAttemptsError
from segment_export.constant_contact import AuthorizationDeniedError
from segment_export.errors import (
    ConfigurationError,
    DataError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
    SegmentExportError,
)
from segment_export.languages import N_
from segment_export.storage import StorageFullError
from segment_export.users import AuthenticationError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

# Most specific first: the first class an error is an instance of decides.
_STATUS: list[tuple[type[SegmentExportError], int, str]] = [
    (TooManyAttemptsError, 429, "too_many_attempts"),
    (CsrfError, 403, "csrf_failed"),
    (AuthenticationError, 401, "not_authenticated"),
    (PermissionDeniedError, 403, "permission_denied"),
    (NotFoundError, 404, "not_found"),
    (AuthorizationDeniedError, 400, "authorization_denied"),
    (ReauthorizationNeededError, 409, "reauthorization_needed"),
    (ConfigurationError, 422, "configuration"),
    (DataError, 400, "invalid_data"),
    (RetriableError, 503, "temporarily_unavailable"),
    (StorageFullError, 507, "insufficient_storage"),
]
# English in the API's problem documents; N_ puts them in the catalogue for the error pages.
_TITLES = {400: N_("Bad request"), 401: N_("Not signed in"), 403: N_("Forbidden"),
           404: N_("Not found"), 405: N_("Method not allowed"), 409: N_("Conflict"),
           422: N_("Cannot be processed"), 429: N_("Too many requests"),
           500: N_("Internal error"), 503: N_("Temporarily unavailable"),
           507: N_("Insufficient storage")}


class Problem(BaseModel):
    """An RFC 9457 problem document, as every API error is returned."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    hint: str | None = None
    field: str | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title,
             "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, title in ((400, "Bad request"), (401, "Not signed in"), (403, "Forbidden"),
                          (404, "Not found"), (409, "Needs re-authorization"),
                          (422, "Invalid input or configuration"))
}
"""The error answers every API route documents in the OpenAPI document."""
TOO_MANY_ATTEMPTS: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many wrong passwords from this client (see Retry-After)",
          "headers": {"Retry-After": {"description": "Seconds to wait",
                                      "schema": {"type": "integer"}}},
          "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}
"""Documented by routes that check a password (counted like failed sign-ins)."""

HtmlRenderer = Callable[[Request, int, str, str, str | None], Response]


def classify(exc: SegmentExportError) -> tuple[int, str]:
    """The HTTP status and problem code for one of the product's errors."""
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            return status, code
    return 500, "internal"  # FatalError and anything new: not the caller's fault to fix


def is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


def problem(status: int, detail: str, *, code: str, hint: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = Problem(title=_TITLES.get(status, "Error"), status=status, detail=detail, code=code,
                   hint=hint or None, **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def install_error_handlers(app: FastAPI, *, html: HtmlRenderer) -> None:
    """Route every error of ``app`` through one handler; ``html`` draws the UI's error page."""

    def respond(request: Request, status: int, code: str, detail: str, hint: str | None,
                headers: dict[str, str] | None = None, **extra: Any) -> Response:
        if is_api(request):
            return problem(status, detail, code=code, hint=hint, headers=headers, **extra)
        if status == 401:
            # A page asked for by someone not signed in: to the sign-in page, then back.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return html(request, status, _TITLES.get(status, "Error"), detail, hint)

    async def on_product_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SegmentExportError)
        status, code = classify(exc)
        if status == 500:
            return await on_crash(request, exc)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, QuotaExhaustedError):
            headers["Retry-After"] = exc.resets_at.strftime("%a, %d %b %Y %H:%M:%S GMT")
        elif isinstance(exc, RetriableError) and exc.retry_after:
            headers["Retry-After"] = str(int(exc.retry_after) + 1)
        field = exc.context.get("field")
        return respond(request, status, code, exc.message, exc.hint, headers or None,
                       field=field if isinstance(field, str) else None)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return respond(request, exc.status_code, "http_error", str(exc.detail), None,
                       dict(exc.headers) if exc.headers else None)

    async def on_invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                  for e in exc.errors()[:20]]
        detail = "; ".join(f"{'.'.join(e['loc'][1:]) or 'request'}: {e['msg']}"
                           for e in errors[:3])
        return respond(request, 422, "invalid_request", detail or "The request is not valid",
                       N_("Correct the fields named and send it again."), errors=errors)

    async def on_crash(request: Request, exc: Exception) -> Response:
        # The details go to the log only; the caller gets an id to quote.
        reference = secrets.token_hex(6)
        log.error("unhandled error %s on %s %s", reference, request.method, request.url.path,
                  exc_info=exc)
        return respond(request, 500, "internal",
                       f"Something went wrong on our side (reference {reference}).",
                       "Try again; if it keeps happening, give the reference to an "
                       "administrator.")

    app.add_exception_handler(SegmentExportError, on_product_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_middleware(CrashGuard, respond=on_crash)


class CrashGuard:
    """Answers an unexpected exception with the 500 page or problem, and ends there.

    (Starlette's own last-resort handler re-raises after answering, and the server then resets
    the connection, sometimes before the client has read the answer.)
    """

    def __init__(self, app: ASGIApp,
                 respond: Callable[[Request, Exception], Awaitable[Response]]) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:
                raise  # half an answer is out; only closing the connection is left
            response = await self.respond(Request(scope, receive), exc)
            await response(scope, receive, send)
