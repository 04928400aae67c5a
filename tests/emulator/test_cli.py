"""`segment-export emulator serve` as a user runs it: a real process on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from segment_export.cli import cli
from segment_export.emulator import EmulatorControl
from segment_export.net import is_loopback

SEGMENT_EXPORT = Path(sys.executable).parent / "segment-export"


@pytest.mark.slow  # a new interpreter importing the whole CLI: 3-15 s on a busy 2-core box
def test_serve_runs_a_seeded_demo_emulator() -> None:
    with subprocess.Popen(
        [str(SEGMENT_EXPORT), "emulator", "serve", "--port", "0", "--seed-demo",
         "--activity-seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:
        try:
            _check_demo_emulator(process)
        finally:
            process.terminate()
            process.wait(timeout=20)


def _check_demo_emulator(process: subprocess.Popen[str]) -> None:
    """Read the banner, then look at the demo account through the control API."""
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert banner.startswith("Constant Contact emulator on http://127.0.0.1:")
    base_url = banner.split(" on ")[1].strip()
    lines = [process.stdout.readline().strip() for _ in range(4)]
    assert f"SEGMENT_EXPORT_CC_API_URL={base_url}/v3" in lines
    with EmulatorControl(base_url) as control:
        deadline = time.monotonic() + 20
        while not control.health():
            assert time.monotonic() < deadline, "the emulator did not come up"
            time.sleep(0.05)
        state = control.state()
        assert state["apps"] == ["sandbox-client-id"]
        assert [x["name"] for x in state["lists"]] == ["Sandbox newsletter"]
        assert state["config"]["activity_seconds"] == 2


def test_non_loopback_host_is_warned_about() -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: the bind fails, after the warning.
    result = CliRunner().invoke(cli, ["emulator", "serve", "--host", "192.0.2.1", "--port", "0"])
    assert "Warning: listening on 192.0.2.1, not only on this machine" in result.output
    assert result.exit_code != 0
    assert "Cannot listen on 192.0.2.1" in result.output


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")  # noqa: S104 - only compared, never bound
    assert not is_loopback("10.1.2.3")
    assert not is_loopback("example.com")
