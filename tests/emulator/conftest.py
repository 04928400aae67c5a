"""Fixtures of the emulator tests: one emulator per session on a fake clock, reset before each
test, and an API client with a fresh token."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from segment_export.emulator import Backend, EmulatorConfig, EmulatorServer
from tests.emulator.helpers import FakeClock, api_client, tokens

# Limits high enough that tests not about limits never meet them.
UNLIMITED = {"requests_per_second": 10_000, "daily_quota": 10_000_000,
             "token_requests_per_second": 10_000}


@pytest.fixture(scope="session")
def _session_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def _server(_session_clock: FakeClock) -> Iterator[EmulatorServer]:
    backend = Backend(EmulatorConfig(**UNLIMITED), clock=_session_clock)
    with EmulatorServer(backend=backend) as server:
        yield server


@pytest.fixture
def clock(_session_clock: FakeClock) -> FakeClock:
    _session_clock.reset()
    return _session_clock


@pytest.fixture
def emu(_server: EmulatorServer, clock: FakeClock) -> EmulatorServer:
    """The session's emulator, reset: no apps, lists, contacts, faults; unlimited rates."""
    _server.backend.reset()
    return _server


@pytest.fixture
def api(emu: EmulatorServer) -> Iterator[httpx.Client]:
    """An API client holding a valid access token of the test app."""
    with api_client(emu, tokens(emu)["access_token"]) as client:
        yield client
