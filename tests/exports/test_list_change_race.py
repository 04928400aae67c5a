"""A change of an export's list and a request of its run, at the same instant, happen one after
the other (on SQLite and on PostgreSQL), so a run never starts on the list being replaced."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select

from segment_export.config import Settings
from segment_export.db.models import Export, Run
from segment_export.definitions import exports as definitions
from segment_export.definitions.connections import client_for
from segment_export.definitions.exports import spec_of, update_export
from segment_export.errors import ConfigurationError
from segment_export.exports.runs import request_run
from tests.world import World, open_world

# Long enough for an unheld request to queue its run and commit (a few ms); the held request
# waits this long behind the change.
HELD_FOR = 1.0


@pytest.fixture
def raced_world(engine: Engine, settings: Settings) -> Iterator[World]:
    with open_world(settings, engine) as opened:
        yield opened


def _export_and_new_list(world: World) -> tuple[str, str]:
    world.load_profiles([{"customer_id": 1, "email": "ana@example.com", "country": "DE"}])
    export = world.export("raced", [world.segment("de", "country = 'DE'")])
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        return export.id, client.create_contact_list("Second list").list_id


def _change(world: World, export_id: str, new_list: str, outcome: dict[str, Any]) -> None:
    """Point the export at ``new_list``: outcome "changed", or "refused" with the error."""
    try:
        with world.sessions.begin() as session:
            saved = session.get(Export, export_id)
            assert saved is not None
            update_export(session, actor=world.admin, export=saved,
                          spec=dataclasses.replace(spec_of(saved), list_id=new_list))
        outcome["changed"] = True
    except ConfigurationError as exc:
        outcome["refused"] = exc


def _request(world: World, export_id: str, outcome: dict[str, Any]) -> None:
    """Request a run: outcome "run" (its id), or "refused" with the error."""
    try:
        with world.sessions.begin() as session:
            saved = session.get(Export, export_id)
            assert saved is not None
            outcome["run"] = request_run(session, actor=world.admin, export=saved).id
    except ConfigurationError as exc:
        outcome["refused"] = exc


def _lingering(real: Callable[..., None], paused: threading.Event,
               release: threading.Event) -> Callable[..., None]:
    """``real``, then a pause (``paused`` set) until ``release``: the instant a race needs."""
    def lingering(*args: Any) -> None:
        real(*args)
        paused.set()
        release.wait(10)
    return lingering


def _second_waited(first: Callable[[], None], second: Callable[[], None],
                   paused: threading.Event, release: threading.Event) -> bool:
    """Start ``first``; once it pauses, start ``second``; whether ``second`` was still
    waiting after HELD_FOR seconds. Both have ended when this returns."""
    one = threading.Thread(target=first)
    one.start()
    assert paused.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(HELD_FOR)
    waited = two.is_alive()
    release.set()
    one.join(30)
    two.join(30)
    return waited


def test_a_run_requested_during_a_list_change_waits_for_it(
    raced_world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The change has checked that no run sends and is about to commit; a run requested now
    is queued only after the change committed (then it reads the new list), never in
    between."""
    world = raced_world
    export_id, new_list = _export_and_new_list(world)
    checked, release = threading.Event(), threading.Event()
    monkeypatch.setattr(definitions, "_no_run_sending",
                        _lingering(definitions._no_run_sending, checked, release))
    outcome: dict[str, Any] = {}
    waited = _second_waited(lambda: _change(world, export_id, new_list, outcome),
                            lambda: _request(world, export_id, outcome), checked, release)
    assert waited, "a run was queued between the list change's check and commit"
    assert outcome.get("changed"), outcome
    assert "run" in outcome, outcome
    with world.sessions() as session:
        saved = session.get(Export, export_id)
        assert saved is not None
        assert saved.list_id == new_list
        assert session.scalars(select(Run.status).where(Run.export_id == export_id)).all() == [
            "queued"]


def test_a_list_change_during_a_run_request_is_refused(
    raced_world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other order: the request holds the export; the change waits for its commit, then
    sees the queued run and is refused, naming it."""
    world = raced_world
    export_id, new_list = _export_and_new_list(world)
    held, release = threading.Event(), threading.Event()
    from segment_export.exports import runs

    monkeypatch.setattr(runs, "hold_export", _lingering(definitions.hold_export, held, release))
    outcome: dict[str, Any] = {}
    waited = _second_waited(lambda: _request(world, export_id, outcome),
                            lambda: _change(world, export_id, new_list, outcome), held, release)
    assert waited, "the list changed while a run request held the export"
    assert "run" in outcome, outcome
    assert "changed" not in outcome, outcome
    assert outcome["refused"].context["run_id"] == outcome["run"]
    with world.sessions() as session:
        saved = session.get(Export, export_id)
        assert saved is not None
        assert saved.list_id != new_list
