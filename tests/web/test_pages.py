"""The pages over HTTP: the connection wizard through OAuth, the rule builder, the export
form, runs and their reports, empty states, roles and accessibility basics."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlsplit

import httpx
import pytest

from segment_export.db.models import Connection
from tests.api.harness import WebClient
from tests.web.a11y import accessibility_problems
from tests.web.conftest import CLIENT_ID, CLIENT_SECRET, WebSite


def _follow_oauth(site: WebSite, web: WebClient, authorize: str) -> httpx.Response:
    """The browser's trip to the (auto-approving) emulator and back to the callback."""
    assert authorize.startswith(site.emulator.auth_url)
    back = httpx.get(authorize, follow_redirects=False)
    assert back.status_code == 302
    callback = back.headers["location"]
    assert callback.startswith(site.world.url + "/admin/connections/callback?")
    return web.get(callback.removeprefix(site.world.url))


@pytest.fixture(scope="module")
def connection_id(web_site: WebSite) -> str:
    """Made through the wizard: details, Connect, consent (auto), back, review, Save."""
    admin = web_site.world.browser("admin")
    form = admin.get("/admin/connections/new")
    assert form.status_code == 200
    assert "I agree" in form.text
    start = admin.post("/admin/connections/new", {
        "display_name": "Web Bakery", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "usable_by": "contributors", "consent": "true"})
    assert start.status_code == 303, start.text
    done = _follow_oauth(web_site, admin, start.headers["location"])
    assert done.status_code == 303
    review_url = done.headers["location"]
    assert review_url.endswith("?step=connected")
    review = admin.get(review_url)
    assert "Connected to Web Bakery" in review.text
    assert "Review and save" in review.text
    assert "(you)" in review.text
    connection_id = review_url.split("/")[3].split("?")[0]
    saved = admin.post(f"/admin/connections/{connection_id}", {
        "display_name": "Web Bakery", "usable_by": "contributors"})
    assert saved.status_code == 303
    assert saved.headers["location"] == "/admin/connections"
    listing = admin.get("/admin/connections")
    assert "Web Bakery" in listing.text
    assert "Connected" in listing.text
    assert "Administrators and contributors" in listing.text
    return connection_id


def test_wizard_requires_consent(web_site: WebSite) -> None:
    admin = web_site.world.browser("admin")
    refused = admin.post("/admin/connections/new", {
        "display_name": "No consent", "client_id": CLIENT_ID, "usable_by": "admins"})
    assert refused.status_code == 422
    assert "agreement must be accepted" in refused.text
    assert 'value="No consent"' in refused.text  # what was typed is kept


def test_wizard_callback_with_a_forged_state_is_refused(web_site: WebSite) -> None:
    admin = web_site.world.browser("admin")
    forged = admin.get("/admin/connections/callback?code=abc&state=forged")
    assert forged.status_code == 400
    assert "matches no pending connection" in forged.text
    missing = admin.get("/admin/connections/callback?code=abc")
    assert missing.status_code == 400


def test_connection_test_reauthorize_and_remove(web_site: WebSite, connection_id: str) -> None:
    admin = web_site.world.browser("admin")
    tested = admin.post(f"/admin/connections/{connection_id}/test")
    assert tested.status_code == 200
    assert "The connection works" in tested.text
    again = admin.post(f"/admin/connections/{connection_id}/authorize")
    assert again.status_code == 303
    assert _follow_oauth(web_site, admin, again.headers["location"]).status_code == 303
    # A second connection, removed with its export detached.
    start = admin.post("/admin/connections/new", {
        "display_name": "Temporary", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "consent": "true"})
    done = _follow_oauth(web_site, admin, start.headers["location"])
    temp_id = done.headers["location"].split("/")[3].split("?")[0]
    export = web_site.world.export(
        connection=_connection(web_site, temp_id), segment=web_site.world.segment())
    confirm = admin.get(f"/admin/connections/{temp_id}/remove")
    assert export.name in confirm.text
    assert "Detach" in confirm.text
    removed = admin.post(f"/admin/connections/{temp_id}/remove",
                         {"choice": f"{export.id}:detach"})
    assert removed.status_code == 303
    page = admin.get(f"/data/exports/{export.id}")
    assert "Detached" in page.text


