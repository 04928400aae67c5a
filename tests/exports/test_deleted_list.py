"""An export whose list was deleted in Constant Contact: its run and its dry run say so, naming
the list, instead of a 400 about a list id "not found" (a run) or a success (a dry run)."""

from __future__ import annotations

import time
import uuid

from segment_export.db.models import Run
from segment_export.definitions.connections import client_for
from segment_export.definitions.lists import deleted_list_error
from tests.world import World


def _people(n: int) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE"} for i in range(1, n + 1)]


def _delete_the_list(world: World, list_id: str) -> None:
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        client.create_contact_list("Kept")  # an account keeps at least one list
        client._send("DELETE", f"contact_lists/{list_id}")
        deadline = time.monotonic() + 10
        while client.get_contact_list(list_id).deleted_at is None:
            assert time.monotonic() < deadline, "the emulator did not delete the list"
            time.sleep(0.05)


def _requests(world: World, method: str, path: str) -> int:
    return sum(1 for r in world.control.requests() if r.method == method and r.path == path)


def test_a_run_and_a_dry_run_to_a_deleted_list_say_it_was_deleted(world: World) -> None:
    world.load_profiles(_people(5))
    export = world.export("gone", [world.segment("de", "country = 'DE'")], list_name="Newsletter")
    _delete_the_list(world, export.list_id)
    for dry_run in (True, False):
        run: Run = world.run(export, dry_run=dry_run)
        assert run.status == "failed", run.message
        assert run.error_kind == "ConfigurationError"
        assert "'Newsletter' was deleted in Constant Contact on" in run.message
        assert "Pick another list" in run.message
    assert world.control.contacts() == []  # the refused import made none


def test_a_purged_list_is_named_too(world: World) -> None:
    """Once Constant Contact no longer knows a list at all, its GET answers 404: that list is
    named as gone too, and a list that is there is not."""
    unknown = str(uuid.uuid4())
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        gone = deleted_list_error(client, list_id=unknown, list_name=None)
        there = deleted_list_error(client, list_id=world.list_id, list_name="Newsletter")
    assert gone is not None
    assert f"{unknown} no longer exists in Constant Contact" in str(gone)
    assert gone.context["list_id"] == unknown
    assert there is None


def test_a_list_that_is_there_costs_a_run_no_request_more(world: World) -> None:
    """The list is asked about only when Constant Contact refuses a request; a dry run asks
    once (it would otherwise report what a real run cannot do)."""
    world.load_profiles(_people(4))
    export = world.export("there", [world.segment("de", "country = 'DE'")])
    path = f"/v3/contact_lists/{export.list_id}"
    world.control.clear_requests()
    dry: Run = world.run(export, dry_run=True)
    assert dry.status == "succeeded"
    assert _requests(world, "GET", path) == 1
    world.control.clear_requests()
    run: Run = world.run(export)
    assert run.status == "succeeded"
    assert _requests(world, "GET", path) == 0
    assert len(world.members()) == 4
