"""Twenty runs, each in a real `segment-export runs resume` process killed with SIGKILL at a
random point (seeded), then resumed by another such process: every run ends exact, with no
contact created twice and no confirmed batch confirmed again."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from segment_export.db.models import Run, RunBatch
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.exports.delivery import BatchMembers
from segment_export.exports.runs import request_run
from tests.exports.faults_support import (
    Zygote,
    assert_accounted,
    assert_exact,
    cli_env,
    expected,
    people,
)
from tests.world import World

RUNS = 20
MEMBERS = 200
BATCH = 25  # eight imports a run
SEED = 20261101


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    forker = Zygote(tmp_path / "zygote.log")
    yield forker
    forker.close()


def _imports_since(world: World, seq: int) -> int:
    return sum(1 for r in world.control.requests(seq) if r.path.endswith("contacts_json_import"))


def _confirmed_keys(world: World, run_id: str) -> list[int]:
    with world.sessions() as session:
        blobs = session.scalars(select(RunBatch.members).where(
            RunBatch.run_id == run_id, RunBatch.state == "confirmed")).all()
    return [k for blob in blobs if blob for k in BatchMembers.unpack_keys(blob)[0].tolist()]


def _batch_states(world: World, run_id: str) -> list[tuple[int, str, str | None]]:
    with world.sessions() as session:
        return [(b.seq, b.state, b.activity_id) for b in session.scalars(
            select(RunBatch).where(RunBatch.run_id == run_id).order_by(RunBatch.id))]


def _status(world: World, run_id: str) -> Run:
    with world.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


@pytest.mark.slow
def test_twenty_runs_killed_at_random_points_each_resume_exactly(
        world: World, zygote: Zygote) -> None:
    rng = random.Random(SEED)
    world.load_profiles(people(MEMBERS))
    segment = world.segment("all", "country = 'DE'")
    list_ids = world.control.seed(lists=[f"Killed {i}" for i in range(RUNS)]).lists
    exports = []
    with world.sessions.begin() as session:
        for i in range(RUNS):
            exports.append(create_export(session, actor=world.admin, spec=ExportSpec(
                name=f"killed {i}", connection_id=world.connection.id,
                list_id=list_ids[f"Killed {i}"], mapping={"email": "email"},
                segment_ids=[segment])))
    env = cli_env(world, batch=BATCH)
    world.store.close()  # DuckDB: one process at a time holds the profile store

    mid_run = left_unconfirmed = 0
    for i, export in enumerate(exports):
        with world.sessions.begin() as session:
            run_id = request_run(session, actor=world.admin, export=export).id
        # A random point: once 0..8 of the run's eight imports were sent, and up to 80 ms on.
        imports_first, extra = rng.randint(0, 8), rng.uniform(0.0, 0.08)
        seq = world.control.requests()[-1].seq
        worker = zygote.start(["runs", "resume", run_id], env)
        deadline = time.monotonic() + 30
        while (_imports_since(world, seq) < imports_first and zygote.exit_code(worker) is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        time.sleep(extra)
        os.kill(worker, signal.SIGKILL)
        killed = zygote.wait(worker) == -signal.SIGKILL
        at_kill = _batch_states(world, run_id)
        if killed and _status(world, run_id).status in {"queued", "running"}:
            mid_run += 1
            # Sent to Constant Contact, not yet confirmed: the resumer must settle these.
            left_unconfirmed += any(state == "sent" for _, state, _ in at_kill)

        resumer = zygote.start(["runs", "resume", run_id], env)
        assert zygote.wait(resumer) == 0, f"run {i} did not resume cleanly (see zygote.log)"
        done = _status(world, run_id)
        assert done.status == "succeeded", (i, done.message)
        assert_accounted(done, MEMBERS)
        assert world.control.list_members(list_ids[f"Killed {i}"]) == expected(MEMBERS)
        keys = _confirmed_keys(world, run_id)
        # Each member confirmed exactly once: no confirmed batch was sent again.
        assert sorted(keys) == sorted(set(keys)), (i, at_kill, _batch_states(world, run_id))
        assert len(keys) == MEMBERS

    assert_exact(world, list_ids["Killed 0"], expected(MEMBERS))  # and no contact twice
    assert mid_run >= RUNS * 3 // 4, f"only {mid_run} of {RUNS} kills landed mid-run"
    assert left_unconfirmed >= 3, "too few kills left batches sent but unconfirmed"