def _connection(site: WebSite, connection_id: str) -> Connection:
    with site.world.runtime.sessions() as db:
        found = db.get(Connection, connection_id)
        assert found is not None
        return found


def test_segment_builder_live_count_and_history(web_site: WebSite) -> None:
    web = web_site.world.browser("contributor")
    empty_form = web.get("/data/segments/new")
    assert empty_form.status_code == 200
    assert "Add condition" in empty_form.text
    fields = {"name": "Germans", "kind": "builder", "match": "all",
              "cond_field": ["country", "lifetime_value"], "cond_op": ["eq", "ge"],
              "cond_value": ["DE", "100"], "active": "true"}
    live = web.post("/data/segments/preview", fields, headers={"X-Fragment": "1"})
    assert live.status_code == 200
    assert 'data-count="15"' in live.text  # odd ids (DE) from 11 to 39 (value ≥ 100)
    assert "<html" not in live.text  # just the fragment
    wrong = web.post("/data/segments/preview", {**fields, "cond_value": ["DE", "lots"]},
                     headers={"X-Fragment": "1"})
    assert "holds numbers" in wrong.text
    full = web.post("/data/segments/preview", fields)  # without the script: the whole page
    assert "<html" in full.text
    assert 'data-count="15"' in full.text
    saved = web.post("/data/segments/new", fields)
    assert saved.status_code == 303
    page = web.get(saved.headers["location"])
    listing = web.get("/data/segments").text
    assert re.search(r'Germans</a></td>\s*<td class="num">15</td>', listing)
    assert '<svg class="chart"' in page.text
    assert "Size of Germans over time" in page.text
    assert 'value="lifetime_value" selected' in page.text  # the rule is back in the builder
    invalid = web.post("/data/segments/new", {**fields, "name": "Germans"})
    assert invalid.status_code == 422
    assert "already exists" in invalid.text


def test_export_form_run_and_report(web_site: WebSite, connection_id: str) -> None:
    world = web_site.world
    segment = world.segment("country = 'DE'")
    web = world.browser("contributor")
    picker = web.get("/data/exports/new")
    assert '<optgroup label="Constant Contact">' in picker.text
    form = web.get(f"/data/exports/new?connection={connection_id}")
    assert "Newsletter" in form.text
    assert "VIP" in form.text
    assert "Add attribute" in form.text
    assert f"{segment.name}" in form.text
    missing_email = web.post("/data/exports/new", {
        "name": "No email", "connection_id": connection_id, "list_choice": "pick",
        "list_pick": web_site.list_id, "segment_ids": segment.id, "enabled": "true"})
    assert missing_email.status_code == 422
    assert "email address" in missing_email.text
    created = web.post("/data/exports/new", {
        "name": "DE newsletter", "connection_id": connection_id, "list_choice": "pick",
        "list_pick": web_site.list_id, "email_column": "email",
        "attr_field": ["first_name", "last_name", ""], "attr_column": ["first_name",
                                                                     "last_name", ""],
        "segment_ids": segment.id, "mode": "add_update", "schedule_kind": "manual",
        "timezone": "UTC", "enabled": "true"})
    assert created.status_code == 303, created.text
    export_url = created.headers["location"]
    listing = web.get("/data/exports")
    assert "Your permissions" in listing.text
    assert "view, edit, run, remove" in listing.text
    assert "Not run yet" in listing.text

    run = web.post(export_url + "/run")
    assert run.status_code == 303
    assert run.headers["location"].startswith("/runs/")
    report = web.get(run.headers["location"])
    assert "Succeeded with rejections" in report.text
    assert "broken@" in report.text
    assert "invalid_email" in report.text
    assert "Download rejected rows (CSV)" in report.text
    assert web_site.emulator.control.list_members(web_site.list_id) >= {"p1@example.com"}
    csv_path = re.search(r'href="(/runs/[^"]+/rejected\.csv)"', report.text)
    assert csv_path is not None
    rows = list(csv.DictReader(io.StringIO(web.get(csv_path.group(1)).text)))
    assert [r["email"] for r in rows] == ["broken@"]
    detail = web.get(export_url)
    assert "Exported and rejected contacts per run" in detail.text

    viewer = world.browser("viewer")
    seen = viewer.get("/data/exports")
    assert "DE newsletter" in seen.text
    assert "Run now" not in seen.text
    assert viewer.post(export_url + "/run").status_code == 403
    assert "Cancel run" not in viewer.get(run.headers["location"]).text


