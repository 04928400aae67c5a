"""Every route of the app × every role (and anonymous): allowed or refused, as expected.

The expectations below name every route explicitly; a route added to the app without an
expectation fails ``test_every_route_has_an_expectation``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from segment_export.db.models import Connection, Export, Run, Segment, User
from segment_export.users import Role
from tests.api.harness import LIST_ID, PASSWORDS, AppWorld

ROLES = ("anonymous", "viewer", "contributor", "admin")
PUBLIC = (True, True, True, True)
SIGNED_IN = (False, True, True, True)
EDITORS = (False, False, True, True)
ADMINS = (False, False, False, True)


@dataclass
class Targets:
    """The objects a request's path names; made fresh for requests that change things."""

    world: AppWorld
    role: str
    fresh: bool
    shared: dict[str, Any]
    made: dict[str, Any] = field(default_factory=dict)

    def _get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.made:
            self.made[key] = make() if self.fresh or key not in self.shared else (
                self.shared[key])
        return self.made[key]

    @property
    def connection(self) -> Connection:
        return self._get("connection", self.world.connection)  # type: ignore[no-any-return]

    @property
    def segment(self) -> Segment:
        return self._get("segment", self.world.segment)  # type: ignore[no-any-return]

    @property
    def export(self) -> Export:
        return self._get("export", lambda: self.world.export(  # type: ignore[no-any-return]
            connection=self.connection, segment=self.segment))

    @property
    def run(self) -> Run:
        return self._get("run", lambda: self.world.run(self.export))  # type: ignore[no-any-return]

    @property
    def user(self) -> User:
        return self._get("user", lambda: self.world.user(Role.VIEWER))  # type: ignore[no-any-return]

    @property
    def token_id(self) -> str:
        owner = self.role if self.role != "anonymous" else "viewer"
        return self._get("token", lambda: self.world.token_of(owner))  # type: ignore[no-any-return]

    def path(self, template: str) -> str:
        values = {"connection_id": lambda: self.connection.id,
                  "segment_id": lambda: self.segment.id, "export_id": lambda: self.export.id,
                  "run_id": lambda: self.run.id, "username": lambda: self.user.username,
                  "token_id": lambda: self.token_id}
        for name, value in values.items():
            if "{" + name + "}" in template:
                template = template.replace("{" + name + "}", value())
        assert "{" not in template, template
        return template


def _name() -> str:
    return f"n-{secrets.token_hex(4)}"


def _export_body(t: Targets) -> dict[str, Any]:
    export = t.export if "export" in t.made else None
    return {"name": _name(), "connection_id": (export.connection_id if export
                                                 else t.connection.id),
            "list_id": LIST_ID, "mapping": {"email": "email"},
            "segment_ids": list(export.segment_ids) if export else [t.segment.id]}


def _export_form(t: Targets) -> dict[str, Any]:
    body = _export_body(t)
    return {"name": body["name"], "connection_id": body["connection_id"], "list_choice": "id",
            "list_id_typed": LIST_ID, "email_column": "email",
            "segment_ids": body["segment_ids"], "enabled": "true"}


Body = Callable[[Targets], dict[str, Any]] | None


@dataclass(frozen=True)
class Expect:
    allowed: tuple[bool, bool, bool, bool]
    json: Body = None
    form: Body = None


