"""Prometheus metrics: runs, contacts, Constant Contact requests, rate waits, tokens, queue."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pydantic import SecretStr
    from sqlalchemy import Engine

    from segment_export.constant_contact.ratelimit import RateLimiter
    from segment_export.db.models import Run

log = logging.getLogger(__name__)
PREFIX = "segment_export"
TERMINAL = ("succeeded", "succeeded_with_rejections", "failed", "cancelled", "skipped")
# Run counts that are contacts; each becomes one `outcome` of segment_export_contacts_total.
CONTACT_OUTCOMES = (
    "sent", "accepted", "rejected_locally", "rejected_by_constant_contact",
    "unsubscribed_not_added", "no_consent", "removed", "suppressed",
)
RUN_STATUSES = ("queued", "running", "paused", *TERMINAL)
# Ids in request paths would give every activity its own time series.
_ID_SEGMENT = re.compile(
    r"/(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9]+|[0-9a-fA-F]{24,})(?=/|$)"
)
_REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_WAIT_BUCKETS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)
_RUN_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def endpoint_of(path: str) -> str:
    """A request path with ids replaced by ``{id}``, e.g. ``/v3/activities/{id}``."""
    return _ID_SEGMENT.sub("/{id}", path.split("?", 1)[0])


class _RunsByStatus(Collector):
    """Runs per status read from the state store at scrape time, so every process agrees."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from sqlalchemy import func, select
        from sqlalchemy.exc import SQLAlchemyError

        from segment_export.db.models import Run

        family = GaugeMetricFamily(f"{PREFIX}_runs", "Runs in the state store, by status.",
                                   labels=["status"])
        try:
            with self._engine.connect() as conn:
                found = dict(conn.execute(
                    select(Run.status, func.count()).group_by(Run.status)).all())
        except SQLAlchemyError:
            return  # readiness reports the database; a scrape must not fail because of it
        for status in sorted(set(RUN_STATUSES) | set(found)):
            family.add_metric([status], float(found.get(status, 0)))
        yield family


class Metrics:
    """The product's metrics in one registry, made at a composition root (the ``Runtime``, the
    CLI) and handed to what records into it; nothing here is process-global."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.runs_finished = Counter(
            f"{PREFIX}_runs_finished", "Runs that ended, by final status.",
            ["status", "dry_run"], registry=r)
        self.run_seconds = Histogram(
            f"{PREFIX}_run_duration_seconds", "Wall time of finished runs, start to end.",
            buckets=_RUN_BUCKETS, registry=r)
        self.contacts = Counter(
            f"{PREFIX}_contacts", "Contacts of finished runs, by outcome (sent, accepted, "
            "rejected_locally, rejected_by_constant_contact, unsubscribed_not_added, "
            "no_consent, removed, suppressed).", ["outcome"], registry=r)
        self.requests = Counter(
            f"{PREFIX}_cc_requests", "Requests to Constant Contact by method, endpoint and "
            "HTTP status (error = no answer).", ["method", "endpoint", "status"], registry=r)
        self.request_seconds = Histogram(
            f"{PREFIX}_cc_request_duration_seconds", "Time to an answer from Constant Contact.",
            ["method", "endpoint"], buckets=_REQUEST_BUCKETS, registry=r)
        self.request_bytes = Counter(
            f"{PREFIX}_cc_request_bytes", "Request body bytes sent to Constant Contact.",
            ["endpoint"], registry=r)
        self.rate_wait = Histogram(
            f"{PREFIX}_rate_limit_wait_seconds", "Time requests waited for the per-API-key pace "
            "before being sent.", buckets=_WAIT_BUCKETS, registry=r)
        self.token_refreshes = Counter(
            f"{PREFIX}_token_refreshes", "Access-token refreshes at Constant Contact, by "
            "outcome (ok or failed).", ["outcome"], registry=r)
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Tasks waiting in the task queue for a worker.", registry=r)
        self._depth = 0.0
        self._pending: Callable[[], int] | None = None
        self.queue_depth.set_function(self._current_depth)
        for outcome in ("ok", "failed"):
            self.token_refreshes.labels(outcome=outcome)
        for outcome in CONTACT_OUTCOMES:
            self.contacts.labels(outcome=outcome)
        self._runs_collector: _RunsByStatus | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_process(cls) -> Metrics:
        """Metrics with the usual process_* and python_* series too: for the process that is
        scraped (``serve``, ``worker``); test apps and runtimes leave them out."""
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        made = cls()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=made.registry)
        return made

    # -- the hooks the product calls --------------------------------------------------------

    def observe_request(self, method: str, path: str, status: int | None, bytes_sent: int,
                        seconds: float) -> None:
        """One request to Constant Contact; the signature of ``RequestHook``."""
        endpoint = endpoint_of(path)
        self.requests.labels(method=method, endpoint=endpoint,
                             status="error" if status is None else str(status)).inc()
        self.request_seconds.labels(method=method, endpoint=endpoint).observe(seconds)
        if bytes_sent:
            self.request_bytes.labels(endpoint=endpoint).inc(bytes_sent)

    def observe_run(self, run: Run) -> None:
        """A run reached a final status: count it and its contacts (other statuses are ignored)."""
        if run.status not in TERMINAL:
            return
        self.runs_finished.labels(status=run.status, dry_run=str(bool(run.dry_run)).lower()).inc()
        if run.started_at is not None and run.finished_at is not None:
            self.run_seconds.observe(max(0.0, (run.finished_at - run.started_at).total_seconds()))
        if run.dry_run:
            return  # a dry run sends nothing; its would_* counts are a forecast
        counts = run.counts or {}
        for outcome in CONTACT_OUTCOMES:
            value = counts.get(outcome)
            if isinstance(value, int | float) and value > 0:
                self.contacts.labels(outcome=outcome).inc(value)

    def observe_rate_wait(self, seconds: float) -> None:
        """Seconds one request waited for its slot (what ``RateLimiter.acquire`` returns)."""
        self.rate_wait.observe(max(0.0, seconds))

    def observe_token_refresh(self, ok: bool) -> None:
        """One call to the token endpoint to refresh an access token, and whether it worked."""
        self.token_refreshes.labels(outcome="ok" if ok else "failed").inc()

    def set_queue_depth(self, depth: int) -> None:
        """Tasks waiting for a worker (``huey.pending_count()``); stops any tracking."""
        self._pending = None
        self._depth = float(depth)

    def track_queue_depth(self, pending: Callable[[], int]) -> None:
        """Read the queue depth from ``pending`` at every scrape instead of pushing it."""
        self._pending = pending

    def _current_depth(self) -> float:
        pending = self._pending
        if pending is None:
            return self._depth
        try:
            return float(pending())
        except Exception:  # a queue that went away must not break the scrape
            log.warning("queue depth could not be read", exc_info=True)
            return self._depth

    def track_runs(self, engine: Engine) -> None:
        """Also export ``segment_export_runs{status}``, counted in the state store per scrape."""
        with self._lock:
            if self._runs_collector is not None:
                self.registry.unregister(self._runs_collector)
            self._runs_collector = _RunsByStatus(engine)
            self.registry.register(self._runs_collector)

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def asgi_app(self) -> Any:
        """An ASGI app serving the exposition, to mount at ``/metrics``."""
        return make_asgi_app(self.registry)

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when absent): for tests and the CLI."""
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


