"""Contact ids kept from the list's export, against the emulator over real HTTP: a mirror run
whose leavers all have kept ids makes no contact export and no lookup; a contact deleted and
re-created by hand keeps its id (FACTS.md: deleted contacts persist, re-activated) and is
removed by it; a kept id that no longer exists still removes the right contact and nobody
else; a run killed (SIGKILL stand-in) mid-removal with kept ids resumes with the list exact;
and ids never outlive the export's list."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import func, select

from segment_export.db.models import Export, ExportContactIds
from segment_export.db.types import utcnow
from segment_export.definitions.exports import spec_of, update_export
from segment_export.exports.contact_ids import known_contact_ids, learn_contact_ids
from segment_export.exports.diff import fingerprints
from tests.exports.test_mirror_resume import (
    CrashAt,
    assert_batches_numbered_once,
    assert_removal_counts,
    batches,
    crash_then_resume,
    hand_add,
    people,
    refresh,
    remove_posts,
    resume,
)
from tests.world import World

N = 200
FIRST_WAVE = range(1, 61)  # 60 leavers: more than are looked up one by one, so an export
SECOND_WAVE = range(61, 131)  # 70 more, every one with a kept id
STRANGER = "stranger@elsewhere.test"


def emails(numbers: range | list[int]) -> set[str]:
    return {f"m{i}@example.com" for i in numbers}


def key_of(email: str) -> int:
    keys, _ = fingerprints(pa.table({"email": pa.array([email], pa.string())}))
    return int(keys[0])


def _wave(world: World, leaving: range | list[int]) -> None:
    world.load_profiles(people(N, leaving=leaving))
    refresh(world)


def _lookups(world: World, since: int) -> list[str]:
    """The requests that look contacts up: contact exports and lookups by email (the run's
    check of recent unsubscribes, a contacts listing by ``optout_after``, is not one)."""
    return [f"{r.method} {r.path}?{r.query}" for r in world.control.requests(since)
            if "contact_exports" in r.path
            or (r.path.rstrip("/").endswith("/contacts") and "email=" in r.query)]


def _learnt(world: World) -> World:
    """Deliver N members, then let the first wave leave: its run exports the list and keeps
    the ids of every member on it."""
    world.load_profiles(people(N))
    export = world.export("ids", [world.segment("members", "country = 'DE'")], mode="mirror")
    assert world.run(export).status == "succeeded"
    hand_add(world, world.list_id, STRANGER)
    _wave(world, FIRST_WAVE)
    since = world.control.requests()[-1].seq
    first = world.run(export)
    assert first.status == "succeeded", first.message
    assert first.counts["removed"] == len(FIRST_WAVE)
    assert sum(1 for r in _lookups(world, since) if r.startswith("POST")) == 1
    world.export_under_test = export  # type: ignore[attr-defined]
    return world


def _contact_id(world: World, email: str) -> str:
    (contact,) = [c for c in world.control.contacts() if c["email"] == email]
    return str(contact["contact_id"])


def test_ids_kept_by_one_run_spare_the_next_its_export_and_lookups(world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    with world.sessions() as session:
        rows = session.execute(select(ExportContactIds.members,
                                      func.length(ExportContactIds.contact_ids))).all()
    # Compact: 16 bytes an id, one per member still on the list (the first wave removed).
    assert sum(m for m, _ in rows) >= N - len(FIRST_WAVE)
    assert all(size == 16 * m for m, size in rows)
    kept = known_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                             keys=np.array([key_of("m150@example.com")]))
    assert kept == {key_of("m150@example.com"): _contact_id(world, "m150@example.com")}

    _wave(world, [*FIRST_WAVE, *SECOND_WAVE])
    since = world.control.requests()[-1].seq
    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert _lookups(world, since) == []  # no contact export, no lookup one by one
    assert remove_posts(world, since) == 1
    assert world.members() == emails(range(131, N + 1)) | {STRANGER}
    assert (done.counts["removed"], done.counts["already_off_list"]) == (len(SECOND_WAVE), 0)
    assert_removal_counts(done, len(SECOND_WAVE))


def test_a_contact_deleted_and_re_created_by_hand_is_removed_by_its_kept_id(
        world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    before = _contact_id(world, "m100@example.com")
    # A person deletes the contact in Constant Contact, then adds the address back by hand:
    # the deleted contact persists and comes back with its id (FACTS.md).
    world.emulator.backend.delete_contact(contact_id=before)
    assert "m100@example.com" not in world.members()
    hand_add(world, world.list_id, "m100@example.com")
    assert _contact_id(world, "m100@example.com") == before
    snapshot = {c["email"]: c["list_ids"] for c in world.control.contacts()}

    _wave(world, [*FIRST_WAVE, *SECOND_WAVE])
    since = world.control.requests()[-1].seq
    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert _lookups(world, since) == []
    assert world.members() == emails(range(131, N + 1)) | {STRANGER}
    # Nobody but the leavers lost a list.
    after = {c["email"]: c["list_ids"] for c in world.control.contacts()}
    assert {e for e in after if after[e] != snapshot[e]} == emails(SECOND_WAVE)


def test_a_kept_id_that_no_longer_exists_still_removes_the_right_contact(
        world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    # m100's kept id now names no contact of the account (purged, or another account's).
    gone = str(uuid.uuid4())
    learn_contact_ids(world.engine, export_id=export.id, list_id=world.list_id,
                      keys=np.array([key_of("m100@example.com")]), ids=pa.array([gone]),
                      learnt_at=utcnow())
    snapshot = {c["email"]: c["list_ids"] for c in world.control.contacts()}

    _wave(world, [*FIRST_WAVE, *SECOND_WAVE])
    since = world.control.requests()[-1].seq
    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert world.members() == emails(range(131, N + 1)) | {STRANGER}
    after = {c["email"]: c["list_ids"] for c in world.control.contacts()}
    assert {e for e in after if after[e] != snapshot[e]} == emails(SECOND_WAVE)
    assert_removal_counts(done, len(SECOND_WAVE))
    # The removal that named the stale id did not report every contact done: none of its ids
    # was trusted again, and its leavers were looked up on the list.
    removals = [b for b in batches(world, done.id) if b[0] == "remove"]
    assert [state for _, _, state, _, _ in removals] == ["failed", "confirmed"]
    assert _lookups(world, since), "the leavers were looked up again"
    assert_batches_numbered_once(world, done.id)


@pytest.mark.parametrize("crash", [
    CrashAt("POST", "remove_list_memberships"),
    CrashAt("POST", "remove_list_memberships", when="after"),
    CrashAt("GET", "", nth=1, when="after", removal_poll=True),
], ids=["before the removal", "after it was sent, answer lost", "after it completed"])
def test_a_run_killed_mid_removal_with_kept_ids_resumes_with_the_list_exact(
        world: World, crash: CrashAt) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    _wave(world, [*FIRST_WAVE, *SECOND_WAVE])
    since = world.control.requests()[-1].seq
    run_id, _ = crash_then_resume(world, export, crash)

    done = resume(world, run_id)

    assert done.status == "succeeded", done.message
    assert world.members() == emails(range(131, N + 1)) | {STRANGER}
    assert_removal_counts(done, len(SECOND_WAVE))
    assert_batches_numbered_once(world, run_id)
    assert _lookups(world, since) == []  # neither attempt needed the list's export
    # Sent at most twice (the removal whose answer was lost, again by its ids), never more.
    assert remove_posts(world, since) <= 2
    again = world.run(export)
    assert (again.counts["sent"], again.counts["removed"]) == (0, 0), again.counts


def test_kept_ids_go_with_the_list(world: World) -> None:
    _learnt(world)
    export = world.export_under_test  # type: ignore[attr-defined]
    other = world.control.seed(lists=["Other"]).lists["Other"]
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExportContactIds))
    with world.sessions.begin() as session:
        current = session.get(Export, export.id)
        assert current is not None
        update_export(session, actor=session.merge(world.admin), export=current,
                      spec=dataclasses.replace(spec_of(current), list_id=other))
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExportContactIds)) == 0