def test_empty_states_and_navigation_by_role(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.api.harness import app_world, make_settings

    with app_world(make_settings(tmp_path_factory.mktemp("empty")), profiles=0) as world:
        admin = world.browser("admin")
        exports = admin.get("/data/exports")
        assert "No exports yet" in exports.text
        assert "No connections yet" in admin.get("/admin/connections").text
        assert "No profiles yet" in admin.get("/data/segments").text
        contributor = world.browser("contributor")
        assert "No connection is shared with you" in contributor.get("/data/exports").text
        viewer = world.browser("viewer")
        page = viewer.get("/data/exports")
        assert 'href="/admin/connections"' not in page.text
        assert 'href="/data/segments"' not in page.text
        assert 'href="/data/exports"' in page.text
        assert 'href="/admin/connections"' in admin.get("/data/exports").text


def test_pages_are_labelled_and_well_formed(web_site: WebSite, connection_id: str) -> None:
    world = web_site.world
    export = world.export(connection=_connection(web_site, connection_id),
                          segment=world.segment())
    run = world.run(export)
    segment = world.segment()
    pages = ["/data/exports", "/data/exports/new", f"/data/exports/new?connection={connection_id}",
             f"/data/exports/{export.id}", f"/data/exports/{export.id}/edit",
             f"/data/exports/{export.id}/remove", f"/runs/{run.id}", "/data/segments",
             "/data/segments/new", f"/data/segments/{segment.id}", "/admin/connections",
             "/admin/connections/new", f"/admin/connections/{connection_id}",
             f"/admin/connections/{connection_id}/remove", "/settings/schedule",
             "/settings/audit", "/admin/users", "/account"]
    admin = world.browser("admin")
    for path in pages:
        response = admin.get(path)
        assert response.status_code == 200, (path, response.status_code)
        assert response.headers["cache-control"] == "no-store"
        assert accessibility_problems(response.text) == [], path
        assert 'class="skip" href="#main"' in response.text
    assert accessibility_problems(world.web().get("/login").text) == []


def test_users_and_tokens_pages(web_site: WebSite) -> None:
    world = web_site.world
    admin = world.browser("admin")
    created = admin.post("/admin/users", {"username": "newbie", "role": "viewer"})
    assert created.status_code == 200
    password = re.search(r'<code class="secret">([^<]+)</code>', created.text)
    assert password is not None
    fresh = world.web()
    assert fresh.login("newbie", password.group(1)).status_code == 303
    token_page = fresh.post("/account/tokens", {"name": "my script",
                                                "password": password.group(1)})
    token = re.search(r'<code class="secret">(se_[^<]+)</code>', token_page.text)
    assert token is not None
    me = httpx.get(world.url + "/api/me", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert me.json()["username"] == "newbie"
    disabled = admin.post("/admin/users/newbie/disable")
    assert disabled.status_code == 303
    assert fresh.get("/data/exports").status_code == 303  # signed out by the server
    assert urlsplit(fresh.get("/data/exports").headers["location"]).path == "/login"


def test_names_are_escaped(web_site: WebSite) -> None:
    world = web_site.world
    with world.runtime.sessions.begin() as db:
        from segment_export.segments.service import SegmentSpec, create_segment

        create_segment(
            db,
            world.runtime.store,
            spec=SegmentSpec(name="<script>alert(1)</script>", expression="country = 'DE'"),
        )
    page = world.browser("contributor").get("/data/segments")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
