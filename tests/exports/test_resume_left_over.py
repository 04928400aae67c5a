"""A batch a crashed attempt sent but never confirmed is settled with whom it really carried."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select, update

from segment_export.constant_contact import Activity, ImportBatch
from segment_export.db.models import Run, RunBatch
from segment_export.definitions.connections import client_for
from segment_export.exports.bodies import BodyCutter
from segment_export.exports.delivery import BatchMembers, load_members
from segment_export.exports.diff import fingerprints
from segment_export.exports.runs import request_run, run_to_completion
from segment_export.segments.refresh import refresh_segments
from tests.world import World


def _people(ids: range, *, country: str = "DE") -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": country} for i in ids]


def _import_persons_1_to_5(world: World) -> tuple[np.ndarray[Any, Any], ImportBatch,
                                                  BatchMembers, Activity]:
    """Persons 1-5 sent to the list as one import, as a run's batch would send them."""
    contacts = pa.table({"customer_id": [str(i) for i in range(1, 6)],
                         "email": [f"person{i}@example.com" for i in range(1, 6)],
                         "first_name": [f"P{i}" for i in range(1, 6)],
                         "last_name": ["Doe"] * 5})
    keys, hashes = fingerprints(contacts)
    cutter = BodyCutter(list_ids=[world.list_id])
    ((batch, members),) = [*cutter.add(contacts, keys, hashes), *cutter.finish()]
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        activity = client.import_contacts(batch.body)
    return keys, batch, members, activity


def test_a_left_over_batch_keeps_the_email_of_a_contact_who_left_since(world: World) -> None:
    world.load_profiles(_people(range(1, 6)))
    export = world.export("left-over", [world.segment("de", "country = 'DE'")], mode="mirror")
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)
    # What the crashed attempt had sent: all five, as one import, confirmed by nobody.
    keys, batch, members, activity = _import_persons_1_to_5(world)
    with world.sessions.begin() as session:
        session.add(RunBatch(run_id=run.id, seq=0, kind="import", state="sent",
                             activity_id=activity.activity_id, contacts=5, nbytes=batch.nbytes,
                             members=members.pack()))
        session.execute(update(Run).where(Run.id == run.id).values(attempt=1))
    # Before the retry, person 5 leaves the segment (and so the members a retry reads).
    world.load_profiles([*_people(range(1, 5)), *_people(range(5, 6), country="FR")])
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()

    resumed = run_to_completion(run.id, deps=world.deps(), backoff=0.01)

    assert resumed.status == "succeeded", resumed.message
    # Settled from the batch itself: person 5 was remembered as delivered, so mirror mode
    # found it among the leavers and took it off the list.
    assert resumed.counts["left_segment"] == 1
    assert resumed.counts["removed"] == 1
    assert world.members() == {f"person{i}@example.com" for i in range(1, 5)}
    state = load_members(world.engine, export.id, emails=True)
    assert state.emails is not None
    assert sorted(state.emails.to_pylist()) == [f"person{i}@example.com" for i in range(1, 5)]
    assert np.isin(keys[:4], state.keys).all()


def _failed_run_with_a_batch(world: World, export_id: str, *, activity_known: bool) -> str:
    """A run of ``export_id`` that sent persons 1-5 as one import and then failed for good
    (say its grant was revoked) before it confirmed the import; returns its id."""
    from segment_export.db.models import Export

    with world.sessions.begin() as session:
        export = session.get(Export, export_id)
        assert export is not None
        run = request_run(session, actor=world.admin, export=export)
    _, batch, members, activity = _import_persons_1_to_5(world)
    with world.sessions.begin() as session:
        session.add(RunBatch(run_id=run.id, seq=0, kind="import",
                             state="sent" if activity_known else "pending",
                             activity_id=activity.activity_id if activity_known else None,
                             contacts=5, nbytes=batch.nbytes, members=members.pack()))
        session.execute(update(Run).where(Run.id == run.id).values(
            attempt=1, status="failed", error_kind="reauthorization_needed",
            message="The grant was revoked."))
    return run.id


@pytest.mark.parametrize("activity_known", [True, False], ids=["sent", "answer-lost"])
def test_the_next_run_settles_what_a_failed_run_left_in_flight(
        world: World, activity_known: bool) -> None:
    """A run that fails for good leaves its unconfirmed imports to the export's next run: their
    contacts are on the list, so a mirror export owns them and removes those who left."""
    world.load_profiles(_people(range(1, 6)))
    export = world.export("failed-left-over", [world.segment("de", "country = 'DE'")],
                          mode="mirror")
    failed = _failed_run_with_a_batch(world, export.id, activity_known=activity_known)
    # Person 5 leaves the segment before the export runs again.
    world.load_profiles([*_people(range(1, 5)), *_people(range(5, 6), country="FR")])
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    with world.sessions.begin() as session:
        run = request_run(session, actor=world.admin, export=export)

    done = run_to_completion(run.id, deps=world.deps(), backoff=0.01)

    assert done.status == "succeeded", done.message
    assert done.counts["removed"] == 1
    assert world.members() == {f"person{i}@example.com" for i in range(1, 5)}
    with world.sessions() as session:
        left = session.scalars(select(RunBatch).where(RunBatch.run_id == failed)).one()
        # The failed run's batch is settled under its own run, so its history stays its own.
        assert left.state == ("confirmed" if activity_known else "unknown")
        assert session.get(Run, failed).status == "failed"  # type: ignore[union-attr]
