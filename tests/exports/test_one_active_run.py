"""Two requests at the same moment (a manual run and the scheduler's tick) start one run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, select

from segment_export.db.models import Export, Run
from segment_export.errors import ConfigurationError
from segment_export.exports.runs import RunRequest, request_run
from tests.world import World


def _racy_export(world: World) -> Export:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    return world.export("racy", [world.segment("all", "country = 'DE'")])


def _one_queued(world: World, export: Export, request: Callable[[str], Any],
                refusal: str) -> None:
    """A manual request and the scheduler's at the same moment (``request(trigger)`` returns
    the run's id or raises): exactly one run is queued, the other refused with ``refusal``."""
    outcomes: list[Any] = []

    def attempt(trigger: str) -> None:
        try:
            outcomes.append(request(trigger))
        except ConfigurationError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt, args=(t,)) for t in ("manual", "schedule")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    refused = [o for o in outcomes if isinstance(o, ConfigurationError)]
    assert len(outcomes) == 2
    assert len(refused) == 1, outcomes
    assert refusal in str(refused[0])
    with world.sessions() as session:
        runs = session.scalars(select(Run).where(Run.export_id == export.id)).all()
    assert [r.id for r in runs] == [o for o in outcomes if isinstance(o, str)]


def test_requests_at_the_same_moment_queue_one_run(world: World) -> None:
    """Each request holds the export's row (hold_export): the second checks after the first
    committed, and is refused naming its run."""
    export = _racy_export(world)
    start = threading.Barrier(2, timeout=10)

    def request(trigger: str) -> str:
        start.wait()
        with world.sessions.begin() as session:
            return request_run(session, actor=None, export=session.merge(export),
                               trigger=trigger).id

    _one_queued(world, export, request, "already has a run queued")


def test_requests_racing_past_the_check_queue_one_run(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the row hold (bypassed here) both requests can pass the check: the unique
    index uq_runs_one_active_per_export still lets only one in."""
    from segment_export.exports import runs as run_service

    monkeypatch.setattr(run_service, "hold_export", lambda session, export_id: None)
    export = _racy_export(world)
    # Both requests have found no active run before either inserts its own.
    both_checked = threading.Barrier(2, timeout=10)

    def request(trigger: str) -> str:
        with world.sessions() as session:
            def before_inserting_the_run(flushing: Any, *_: Any) -> None:
                if any(isinstance(row, Run) for row in flushing.new):
                    both_checked.wait()

            event.listen(session, "before_flush", before_inserting_the_run)
            run = request_run(session, actor=None, export=session.merge(export),
                              trigger=trigger)
            session.commit()
            return run.id

    _one_queued(world, export, request, "already has an active run")


def test_a_dry_run_may_run_beside_a_real_one(world: World) -> None:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "first_name": "A",
                          "last_name": "B", "country": "DE"}])
    export = world.export("dry", [world.segment("all", "country = 'DE'")])
    with world.sessions.begin() as session:
        request_run(session, actor=None, export=session.merge(export))
    with world.sessions.begin() as session:
        request_run(session, actor=None, export=session.merge(export),
                    request=RunRequest(dry_run=True))
        with pytest.raises(ConfigurationError, match="already has a run queued"):
            request_run(session, actor=None, export=session.merge(export))
