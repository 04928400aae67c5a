"""An import whose outcome is unknown (its answer lost, its attempt given up) may have reached
the list: a later attempt must neither lose track of its contacts nor leave a leaver behind."""

from __future__ import annotations

from typing import Any

from segment_export.exports.engine import execute_run
from segment_export.exports.runs import request_run, run_to_completion
from segment_export.segments.refresh import refresh_segments
from tests.world import World


def _people(n: int, *, leaving: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    return [{"customer_id": i, "email": f"p{i}@example.com", "first_name": "A",
             "last_name": "B", "country": "DE"} for i in range(1, n + 1) if i not in leaving]


def _lose_every_import_answer_then_recover(world: World, mode: str, *,
                                           leaving: frozenset[int]) -> tuple[str, Any]:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 10})
    world.load_profiles(_people(10))
    export = world.export("uncertain", [world.segment("all", "country = 'DE'")], mode=mode)
    # Constant Contact takes each import, but its answer never arrives: the attempt gives up
    # with the batch's outcome unknown.
    world.control.inject_fault(kind="drop", when="after",
                               path_prefix="/v3/activities/contacts_json_import", count=50)
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
    first = execute_run(run.id, deps=world.deps())
    assert first.status == "queued", first.message  # retried later, not failed
    world.control.clear_faults()
    assert len(world.members()) == 10  # the lost answers hid imports that did happen
    world.load_profiles(_people(10, leaving=leaving))
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    done = run_to_completion(run.id, deps=world.deps(), backoff=0.01)
    return done.status, export


def test_mirror_removes_a_leaver_whose_import_outcome_was_unknown(world: World) -> None:
    status, export = _lose_every_import_answer_then_recover(world, "mirror", leaving=frozenset({1}))
    assert status == "succeeded", status
    assert world.members() == {f"p{i}@example.com" for i in range(2, 11)}
    again = world.run(export)
    assert again.status == "succeeded", again.message
    assert again.counts["sent"] == 0
    assert again.counts.get("removed", 0) == 0


def test_add_update_sends_an_uncertain_batch_again_and_then_holds_still(world: World) -> None:
    status, export = _lose_every_import_answer_then_recover(world, "add_update",
                                                            leaving=frozenset())
    assert status == "succeeded", status
    assert world.members() == {f"p{i}@example.com" for i in range(1, 11)}
    again = world.run(export)
    assert again.counts["sent"] == 0, again.counts
