"""The application factory, on top of both front ends: the REST API under /api, the web UI
beside it, and optionally the in-process worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from segment_export import __version__, metrics, web
from segment_export.api.errors import Problem, install_error_handlers
from segment_export.api.routes import (
    audit,
    connections,
    exports,
    health,
    runs,
    schedule,
    segments,
    users,
)
from segment_export.api.state import AppServices
from segment_export.api.throttle import SignInThrottle
from segment_export.config import Settings
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime

log = logging.getLogger(__name__)
# A run in progress stops at its next batch boundary; past this, shutdown stops waiting and the
# run resumes after its last confirmed batch on the next start.
WORKER_SHUTDOWN_SECONDS = 30.0
WORKER_MAX_POLL_SECONDS = 1.0
DOCS_ASSETS = "/api/docs/assets"


class SecurityHeaders:
    """Headers every answer carries: no framing, no sniffing, no referrer leaving the site
    (callback URLs carry OAuth codes), and a strict content security policy on pages."""

    def __init__(self, app: ASGIApp, *, form_targets: str) -> None:
        self.app = app
        self.policy = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"frame-ancestors 'none'; base-uri 'none'; form-action 'self' {form_targets}"
        ).strip().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Swagger UI's page starts itself with an inline script.
        docs = scope["path"] == "/api/docs"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"same-origin")]
                if not docs:
                    headers.append((b"content-security-policy", self.policy))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _metrics_route(settings: Settings, recorded: metrics.Metrics) -> Any:
    def scrape(request: Request) -> Response:
        """Prometheus metrics of this app (bearer token, or loopback clients only)."""
        refused = metrics.scrape_refusal(
            token=settings.metrics_token, authorization=request.headers.get("authorization"),
            client_host=request.client.host if request.client else None,
            proxied=any(h in request.headers for h in metrics.PROXY_HEADERS))
        if refused is not None:
            return PlainTextResponse(refused.reason, status_code=refused.status,
                                     headers=refused.headers)
        body, content_type = recorded.render()
        return Response(body, media_type=content_type)

    return scrape


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def start_worker_threads(queue: TaskQueue, *, workers: int | None = None) -> Any:
    """Start the queue's consumer (run workers and the minute tick) on threads of this process.

    Huey's consumer would install its own SIGINT/SIGTERM handlers when started; the web
    server owns the signals here and stops the consumer itself.
    """
    consumer = queue.consumer(workers=workers)
    consumer._set_signal_handlers = lambda: None
    consumer.shutdown_timeout = WORKER_SHUTDOWN_SECONDS
    # An idle worker polls the SQLite queue ever less often (up to 10 s by default); a run
    # someone just started on a page should begin within a second.
    for worker, _thread in consumer.worker_threads:
        worker.max_delay = WORKER_MAX_POLL_SECONDS
    consumer.start()
    return consumer


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    start_worker: bool = False,
    queue: TaskQueue | None = None,
    worker_threads: int | None = None,
) -> FastAPI:
    """The web app and REST API over one runtime (state store, profile store) and queue.

    ``start_worker`` runs the queue's consumer in this process while the app is up (``serve``);
    otherwise runs wait for a separate ``segment-export worker``.
    """
    runtime = runtime or Runtime(settings)
    queue = queue or TaskQueue(runtime)
    services = AppServices(settings=settings, runtime=runtime, queue=queue,
                           sign_ins=SignInThrottle(settings.redis_url))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        consumer = start_worker_threads(queue, workers=worker_threads) if start_worker else None
        if consumer is not None:
            log.info("in-process worker started (%s threads)",
                     worker_threads or settings.worker_threads)
        try:
            yield
        finally:
            if consumer is not None:
                log.info("stopping the in-process worker")
                await run_in_threadpool(consumer.stop, graceful=True)

    # Swagger UI's script and styles are served from the package, not a CDN: the API's
    # documentation works on a closed network too.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="segment-export",
        version=__version__,
        summary="Export customer segments to Constant Contact contact lists.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    services.metrics.track_queue_depth(queue.huey.pending_count)
    services.metrics.track_runs(runtime.engine)
    app.add_api_route("/metrics", _metrics_route(settings, services.metrics),
                      include_in_schema=False)
    for module in (health, users, connections, segments, exports, runs, schedule, audit):
        app.include_router(module.router)
    web.register(app)
    install_error_handlers(app, html=web.error_page)
    _add_problem_schema(app)
    app.add_middleware(SecurityHeaders, form_targets=_origin(settings.cc_auth_url))
    return app


def _add_problem_schema(app: FastAPI) -> None:
    """Complete the OpenAPI document: the problem document error answers refer to, and how
    to authenticate (an API token as a Bearer token; pages use the session cookie)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).setdefault("Problem",
                                                           Problem.model_json_schema())
            components.setdefault("securitySchemes", {})["apiToken"] = {
                "type": "http", "scheme": "bearer",
                "description": "An API token (`segment-export users token create`, or "
                               "Your account in the web app)."}
            schema["security"] = [{"apiToken": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
