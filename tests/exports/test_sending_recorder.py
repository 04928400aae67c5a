"""The sender records settled batches beside its requests (sending.py ``Recorder``): the next
import does not wait for a recording, and a recording that fails still fails the run. Against
the emulator over real HTTP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from segment_export.db.models import RunBatch
from segment_export.exports import sending
from segment_export.exports.runs import request_run, run_to_completion
from tests.world import World

PEOPLE = 6


def _people() -> list[dict[str, Any]]:
    return [{"customer_id": str(i), "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE"} for i in range(1, PEOPLE + 1)]


def _one_contact_a_batch(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 1})
    # Settle every other import, so batches are recorded while later ones are still to send.
    monkeypatch.setattr(sending, "MAX_OUTSTANDING", 2)


def test_the_next_import_goes_out_while_a_settled_batch_is_recorded(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first recording blocks until one more import has reached Constant Contact: were
    the recording on the sender's thread, that import could not go out and it would time
    out. Every contact still ends up on the list and every batch confirmed, once."""
    _one_contact_a_batch(world, monkeypatch)
    world.load_profiles(_people())
    export = world.export("beside", [world.segment("de", "country = 'DE'")])
    imports: list[int] = []
    more = threading.Event()

    def on_request(method: str, path: str, status: int | None, sent: int,
                   seconds: float) -> None:
        if path.endswith("contacts_json_import") and status == 201:
            imports.append(sent)
            if waiting and len(imports) > waiting[0]:
                more.set()

    waiting: list[int] = []
    seen: list[bool] = []
    real = sending.record_delivered

    def slow(*args: Any, **kwargs: Any) -> None:
        if not waiting:
            waiting.append(len(imports))
            seen.append(more.wait(timeout=3.0))
        real(*args, **kwargs)

    monkeypatch.setattr(sending, "record_delivered", slow)
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id

    done = run_to_completion(run_id, deps=world.deps(on_request=on_request), backoff=0.01)

    assert seen == [True], "no import went out while the first batch was being recorded"
    assert done.status == "succeeded", done.message
    assert done.counts["sent"] == done.counts["accepted"] == PEOPLE
    assert world.members() == {f"person{i}@example.com" for i in range(1, PEOPLE + 1)}
    with world.sessions() as session:
        states = session.scalars(select(RunBatch.state).where(RunBatch.run_id == run_id)).all()
    assert states == ["confirmed"] * PEOPLE
    # The recorder's thread ends with the sending (a worker runs many runs).
    assert not [t for t in threading.enumerate() if t.name == "record-batches"]


def test_a_recording_that_fails_fails_the_run_and_the_next_run_settles_its_batches(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder thread's error reaches the run (it does not vanish with the thread); the
    batches it left sent but unrecorded are settled by the retry, and nobody is lost."""
    _one_contact_a_batch(world, monkeypatch)
    world.load_profiles(_people())
    export = world.export("failing", [world.segment("de", "country = 'DE'")])
    real, calls = sending.record_delivered, []

    def failing(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["batch_id"])
        if len(calls) == 2:
            raise RuntimeError("the state database went read-only")
        real(*args, **kwargs)

    monkeypatch.setattr(sending, "record_delivered", failing)
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id

    failed = run_to_completion(run_id, deps=world.deps(), backoff=0.01)

    assert failed.status == "failed", failed.message
    assert "read-only" in failed.message
    with world.sessions() as session:
        confirmed = session.scalars(select(RunBatch.id).where(
            RunBatch.run_id == run_id, RunBatch.state == "confirmed")).all()
    # The first recording landed; the failure stopped every recording after it.
    assert confirmed == calls[:1]

    monkeypatch.setattr(sending, "record_delivered", real)
    done = world.run(export)

    assert done.status == "succeeded", done.message
    assert world.members() == {f"person{i}@example.com" for i in range(1, PEOPLE + 1)}
    with world.sessions() as session:
        left = session.scalars(select(RunBatch.state).where(
            RunBatch.run_id == run_id, RunBatch.state.in_(("sent", "pending")))).all()
    assert left == []


def test_twenty_imports_are_confirmed_with_two_listings(world: World) -> None:
    """A listing takes a request from the imports' budget: 20 imports in flight up to 16 at a
    time need one listing midway and one at the end (not one every eight imports)."""
    world.settings = world.settings.model_copy(update={"import_batch_contacts": 1})
    people = [{"customer_id": str(i), "email": f"person{i}@example.com", "first_name": "P",
               "last_name": "Doe", "country": "DE"} for i in range(1, 21)]
    world.load_profiles(people)
    export = world.export("seldom", [world.segment("de", "country = 'DE'")])
    requests: list[tuple[str, str]] = []
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id

    done = run_to_completion(run_id, deps=world.deps(
        on_request=lambda method, path, *_: requests.append((method, path))), backoff=0.01)

    assert done.status == "succeeded", done.message
    assert done.counts["accepted"] == 20
    assert world.members() == {row["email"] for row in people}
    imports = [r for r in requests if r == ("POST", "/v3/activities/contacts_json_import")]
    listings = [r for r in requests if r == ("GET", "/v3/activities")]
    assert (len(imports), len(listings)) == (20, 2)
