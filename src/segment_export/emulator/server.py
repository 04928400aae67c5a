"""Serving the emulator: a threaded server for tests and benchmarks, and a blocking one for
the CLI. Binds 127.0.0.1 unless told otherwise, and warns when told otherwise."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Self

import uvicorn

from segment_export.emulator.app import API_PREFIX, AUTH_PREFIX, create_emulator_app
from segment_export.emulator.backend import Backend
from segment_export.emulator.client import EmulatorControl
from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.sockets import bind, is_loopback

log = logging.getLogger(__name__)


def _uvicorn_config(backend: Backend) -> uvicorn.Config:
    # h11 explicitly: the drop fault reaches the transport through its request cycle.
    # log_config=None: never reconfigure the host process's logging.
    return uvicorn.Config(
        create_emulator_app(backend=backend),
        http="h11",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_keep_alive=75,  # longer than clients keep idle pooled connections
    )


class EmulatorServer:
    """The emulator on a background thread: ``with EmulatorServer(config) as emu: ...``.

    ``port=0`` picks a free port. ``emu.backend`` is the in-process state for white-box asserts.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backend: Backend | None = None,
    ) -> None:
        self.backend = backend or Backend(config)
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._control: EmulatorControl | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL of the emulated V3 API (what ``cc_api_url`` should be)."""
        return self.base_url + API_PREFIX

    @property
    def auth_url(self) -> str:
        """Base URL of the emulated authorization server (what ``cc_auth_url`` should be)."""
        return self.base_url + AUTH_PREFIX

    @property
    def control(self) -> EmulatorControl:
        """A control client of this emulator."""
        if self._control is None:
            raise RuntimeError("The emulator is not running; use it as a context manager.")
        return self._control

    def start(self, timeout: float = 10.0) -> Self:
        """Bind, start the server thread and wait until it accepts connections."""
        if not is_loopback(self.host):
            log.warning("The Constant Contact emulator listens on %s, not only on this machine",
                        self.host)
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.backend))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"emulator-{self.port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"The emulator did not start on {self.base_url}")
            time.sleep(0.005)
        self._server, self._thread, self._sock = server, thread, sock
        self._control = EmulatorControl(self.base_url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for its thread."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server, self._thread, self._sock = None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    config: EmulatorConfig | None = None,
    backend: Backend | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the emulator in the foreground until interrupted (``segment-export emulator serve``).

    ``sock``: an already bound socket (from ``bind``), so a caller can learn the port first.
    """
    if not is_loopback(host):
        log.warning("The Constant Contact emulator listens on %s, not only on this machine; "
                    "it has no authentication on its control endpoints", host)
    sock = sock or bind(host, port)
    try:
        uvicorn.Server(_uvicorn_config(backend or Backend(config))).run(sockets=[sock])
    finally:
        sock.close()
