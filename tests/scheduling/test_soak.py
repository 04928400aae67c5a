"""The soak (`python -m bench.soak`) in compressed time: schedules every few seconds, a fault
every two, a worker killed on the way; it must end with its PASS verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import POSTGRES_URL, REDIS_URL, port_open, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_short_soak_passes(tmp_path: Path) -> None:
    require(port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    require(port_open("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--minutes", "0.3", "--every", "6",
         "--fault-every", "2", "--contacts", "400", "--workers", "2", "--settle-timeout", "90",
         "--postgres", POSTGRES_URL, "--redis", REDIS_URL, "--workdir", str(tmp_path / "soak"),
         "--json", str(report_path)],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
        timeout=300, check=False)
    verdict = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, (done.stdout[-4000:], done.stderr[-4000:])
    assert verdict.startswith("soak: PASS"), verdict
    report = json.loads(report_path.read_text())
    assert report["problems"] == []
    assert sum(report["faults"].values()) >= 5
    assert report["faulted_requests"] >= 1, "no request met an injected fault"
    assert report["runs"] >= 8
    assert report["counts_add_up"] == sum(
        n for status, n in report["statuses"].items() if status.startswith("succeeded"))
    assert all(lst["exact"] for lst in report["lists"].values())
    assert len(report["lists"]) == 4
