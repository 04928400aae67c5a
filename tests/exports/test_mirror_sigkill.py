"""Mirror runs whose removal phase is killed with SIGKILL in a real `segment-export runs resume`
process, at seeded random points, then resumed by another such process: each list ends
exact, with the contact a person added by hand (an address this export never delivered) still
on it, a leaver a person put back after this export's removal completed still on it, and
every removal batch numbered once."""

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
from segment_export.exports.delivery import RemovalMembers
from segment_export.exports.runs import request_run
from tests.exports.faults_support import Zygote, cli_env
from tests.exports.test_mirror_resume import (
    LEAVING,
    STAYING,
    N,
    assert_batches_numbered_once,
    assert_removal_counts,
    hand_add,
    people,
    refresh,
)
from tests.world import World

TRIES = 6
SEED = 20261207
# Activities take this long in half the tries: the killed process then sits in each wait (its
# polls are a second apart), so kills land while a removal is sent but not yet confirmed.
SLOW_ACTIVITY = 0.3


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    forker = Zygote(tmp_path / "zygote.log")
    yield forker
    forker.close()


def _requests_since(world: World, seq: int, suffix: str) -> int:
    return sum(1 for r in world.control.requests(seq)
               if r.method == "POST" and r.path.endswith(suffix))


def _status(world: World, run_id: str) -> Run:
    with world.sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _removals(world: World, run_id: str) -> list[RunBatch]:
    with world.sessions() as session:
        return list(session.scalars(select(RunBatch).where(
            RunBatch.run_id == run_id, RunBatch.kind == "remove").order_by(RunBatch.id)))


def test_removal_phases_killed_at_random_points_resume_with_the_lists_exact(
        world: World, zygote: Zygote) -> None:
    started = time.monotonic()
    rng = random.Random(SEED)
    world.load_profiles(people(N))
    segment = world.segment("members", "country = 'DE'")
    lists = world.control.seed(lists=[f"Killed {i}" for i in range(TRIES)]).lists
    exports, hand = [], []
    for i in range(TRIES):
        world.list_id = lists[f"Killed {i}"]
        exports.append(world.export(f"killed {i}", [segment], mode="mirror"))
        assert world.run(exports[i]).status == "succeeded"
        hand.append(f"Hand{i}@Elsewhere.test")
        hand_add(world, lists[f"Killed {i}"], hand[i])
    world.load_profiles(people(N, leaving=LEAVING))
    refresh(world)
    env = cli_env(world, batch=500)
    world.store.close()  # DuckDB: one process at a time holds the profile store

    in_removal = left_unconfirmed = kept_by_hand = 0
    for i, export in enumerate(exports):
        list_id = lists[f"Killed {i}"]
        slow = i % 2 == 1
        world.control.set_config(activity_seconds=SLOW_ACTIVITY if slow else 0.0)
        with world.sessions.begin() as session:
            run_id = request_run(session, actor=world.admin, export=export).id
        # A random point of the removal phase: once the list's lookup, or the first or
        # second removal (of 500, then 100) was asked for, and a little later.
        removals_first = rng.randint(0, 2)
        extra = rng.uniform(0.05, 1.2) if slow else rng.uniform(0.0, 0.03)
        seq = world.control.requests()[-1].seq
        worker = zygote.start(["runs", "resume", run_id], env)
        deadline = time.monotonic() + 20
        while zygote.exit_code(worker) is None and time.monotonic() < deadline and (
                _requests_since(world, seq, "contact_exports") == 0
                or _requests_since(world, seq, "remove_list_memberships") < removals_first):
            time.sleep(0.003)
        time.sleep(extra)
        os.kill(worker, signal.SIGKILL)
        killed = zygote.wait(worker) == -signal.SIGKILL
        at_kill = _removals(world, run_id)
        if killed and _status(world, run_id).status == "running":
            in_removal += 1
            left_unconfirmed += any(b.state in ("pending", "sent") for b in at_kill)
        # A person puts back one leaver whose removal is known to be done (its activity named
        # on its batch, the contact off the list): it must stay.
        on_list = world.control.list_members(list_id)
        done_by_us = _removed_by_us(at_kill, on_list)
        # (Its own generator: the kill points stay the seed's whatever each kill found.)
        readded = {random.Random(SEED + i).choice(done_by_us)} if done_by_us else set()
        if readded:
            hand_add(world, list_id, *readded)
            kept_by_hand += 1

        resumer = zygote.start(["runs", "resume", run_id], env)
        assert zygote.wait(resumer) == 0, f"try {i} did not resume cleanly (see zygote.log)"
        done = _status(world, run_id)
        context = (i, [(b.seq, b.state, b.activity_id) for b in at_kill], readded)
        assert done.status == "succeeded", (context, done.message)
        assert world.control.list_members(list_id) == (
            STAYING | {hand[i].lower()} | readded), context
        assert_removal_counts(done, len(LEAVING))
        assert_batches_numbered_once(world, run_id)

    assert in_removal >= TRIES - 1, f"only {in_removal} of {TRIES} kills landed mid-run"
    assert left_unconfirmed >= 2, "too few kills left a removal sent but unconfirmed"
    assert kept_by_hand >= 2, "too few tries put a removed leaver back by hand"
    assert time.monotonic() - started < 50


def _removed_by_us(batches: list[RunBatch], on_list: set[str]) -> list[str]:
    """Leavers off the list whose removal's activity the batch names (so it was sent)."""
    emails: list[str] = []
    for batch in batches:
        members = RemovalMembers.unpack(batch.members)
        if batch.activity_id is not None and members is not None:
            emails += [str(e) for e in members.emails.to_pylist() if e not in on_list]
    return sorted(emails)
