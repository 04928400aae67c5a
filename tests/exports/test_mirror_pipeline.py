"""Mirror removals pipelined within the rate budget, against the emulator over real HTTP:
several removals are in flight at once and confirmed by ``GET /activities`` listings, yet each
is recorded as pending before it is sent, every one ends confirmed, and a run killed with
several of them unsettled settles them all on resume (none sent twice, the list exact)."""

from __future__ import annotations

from sqlalchemy import select

from segment_export.db.models import Export, RunBatch
from segment_export.exports.mirror import MAX_REMOVALS_IN_FLIGHT
from segment_export.exports.runs import request_run, run_to_completion
from tests.exports.test_mirror_resume import (
    CrashAt,
    assert_batches_numbered_once,
    assert_removal_counts,
    batches,
    crash_then_resume,
    people,
    refresh,
    remove_posts,
    resume,
)
from tests.world import World

N = 4_200
LEAVING = range(1, 4_001)  # 4,000 leavers: eight removals of 500
STAYING = {f"m{i}@example.com" for i in range(4_001, N + 1)}


def _leave(world: World) -> Export:
    world.load_profiles(people(N))
    export = world.export("pipelined", [world.segment("members", "country = 'DE'")],
                          mode="mirror")
    assert world.run(export).status == "succeeded"
    world.load_profiles(people(N, leaving=LEAVING))
    refresh(world)
    return export


def test_removals_overlap_in_flight_and_are_all_confirmed_by_listings(world: World) -> None:
    export = _leave(world)
    since = world.control.requests()[-1].seq
    in_flight: list[int] = []
    pending_when_sent: list[bool] = []

    def watch(method: str, path: str, status: int | None, sent: int, seconds: float) -> None:
        if method == "POST" and path.endswith("remove_list_memberships"):
            with world.sessions() as session:
                rows = session.scalars(select(RunBatch).where(
                    RunBatch.kind == "remove")).all()
            unsettled = [b for b in rows if b.state in ("pending", "sent")]
            in_flight.append(len(unsettled))
            # The one just sent is on record (pending) before its request went out.
            pending_when_sent.append(any(b.state == "pending" for b in unsettled))

    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    done = run_to_completion(run_id, deps=world.deps(on_request=watch), backoff=0.01)

    assert done.status == "succeeded", done.message
    assert world.members() == STAYING
    assert_removal_counts(done, len(LEAVING))
    assert done.counts["removed"] == len(LEAVING)
    removals = [b for b in batches(world, run_id) if b[0] == "remove"]
    assert [state for _, _, state, _, _ in removals] == ["confirmed"] * 8
    assert_batches_numbered_once(world, run_id)
    assert all(pending_when_sent)
    # Removals overlapped: some were sent while earlier ones were still unconfirmed ...
    assert max(in_flight) > 2, in_flight
    assert max(in_flight) <= MAX_REMOVALS_IN_FLIGHT
    requests = world.control.requests(since)
    polls = [r for r in requests if r.method == "GET" and "/activities" in r.path
             and "contact_exports" not in r.path]
    listings = [r for r in polls if r.path.rstrip("/").endswith("/activities")]
    # ... and were confirmed several at a time, by listings, not one poll per removal.
    assert listings
    removal_ids = {a for _, _, _, a, _ in removals}
    single = [r for r in polls if r.path.rsplit("/", 1)[-1] in removal_ids]
    assert len(single) + len(listings) < len(removals)
    assert remove_posts(world, since) == 8


def test_a_run_killed_with_several_removals_unsettled_settles_them_all_on_resume(
        world: World) -> None:
    export = _leave(world)
    # Killed just after the sixth removal was sent, its answer lost: removals before it are
    # in flight, unconfirmed.
    crash = CrashAt("POST", "remove_list_memberships", nth=6, when="after")
    run_id, at_crash = crash_then_resume(world, export, crash)
    unsettled = [b for b in at_crash if b[0] == "remove" and b[2] in ("pending", "sent")]
    assert len(unsettled) >= 2, at_crash
    since = world.control.requests()[-1].seq

    done = resume(world, run_id)

    assert done.status == "succeeded", done.message
    assert world.members() == STAYING
    assert_removal_counts(done, len(LEAVING))
    assert_batches_numbered_once(world, run_id)
    states = {state for kind, _, state, _, _ in batches(world, run_id) if kind == "remove"}
    assert states <= {"confirmed", "unknown"}, states
    # Those sent with an answer were settled, not sent again: only the sixth's contacts (its
    # answer lost: removed again by the contact ids the first attempt's export showed, a
    # no-op for those it had taken off) and the last two removals' went out after the
    # resume, and the resume needed no contact export of the list.
    assert remove_posts(world, since) == 3
    assert not [r for r in world.control.requests(since) if "contact_exports" in r.path]
    again = world.run(export)
    assert (again.counts["sent"], again.counts["removed"]) == (0, 0), again.counts
    assert world.members() == STAYING
