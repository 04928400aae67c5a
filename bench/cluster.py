"""A deployment in processes on one machine: the emulator and `segment-export worker`s, each in
its own process, sharing PostgreSQL and Redis (the soak and the multi-worker tests use it)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from segment_export.config import Settings
from segment_export.emulator.client import EmulatorControl

_LISTENING = re.compile(r"Constant Contact emulator on (http://\S+)")


@dataclass
class EmulatorProcess:
    """``segment-export emulator serve`` in a child process, on a free port."""

    process: subprocess.Popen[bytes]
    base_url: str
    control: EmulatorControl

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v3"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/oauth2/default/v1"


@contextmanager
def emulator_process(log_path: Path, *, requests_per_second: float = 4.0,
                     activity_seconds: float = 0.2,
                     timeout: float = 30.0) -> Iterator[EmulatorProcess]:
    """Start the emulator with Constant Contact's limits (4 requests/s by default); stop it after.

    Its own process: the request log then times requests as they arrive, not as a busy test
    process gets round to them.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "segment_export", "emulator", "serve", "--port", "0",
             "--auto-approve", "--requests-per-second", str(requests_per_second),
             "--activity-seconds", str(activity_seconds)],
            stdout=subprocess.PIPE, stderr=log, env={**_clean_env(), "PYTHONUNBUFFERED": "1"})
        try:
            base_url = _await_line(process, timeout)
            control = EmulatorControl(base_url)
            try:
                yield EmulatorProcess(process, base_url, control)
            finally:
                control.close()
        finally:
            _stop(process)


def _await_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode()
        found = _LISTENING.search(line)
        if found:
            # Keep reading what it prints, so a full pipe can never stall it.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return found.group(1)
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"The emulator did not start (exit code {process.poll()})")


def _clean_env() -> dict[str, str]:
    # The children get exactly the settings given, never the caller's own SEGMENT_EXPORT_*.
    return {k: v for k, v in os.environ.items() if not k.startswith("SEGMENT_EXPORT_")}


def settings_environment(settings: Settings) -> dict[str, str]:
    """The SEGMENT_EXPORT_* variables that give a child process exactly ``settings``."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"SEGMENT_EXPORT_{name.upper()}"] = str(value)
    # A generated key lives in the data dir; a child with another data dir needs it spelled out.
    env["SEGMENT_EXPORT_SECRET_KEY"] = ",".join(k.decode() for k in settings.encryption_keys)
    return env


@dataclass
class Worker:
    """One `segment-export worker` process; ``name`` says which in its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Workers:
    """Several `segment-export worker` processes, each with its own data directory (as if on its
    own machine) and the same state store, queue and settings otherwise."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.workers: list[Worker] = []
        self.killed: dict[int, float] = {}
        """pid -> time.time() of its SIGKILL."""

    def start(self, count: int, *, threads: int = 1) -> list[Worker]:
        started = []
        for _ in range(count):
            name = f"worker-{len(self.workers) + 1}"
            home = self.directory / name
            home.mkdir(parents=True, exist_ok=True)
            env = {**_clean_env(), **settings_environment(self.settings),
                   "SEGMENT_EXPORT_DATA_DIR": str(home / "data"), "PYTHONUNBUFFERED": "1"}
            log_path = home / "worker.log"
            log = log_path.open("wb")
            process = subprocess.Popen(
                [sys.executable, "-m", "segment_export", "worker", "--threads", str(threads)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
            worker = Worker(name, process, log_path, log)
            self.workers.append(worker)
            started.append(worker)
        return started

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every live worker has printed that it started."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.pid in self.killed:
                continue
            while "Worker " not in worker.log_text() or " started (" not in worker.log_text():
                if worker.process.poll() is not None:
                    raise RuntimeError(f"{worker.name} exited:\n{worker.log_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{worker.name} did not start:\n{worker.log_text()[-3000:]}")
                time.sleep(0.1)

    def by_pid(self, pid: int) -> Worker | None:
        return next((w for w in self.workers if w.pid == pid), None)

    def kill(self, worker: Worker) -> None:
        """SIGKILL: no shutdown code runs, as when a machine loses power."""
        worker.process.send_signal(signal.SIGKILL)
        self.killed[worker.pid] = time.time()
        worker.process.wait(10)

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def stop(self) -> None:
        """SIGTERM (a graceful stop) to every live worker, then wait for them."""
        for worker in self.alive():
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            _stop(worker.process)
            worker._log.close()


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with suppress(OSError):
                stream.close()


def worker_pid(worker_id: str | None) -> int | None:
    """The pid in a run's worker id (``host:pid:n``)."""
    if not worker_id:
        return None
    parts = worker_id.split(":")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


__all__ = ["EmulatorProcess", "Worker", "Workers", "emulator_process", "settings_environment",
           "worker_pid"]


def max_in_any_second(times: list[float]) -> int:
    """The most requests sent within any one second (any 1-s window, not calendar seconds)."""
    times = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best
