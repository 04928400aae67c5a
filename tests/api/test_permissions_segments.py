"""Segment routes × roles × where the segment's exports go: a segment that feeds an export is
changed only by someone who may change that export (issue #17, point 1), and rule values out
of bounds are a 422, never a 500 (point 6).

``test_permissions.py`` checks every route against roles on segments that feed nothing or an
export on a shared connection; here the same routes meet segments that feed exports on a
connection not shared with contributors, or a detached one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from segment_export.db.models import Export, Segment
from tests.api.harness import AppWorld

ROLES = ("viewer", "contributor", "admin")


@dataclass(frozen=True)
class Change:
    """One way of changing a segment through a route, and how to tell it happened."""

    method: str
    path: str
    body: Callable[[], dict[str, Any]] | None = None
    web: bool = False


def _name() -> str:
    return f"s-{secrets.token_hex(4)}"


CHANGES: dict[str, Change] = {
    "api-rule": Change("PATCH", "/api/segments/{id}", lambda: {
        "rule": {"all": [{"field": "country", "op": "is_not_empty"}]}}),
    "api-expression": Change("PATCH", "/api/segments/{id}", lambda: {
        "expression": "country IS NOT NULL"}),
    "api-deactivate": Change("PATCH", "/api/segments/{id}", lambda: {"active": False}),
    "api-rename": Change("PATCH", "/api/segments/{id}", lambda: {"name": _name()}),
    "api-description": Change("PATCH", "/api/segments/{id}", lambda: {"description": "x"}),
    "api-delete": Change("DELETE", "/api/segments/{id}"),
    "web-save": Change("POST", "/data/segments/{id}", lambda: {
        "name": _name(), "kind": "expression", "expression": "country IS NOT NULL",
        "active": "true"}, web=True),
    "web-delete": Change("POST", "/data/segments/{id}/delete", lambda: {}, web=True),
}

# Where the segment's export goes -> may (viewer, contributor, admin) change the segment?
# (Deleting a segment an export still sends is refused for everyone; see below.)
SITUATIONS: dict[str, tuple[bool, bool, bool]] = {
    "no-export": (False, True, True),
    "shared-connection": (False, True, True),
    "unshared-connection": (False, False, True),
    "detached-export": (False, False, True),
}


def _segment_in(world: AppWorld, situation: str) -> Segment:
    segment = world.segment("country = 'DE'")
    if situation == "no-export":
        return segment
    export = world.export(connection=world.connection(shared=situation != "unshared-connection"),
                          segment=segment)
    if situation == "detached-export":
        with world.runtime.sessions.begin() as db:
            found = db.get(Export, export.id)
            assert found is not None
            found.connection_id = None
            found.enabled = False
    return segment


def _state(world: AppWorld, segment_id: str) -> tuple[Any, ...] | None:
    with world.runtime.sessions() as db:
        found = db.get(Segment, segment_id)
        if found is None:
            return None
        return (found.name, found.description, found.rule, found.expression, found.active,
                found.size)


CASES = [pytest.param(change, situation, role, id=f"{role}-{change}-{situation}")
         for change in CHANGES for situation in SITUATIONS for role in ROLES]


@pytest.mark.parametrize(("change", "situation", "role"), CASES)
def test_changing_a_segment_needs_the_right_to_change_its_exports(
    shared_site: AppWorld, change: str, situation: str, role: str
) -> None:
    world = shared_site
    segment = _segment_in(world, situation)
    before = _state(world, segment.id)
    how = CHANGES[change]
    path = how.path.replace("{id}", segment.id)
    body = how.body() if how.body else None
    if how.web:
        response = world.browser(role).post(path, body)
    else:
        response = world.api(role).request(how.method, path, json=body)
    allowed = SITUATIONS[situation][ROLES.index(role)]
    deleting = change.endswith("delete")
    status = response.status_code
    assert status < 500, response.text[:500]
    if not allowed:
        assert status == 403, f"{status} {response.text[:300]}"
        if how.web:
            assert "Forbidden" in response.text
            if role == "contributor":
                assert "may not change the segment" in response.text
        else:
            assert response.json()["code"] == "permission_denied"
        assert _state(world, segment.id) == before, "a refused change changed the segment"
        return
    if deleting and situation != "no-export":
        # Nobody deletes a segment that an export still sends (it would empty a mirror list).
        assert status == 422, f"{status} {response.text[:300]}"
        assert _state(world, segment.id) == before
        return
    assert status in (200, 204, 303), f"{status} {response.text[:300]}"
    if deleting:
        assert _state(world, segment.id) is None
    else:
        assert _state(world, segment.id) != before


@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("role", ["contributor", "admin"])
def test_a_segment_lists_the_exports_it_feeds(shared_site: AppWorld, situation: str,
                                              role: str) -> None:
    """Before a change: the segment says which exports send it and what the caller may do."""
    world = shared_site
    segment = _segment_in(world, situation)
    with world.runtime.sessions() as db:
        expected = sorted(e.name for e in db.scalars(select(Export))
                          if segment.id in e.segment_ids)
    api = world.api(role)
    shown = api.get(f"/api/segments/{segment.id}").json()
    assert sorted(e["name"] for e in shown["exports"]) == expected
    assert all("connection_id" not in e for e in shown["exports"])
    may = SITUATIONS[situation][ROLES.index(role)]
    assert shown["permissions"] == (["view", "edit", "delete"] if may else ["view"])
    listed = next(s for s in api.get("/api/segments").json() if s["id"] == segment.id)
    assert listed["exports"] == shown["exports"]
    assert listed["permissions"] == shown["permissions"]
    if expected:
        assert shown["exports"][0]["permissions"] == (
            ["view", "edit", "run", "remove"] if may else ["view"])


BAD_RULES: dict[str, dict[str, Any]] = {
    "days-1e6": {"field": "last_purchase_date", "op": "within_last_days", "value": 10**6},
    "days-1e30": {"field": "last_purchase_date", "op": "within_last_days", "value": 10**30},
    "days-36501": {"field": "last_purchase_date", "op": "within_last_days", "value": 36_501},
    "between-huge": {"field": "lifetime_value", "op": "between", "value": [10**400, 10**401]},
    "gt-2**63": {"field": "customer_id", "op": "gt", "value": 2**63},
    "text-too-long": {"field": "country", "op": "eq", "value": "x" * 1001},
}


@pytest.mark.parametrize("bad", list(BAD_RULES))
@pytest.mark.parametrize("route", ["create", "edit", "preview"])
def test_rule_values_out_of_bounds_are_a_422_naming_the_field(
    shared_site: AppWorld, route: str, bad: str
) -> None:
    api = shared_site.api("contributor")
    rule = {"all": [BAD_RULES[bad]]}
    if route == "create":
        response = api.post("/api/segments", json={"name": _name(), "rule": rule})
    elif route == "edit":
        segment = shared_site.segment()
        response = api.patch(f"/api/segments/{segment.id}", json={"rule": rule})
        assert _state(shared_site, segment.id) is not None
    else:
        response = api.post("/api/segments/preview", json={"rule": rule})
    assert response.status_code == 422, response.text[:500]
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert problem["errors"][0]["loc"][:2] == ["body", "rule"]
    assert BAD_RULES[bad]["field"] in problem["detail"]


def test_numbers_written_as_text_obey_the_same_bounds(shared_site: AppWorld) -> None:
    """A number column compared with "1e400" is refused with the column named (not a 500)."""
    response = shared_site.api("admin").post("/api/segments/preview", json={
        "rule": {"field": "lifetime_value", "op": "gt", "value": "1e400"}})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["field"] == "lifetime_value"


def test_largest_bounded_values_still_work(shared_site: AppWorld) -> None:
    response = shared_site.api("admin").post("/api/segments/preview", json={"rule": {"all": [
        {"field": "last_purchase_date", "op": "within_last_days", "value": 36_500},
        {"field": "customer_id", "op": "lt", "value": 2**63 - 1}]}})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["count"] > 0
