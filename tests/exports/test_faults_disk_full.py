"""The data directory's disk full mid-run, against the emulator over real HTTP: a clear error
that names the place and says no space is left, nothing recorded as delivered that was not, and
after space is freed the export finishes with the list exact.

The disk is a small tmpfs mounted for the test (root only; skipped elsewhere, failed in CI):
the product meets a real ENOSPC/SQLITE_FULL, not a mocked write."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segment_export.config import Settings
from segment_export.exports.runs import get_run, list_runs, run_to_completion
from segment_export.profiles.imports import ProfileImport
from segment_export.storage import StorageFullError
from tests.exports.faults_support import (
    assert_exact,
    delivered,
    deps,
    expected,
    imports,
    people,
    prepare,
    run,
)
from tests.services import require
from tests.world import World


def _tmpfs(size: str) -> Iterator[Path]:
    target = Path(tempfile.mkdtemp(prefix="segment-export-full-"))
    mounted = os.getuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)],
        capture_output=True, check=False).returncode == 0
    try:
        require(mounted, "a small tmpfs to fill (mount -t tmpfs needs root)")
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    yield from _tmpfs("24m")


@pytest.fixture
def settings(small_disk: Path, settings: Settings) -> Settings:
    """The data directory on the small disk (only in this module)."""
    return settings.model_copy(update={"data_dir": small_disk / "data"})


def _fill(disk: Path) -> Path:
    ballast = disk / "ballast"
    # Unbuffered: a buffered file would raise ENOSPC again at close, for the bytes its last
    # flush could not write, and leave the ballast's size to chance.
    with ballast.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass
    return ballast


def test_disk_full_mid_run_is_a_clear_error_and_nothing_is_lost(
        world: World, small_disk: Path) -> None:
    assert str(world.settings.data_dir).startswith(str(small_disk))
    n, batch = 2000, 100
    export = prepare(world, n, batch=batch)
    world.control.set_config(activity_seconds=0.3)  # the run outlasts the filling of the disk
    ballast: list[Path] = []

    def fill_after_some_imports() -> None:
        deadline = time.monotonic() + 30
        while len(imports(world)) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        ballast.append(_fill(small_disk))

    worker = deps(world)
    watcher = threading.Thread(target=fill_after_some_imports)
    watcher.start()
    outcome: Any
    try:
        outcome = run(world, export, using=worker)
    except StorageFullError as exc:
        outcome = exc
    watcher.join()
    assert ballast, "the disk was not filled"
    message = outcome.message or ""
    assert "no space left" in message.lower(), message
    assert str(world.settings.data_dir) in message
    if not isinstance(outcome, StorageFullError):
        assert (outcome.status, outcome.error_kind) == ("failed", "storage_full")

    # Nothing recorded as delivered that Constant Contact did not confirm.
    confirmed = delivered(world, export)
    assert confirmed  # some batches were confirmed before the disk filled
    assert confirmed <= world.members()

    ballast[0].unlink()  # space again
    with world.sessions() as session:
        (stopped,) = list_runs(session, export=export, limit=1)
    if stopped.status == "running":
        # Not even its status fitted on the disk: the worker resumes it once space is back
        # (another worker would, once this one is gone or its heartbeat stale).
        finished = run_to_completion(stopped.id, deps=worker, backoff=0.01)
    else:
        finished = run(world, export, using=worker)
    assert finished.status == "succeeded", finished.message
    assert_exact(world, world.list_id, expected(n))
    with world.sessions() as session:
        assert get_run(session, run_id=finished.id).status == "succeeded"
    assert finished.counts["in_segment"] == n


def test_disk_full_during_a_profile_import_says_so_and_keeps_the_old_profiles(
        world: World, small_disk: Path, tmp_path: Path) -> None:
    world.load_profiles(people(500))
    big = tmp_path / "everyone.csv"  # on the roomy disk; only the store is on the small one
    with big.open("w", encoding="utf-8") as handle:
        handle.write("customer_id,email,first_name,notes\n")
        for i in range(200_000):
            handle.write(f"{i},p{i}@example.com,N{i},{'x' * 60}\n")
    ballast = _fill(small_disk)
    with pytest.raises(StorageFullError) as raised:
        world.store.import_file(big, ProfileImport(id_column="customer_id"))
    message = raised.value.message
    assert "no space left" in message.lower(), message
    assert str(world.settings.data_dir) in message
    assert "cannot be read" not in message  # not blamed on the file
    ballast.unlink()
    assert world.store.count() == 500  # the profiles before the import are intact
