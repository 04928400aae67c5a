"""Adversarial review of settling the left-overs of an export's ended runs (engine.py
``_confirm_left_over_batches``): a changed list, a gone activity beside a completed one, and
left-overs older than a later confirmed removal. All against the emulator over real HTTP."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import select, update

from segment_export.db.models import Export, ExportMemberBlock, RejectedRow, Run, RunBatch
from segment_export.definitions.connections import client_for
from segment_export.definitions.exports import spec_of, update_export
from segment_export.exports import sending
from segment_export.exports.bodies import BodyCutter
from segment_export.exports.delivery import RemovalMembers
from segment_export.exports.diff import fingerprints
from segment_export.exports.runs import cancel_run, request_run, run_to_completion
from segment_export.segments.refresh import refresh_segments
from tests.exports.test_resume_left_over import _failed_run_with_a_batch, _people
from tests.world import World

GONE_ACTIVITY = "0f0f0f0f-0000-4000-8000-000000000000"


def _emails(ids: range) -> set[str]:
    return {f"person{i}@example.com" for i in ids}


def _move(world: World, ids: range, country: str) -> None:
    """Persons ``ids`` now live in ``country`` (the others of 1-5 in DE)."""
    rows = [*(_people(range(i, i + 1), country=country if i in ids else "DE")
              for i in range(1, 6))]
    world.load_profiles([row for part in rows for row in part])
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()


def test_a_failed_runs_import_to_the_old_list_does_not_count_for_the_new_list(
        world: World) -> None:
    """A run fails with an import to list A in flight; the export is then pointed at list B.
    Its next run must send everyone to B: what reached A says nothing about B."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("moved", [world.segment("de", "country = 'DE'")])
    _failed_run_with_a_batch(world, export.id, activity_known=True)
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        new_list = client.create_contact_list("Second list").list_id
    with world.sessions.begin() as session:
        saved = session.get(Export, export.id)
        assert saved is not None
        update_export(session, actor=world.admin, export=saved,
                      spec=dataclasses.replace(spec_of(saved), list_id=new_list))
        session.flush()
        session.expunge(saved)
    with world.sessions() as session:
        export = session.get(Export, export.id)  # type: ignore[assignment]
        assert export is not None
        assert export.list_id == new_list

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert world.control.list_members(new_list) == _emails(range(1, 6))


def test_a_gone_activity_does_not_make_its_completed_neighbour_uncertain(world: World) -> None:
    """A failed run left two imports in flight: one whose activity Constant Contact no longer
    has, one that completed. Only the gone one is uncertain; the completed one is confirmed
    under its run with Constant Contact's counts."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("gone", [world.segment("de", "country = 'DE'")])
    failed = _failed_run_with_a_batch(world, export.id, activity_known=True)
    contacts = pa.table({"customer_id": ["9"], "email": ["person9@example.com"],
                         "first_name": ["P9"], "last_name": ["Doe"]})
    keys, hashes = fingerprints(contacts)
    cutter = BodyCutter(list_ids=[world.list_id])
    ((batch, members),) = [*cutter.add(contacts, keys, hashes), *cutter.finish()]
    with world.sessions.begin() as session:
        session.add(RunBatch(run_id=failed, seq=1, kind="import", state="sent",
                             activity_id=GONE_ACTIVITY, contacts=1, nbytes=batch.nbytes,
                             members=members.pack()))

    done = world.run(export)

    assert done.status == "succeeded", done.message
    with world.sessions() as session:
        states = dict(session.execute(select(RunBatch.activity_id, RunBatch.state).where(
            RunBatch.run_id == failed)).all())
    assert states.pop(GONE_ACTIVITY) == "unknown"
    assert list(states.values()) == ["confirmed"]


@pytest.mark.xfail(strict=True, reason="a left-over settled after later blocks is overlaid "
                   "last; this state arises only from data older than migration 0008, which "
                   "marks such batches unknown (tests/db: the old left-overs of ended runs)")
def test_an_old_left_over_settled_after_a_later_removal_leaves_a_hand_added_contact(
        world: World) -> None:
    """Data from before the change: a run failed with persons 1-5 in flight, later runs
    delivered and then removed person 5 (who left the segment), and a person put person 5
    back on the list by hand: it is not the export's. Settling the old batch now must not
    make person 5 the export's again (its delivered block would come after the removal's)."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("old", [world.segment("de", "country = 'DE'")], mode="mirror")
    failed = _failed_run_with_a_batch(world, export.id, activity_known=True)
    # The code before the change ignored the failed run's batch: hide it from the runs below.
    with world.sessions.begin() as session:
        session.execute(update(RunBatch).where(RunBatch.run_id == failed).values(state="x"))
    assert world.run(export).status == "succeeded"
    _move(world, range(5, 6), "FR")
    removing = world.run(export)
    assert removing.status == "succeeded", removing.message
    assert removing.counts["removed"] == 1
    world.control.add_by_hand(world.list_id, ["person5@example.com"])
    with world.sessions.begin() as session:
        session.execute(update(RunBatch).where(RunBatch.run_id == failed).values(state="sent"))

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert done.counts.get("removed", 0) == 0
    assert world.members() == _emails(range(1, 6))
    with world.sessions() as session:
        assert session.get(Run, failed).status == "failed"  # type: ignore[union-attr]


