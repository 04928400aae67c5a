"""The REST API fuzzed from its own OpenAPI document (schemathesis), once per role.

Every operation is called with an admin's, a contributor's and a viewer's API token over real
HTTP, against an installation seeded with things worth answering about: a connection shared with
contributors and one that is not (both authorized against the emulator), a pending one, segments,
exports on each, runs with rejected rows, users and spare API tokens. Path parameters are drawn
from the seeded objects as well as generated, so requests reach real objects, not only 404s.

Every answer must be no server error and conform to the document, and no role may be answered
with what it is not allowed to have (:class:`Planted`):

- nobody ever receives a secret: client secrets, OAuth tokens and verifiers, password hashes,
  API tokens (other than the one a ``POST /api/me/tokens`` issues);
- contributors and viewers never receive a connection's settings (client id, account), and see
  a connection they may not use only as the ``connection_id``/``connection_name`` of an export
  (docs/roles.md: everyone sees exports and their runs);
- a request the role matrix of ``test_permissions`` refuses never succeeds, nor does a change to
  an export or run on a connection the contributor may not use, nor revoking someone else's token.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, CheckFunction, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from segment_export.db import make_engine, upgrade_database
from segment_export.db.models import ApiToken, Connection, RejectedRow, Run, RunBatch, User
from segment_export.db.types import utcnow
from segment_export.definitions.connections import start_authorization
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.users import Role, UserSpec, create_api_token, create_user
from tests.api.harness import PASSWORDS, AppWorld, app_world, make_settings
from tests.api.test_permissions import EXPECTATIONS
from tests.api.test_permissions import ROLES as MATRIX_ROLES
from tests.services import postgres_schema_url

# Examples per operation and role (~60 s for the six passes on 2 cores): valid requests find
# wrong answers, invalid ones find crashes.
EXAMPLES = {GenerationMode.POSITIVE: 5, GenerationMode.NEGATIVE: 4}
# Each pass seeds objects of its own, so what an earlier pass removed or changed (an admin may
# remove connections) cannot hide a leak from a later one, in whatever order they run.
ROLES = ("viewer", "contributor", "admin")
APPS = {"shared": ("fz-app-shared", "fz-secret-shared-0f1e2d3c4b5a"),
        "unshared": ("fz-app-unshared", "fz-secret-unshared-a5b4c3d2e1f0")}
ACCOUNT = {"organization_name": "Fuzz Bakery Org", "contact_email": "owner@fuzz-bakery.test"}
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Changes to the caller's own account a viewer may make (docs/roles.md: own API tokens).
OWN_ACCOUNT = frozenset({("POST", "/api/me/tokens"), ("DELETE", "/api/me/tokens/{token_id}")})
# Where a connection the caller may not use may still be named: on the exports it carries.
EXPORT_CONNECTION_KEYS = frozenset({"connection_id", "connection_name"})


@dataclass
class Planted:
    """What a seed put in the installation, and who may receive which of it."""

    # path parameter -> values that name seeded objects
    targets: dict[str, list[str]] = field(default_factory=dict)
    # never in any answer to anyone
    secrets: set[str] = field(default_factory=set)
    # never in an answer to a contributor or a viewer
    connection_settings: set[str] = field(default_factory=set)
    # ids and names of connections a contributor may not use / of every connection
    unshared_connections: set[str] = field(default_factory=set)
    all_connections: set[str] = field(default_factory=set)
    # exports and runs on connections a contributor may not use (ids and names)
    unshared_objects: set[str] = field(default_factory=set)
    # API token id -> the role of its owner
    token_owner: dict[str, str] = field(default_factory=dict)

    def add(self, other: Planted) -> None:
        for name, values in other.targets.items():
            self.targets.setdefault(name, []).extend(values)
        self.secrets |= other.secrets
        self.connection_settings |= other.connection_settings
        self.unshared_connections |= other.unshared_connections
        self.all_connections |= other.all_connections
        self.unshared_objects |= other.unshared_objects
        self.token_owner |= other.token_owner


@dataclass
class FuzzSite:
    world: AppWorld
    emulator: EmulatorServer
    list_id: str
    # everything every seed planted: earlier seeds' objects must stay unseen too
    planted: Planted = field(default_factory=Planted)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSite]:
    """The app over PostgreSQL (stricter than SQLite: lengths, NUL characters, integer sizes,
    so what it accepts SQLite accepts too), with the emulator as Constant Contact."""
    emulator_config = EmulatorConfig(requests_per_second=10_000, token_requests_per_second=10_000,
                                     auto_approve=True)
    with EmulatorServer(emulator_config) as emulator, postgres_schema_url() as url:
        config = make_settings(tmp_path_factory.mktemp("fuzz"), cc_api_url=emulator.api_url,
                               cc_auth_url=emulator.auth_url, cc_requests_per_second=10_000.0)
        engine = make_engine(config, url=url)
        upgrade_database(engine)
        with app_world(config, engine=engine) as world:
            callback = world.url + "/api/connections/oauth/callback"
            seeded = emulator.control.seed(
                apps=[{"client_id": cid, "client_secret": secret, "redirect_uris": [callback]}
                      for cid, secret in APPS.values()],
                account=ACCOUNT, lists=["Fuzz newsletter"])
            yield FuzzSite(world, emulator, seeded.lists["Fuzz newsletter"])
        engine.dispose()


def _authorized_connection(site: FuzzSite, name: str, app: str, *, shared: bool) -> Connection:
    """A connection made and authorized the way an admin does it, through the API."""
    admin = site.world.api("admin")
    client_id, client_secret = APPS[app]
    created = admin.post("/api/connections", json={
        "display_name": name, "client_id": client_id, "client_secret": client_secret,
        "shared_with_contributors": shared, "consent": True})
    assert created.status_code == 201, created.text
    conn_id = created.json()["id"]
    start = admin.post(f"/api/connections/{conn_id}/authorize")
    assert start.status_code == 200, start.text
    callback = site.emulator.control.approve_url(start.json()["authorize_url"])
    done = admin.get("/api/connections/oauth/callback?" + callback.partition("?")[2])
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "connected", done.text
    with site.world.runtime.sessions() as db:
        conn = db.get(Connection, conn_id)
        assert conn is not None
        db.expunge(conn)
        return conn


def seed(site: FuzzSite, tag: str) -> Planted:
    """Objects for the requests of one pass to meet, named after ``tag``."""
    world = site.world
    shared = _authorized_connection(site, f"Fuzz shared {tag}", "shared", shared=True)
    unshared = _authorized_connection(site, f"Fuzz unshared {tag}", "unshared", shared=False)
    segments = [world.segment("country = 'DE'"), world.segment("country = 'FR'")]
    planted = Planted()
    with world.runtime.sessions.begin() as db:
        admin = db.merge(world.users["admin"])
        pending = world.connection(shared=False)  # an authorization started, never finished
        start_authorization(db, actor=admin, connection=db.merge(pending),
                            settings=world.settings)
        exports = {}
        for which, conn in (("shared", shared), ("unshared", unshared)):
            exports[which] = create_export(db, actor=admin, spec=ExportSpec(
                name=f"Fuzz export {which} {tag}", connection_id=conn.id, list_id=site.list_id,
                list_name="Fuzz newsletter", mapping={"email": "email",
                                                      "first_name": "first_name"},
                segment_ids=[s.id for s in segments]))
        runs: dict[str, list[Run]] = {}
        for which, export in exports.items():
            done = Run(export_id=export.id, requested_by_id=admin.id, trigger="manual",
                       status="succeeded_with_rejections", attempt=1, started_at=utcnow(),
                       finished_at=utcnow(), message="2 rows rejected",
                       counts={"in_segment": 12, "sent": 10, "unchanged": 0,
                               "rejected_locally": 2, "accepted": 9, "rejected_remote": 0,
                               "unsubscribed": 1},
                       stage_seconds={"diff": 0.1, "send": 0.4})
            queued = Run(export_id=export.id, requested_by_id=admin.id)
            db.add_all([done, queued])
            db.flush()
            db.add(RunBatch(run_id=done.id, seq=0, kind="import", state="confirmed",
                            activity_id=str(uuid.uuid4()), contacts=10,
                            counts={"accepted": 9, "unsubscribed": 1}, confirmed_at=utcnow()))
            db.add_all([
                RejectedRow(run_id=done.id, customer_id=f"fz-cust-{which}-{tag}-1",
                            email="not-an-email", reason="invalid_email",
                            detail="no @ in the address"),
                RejectedRow(run_id=done.id, customer_id=f"fz-cust-{which}-{tag}-2",
                            email=f"rejected-{which}-{tag}@example.com",
                            reason="field_too_long", detail="first_name over 50 characters")])
            runs[which] = [done, queued]
        # A user for the user routes to aim at (never one of the callers), and a spare API
        # token of every role for the revoking route (never the callers' own).
        target = create_user(
            db,
            spec=UserSpec(
                username=f"fz-user-{tag}", role=Role.VIEWER, password=PASSWORDS["viewer"] + tag
            ),
            actor=admin,
        )
        spares = {role: create_api_token(db, actor=db.merge(world.users[role]),
                                         user=db.merge(world.users[role]), name=f"spare {tag}")
                  for role in ROLES}
        db.flush()
        connections = [db.get_one(Connection, c.id) for c in (shared, unshared, pending)]
        for conn in connections:
            assert conn.client_secret, conn.display_name
            assert (conn.access_token and conn.refresh_token) or conn.pkce_verifier, (
                conn.display_name)
            planted.secrets |= {s for s in (conn.client_secret, conn.access_token,
                                            conn.refresh_token, conn.pkce_verifier,
                                            conn.oauth_state) if s}
            planted.connection_settings.add(conn.client_id)
            planted.all_connections |= {conn.id, conn.display_name}
            if not conn.shared_with_contributors:
                planted.unshared_connections |= {conn.id, conn.display_name}
        planted.connection_settings |= set(ACCOUNT.values())
        planted.unshared_objects |= {exports["unshared"].id, exports["unshared"].name,
                                     *(r.id for r in runs["unshared"])}
        for user in db.scalars(select(User)):
            if user.password_hash:
                planted.secrets.add(user.password_hash)
        planted.secrets |= set(PASSWORDS.values()) | set(world.tokens.values())
        planted.secrets |= {issued.secret for issued in spares.values()}
        planted.token_owner = {issued.token.id: role for role, issued in spares.items()}
        planted.token_owner |= {t.id: role for role in ROLES for t in db.scalars(
            select(ApiToken).where(ApiToken.user_id == world.users[role].id))}
        planted.targets = {
            "connection_id": [c.id for c in connections] + [shared.display_name],
            "export_id": [e.id for e in exports.values()] + [exports["unshared"].name],
            "run_id": [r.id for rs in runs.values() for r in rs],
            "segment_id": [s.id for s in segments],
            "username": [target.username],
            "token_id": [issued.token.id for issued in spares.values()],
        }
    return planted


# -- what a role may receive ------------------------------------------------------------------


def _sent(case: schemathesis.Case) -> str:
    """Everything the request itself carried: a value the caller sent is not disclosed to it."""
    parts = [json.dumps(case.path_parameters or {}), json.dumps(case.query or {}, default=str),
             json.dumps(case.headers or {}, default=str)]
    try:
        parts.append(json.dumps(case.body, default=str))
    except (TypeError, ValueError):
        parts.append(repr(case.body))
    return "\n".join(parts)


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, text) pair of a JSON document, dict keys included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield key, str(k)
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)
    elif value is not None:
        yield key, str(value)


def leak_check(role: str, planted: Planted) -> CheckFunction:
    """A schemathesis check: the answer holds nothing ``role`` may not receive."""
    forbidden_anywhere = set(planted.secrets)
    forbidden_unless_on_export: set[str] = set()
    if role != "admin":
        forbidden_anywhere |= planted.connection_settings
        forbidden_unless_on_export |= (planted.all_connections if role == "viewer"
                                       else planted.unshared_connections)

    def no_data_of_others(ctx: CheckContext, response: Response, case: schemathesis.Case
                          ) -> bool | None:
        sent = _sent(case)
        text = response.text if isinstance(response.text, str) else ""
        headers = "\n".join(f"{k}: {', '.join(v)}" for k, v in response.headers.items())
        leaked = sorted(m for m in forbidden_anywhere
                        if m not in sent and (m in text or m in headers))
        if forbidden_unless_on_export:
            try:
                document = json.loads(text) if text else None
            except ValueError:
                pairs: list[tuple[str, str]] = [("", text)]
            else:
                pairs = list(_strings(document))
            leaked += sorted({m for k, s in pairs if k not in EXPORT_CONNECTION_KEYS
                              for m in forbidden_unless_on_export if m in s and m not in sent})
        if leaked:
            raise AssertionError(f"The {role} was answered with {leaked!r}")
        return None

    return no_data_of_others


def _allowed_by_matrix(role: str, method: str, template: str) -> bool:
    return EXPECTATIONS[(method, template)].allowed[MATRIX_ROLES.index(role)]


def role_check(role: str, planted: Planted) -> CheckFunction:
    """A schemathesis check: a request ``role`` may not make did not succeed."""

    def refused_what_is_not_yours(ctx: CheckContext, response: Response,
                                  case: schemathesis.Case) -> bool | None:
        if not 200 <= response.status_code < 300:
            return None
        method, template = case.method.upper(), case.operation.path
        params = {k: str(v) for k, v in (case.path_parameters or {}).items()}
        why = None
        if not _allowed_by_matrix(role, method, template):
            why = "the role matrix refuses it"
        elif role == "viewer" and method in MUTATING and (method, template) not in OWN_ACCOUNT:
            why = "a viewer changes nothing but their own tokens"
        elif "token_id" in params and planted.token_owner.get(params["token_id"],
                                                              role) != role:
            why = "the token is someone else's"
        elif role == "contributor":
            named = set(params.values())
            body = case.body if isinstance(case.body, dict) else {}
            if isinstance(body.get("connection_id"), str):
                named.add(str(body["connection_id"]))
            if named & planted.unshared_connections:
                why = "the connection is not shared with contributors"
            elif method in MUTATING and named & planted.unshared_objects:
                why = "it is on a connection not shared with contributors"
        if why:
            raise AssertionError(f"{method} {template} answered {response.status_code} to the "
                                 f"{role}: {why}")
        return None

    return refused_what_is_not_yours


# -- the pass ---------------------------------------------------------------------------------


def _aim(case: schemathesis.Case, data: st.DataObject, planted: Planted) -> None:
    """Point some path parameters (and an export's connection) at seeded objects."""
    for name in list(case.path_parameters or {}):
        pool = planted.targets.get(name)
        if pool:
            pick = data.draw(st.sampled_from([None, *pool]), label=name)
            if pick is not None:
                case.path_parameters[name] = pick
    if case.operation.path == "/api/runs" and isinstance(case.query, dict):
        pick = data.draw(st.sampled_from([None, *planted.targets["export_id"]]))
        if pick is not None:
            case.query["export_id"] = pick
    if isinstance(case.body, dict) and "connection_id" in case.body:
        pick = data.draw(st.sampled_from([None, *planted.targets["connection_id"]]))
        if pick is not None:
            case.body["connection_id"] = pick


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, token: str,
          checks: list[CheckFunction], planted: Planted, session: requests.Session,
          statuses: Counter[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case, data: st.DataObject) -> None:
        _aim(case, data, planted)
        response = case.call_and_validate(session=session, timeout=30, checks=checks,
                                          headers={"Authorization": f"Bearer {token}"})
        statuses[response.status_code] += 1

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to make.
        if mode != GenerationMode.NEGATIVE:
            raise


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as_every_role(fuzz_site: FuzzSite, role: str,
                                       mode: GenerationMode) -> None:
    """Every operation, with data its schema allows and with data it forbids, as ``role``."""
    fuzz_site.planted.add(seed(fuzz_site, f"{role}-{mode.value}"))
    planted = fuzz_site.planted
    checks: list[CheckFunction] = [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance,
        leak_check(role, planted), role_check(role, planted)]
    schema = schemathesis.openapi.from_url(fuzz_site.world.url + "/api/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    count = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            count += 1
            try:
                _fuzz(operation, mode, fuzz_site.world.tokens[role], checks, planted, session,
                      statuses)
            except (Exception, FailureGroup) as exc:  # FailureGroup: several checks failed
                failures.append(f"{operation.label}: {str(exc)[:2500]}")
    assert count >= 45
    assert not failures, f"{len(failures)} operations failed as the {role}:\n\n" + "\n\n".join(
        failures)
    if mode == GenerationMode.POSITIVE:
        # The token was accepted and requests reached the routes, not only the door.
        assert statuses[401] == 0, statuses
        assert sum(n for status, n in statuses.items() if status < 300) >= (
            count if role == "admin" else 10), statuses
        if role != "admin":
            assert statuses[403] > 0, statuses
    else:
        # Invalid requests include invalid credentials (the document declares the scheme).
        assert statuses[401] > 0, statuses
