"""Mirror runs whose removal phase dies at every point, then resume, against the emulator over
real HTTP: the list ends exact, a contact a person put back by hand after this export removed
it stays, a contact this export never delivered is never touched, and a removal batch is
never numbered, sent or counted twice.

The crash stands for SIGKILL: a BaseException raised in the run's HTTP transport just before a
request leaves or just after its answer arrived, so nothing of the attempt runs after it
(open transactions roll back; the run stays `running` under a worker whose process is gone).
test_mirror_sigkill.py kills real processes at random points of the same phase.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import Engine, delete, insert, select

from segment_export.config import Settings
from segment_export.constant_contact.retry import DEFAULT_MAX_ATTEMPTS
from segment_export.db.models import Export, ExportMemberBlock, Run, RunBatch
from segment_export.definitions.connections import client_for
from segment_export.exports.delivery import RemovalMembers, load_members
from segment_export.exports.engine import execute_run
from segment_export.exports.runs import request_run, run_to_completion
from segment_export.segments.refresh import refresh_segments
from tests.world import World, open_world


@pytest.fixture
def state_world(engine: Engine, settings: Settings) -> Iterator[World]:
    """``world`` over each state store: SQLite, and the machine's PostgreSQL."""
    with open_world(settings, engine) as opened:
        yield opened


class Crash(BaseException):
    """The process dies here (not an Exception: nothing in the run may handle it)."""