# (method, path) -> who may, and what to send. Methods are the route's own ("MOUNT" for a mount).
EXPECTATIONS: dict[tuple[str, str], Expect] = {
    # documentation and probes
    ("GET", "/api/openapi.json"): Expect(PUBLIC),
    ("GET", "/api/docs"): Expect(PUBLIC),
    ("GET", "/api/docs/oauth2-redirect"): Expect(PUBLIC),
    ("MOUNT", "/api/docs/assets"): Expect(PUBLIC),
    ("GET", "/api/health"): Expect(PUBLIC),
    ("GET", "/api/ready"): Expect(PUBLIC),
    # Prometheus scrapes without credentials; the metrics carry counts, never contact data.
    ("GET", "/metrics"): Expect(PUBLIC),
    ("MOUNT", "/static"): Expect(PUBLIC),
    # users and the caller's own account
    ("GET", "/api/users"): Expect(ADMINS),
    ("POST", "/api/users"): Expect(ADMINS, json=lambda t: {
        "username": _name(), "role": "viewer", "password": "p" * 12}),
    ("GET", "/api/users/{username}"): Expect(ADMINS),
    ("POST", "/api/users/{username}/disable"): Expect(ADMINS),
    ("PUT", "/api/users/{username}/password"): Expect(ADMINS, json=lambda t: {
        "password": "q" * 12}),
    ("GET", "/api/me"): Expect(SIGNED_IN),
    ("GET", "/api/me/tokens"): Expect(SIGNED_IN),
    # Issuing a token asks for the caller's password again (tests/api/test_credentials.py).
    ("POST", "/api/me/tokens"): Expect(SIGNED_IN, json=lambda t: {
        "name": "script", "password": PASSWORDS.get(t.role, "none")}),
    ("DELETE", "/api/me/tokens/{token_id}"): Expect(SIGNED_IN),
    # connections: admins only, except the picker and the lists of a shared connection
    ("GET", "/api/connections"): Expect(ADMINS),
    ("POST", "/api/connections"): Expect(ADMINS, json=lambda t: {
        "display_name": _name(), "client_id": "cid", "consent": True}),
    ("GET", "/api/connections/usable"): Expect(SIGNED_IN),
    ("GET", "/api/connections/oauth/callback"): Expect(ADMINS),
    ("GET", "/api/connections/{connection_id}"): Expect(ADMINS),
    ("PATCH", "/api/connections/{connection_id}"): Expect(ADMINS, json=lambda t: {
        "shared_with_contributors": True}),
    ("POST", "/api/connections/{connection_id}/authorize"): Expect(ADMINS),
    ("POST", "/api/connections/{connection_id}/test"): Expect(ADMINS),
    ("GET", "/api/connections/{connection_id}/suppression"): Expect(ADMINS),
    ("POST", "/api/connections/{connection_id}/sync-unsubscribes"): Expect(ADMINS),
    ("GET", "/api/connections/{connection_id}/dependents"): Expect(ADMINS),
    ("POST", "/api/connections/{connection_id}/remove"): Expect(ADMINS, json=lambda t: {
        "exports": {}}),
    ("GET", "/api/connections/{connection_id}/lists"): Expect(EDITORS),
    # segments and profile columns: people who build exports
    ("GET", "/api/segments"): Expect(EDITORS),
    ("POST", "/api/segments"): Expect(EDITORS, json=lambda t: {
        "name": _name(), "expression": "country = 'FR'"}),
    ("POST", "/api/segments/preview"): Expect(EDITORS, json=lambda t: {
        "rule": {"all": [{"field": "country", "op": "eq", "value": "FR"}]}}),
    ("GET", "/api/segments/{segment_id}"): Expect(EDITORS),
    ("PATCH", "/api/segments/{segment_id}"): Expect(EDITORS, json=lambda t: {
        "description": "changed"}),
    ("DELETE", "/api/segments/{segment_id}"): Expect(EDITORS),
    ("GET", "/api/segments/{segment_id}/history"): Expect(EDITORS),
    ("GET", "/api/profiles/columns"): Expect(EDITORS),
    # exports: everyone sees them; contributors manage those on shared connections
    ("GET", "/api/exports"): Expect(SIGNED_IN),
    ("GET", "/api/exports/fields"): Expect(SIGNED_IN),
    ("POST", "/api/exports"): Expect(EDITORS, json=_export_body),
    ("GET", "/api/exports/{export_id}"): Expect(SIGNED_IN),
    ("PUT", "/api/exports/{export_id}"): Expect(EDITORS, json=_export_body),
    ("DELETE", "/api/exports/{export_id}"): Expect(EDITORS),
    ("POST", "/api/exports/{export_id}/duplicate"): Expect(EDITORS, json=lambda t: {
        "name": _name()}),
    ("POST", "/api/exports/{export_id}/runs"): Expect(EDITORS, json=lambda t: {
        "dry_run": True}),
    # Run all: queues only what the caller may run (here every connection is unauthorized,
    # so it queues nothing); viewers run nothing.
    ("POST", "/api/exports/run-all"): Expect(EDITORS),
    # runs: everyone sees them; cancelling is running
    ("GET", "/api/runs"): Expect(SIGNED_IN),
    ("GET", "/api/runs/{run_id}"): Expect(SIGNED_IN),
    ("POST", "/api/runs/{run_id}/cancel"): Expect(EDITORS),
    ("GET", "/api/runs/{run_id}/report"): Expect(SIGNED_IN),
    ("GET", "/api/runs/{run_id}/rejected.csv"): Expect(SIGNED_IN),
    # system schedule and audit log
    ("GET", "/api/schedule"): Expect(SIGNED_IN),
    ("PUT", "/api/schedule"): Expect(ADMINS, json=lambda t: {"cron": "0 5 * * *"}),
    ("POST", "/api/schedule/refresh"): Expect(ADMINS),
    ("GET", "/api/audit"): Expect(ADMINS),
    # pages: signing in and out
    ("GET", "/"): Expect(SIGNED_IN),
    ("GET", "/login"): Expect(PUBLIC),
    ("POST", "/login"): Expect(PUBLIC),
    ("POST", "/logout"): Expect(SIGNED_IN, form=lambda t: {}),
    # Admin > Connections
    ("GET", "/admin/connections"): Expect(ADMINS),
    ("GET", "/admin/connections/new"): Expect(ADMINS),
    ("POST", "/admin/connections/new"): Expect(ADMINS, form=lambda t: {
        "display_name": _name(), "client_id": "cid", "consent": "true"}),
    ("GET", "/admin/connections/callback"): Expect(ADMINS),
    ("GET", "/admin/connections/{connection_id}"): Expect(ADMINS),
    ("POST", "/admin/connections/{connection_id}"): Expect(ADMINS, form=lambda t: {
        "display_name": _name(), "usable_by": "contributors"}),
    ("POST", "/admin/connections/{connection_id}/test"): Expect(ADMINS, form=lambda t: {}),
    ("POST", "/admin/connections/{connection_id}/sync-unsubscribes"): Expect(
        ADMINS, form=lambda t: {}),
    ("POST", "/admin/connections/{connection_id}/authorize"): Expect(ADMINS,
                                                                     form=lambda t: {}),
    ("GET", "/admin/connections/{connection_id}/remove"): Expect(ADMINS),
    ("POST", "/admin/connections/{connection_id}/remove"): Expect(ADMINS, form=lambda t: {}),
    # Data > Segments
    ("GET", "/data/segments"): Expect(EDITORS),
    ("GET", "/data/segments/new"): Expect(EDITORS),
    ("POST", "/data/segments/new"): Expect(EDITORS, form=lambda t: {
        "name": _name(), "kind": "expression", "expression": "country = 'FR'"}),
    ("POST", "/data/segments/preview"): Expect(EDITORS, form=lambda t: {
        "kind": "builder", "cond_field": "country", "cond_op": "eq", "cond_value": "FR"}),
    ("GET", "/data/segments/{segment_id}"): Expect(EDITORS),
    ("POST", "/data/segments/{segment_id}"): Expect(EDITORS, form=lambda t: {
        "name": _name(), "kind": "expression", "expression": "country = 'DE'"}),
    ("GET", "/data/segments/{segment_id}/delete"): Expect(EDITORS),
    ("POST", "/data/segments/{segment_id}/delete"): Expect(EDITORS, form=lambda t: {}),
    # Data > Exports
    ("GET", "/data/exports"): Expect(SIGNED_IN),
    ("GET", "/data/exports/new"): Expect(EDITORS),
    ("POST", "/data/exports/new"): Expect(EDITORS, form=_export_form),
    ("GET", "/data/exports/{export_id}"): Expect(SIGNED_IN),
    ("GET", "/data/exports/{export_id}/edit"): Expect(EDITORS),
    ("POST", "/data/exports/{export_id}/edit"): Expect(EDITORS, form=_export_form),
    ("POST", "/data/exports/{export_id}/run"): Expect(EDITORS, form=lambda t: {
        "dry_run": "true"}),
    ("POST", "/data/exports/run-all"): Expect(EDITORS, form=lambda t: {}),
    ("POST", "/data/exports/{export_id}/duplicate"): Expect(EDITORS, form=lambda t: {}),
    ("GET", "/data/exports/{export_id}/remove"): Expect(EDITORS),
    ("POST", "/data/exports/{export_id}/remove"): Expect(EDITORS, form=lambda t: {}),
    # Run details
    ("GET", "/runs/{run_id}"): Expect(SIGNED_IN),
    ("POST", "/runs/{run_id}/cancel"): Expect(EDITORS, form=lambda t: {}),
    ("GET", "/runs/{run_id}/rejected.csv"): Expect(SIGNED_IN),
    # Settings
    ("GET", "/settings/schedule"): Expect(SIGNED_IN),
    ("POST", "/settings/schedule"): Expect(ADMINS, form=lambda t: {"cron": "0 5 * * *"}),
    ("POST", "/settings/schedule/refresh"): Expect(ADMINS, form=lambda t: {}),
    ("GET", "/settings/audit"): Expect(ADMINS),
    # Admin > Users, and your account
    ("GET", "/admin/users"): Expect(ADMINS),
    ("POST", "/admin/users"): Expect(ADMINS, form=lambda t: {
        "username": _name(), "role": "viewer", "password": "p" * 12}),
    ("POST", "/admin/users/{username}/disable"): Expect(ADMINS, form=lambda t: {}),
    ("POST", "/admin/users/{username}/language"): Expect(ADMINS, form=lambda t: {
        "language": "ms"}),
    ("GET", "/account"): Expect(SIGNED_IN),
    ("POST", "/account/tokens"): Expect(SIGNED_IN, form=lambda t: {
        "name": "script", "password": PASSWORDS.get(t.role, "none")}),
    ("POST", "/account/tokens/{token_id}/revoke"): Expect(SIGNED_IN, form=lambda t: {}),
    ("POST", "/account/language"): Expect(SIGNED_IN, form=lambda t: {"language": "en"}),
    ("POST", "/account/password"): Expect(SIGNED_IN, form=lambda t: {
        "current": "wrong-password-1", "new": "n" * 12}),
}


