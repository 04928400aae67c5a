"""Serving the app with uvicorn: in the foreground for `serve`, on a thread for tests."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn
from fastapi import FastAPI

from segment_export.net import bind, is_loopback

log = logging.getLogger(__name__)


def trusted_proxies(app: FastAPI) -> list[str]:
    """The proxies whose X-Forwarded-For the app believes (SEGMENT_EXPORT_TRUSTED_PROXIES of
    the app's settings); none for an app without them."""
    services = getattr(app.state, "services", None)
    settings = getattr(services, "settings", None)
    return list(getattr(settings, "trusted_proxy_list", []))


def _config(app: FastAPI) -> uvicorn.Config:
    # Forwarded headers are believed only from the configured proxies, never by uvicorn's
    # default (which trusts 127.0.0.1, or FORWARDED_ALLOW_IPS from the environment). The
    # client becomes the right-most X-Forwarded-For address that is not a trusted proxy.
    trusted = trusted_proxies(app)
    # log_config=None: never reconfigure the process's logging (ours redacts secrets).
    return uvicorn.Config(app, http="h11", lifespan="on", log_config=None, access_log=False,
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted)


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000,
          sock: socket.socket | None = None) -> None:
    """Run ``app`` in the foreground until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    if not is_loopback(host):
        log.warning("The web app listens on %s, reachable from other machines; put it behind "
                    "https and set SEGMENT_EXPORT_PUBLIC_URL", host)
    sock = sock or bind(host, port)
    if trusted_proxies(app):
        log.info("X-Forwarded-For is believed from %s only", ", ".join(trusted_proxies(app)))
    # uvicorn shuts down on SIGINT/SIGTERM, then raises the signal again for the handlers it
    # found: these make that a normal return (exit 0) rather than a traceback or a kill.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(_config(app)).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()


class AppServer:
    """The app on a background thread: ``with AppServer(app) as server: server.url``."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> Self:
        """Take the port now (to build redirect URIs from it) and start later."""
        if self._sock is None:
            self._sock = bind(self.host, self.port)
            self.port = self._sock.getsockname()[1]
        return self

    def start(self, timeout: float = 20.0) -> Self:
        """Start serving and wait until the app (and its lifespan) is up."""
        sock = self.bind()._sock
        assert sock is not None
        server = uvicorn.Server(_config(self.app))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name=f"app-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"The app did not start on {self.url}")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout: float = 40.0) -> None:
        """Stop serving (the lifespan stops the in-process worker) and wait for the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server, self._thread, self._sock = None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