def dead_worker() -> str:
    """A worker id on this host whose process has exited (so the run is free to resume)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}:1"


@dataclass
class CrashAt(httpx.HTTPTransport):
    """A real transport that dies at one point: ``when`` ("before" or "after") the ``nth``
    request whose method is ``method`` and whose path contains ``path``. With
    ``removal_poll`` the path is the poll of the ``nth`` removal activity."""

    method: str
    path: str
    nth: int = 1
    when: str = "before"
    removal_poll: bool = False
    seen: int = 0
    removal_activities: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def _matches(self, request: httpx.Request) -> bool:
        if request.method != self.method:
            return False
        if self.removal_poll:
            return (len(self.removal_activities) >= self.nth
                    and request.url.path.endswith(self.removal_activities[self.nth - 1]))
        return self.path in request.url.path

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        hit = self._matches(request)
        if hit:
            self.seen += 1
            hit = self.seen == 1 if self.removal_poll else self.seen == self.nth
        if hit and self.when == "before":
            raise Crash(f"before {request.method} {request.url.path}")
        response = super().handle_request(request)
        if request.method == "POST" and request.url.path.endswith("remove_list_memberships"):
            response.read()
            self.removal_activities.append(httpx.Response(
                response.status_code, content=response.content).json()["activity_id"])
        if hit:
            response.read()
            raise Crash(f"after {request.method} {request.url.path}")
        return response


def people(n: int, *, leaving: Collection[int] = ()) -> list[dict[str, Any]]:
    return [{"customer_id": i, "email": f"m{i}@example.com", "first_name": "M",
             "last_name": str(i), "country": "FR" if i in leaving else "DE"}
            for i in range(1, n + 1)]


def refresh(world: World) -> None:
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()


def crash_then_resume(world: World, export: Export, crash: CrashAt) -> tuple[str, list[Any]]:
    """Run ``export`` until ``crash`` kills it; return the run id and its batches then."""
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    deps = dataclasses.replace(world.deps(transport=crash), worker_id=dead_worker())
    with pytest.raises(Crash):
        execute_run(run_id, deps=deps)
    return run_id, batches(world, run_id)


def batches(world: World, run_id: str) -> list[tuple[str, int, str, str | None, Any]]:
    with world.sessions() as session:
        return [(b.kind, b.seq, b.state, b.activity_id, RemovalMembers.unpack(b.members))
                for b in session.scalars(select(RunBatch).where(
                    RunBatch.run_id == run_id).order_by(RunBatch.id))]


def resume(world: World, run_id: str) -> Run:
    return run_to_completion(run_id, deps=world.deps(), backoff=0.01)


def hand_add(world: World, list_id: str, *emails: str) -> None:
    """A person adds contacts to the list in Constant Contact (not through this export)."""
    assert len(world.control.add_by_hand(list_id, list(emails))) == len(emails)


def remove_posts(world: World, since: int) -> int:
    return sum(1 for r in world.control.requests(since)
               if r.method == "POST" and r.path.endswith("remove_list_memberships"))


def assert_removal_counts(run: Run, leavers: int) -> None:
    c = run.counts
    assert c["left_segment"] == leavers, c
    assert c["left_segment"] == c["removed"] + c["already_off_list"], c


def assert_batches_numbered_once(world: World, run_id: str) -> None:
    seqs = [seq for kind, seq, *_ in batches(world, run_id) if kind == "remove"]
    assert seqs == list(range(len(seqs))), seqs


N = 700
LEAVING = range(1, 601)  # 600 leavers: removals of 500 and 100
STAYING = {f"m{i}@example.com" for i in range(601, N + 1)}
# Where the removal phase dies; and whether, at that point, the first removal is known (by
# its activity id) to have been sent, so a contact put back by hand afterwards must stay.
POINTS: dict[str, tuple[CrashAt, bool]] = {
    "looking up the list": (CrashAt("POST", "contact_exports"), False),
    "before the first removal is sent": (CrashAt("POST", "remove_list_memberships"), False),
    "after it was sent, its answer lost": (
        CrashAt("POST", "remove_list_memberships", when="after"), False),
    "after it completed, unconfirmed": (
        CrashAt("GET", "", nth=1, when="after", removal_poll=True), True),
    "before the second removal is sent": (
        CrashAt("POST", "remove_list_memberships", nth=2), True),
    "after the second completed, unconfirmed": (
        CrashAt("GET", "", nth=2, when="after", removal_poll=True), True),
}


def test_a_removal_phase_killed_at_each_point_resumes_with_the_list_exact(world: World) -> None:
    world.load_profiles(people(N))
    segment = world.segment("members", "country = 'DE'")
    names = {point: f"Mirror {i}" for i, point in enumerate(POINTS)}
    lists = world.control.seed(lists=list(names.values())).lists
    exports = {}
    for point, name in names.items():
        world.list_id = lists[name]
        exports[point] = world.export(f"mirror {name}", [segment], mode="mirror")
        assert world.run(exports[point]).status == "succeeded"
        # Put on the list by a person; this export never delivered the address.
        hand_add(world, lists[name], f"hand{len(exports)}@elsewhere.test")
    world.load_profiles(people(N, leaving=LEAVING))
    refresh(world)

    for point, (crash, first_removal_known) in POINTS.items():
        name, export = names[point], exports[point]
        run_id, at_crash = crash_then_resume(world, export, crash)
        first = next((b for b in at_crash if b[0] == "remove"), None)
        # The person puts back one leaver of the first removal (one of the first 500).
        readded = (str(first[4].emails[0]) if first is not None and first[4] is not None
                   else "m1@example.com")
        hand_add(world, lists[name], readded)
        since = world.control.requests()[-1].seq

        done = resume(world, run_id)

        assert done.status == "succeeded", (point, done.message)
        hand = {f"hand{list(POINTS).index(point) + 1}@elsewhere.test"}
        kept = {readded} if first_removal_known else set()
        assert world.control.list_members(lists[name]) == STAYING | hand | kept, point
        assert_removal_counts(done, len(LEAVING))
        assert_batches_numbered_once(world, run_id)
        if first_removal_known:
            # A removal known to have been sent is settled, never sent again.
            settled = {a for kind, _, state, a, _ in batches(world, run_id)
                       if kind == "remove" and state == "confirmed"}
            assert first is not None
            assert first[3] in settled, (point, at_crash)
            assert remove_posts(world, since) == (0 if "second completed" in point else 1)
        # A second run holds still: nothing sent, nothing removed, the hand-added stay.
        again = world.run(export)
        assert again.status == "succeeded", again.message
        assert (again.counts["sent"], again.counts["removed"]) == (0, 0), (point, again.counts)
        assert world.control.list_members(lists[name]) == STAYING | hand | kept, point
    contacts = Counter(c["email"] for c in world.control.contacts())
    assert max(contacts.values()) == 1


@pytest.mark.parametrize("point", ["after it was sent, its answer lost",
                                   "after it completed, unconfirmed"])
def test_a_leaver_who_rejoins_before_the_resume_is_back_on_the_list(world: World,
                                                                     point: str) -> None:
    world.load_profiles(people(20))
    export = world.export("rejoin", [world.segment("members", "country = 'DE'")], mode="mirror")
    assert world.run(export).status == "succeeded"
    world.load_profiles(people(20, leaving=range(1, 6)))
    refresh(world)
    crash = dataclasses.replace(POINTS[point][0], seen=0, removal_activities=[])
    run_id, _ = crash_then_resume(world, export, crash)
    # Removed by the crashed attempt's activity; then m2 joins the segment again.
    assert "m2@example.com" not in world.members()
    world.load_profiles(people(20, leaving={1, 3, 4, 5}))
    refresh(world)

    done = resume(world, run_id)

    assert done.status == "succeeded", done.message
    assert world.members() == {f"m{i}@example.com" for i in [2, *range(6, 21)]}
    state = load_members(world.engine, export.id, emails=True)
    assert state.emails is not None
    assert sorted(state.emails.to_pylist()) == sorted(
        f"m{i}@example.com" for i in [2, *range(6, 21)])
    again = world.run(export)
    assert (again.counts["sent"], again.counts["removed"]) == (0, 0), again.counts


def test_a_failed_removal_activity_is_retried_for_only_those_still_on_the_list(
        state_world: World) -> None:
    world = state_world
    world.load_profiles(people(30))
    export = world.export("failing", [world.segment("members", "country = 'DE'")], mode="mirror")
    assert world.run(export).status == "succeeded"
    world.load_profiles(people(30, leaving=range(1, 11)))
    refresh(world)
    world.control.fail_activity(1, kind="remove_list_memberships")

    def meanwhile(method: str, path: str, status: int | None, sent: int,
                  seconds: float) -> None:
        # While the failed removal is in flight, a person takes m3 off the list by hand (on
        # Constant Contact, a failed activity may also have removed some before it failed).
        if method == "POST" and path.endswith("remove_list_memberships") and not by_hand:
            by_hand.append(path)
            with client_for(world.connection, settings=world.settings,
                            engine=world.engine) as person:
                (m3,) = person.find_contacts(email="m3@example.com")
                person.remove_list_memberships([m3.contact_id], [world.list_id])

    by_hand: list[str] = []
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    done = run_to_completion(run_id, deps=world.deps(on_request=meanwhile), backoff=0.01)

    assert done.status == "succeeded", done.message
    assert done.attempt == 1  # retried within the attempt, not by re-running the whole diff
    assert world.members() == {f"m{i}@example.com" for i in range(11, 31)}
    removals = [b for b in batches(world, run_id) if b[0] == "remove"]
    assert [(seq, state) for _, seq, state, _, _ in removals] == [(0, "failed"), (1, "confirmed")]
    retried = removals[1][4]
    assert retried is not None
    assert sorted(retried.emails.to_pylist()) == sorted(
        f"m{i}@example.com" for i in range(1, 11) if i != 3)
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        activity = client.get_activity(str(removals[1][3]))
    assert activity.status.items_total_count == 9
    assert_removal_counts(done, 10)
    assert (done.counts["removed"], done.counts["already_off_list"]) == (9, 1)


def test_a_contact_put_back_by_hand_after_its_removal_stays_and_a_stranger_is_never_touched(
        state_world: World) -> None:
    world = state_world
    world.load_profiles(people(30))
    export = world.export("hand", [world.segment("members", "country = 'DE'")], mode="mirror")
    assert world.run(export).status == "succeeded"
    # Added by a person: one address this export never delivered, in another case and with
    # blanks, and one that only differs from a member's by its domain.
    hand_add(world, world.list_id, "  Stranger@Elsewhere.TEST ", "m1@example.org")
    world.load_profiles(people(30, leaving=range(1, 6)))
    refresh(world)
    run_id, at_crash = crash_then_resume(
        world, export, CrashAt("GET", "", when="after", removal_poll=True))
    assert [(kind, state) for kind, _, state, _, _ in at_crash] == [("remove", "sent")]
    assert "m1@example.com" not in world.members()
    hand_add(world, world.list_id, "M1@Example.com")  # put back by a person, after its removal

    done = resume(world, run_id)

    assert done.status == "succeeded", done.message
    assert world.members() == {"m1@example.com", "stranger@elsewhere.test", "m1@example.org",
                               *(f"m{i}@example.com" for i in range(6, 31))}
    assert_removal_counts(done, 5)
    # m1 is no longer this export's: later runs leave it where the person put it.
    for _ in range(2):
        again = world.run(export)
        assert again.counts["removed"] == 0, again.counts
    assert "m1@example.com" in world.members()
    # Until it rejoins the segment: it is delivered again, and mirrored again when it leaves.
    world.load_profiles(people(30, leaving=range(2, 6)))
    refresh(world)
    assert world.run(export).counts["sent"] == 1
    world.load_profiles(people(30, leaving=range(1, 6)))
    refresh(world)
    assert world.run(export).counts["removed"] == 1
    assert "m1@example.com" not in world.members()
    assert {"stranger@elsewhere.test", "m1@example.org"} <= world.members()


def test_a_removal_whose_answers_were_all_lost_is_settled_by_the_next_attempt(
        state_world: World) -> None:
    world = state_world
    world.load_profiles(people(20))
    export = world.export("lost", [world.segment("members", "country = 'DE'")], mode="mirror")
    assert world.run(export).status == "succeeded"
    world.load_profiles(people(20, leaving=range(1, 6)))
    refresh(world)
    # Constant Contact takes every try of the removal, but no answer arrives: the attempt
    # gives up without knowing the activity (Constant Contact removed all five).
    world.control.inject_fault(kind="drop", when="after", count=DEFAULT_MAX_ATTEMPTS,
                               path_prefix="/v3/activities/remove_list_memberships")
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    first = execute_run(run_id, deps=world.deps())
    assert first.status == "queued", first.message
    assert [(kind, state) for kind, _, state, _, _ in batches(world, run_id)] == [
        ("remove", "pending")]
    assert world.members() == {f"m{i}@example.com" for i in range(6, 21)}
    # Before the next attempt m2 joins the segment again, and a person puts m4 back.
    world.load_profiles(people(20, leaving={1, 3, 4, 5}))
    refresh(world)
    hand_add(world, world.list_id, "m4@example.com")

    done = resume(world, run_id)

    assert done.status == "succeeded", done.message
    # m2 is sent again. m4: whether this export's removal happened before the person put it
    # back cannot be told (the removal's answer never came), so it is still the export's, a
    # leaver on the list, and removed: the one case where a contact put back by hand goes.
    assert world.members() == {f"m{i}@example.com" for i in [2, *range(6, 21)]}
    assert done.counts["sent"] == 1
    assert_removal_counts(done, 4)
    assert [(kind, state) for kind, _, state, _, _ in batches(world, run_id)] == [
        ("remove", "unknown"), ("import", "confirmed"), ("remove", "confirmed")]


def test_members_whose_delivered_keys_an_older_hash_made_are_sent_again_never_removed(
        world: World) -> None:
    world.load_profiles(people(10))
    export = world.export("rehashed", [world.segment("members", "country = 'DE'")],
                          mode="mirror")
    assert world.run(export).status == "succeeded"
    # The delivered state as a different email hash (a DuckDB upgrade) would have left it:
    # the same emails under other keys.
    state = load_members(world.engine, export.id, emails=True)
    assert state.emails is not None
    with world.engine.begin() as conn:
        conn.execute(delete(ExportMemberBlock).where(ExportMemberBlock.export_id == export.id))
        conn.execute(insert(ExportMemberBlock).values(
            export_id=export.id, run_id=None, kind="delivered", members=len(state),
            keys=(state.keys ^ 0x5A5A_5A5A).astype("<i8").tobytes(),
            hashes=state.hashes.astype("<i8").tobytes(),
            emails=_packed(state.emails)))

    again = world.run(export)

    assert again.status == "succeeded", again.message
    assert again.counts["sent"] == 10  # they look new: sent once more, as a full resync
    assert (again.counts["left_segment"], again.counts["removed"]) == (0, 0), again.counts
    assert world.members() == {f"m{i}@example.com" for i in range(1, 11)}
    third = world.run(export)
    assert (third.counts["sent"], third.counts["removed"]) == (0, 0), third.counts


def _packed(emails: pa.Array) -> bytes:
    batch = pa.record_batch([emails], names=["email"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