def app_routes(world: AppWorld) -> set[tuple[str, str]]:
    """Every (method, path) the app serves."""
    found = set()
    for route in iter_route_contexts(world.server.app.routes):
        assert route.path is not None
        methods = (route.methods or {"MOUNT"}) - {"HEAD"}
        found |= {(method, route.path) for method in methods}
    return found


def test_every_route_has_an_expectation(shared_site: AppWorld) -> None:
    routes = app_routes(shared_site)
    assert routes - EXPECTATIONS.keys() == set(), "routes without an expectation"
    assert EXPECTATIONS.keys() - routes == set(), "expectations of routes that do not exist"


@pytest.fixture(scope="module")
def shared_targets(shared_site: AppWorld) -> dict[str, Any]:
    """Objects the reading requests look at (a shared connection, export, queued run...)."""
    connection = shared_site.connection()
    segment = shared_site.segment()
    export = shared_site.export(connection=connection, segment=segment)
    return {"connection": connection, "segment": segment, "export": export,
            "run": shared_site.run(export), "user": shared_site.user()}


class Clients:
    """One API client and one signed-in browser per role, reused across cases (fresh ones
    only where a case ends its session: signing out, changing the password)."""

    def __init__(self, world: AppWorld) -> None:
        self.world = world
        self._api: dict[str | None, Any] = {}
        self._web: dict[str | None, Any] = {}

    def api(self, who: str | None) -> Any:
        if who not in self._api:
            self._api[who] = self.world.api(who)
        return self._api[who]

    def web(self, who: str | None, *, fresh: bool = False) -> Any:
        if fresh:
            return self.world.browser(who)
        if who not in self._web:
            self._web[who] = self.world.browser(who)
        return self._web[who]


