"""`segment-export users` (passwords, tokens) and `segment-export serve` (app + worker)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from segment_export.cli import cli


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"SEGMENT_EXPORT_DATA_DIR": str(tmp_path / "data"),
           "SEGMENT_EXPORT_SECRET_KEY": Fernet.generate_key().decode(), "COLUMNS": "200"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _ok(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_passwords_and_tokens(cli_env: dict[str, str]) -> None:
    from segment_export.config import load_settings
    from segment_export.db import make_engine, make_session_factory
    from segment_export.users import authenticate

    out = _ok("users", "create", "carla", "--role", "contributor")
    generated = re.search(r"Password \(shown only now\): (\S+)", out)
    assert generated is not None
    _ok("users", "create", "vic", "--role", "viewer", "--password-stdin",
        stdin="vics-password-123\n")
    _ok("users", "set-password", "carla", "--password-stdin", stdin="carlas-new-pass-1\n")
    listing = _ok("users", "list")
    assert re.search(r"carla\s+.*contributor\s+.*active\s+.*set", listing)
    engine = make_engine(load_settings())
    sessions = make_session_factory(engine)
    with sessions() as db:
        assert authenticate(db, username="vic", password="vics-password-123")
        assert authenticate(db, username="carla", password="carlas-new-pass-1")
    short = CliRunner().invoke(cli, ["users", "create", "x", "--role", "viewer",
                                     "--password-stdin"], input="short\n")
    assert short.exit_code != 0

    token = _ok("users", "token", "create", "nightly", "--user", "carla").strip().splitlines()[-1]
    assert token.startswith("se_")
    tokens = _ok("users", "token", "list", "--user", "carla")
    assert "nightly" in tokens
    assert token[:11] in tokens
    assert token not in tokens
    _ok("users", "token", "revoke", token[:11])
    # Revoked just now, written as the CLI's language writes dates (Dec 7, 2026 14:05 UTC).
    assert re.search(r"nightly.*[A-Z][a-z]{2} \d{1,2}, \d{4} \d\d:\d\d UTC\s*│?\s*$",
                     _ok("users", "token", "list", "--user", "carla"), re.M)
    _ok("users", "disable", "vic")
    assert re.search(r"vic\s+.*disabled", _ok("users", "list"))
    engine.dispose()


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            seen += line
            if re.search(pattern, seen):
                return seen
        elif proc.poll() is not None:
            break
    raise AssertionError(f"never saw {pattern!r}; output so far:\n{seen}")


def _serve(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "segment_export", "serve", "--port", "0", *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


@pytest.mark.slow
def test_serve_starts_app_and_worker_and_stops_on_signals(cli_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    env = {**os.environ, **cli_env}
    env.pop("SEGMENT_EXPORT_ADMIN_PASSWORD", None)
    with _serve(env, tmp_path, "--workers", "1") as proc:
        try:
            output = _read_until(proc, r"serving (http://127\.0\.0\.1:\d+)")
            url = re.search(r"serving (http://127\.0\.0\.1:\d+)", output)
            assert url is not None
            password = re.search(r"password:\s*\n\s+(\S+)", output)
            assert password is not None, output
            _wait_healthy(url.group(1))
            assert httpx.get(url.group(1) + "/api/ready").status_code == 200
            assert "worker started" in _read_until(proc, "in-process worker started")
            # The first admin signs in with the password printed once.
            from tests.api.harness import WebClient

            web = WebClient(url.group(1))
            assert web.login("admin", password.group(1)).status_code == 303
            web.close()
            proc.send_signal(signal.SIGINT)
            rest = proc.communicate(timeout=45)[0]
            assert proc.returncode == 0, rest
            assert "stopping the in-process worker" in rest
            assert password.group(1) not in rest
        finally:
            if proc.poll() is None:
                proc.kill()

    # The second start keeps the admin's password and prints none; SIGTERM stops it too.
    with _serve(env, tmp_path) as again:
        try:
            second = _read_until(again, r"serving (http://\S+)")
            url = re.search(r"serving (http://\S+)", second)
            assert url is not None
            _wait_healthy(url.group(1))
            assert "password" not in second.lower()
            again.send_signal(signal.SIGTERM)
            assert again.wait(timeout=45) == 0
        finally:
            if again.poll() is None:
                again.kill()


def test_serve_warns_when_not_on_loopback(cli_env: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from segment_export import net
    from segment_export.api import server

    calls: list[tuple[str, int]] = []
    # Only the blocking serve loop is replaced: binding, first start and the app are real.
    monkeypatch.setattr(server, "serve", lambda app, *, host, port, sock: calls.append(
        (host, sock.getsockname()[1])) or sock.close())
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "reachable from other machines" in result.output
    assert calls
    assert calls[0][0] == "0.0.0.0"  # noqa: S104
    from segment_export.cli.serve import serve_command

    host = next(p for p in serve_command.params if p.name == "host")
    assert host.default == "127.0.0.1"
    assert net.is_loopback("127.0.0.1")
    assert net.is_loopback("::1")
    assert not net.is_loopback("0.0.0.0")  # noqa: S104
