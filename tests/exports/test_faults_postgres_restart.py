"""The PostgreSQL state database restarted mid-run, against the emulator over real HTTP.

The restart hits a private throwaway cluster started for the test (never the machine's server,
which others use): the run loses an attempt, not its progress, and ends with the list exact."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from segment_export.config import Settings
from segment_export.db import make_engine, upgrade_database
from tests.exports.faults_support import (
    assert_accounted,
    assert_exact,
    delivered,
    expected,
    imports,
    prepare,
    run,
)
from tests.services import require
from tests.world import World


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, in a temporary directory."""

    bindir: Path
    root: Path
    port: int
    as_owner: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"),
                        "-l", str(self.root / "server.log"), *args],
                       check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self.pg_ctl("-w", "-o", f"-p {self.port} -k {self.root} "
                    "-c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def restart(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "restart")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    require(bool(found), "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
    bindir = Path(found[-1]).parent
    # initdb refuses to run as root: then the cluster belongs to the postgres user, in a
    # directory of its own (pytest's tmp_path is closed to other users).
    as_owner = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="segment-export-pg-"))
    if as_owner:
        shutil.chown(root, "postgres", "postgres")
    cluster = PrivatePostgres(bindir, root, _free_port(), as_owner)
    try:
        subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(root / "data"), "-U",
                        "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        cluster.start()
        yield cluster
    finally:
        subprocess.run([*as_owner, str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sqlite_engine(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Engine]:
    """The `world` of this module keeps its state in the private PostgreSQL cluster."""
    cluster: PrivatePostgres = request.getfixturevalue("private_postgres")
    engine = make_engine(settings, url=cluster.url)
    upgrade_database(engine)
    yield engine
    engine.dispose()
@pytest.mark.slow
def test_postgresql_restarted_mid_run(private_postgres: PrivatePostgres, world: World) -> None:
    assert world.engine.dialect.name == "postgresql"
    n, batch = 3000, 100
    export = prepare(world, n, batch=batch)
    world.control.set_config(activity_seconds=0.3)  # the run outlasts the restart
    restarted: list[float] = []

    def restart_after_some_imports() -> None:
        deadline = time.monotonic() + 30
        while len(imports(world)) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        private_postgres.restart()
        restarted.append(time.monotonic() - started)

    watcher = threading.Thread(target=restart_after_some_imports)
    watcher.start()
    done = run(world, export)
    watcher.join()
    assert restarted, "the database was not restarted"
    assert done.status == "succeeded", done.message
    assert done.attempt >= 2  # the restart cost the run an attempt, not its progress
    assert_exact(world, world.list_id, expected(n))
    assert_accounted(done, n)
    assert delivered(world, export) == expected(n)
    # Confirmed batches were kept across the restart: at most the batches in flight repeat.
    assert len(imports(world)) <= n // batch + 8