class MeteredRateLimiter:
    """A rate limiter that reports every wait: ``MeteredRateLimiter(make_rate_limiter(...))``."""

    def __init__(self, inner: RateLimiter, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def acquire(self) -> float:
        """See ``RateLimiter.acquire``."""
        waited = self.inner.acquire()
        self._metrics.observe_rate_wait(waited)
        return waited


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a scrape is refused: the HTTP status, a short reason and the headers to send."""

    status: int
    reason: str
    headers: dict[str, str]


# Headers a reverse proxy adds: a request carrying one came through a proxy, so its loopback
# peer address says nothing about where it came from.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def scrape_refusal(*, token: SecretStr | None, authorization: str | None,
                   client_host: str | None, proxied: bool = False) -> Refusal | None:
    """Whether a request for the metrics is refused, and why (None: serve it).

    With ``SEGMENT_EXPORT_METRICS_TOKEN`` set, the request needs ``Authorization: Bearer
    <token>`` (compared in constant time), from any address. Unset, only a client on the
    loopback address is served, and only when the request did not come through a reverse
    proxy (``proxied``: it carries a forwarding header), since behind a proxy on the same
    machine every client looks local. ``client_host`` is the peer address of the connection as
    the server saw it (never a forwarded header): the one place to change if that must differ.
    """
    if token is not None:
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        given = credentials.strip().encode()
        if scheme.lower() == "bearer" and hmac.compare_digest(
                given, token.get_secret_value().encode()):
            return None
        return Refusal(401, "The metrics need Authorization: Bearer <SEGMENT_EXPORT_METRICS_TOKEN>",
                       {"WWW-Authenticate": 'Bearer realm="metrics"'})
    if _is_loopback(client_host) and not proxied:
        return None
    return Refusal(403, "The metrics are served to local clients only (not through a proxy); set "
                   "SEGMENT_EXPORT_METRICS_TOKEN to let a scraper elsewhere in", {})


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False  # a name (e.g. a test client's) is not an address we can vouch for
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one line every 15 seconds per scraper)."""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _IPv6WSGIServer(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


def guarded_wsgi_app(metrics: Metrics, token: SecretStr | None) -> Any:
    """``metrics``' exposition as a WSGI app that applies :func:`scrape_refusal` to every
    request."""
    from prometheus_client import make_wsgi_app

    inner = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        refused = scrape_refusal(
            token=token, authorization=environ.get("HTTP_AUTHORIZATION"),
            client_host=environ.get("REMOTE_ADDR"),
            proxied=any(f"HTTP_{h.upper().replace('-', '_')}" in environ for h in PROXY_HEADERS))
        if refused is None:
            return inner(environ, start_response)
        phrase = "Unauthorized" if refused.status == 401 else "Forbidden"
        start_response(f"{refused.status} {phrase}",
                       [("Content-Type", "text/plain; charset=utf-8"), *refused.headers.items()])
        return [refused.reason.encode() + b"\n"]

    return app


def serve(listen: str, metrics: Metrics, *, token: SecretStr | None = None) -> WSGIServer:
    """Serve ``metrics`` at ``host:port`` in a background thread (for ``worker``),
    with the same access rule as the web app's ``/metrics`` (:func:`scrape_refusal`).

    Returns the server (``server_port`` tells the port when 0 was asked; ``shutdown()``).
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        from segment_export.errors import ConfigurationError
        from segment_export.languages import N_

        raise ConfigurationError(N_("Metrics address %(listen)s is not host:port"),
                                 values={"listen": repr(listen)},
                                 field="metrics_listen")
    host = host.strip("[]") or "127.0.0.1"
    server_class = _IPv6WSGIServer if ":" in host else _ThreadingWSGIServer
    server = make_server(host, int(port), guarded_wsgi_app(metrics, token), server_class,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
