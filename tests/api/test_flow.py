"""The REST API end to end against the emulator: OAuth, segments, exports, runs, reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.profiles.imports import ProfileImport
from tests.api.harness import AppWorld, app_world, make_settings

CLIENT_ID = "api-test-client"
CLIENT_SECRET = "api-test-secret-0123456789"


def people() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
         "last_name": "Doe", "country": "DE", "consent": True} for i in range(1, 21)]
    rows.append({"customer_id": 90, "email": "not-an-email", "first_name": "Bad",
                 "last_name": "Row", "country": "DE", "consent": True})
    rows.append({"customer_id": 91, "email": "=HYPERLINK(\"x\")@", "first_name": "Formula",
                 "last_name": "Row", "country": "DE", "consent": True})
    rows.append({"customer_id": 92, "email": "french@example.com", "first_name": "F",
                 "last_name": "R", "country": "FR", "consent": True})
    return rows


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(requests_per_second=50, auto_approve=True,
                                      token_requests_per_second=100)) as emu:
        yield emu


@pytest.fixture(scope="module")
def site(emulator: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[AppWorld]:
    data_dir: Path = tmp_path_factory.mktemp("flow")
    config = make_settings(data_dir, cc_api_url=emulator.api_url, cc_auth_url=emulator.auth_url,
                           cc_requests_per_second=40.0)
    with app_world(config, profiles=0, immediate_queue=True) as world:
        world.runtime.store.import_table(pa.Table.from_pylist(people()),
                                         ProfileImport(id_column="customer_id"))
        emulator.control.seed(
            apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [world.url + "/api/connections/oauth/callback"]}],
            account={"organization_name": "API Bakery", "contact_email": "owner@api.test"},
            lists=["Newsletter"])
        yield world


@pytest.fixture(scope="module")
def connection_id(site: AppWorld, emulator: EmulatorServer) -> str:
    """A connection made and authorized through the API, shared with contributors."""
    admin = site.api("admin")
    created = admin.post("/api/connections", json={
        "display_name": "Bakery", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "shared_with_contributors": True, "consent": True})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "pending"
    assert body["redirect_uri"] == site.url + "/api/connections/oauth/callback"
    start = admin.post(f"/api/connections/{body['id']}/authorize")
    assert start.status_code == 200
    url = start.json()["authorize_url"]
    assert parse_qs(urlsplit(url).query)["code_challenge_method"] == ["S256"]
    callback = emulator.control.approve_url(url)
    done = admin.get("/api/connections/oauth/callback?" + urlsplit(callback).query)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "connected"
    assert done.json()["account_name"] == "API Bakery"
    assert done.json()["export_user"] == "admin"
    # The same callback a second time: its state was good for one use only.
    replay = admin.get("/api/connections/oauth/callback?" + urlsplit(callback).query)
    assert replay.status_code == 400
    return str(body["id"])


def test_consent_is_required(site: AppWorld) -> None:
    refused = site.api("admin").post("/api/connections", json={
        "display_name": "No consent", "client_id": CLIENT_ID, "consent": False})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["field"] == "consent"


def test_callback_with_wrong_or_missing_state_is_refused(site: AppWorld,
                                                         emulator: EmulatorServer) -> None:
    admin = site.api("admin")
    created = admin.post("/api/connections", json={
        "display_name": "State check", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "consent": True}).json()
    url = admin.post(f"/api/connections/{created['id']}/authorize").json()["authorize_url"]
    query = parse_qs(urlsplit(emulator.control.approve_url(url)).query)
    code = query["code"][0]
    missing = admin.get("/api/connections/oauth/callback", params={"code": code})
    assert missing.status_code == 400
    assert missing.json()["code"] == "authorization_denied"
    assert "no state" in missing.json()["detail"]
    wrong = admin.get("/api/connections/oauth/callback",
                      params={"code": code, "state": "forged-" + query["state"][0]})
    assert wrong.status_code == 400
    still = admin.get(f"/api/connections/{created['id']}").json()
    assert still["status"] == "pending"  # nothing was exchanged
    denied = admin.get("/api/connections/oauth/callback",
                       params={"error": "access_denied", "state": query["state"][0]})
    assert denied.status_code == 400
    assert "did not authorize" in denied.json()["detail"]


def test_export_flow_through_the_api(site: AppWorld, emulator: EmulatorServer,
                                     connection_id: str) -> None:
    contributor, viewer = site.api("contributor"), site.api("viewer")
    assert contributor.get("/api/connections").status_code == 403
    usable = contributor.get("/api/connections/usable").json()
    assert [c["display_name"] for c in usable] == ["Bakery"]
    assert viewer.get("/api/connections/usable").json() == []
    lists = contributor.get(f"/api/connections/{connection_id}/lists").json()
    newsletter = next(x for x in lists if x["name"] == "Newsletter")

    preview = contributor.post("/api/segments/preview", json={
        "rule": {"all": [{"field": "country", "op": "eq", "value": "DE"}]}, "limit": 3})
    assert preview.status_code == 200
    assert preview.json()["count"] == 22
    assert len(preview.json()["rows"]) == 3
    segment = contributor.post("/api/segments", json={
        "name": "Germany", "rule": {"all": [{"field": "country", "op": "eq", "value": "DE"}]}})
    assert segment.status_code == 201
    assert segment.json()["size"] == 22

    created = contributor.post("/api/exports", json={
        "name": "DE newsletter", "connection_id": connection_id,
        "list_id": newsletter["list_id"],
        "mapping": {"email": "email", "first_name": "first_name", "last_name": "last_name"},
        "segment_ids": [segment.json()["id"]], "mode": "mirror"})
    assert created.status_code == 201, created.text
    export = created.json()
    assert export["list_name"] == "Newsletter"
    assert export["permissions"] == ["view", "edit", "run", "remove"]
    assert viewer.get(f"/api/exports/{export['id']}").json()["permissions"] == ["view"]
    assert viewer.post(f"/api/exports/{export['id']}/runs", json={}).status_code == 403

    dry = contributor.post(f"/api/exports/{export['id']}/runs", json={"dry_run": True})
    assert dry.status_code == 202
    dry_run = contributor.get(f"/api/runs/{dry.json()['id']}").json()
    assert dry_run["status"] == "succeeded"
    assert dry_run["counts"]["would_add"] == 20
    assert emulator.control.list_members(newsletter["list_id"]) == set()

    started = contributor.post(f"/api/exports/{export['id']}/runs", json={})
    assert started.status_code == 202
    run = contributor.get(f"/api/runs/{started.json()['id']}").json()
    assert run["status"] == "succeeded_with_rejections", run["message"]
    assert run["finished"]
    assert run["progress"]["fraction"] == 1.0
    assert run["counts"]["sent"] == 20
    assert run["counts"]["rejected_locally"] == 2
    assert emulator.control.list_members(newsletter["list_id"]) == {
        f"person{i}@example.com" for i in range(1, 21)}

    report = viewer.get(f"/api/runs/{run['id']}/report").json()
    assert report["rejected_by_reason"] == {"invalid_email": 2}
    assert {r["customer_id"] for r in report["rejected_sample"]} == {"90", "91"}
    assert report["activities"]
    assert report["activities"][0]["state"] == "confirmed"

    download = viewer.get(f"/api/runs/{run['id']}/rejected.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert {r["reason"] for r in rows} == {"invalid_email"}
    # A cell a spreadsheet would run as a formula is defused.
    assert any(r["email"].startswith("'=HYPERLINK") for r in rows)

    again = contributor.post(f"/api/runs/{run['id']}/cancel")
    assert again.status_code == 422
    assert "already ended" in again.json()["detail"]
    listed = viewer.get("/api/runs", params={"export_id": export["id"]}).json()
    assert {r["id"] for r in listed} == {run["id"], dry_run["id"]}
    assert viewer.get("/api/exports").json()[0]["last_run"]["id"] == run["id"]

    audit = site.api("admin").get("/api/audit", params={"limit": 200}).json()
    actions = {e["action"] for e in audit}
    assert {"connection.created", "connection.authorized", "export.created",
            "run.requested", "run.dry_run"} <= actions
    assert contributor.get("/api/audit").status_code == 403


def test_edit_duplicate_and_remove_exports(site: AppWorld, connection_id: str) -> None:
    contributor = site.api("contributor")
    segment = contributor.post("/api/segments", json={
        "name": "France", "expression": "country = 'FR'"}).json()
    body = {"name": "FR list", "connection_id": connection_id,
            "create_list_name": "France newsletter", "mapping": {"email": "email"},
            "segment_ids": [segment["id"]]}
    created = contributor.post("/api/exports", json=body)
    assert created.status_code == 201, created.text
    export = created.json()
    assert export["list_name"] == "France newsletter"
    changed = contributor.put(f"/api/exports/{export['id']}", json={
        **body, "create_list_name": None, "list_id": export["list_id"],
        "schedule_kind": "cron", "cron": "0 6 * * *", "timezone": "Europe/Berlin"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["next_run_at"] is not None
    bad_zone = contributor.put(f"/api/exports/{export['id']}", json={
        **body, "create_list_name": None, "list_id": export["list_id"], "timezone": "Mars/Base"})
    assert bad_zone.status_code == 422
    copy = contributor.post(f"/api/exports/{export['id']}/duplicate", json={"name": "FR copy"})
    assert copy.status_code == 201
    assert copy.json()["enabled"] is False
    assert contributor.delete(f"/api/exports/{copy.json()['id']}").status_code == 204
    assert contributor.get(f"/api/exports/{copy.json()['id']}").status_code == 404
    # The segment cannot go while an export sends it.
    refused = contributor.delete(f"/api/segments/{segment['id']}")
    assert refused.status_code == 422
    assert "FR list" in refused.json()["detail"]


def test_contributor_cannot_touch_exports_of_unshared_connections(
        site: AppWorld, emulator: EmulatorServer) -> None:
    admin, contributor = site.api("admin"), site.api("contributor")
    private = admin.post("/api/connections", json={
        "display_name": "Admins only", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "consent": True}).json()
    url = admin.post(f"/api/connections/{private['id']}/authorize").json()["authorize_url"]
    callback = emulator.control.approve_url(url)
    assert admin.get("/api/connections/oauth/callback?" + urlsplit(callback).query
                     ).status_code == 200
    lists = admin.get(f"/api/connections/{private['id']}/lists").json()
    segment = admin.post("/api/segments", json={"name": "All DE", "expression":
                                                "country = 'DE'"}).json()
    export = admin.post("/api/exports", json={
        "name": "Private export", "connection_id": private["id"], "list_id": lists[0]["list_id"],
        "mapping": {"email": "email"}, "segment_ids": [segment["id"]]}).json()
    assert contributor.get(f"/api/exports/{export['id']}").json()["permissions"] == ["view"]
    assert contributor.get(f"/api/connections/{private['id']}/lists").status_code == 403
    assert contributor.post(f"/api/exports/{export['id']}/runs", json={}).status_code == 403
    assert contributor.delete(f"/api/exports/{export['id']}").status_code == 403
    assert contributor.post("/api/exports", json={
        "name": "Sneaky", "connection_id": private["id"], "list_id": lists[0]["list_id"],
        "mapping": {"email": "email"}, "segment_ids": [segment["id"]]}).status_code == 403

    # Removing the connection detaches its export when asked to.
    dependents = admin.get(f"/api/connections/{private['id']}/dependents").json()
    assert [d["name"] for d in dependents] == ["Private export"]
    incomplete = admin.post(f"/api/connections/{private['id']}/remove", json={"exports": {}})
    assert incomplete.status_code == 422
    removed = admin.post(f"/api/connections/{private['id']}/remove",
                         json={"exports": {export["id"]: "detach"}})
    assert removed.status_code == 204
    detached = admin.get(f"/api/exports/{export['id']}").json()
    assert detached["connection_id"] is None
    assert detached["enabled"] is False
    assert admin.get(f"/api/connections/{private['id']}").status_code == 404