def _failed_run(world: World, export_id: str, groups: list[list[str]]) -> tuple[str, list[str]]:
    """A run of ``export_id`` that sent one import per group of emails and then failed for
    good before it confirmed any; returns its id and the activity ids."""
    with world.sessions.begin() as session:
        export = session.get(Export, export_id)
        assert export is not None
        run = request_run(session, actor=world.admin, export=export)
    activities = []
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        for seq, emails in enumerate(groups):
            contacts = pa.table({
                "customer_id": [e.split("@")[0].removeprefix("person") for e in emails],
                "email": emails, "first_name": [f"P{e[6]}" for e in emails],
                "last_name": ["Doe"] * len(emails)})
            keys, hashes = fingerprints(contacts)
            cutter = BodyCutter(list_ids=[world.list_id])
            ((batch, members),) = [*cutter.add(contacts, keys, hashes), *cutter.finish()]
            activity = client.import_contacts(batch.body)
            activities.append(activity.activity_id)
            with world.sessions.begin() as session:
                session.add(RunBatch(run_id=run.id, seq=seq, kind="import", state="sent",
                                     activity_id=activity.activity_id, contacts=len(emails),
                                     nbytes=batch.nbytes, members=members.pack()))
    with world.sessions.begin() as session:
        session.execute(update(Run).where(Run.id == run.id).values(
            attempt=1, status="failed", error_kind="reauthorization_needed",
            message="The grant was revoked."))
    return run.id, activities


class _Killed(BaseException):
    """Stands for kill -9: nothing in the engine catches it, nothing after it runs."""


def test_a_crash_while_settling_an_old_runs_batches_settles_each_once(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next run dies after it confirmed the first of three left-over imports of a failed
    run; its resumed attempt confirms the other two, and none twice."""
    world.load_profiles(_people(range(1, 7)))
    export = world.export("crash", [world.segment("de", "country = 'DE'")], mode="mirror")
    failed, _ = _failed_run(world, export.id, [
        [f"person{i}@example.com" for i in pair] for pair in ((1, 2), (3, 4), (5, 6))])
    real, calls = sending.record_delivered, []

    def dying(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["batch_id"])
        if len(calls) == 2:
            raise _Killed
        real(*args, **kwargs)

    monkeypatch.setattr(sending, "record_delivered", dying)
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    with pytest.raises(_Killed):
        run_to_completion(run_id, deps=world.deps(), backoff=0.01)
    monkeypatch.setattr(sending, "record_delivered", real)
    with world.sessions.begin() as session:  # what the watchdog does for a dead worker
        session.execute(update(Run).where(Run.id == run_id).values(status="queued"))

    done = run_to_completion(run_id, deps=world.deps(), backoff=0.01)

    assert done.status == "succeeded", done.message
    assert done.counts["sent"] == 0
    assert world.members() == _emails(range(1, 7))
    with world.sessions() as session:
        states = session.scalars(select(RunBatch.state).where(
            RunBatch.run_id == failed)).all()
        blocks = session.scalars(select(ExportMemberBlock.members).where(
            ExportMemberBlock.run_id == failed)).all()
    assert states == ["confirmed"] * 3
    assert sorted(blocks) == [2, 2, 2]


def test_a_cancel_stops_the_wait_for_an_old_runs_unfinished_import(world: World) -> None:
    """An old run's import is still processing at Constant Contact: a cancel of the run that
    waits for it takes effect within seconds, not once the activity ends."""
    world.load_profiles(_people(range(1, 3)))
    export = world.export("slow", [world.segment("de", "country = 'DE'")])
    world.control.set_config(activity_seconds=20.0)
    _failed_run(world, export.id, [["person1@example.com", "person2@example.com"]])
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    outcome: list[Run] = []
    worker = threading.Thread(target=lambda: outcome.append(
        run_to_completion(run_id, deps=world.deps(), backoff=0.01)))
    worker.start()
    time.sleep(1.5)
    with world.sessions.begin() as session:
        run = session.get(Run, run_id)
        assert run is not None
        cancel_run(session, actor=world.admin, run=run)
    worker.join(timeout=8)
    stopped = not worker.is_alive()
    worker.join()  # (the activity ends after 20 s in any case)
    assert stopped, "the cancel waited for the old run's activity to end"
    assert outcome[0].status == "cancelled"


def test_what_an_old_runs_import_settled_is_in_that_runs_counts(world: World) -> None:
    """A failed run's import, settled by the next run, refused one row: the row is reported
    under the failed run, and its counts say so (else no run counts that refusal)."""
    world.load_profiles(_people(range(1, 3)))
    export = world.export("counted", [world.segment("de", "country = 'DE'")])
    failed, _ = _failed_run(world, export.id, [["person1@example.com", "not-an-email"]])

    done = world.run(export)

    assert done.status == "succeeded", done.message
    with world.sessions() as session:
        rows = session.scalars(select(RejectedRow).where(RejectedRow.run_id == failed)).all()
        old = session.get(Run, failed)
        assert old is not None
    assert len(rows) == 1
    assert old.counts.get("rejected_by_constant_contact") == 1


def _point_at_new_list(world: World, export_id: str) -> tuple[Export, str]:
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        new_list = client.create_contact_list("Second list").list_id
    with world.sessions.begin() as session:
        saved = session.get(Export, export_id)
        assert saved is not None
        update_export(session, actor=world.admin, export=saved,
                      spec=dataclasses.replace(spec_of(saved), list_id=new_list))
    with world.sessions() as session:
        export = session.get(Export, export_id)
        assert export is not None
        return export, new_list


def test_a_failed_runs_removal_from_the_old_list_removes_nobody_from_the_new_list(
        world: World) -> None:
    """A mirror run fails with a removal of person 5 (who left the segment) whose answer was
    lost; the export is then pointed at another list, where someone put person 5 by hand.
    The next run must not take person 5 off the new list: the export never put it there."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("moved-mirror", [world.segment("de", "country = 'DE'")],
                          mode="mirror")
    _move(world, range(5, 6), "FR")
    with world.sessions.begin() as session:
        failed = request_run(session, actor=world.admin, export=export)
        keys, _ = fingerprints(pa.table({"customer_id": ["5"],
                                         "email": ["person5@example.com"],
                                         "first_name": ["P5"], "last_name": ["Doe"]}))
        session.add(RunBatch(run_id=failed.id, seq=0, kind="remove", state="pending",
                             contacts=1, members=RemovalMembers.of(
                                 keys.tolist(), ["person5@example.com"],
                                 ["00000000-0000-4000-8000-000000000005"]).pack()))
        session.execute(update(Run).where(Run.id == failed.id).values(
            attempt=1, status="failed", message="The grant was revoked."))
    export, new_list = _point_at_new_list(world, export.id)
    world.control.add_by_hand(new_list, ["person5@example.com"])

    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert world.control.list_members(new_list) == {*_emails(range(1, 5)),
                                                    "person5@example.com"}


