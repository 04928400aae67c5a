"""The command line end to end: connect over OAuth from a real process, configure, run, report."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from segment_export.cli import cli
from segment_export.emulator import EmulatorConfig, EmulatorServer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"SEGMENT_EXPORT_DATA_DIR": str(tmp_path / "data"),
           "SEGMENT_EXPORT_SECRET_KEY": Fernet.generate_key().decode(),
           "SEGMENT_EXPORT_CC_REQUESTS_PER_SECOND": "20", "COLUMNS": "200"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_connect_configure_run_and_report(cli_env: dict[str, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    redirect = f"http://127.0.0.1:{_free_port()}/oauth/callback"
    with EmulatorServer(EmulatorConfig(requests_per_second=50)) as emu:
        seeded = emu.control.seed(
            apps=[{"client_id": "cli-app", "client_secret": "cli-secret-0123456789",
                   "redirect_uris": [redirect]}],
            account={"organization_name": "CLI Shop"}, lists=["CLI list"])
        for key, value in {"SEGMENT_EXPORT_CC_API_URL": emu.api_url,
                           "SEGMENT_EXPORT_CC_AUTH_URL": emu.auth_url}.items():
            monkeypatch.setenv(key, value)
            cli_env[key] = value
        runner = CliRunner()

        def ok(*args: str) -> str:
            result = runner.invoke(cli, list(args), catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        ok("connections", "add", "CLI Shop newsletter", "--client-id", "cli-app",
           "--client-secret", "cli-secret-0123456789", "--i-agree", "--share",
           "--redirect-uri", redirect, "--no-authorize")

        # The sign-in, as a person does it: a process shows the URL and waits for the browser.
        process = subprocess.Popen(
            [sys.executable, "-m", "segment_export", "connections", "authorize",
             "CLI Shop newsletter"], env={**os.environ, **cli_env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if line.startswith(emu.auth_url):
                url = line.strip()
                break
        back_to_us = emu.control.approve_url(url)
        httpx.get(back_to_us, timeout=10)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "Connected to CLI Shop" in out

        profiles = tmp_path / "people.csv"
        pacsv.write_csv(pa.table({
            "customer_id": [1, 2, 3, 4],
            "email": ["ann@example.com", "BOB@example.com ", "not-an-email", "+cmd@"],
            "first_name": ["Ann", "Bob", "Cy", "Di"],
            "vip": [True, True, True, False],
        }), profiles)
        ok("profiles", "import", str(profiles))
        ok("segments", "create", "VIPs", "--where", "vip = true")
        ok("exports", "create", "VIP newsletter", "--connection", "CLI Shop newsletter",
           "--list-id", seeded.lists["CLI list"], "--map", "email=email",
           "--map", "first_name=first_name", "--segment", "VIPs")
        listing = ok("exports", "list")
        assert "view, edit, run, remove" in listing
        dry = ok("exports", "run", "VIP newsletter", "--dry-run")
        assert "would add" in dry
        assert emu.control.list_members(seeded.lists["CLI list"]) == set()
        report = ok("exports", "run", "VIP newsletter")
        assert "succeeded_with_rejections" in report
        assert emu.control.list_members(seeded.lists["CLI list"]) == {"ann@example.com",
                                                                       "bob@example.com"}
        runs = ok("runs", "list")
        assert "succeeded_with_rejections" in runs
        out_file = tmp_path / "rejected.csv"
        from segment_export.config import load_settings
        from segment_export.db import make_engine, make_session_factory
        from segment_export.exports.runs import list_runs

        with make_session_factory(make_engine(load_settings()))() as session:
            latest = list_runs(session, limit=1)[0]
        ok("runs", "rejected", latest.id[:8], "--out", str(out_file))
        with out_file.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["reason"] for r in rows] == ["invalid_email"]
        ok("connections", "test", "CLI Shop newsletter")
        said = ok("connections", "set", "CLI Shop newsletter", "--sms-only")
        assert "SMS-only contacts allowed" in said
        from segment_export.db.models import Connection

        with make_session_factory(make_engine(load_settings()))() as session:
            (connection,) = session.query(Connection).all()
            assert connection.sms_only_allowed is True
        assert "not allowed" in ok("connections", "set", "CLI Shop newsletter", "--no-sms-only")
