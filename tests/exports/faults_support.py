"""What the fault tests share: members, the exact-list and counts-add-up checks, and runs with a
client tuned for the fault (short read timeout, quick backoff)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import httpx

from segment_export.db.models import Export, Run
from segment_export.exports.delivery import load_members
from segment_export.exports.engine import RunDependencies
from segment_export.exports.runs import request_run, run_to_completion
from tests.world import World


def people(n: int, *, start: int = 1) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE", "consent": True}
            for i in range(start, start + n)]


def expected(n: int, *, start: int = 1) -> set[str]:
    return {f"person{i}@example.com" for i in range(start, start + n)}


def prepare(world: World, n: int, *, batch: int = 100, name: str = "faulty") -> Export:
    """``n`` members in one segment and an export of it, sent ``batch`` contacts a request."""
    world.settings = world.settings.model_copy(update={"import_batch_contacts": batch})
    world.load_profiles(people(n))
    return world.export(name, [world.segment(f"{name} members", "country = 'DE'")])


def deps(world: World, *, read_timeout: float | None = None, **extra: Any) -> RunDependencies:
    """``world.deps()``, with the client's read timeout cut to ``read_timeout`` seconds."""
    base = world.deps(**extra)
    options = dict(base.client_options)
    if read_timeout is not None:
        options["timeout"] = httpx.Timeout(read_timeout, connect=5.0)
    return dataclasses.replace(base, client_options=options)


def run(world: World, export: Export, *, using: RunDependencies | None = None,
        **deps_options: Any) -> Run:
    """Request a run of ``export`` and carry it out here (as worker ``using``, if given)."""
    with world.sessions.begin() as session:
        queued = request_run(session, actor=world.admin, export=export)
    return run_to_completion(queued.id, deps=using or deps(world, **deps_options), backoff=0.01)


def imports(world: World) -> list[Any]:
    return [r for r in world.control.requests() if r.path.endswith("contacts_json_import")]


def assert_exact(world: World, list_id: str, members: set[str]) -> None:
    """The list holds exactly ``members``, and the account holds each address once."""
    assert world.control.list_members(list_id) == members
    twice = [e for e, n in Counter(c["email"].lower() for c in world.control.contacts()).items()
             if n > 1]
    assert twice == [], f"contacts created twice: {twice[:5]}"


def assert_accounted(run: Run, n: int) -> None:
    """Every member is in exactly one count, and every contact sent has an outcome."""
    c = run.counts
    assert c["in_segment"] == n
    assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c["no_consent"]
    assert c["sent"] == c["accepted"] + c["rejected_by_constant_contact"] + c[
        "unsubscribed_not_added"]


def delivered(world: World, export: Export) -> set[str]:
    """The emails the export's delivered state says Constant Contact confirmed."""
    members = load_members(world.engine, export.id, emails=True)
    return {str(e) for e in members.emails.to_pylist()} if members.emails is not None else set()