def test_a_full_resync_after_a_failed_run_sends_everyone_and_owns_the_left_over(
        world: World) -> None:
    """A full resync settles a failed run's import under that run and still sends every
    member itself; mirror mode then removes the left-over's contact who left the segment."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("resync", [world.segment("de", "country = 'DE'")], mode="mirror")
    failed = _failed_run_with_a_batch(world, export.id, activity_known=True)
    _move(world, range(5, 6), "FR")

    done = world.run(export, full_resync=True)

    assert done.status == "succeeded", done.message
    assert done.counts["sent"] == 4
    assert done.counts["removed"] == 1
    assert world.members() == _emails(range(1, 5))
    with world.sessions() as session:
        assert session.scalars(select(RunBatch.state).where(
            RunBatch.run_id == failed)).all() == ["confirmed"]


def test_the_list_cannot_change_under_a_run_that_sends(world: World) -> None:
    """A queued, running or paused run sends to the list it read at its start, and what it
    delivers would count for the new list: its list change is refused, naming the run, until
    the run ends; a dry run does not hold it. After the cancel, the change and the next run
    put everyone on the new list."""
    from segment_export.definitions import exports as definitions
    from segment_export.errors import ConfigurationError
    from segment_export.exports.engine import ACTIVE

    assert set(definitions._SENDING) == ACTIVE
    world.load_profiles(_people(range(1, 6)))
    export = world.export("held", [world.segment("de", "country = 'DE'")])
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        new_list = client.create_contact_list("Second list").list_id

    def change_list(session: Any) -> None:
        saved = session.get(Export, export.id)
        update_export(session, actor=world.admin, export=saved,
                      spec=dataclasses.replace(spec_of(saved), list_id=new_list))

    with world.sessions.begin() as session:
        session.add(Run(export_id=export.id, dry_run=True, status="queued"))
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
    for status in ("queued", "running", "paused"):
        with world.sessions.begin() as session:
            session.execute(update(Run).where(Run.id == run.id).values(status=status))
        with world.sessions() as session, pytest.raises(ConfigurationError) as refused:
            change_list(session)
        assert refused.value.context["run_id"] == run.id
        assert status in str(refused.value)
        assert "cannot change" in str(refused.value)
    with world.sessions() as session:  # another edit, the list kept, is fine
        saved = session.get(Export, export.id)
        assert saved is not None
        update_export(session, actor=world.admin, export=saved,
                      spec=dataclasses.replace(spec_of(saved), list_name="Renamed"))
    with world.sessions.begin() as session:
        stored = session.get(Run, run.id)
        assert stored is not None
        cancel_run(session, actor=world.admin, run=stored)
    with world.sessions.begin() as session:
        change_list(session)
    with world.sessions() as session:
        moved = session.get(Export, export.id)
        assert moved is not None
        assert moved.list_id == new_list
        session.expunge(moved)

    done = world.run(moved)

    assert done.status == "succeeded", done.message
    assert world.control.list_members(new_list) == _emails(range(1, 6))
