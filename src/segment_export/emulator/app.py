"""The emulator as an ASGI app: API, OAuth and control routes behind one outer layer that logs
each request and applies injected faults."""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Message, Receive, Scope, Send

from segment_export.emulator.backend import Backend
from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.control import CONTROL_PREFIX, CONTROL_ROUTES
from segment_export.emulator.errors import MESSAGES, ApiError, OAuthError, RedirectError
from segment_export.emulator.faults import Fault, drop_connection, fault_body
from segment_export.emulator.oauth import with_query
from segment_export.emulator.oauth_routes import OAUTH_ROUTES, PARTNER_ROUTES
from segment_export.emulator.routes import API_ROUTES, RECORD_KEY
from segment_export.emulator.wire import json_response

API_PREFIX = "/v3"
AUTH_PREFIX = "/oauth2/default/v1"
PARTNER_AUTH_PREFIX = "/partners/oauth2/default/v1"  # 2025-09


def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return json_response(exc.body, exc.status, headers=exc.headers)


def _oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    if isinstance(exc, RedirectError):
        params = {"error": exc.error, "error_description": exc.description, "state": exc.state}
        return RedirectResponse(with_query(exc.redirect_uri, params), status_code=302)
    headers = {"WWW-Authenticate": 'Basic realm="emulator"'} if exc.status == 401 else None
    return json_response(exc.body(), exc.status, headers=headers)


def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods, shaped like the API's other errors.
    assert isinstance(exc, HTTPException)
    key = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = MESSAGES.get(exc.status_code, str(exc.detail))
    return json_response([{"error_key": key, "error_message": message}], exc.status_code,
                         headers=exc.headers)


async def _index(request: Request) -> Response:
    """What this server is, for someone who opens it in a browser."""
    return json_response(
        {
            "emulator": "Constant Contact V3 (segment-export sandbox mode)",
            "api": f"{request.base_url}{API_PREFIX.lstrip('/')}",
            "oauth": f"{request.base_url}{AUTH_PREFIX.lstrip('/')}",
            "control": f"{request.base_url}{CONTROL_PREFIX.lstrip('/')}",
        }
    )


class EmulatorApp(Starlette):
    """Starlette plus an outermost layer that sees uvicorn's own ``send``: it logs every API and
    OAuth request and applies the fault it meets (a dropped connection needs the transport)."""

    backend: Backend

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX) or path in ("", "/"):
            await super().__call__(scope, receive, send)
            return
        backend = self.backend
        record = backend.start_request(
            method=scope["method"], path=path, query=scope["query_string"].decode("latin-1")
        )
        scope[RECORD_KEY] = record
        started = time.perf_counter()

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                record.request_bytes += len(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        fault = backend.take_fault(scope["method"], path)
        try:
            if fault is None:
                await super().__call__(scope, counting_receive, recording_send)
            else:
                record.fault = fault.label
                await self._with_fault(fault, scope, counting_receive, recording_send, send)
        finally:
            record.duration = time.perf_counter() - started

    async def _with_fault(
        self, fault: Fault, scope: Scope, receive: Receive, respond: Send, raw_send: Send
    ) -> None:
        if fault.kind == "slow" and fault.when == "before":
            await asyncio.sleep(fault.delay)
            await super().__call__(scope, receive, respond)
            return
        if fault.when == "during":
            await receive()  # the first part of the body arrives; the rest is never read
            await drop_connection(raw_send, receive)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        if fault.when == "after":
            await super().__call__(scope, receive, hold)  # processed; the answer is held back
        else:
            await _drain(receive)  # not processed
        if fault.kind == "drop":
            await drop_connection(raw_send, receive)
        elif fault.kind == "slow":
            await asyncio.sleep(fault.delay)
            for message in held:
                await respond(message)
        else:
            response = json_response(fault_body(fault.status), fault.status)
            await response(scope, _no_body, respond)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def create_emulator_app(
    config: EmulatorConfig | None = None, *, backend: Backend | None = None
) -> Starlette:
    """A new, isolated emulator app (its own backend unless one is given)."""
    backend = backend or Backend(config)
    app = EmulatorApp(
        routes=[
            Route("/", _index, methods=["GET"]),
            Mount(API_PREFIX, routes=API_ROUTES),
            Mount(AUTH_PREFIX, routes=OAUTH_ROUTES),
            Mount(PARTNER_AUTH_PREFIX, routes=PARTNER_ROUTES),
            Mount(CONTROL_PREFIX, routes=CONTROL_ROUTES),
        ],
        exception_handlers={
            ApiError: _api_error,
            OAuthError: _oauth_error,
            HTTPException: _http_error,
        },
    )
    app.backend = backend
    app.state.backend = backend
    return app