@pytest.fixture(scope="module")
def clients(shared_site: AppWorld) -> Clients:
    return Clients(shared_site)


def _request(clients: Clients, role: str, method: str, template: str, expect: Expect,
             shared: dict[str, Any]) -> tuple[str, Any]:
    world = clients.world
    # Objects of its own for a request that may change them; a refused one must change
    # nothing, so it may aim at the shared ones.
    allowed = expect.allowed[ROLES.index(role)]
    targets = Targets(world, role, fresh=method != "GET" and allowed, shared=shared)
    who = None if role == "anonymous" else role
    if template in {"/static", "/api/docs/assets"}:
        asset = {"/static": "/static/app.css",
                 "/api/docs/assets": "/api/docs/assets/swagger-ui.css"}[template]
        return asset, clients.api(who).get(asset)
    path = targets.path(template)
    if template.startswith("/api/"):
        body = expect.json(targets) if expect.json else None
        return path, clients.api(who).request(method, path, json=body)
    if template == "/login" and method == "POST":
        return path, world.web().login("viewer", "viewer-password-003")
    web = clients.web(who, fresh=template in {"/logout", "/account/password", "/login"})
    if method == "GET":
        return path, web.get(path)
    form = expect.form(targets) if expect.form else {}
    return path, web.post(path, form)


CASES = [pytest.param(method, path, role, id=f"{role}-{method}-{path}")
         for (method, path) in EXPECTATIONS for role in ROLES]


@pytest.mark.parametrize(("method", "template", "role"), CASES)
def test_route_enforces_its_roles(clients: Clients, shared_targets: dict[str, Any],
                                  method: str, template: str, role: str) -> None:
    expect = EXPECTATIONS[(method, template)]
    allowed = expect.allowed[ROLES.index(role)]
    path, response = _request(clients, role, method if method != "MOUNT" else "GET",
                              template, expect, shared_targets)
    status = response.status_code
    location = response.headers.get("location", "")
    assert status < 500, f"{method} {path} as {role}: {status} {response.text[:500]}"
    if allowed:
        assert status not in (401, 403), f"{method} {path} as {role}: {response.text[:300]}"
        assert not location.startswith("/login?next="), f"{method} {path} as {role}: sign in"
        return
    if role == "anonymous" and not template.startswith("/api/"):
        assert status == 303, (status, location)
        assert location.startswith("/login"), location
    elif role == "anonymous":
        assert status == 401, (status, response.text[:300])
        assert response.headers["content-type"] == "application/problem+json"
    else:
        assert status == 403, f"{method} {path} as {role}: {status} {response.text[:300]}"
        if template.startswith("/api/"):
            assert response.json()["code"] == "permission_denied"
        else:
            assert "Forbidden" in response.text
