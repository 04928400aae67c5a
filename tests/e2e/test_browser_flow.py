"""The reference flow in a real browser: an admin connects Constant Contact through its consent
page, a contributor builds a segment and an export, runs it and downloads the rejected rows;
a viewer can neither see connections nor run exports. Screenshots of the main pages are saved
under tests/e2e/screenshots/."""

from __future__ import annotations

import csv
import re
import time
from typing import Any

import pytest

from tests.api.harness import PASSWORDS
from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, SCREENSHOTS, Site

pytestmark = pytest.mark.browser


def _page(browser: Any, site: Site) -> Any:
    context = browser.new_context(base_url=site.world.url, viewport={"width": 1360,
                                                                     "height": 900},
                                  accept_downloads=True)
    context.set_default_timeout(15_000)
    return context.new_page()


def _sign_in(page: Any, role: str) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(role)
    page.get_by_label("Password").fill(PASSWORDS[role])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/data/exports$"))


def _nav(page: Any, name: str) -> Any:
    """A link of the main navigation."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_reference_flow(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    # -- an admin connects the Constant Contact account ----------------------------------
    admin = _page(browser, site)
    admin.goto("/data/exports")
    assert "/login" in admin.url
    _shot(admin, "01-login")
    _sign_in(admin, "admin")
    expect(admin.get_by_role("heading", name="No exports yet")).to_be_visible()
    _shot(admin, "02-exports-empty")
    _nav(admin, "Connections").click()
    expect(admin.get_by_role("heading", name="No connections yet")).to_be_visible()
    admin.get_by_role("link", name="Add connection").first.click()
    admin.get_by_label("Display name").fill("Newsletter — Browser Bakery")
    admin.get_by_label("Administrators and contributors").check()
    admin.get_by_label("API key (client id)").fill(CLIENT_ID)
    admin.get_by_label("Client secret").fill(CLIENT_SECRET)
    admin.get_by_label("I agree").check()
    _shot(admin, "03-add-connection")
    admin.get_by_role("button", name="Connect").click()
    # Constant Contact's (the emulator's) consent page, answered by clicking for real.
    expect(admin.get_by_role("heading", name=re.compile("Allow"))).to_be_visible()
    assert admin.url.startswith(site.emulator.auth_url)
    _shot(admin, "04-consent")
    admin.get_by_role("button", name="Allow").click()
    expect(admin.get_by_role("status")).to_contain_text("Connected to Browser Bakery")
    expect(admin.get_by_text("admin (you)")).to_be_visible()  # the export user
    _shot(admin, "05-connection-review")
    admin.get_by_role("button", name="Save").click()
    admin.wait_for_url(re.compile(r"/admin/connections$"))
    row = admin.get_by_role("row", name=re.compile("Newsletter — Browser Bakery"))
    expect(row).to_contain_text("Connected")
    expect(row).to_contain_text("Administrators and contributors")
    _shot(admin, "06-connections")

    # -- a contributor builds a segment and an export, and runs it -----------------------
    contributor = _page(browser, site)
    _sign_in(contributor, "contributor")
    expect(_nav(contributor, "Connections")).to_have_count(0)
    _nav(contributor, "Segments").click()
    contributor.get_by_role("link", name="New segment").first.click()
    contributor.get_by_label("Name", exact=True).fill("German customers")
    contributor.get_by_label("Field", exact=True).select_option("country")
    contributor.get_by_label("Comparison", exact=True).select_option("eq")
    contributor.get_by_label("Value", exact=True).fill("DE")
    # The live count follows the typing: 267 of the 400, and the three broken rows.
    expect(contributor.locator("#preview .big-number")).to_have_text("270")
    _shot(contributor, "07-segment-builder")
    contributor.get_by_role("button", name="Save segment").click()
    expect(contributor.get_by_role("status")).to_contain_text("270 members")
    expect(contributor.locator("svg.chart")).to_be_visible()
    _shot(contributor, "08-segment")

    _nav(contributor, "Exports").click()
    contributor.get_by_role("link", name="Add destination").first.click()
    # The only connection shared with contributors is picked already; its lists are offered.
    expect(contributor.get_by_label("Connection")).to_have_value(re.compile(".+"))
    contributor.get_by_label("Export name").fill("DE newsletter")
    contributor.get_by_label("List of the account", exact=True).select_option(site.list_id)
    contributor.get_by_label(re.compile("^Email")).select_option("email")
    contributor.locator("#attr-field-1").fill("first_name")
    contributor.locator("#attr-column-1").select_option("first_name")
    contributor.get_by_role("button", name="Add attribute").click()
    rows = contributor.locator("#attributes li")
    expect(rows).to_have_count(2)
    rows.nth(1).get_by_label("Constant Contact field").fill("last_name")
    rows.nth(1).get_by_label("Profile field").select_option("last_name")
    contributor.get_by_label(re.compile("German customers")).check()
    _shot(contributor, "09-export-form")
    contributor.get_by_role("button", name="Save").click()
    expect(contributor.get_by_role("heading", name="DE newsletter")).to_be_visible()
    _shot(contributor, "10-export")
    contributor.get_by_role("button", name="Run now").click()
    contributor.wait_for_url(re.compile(r"/runs/"))
    # The page follows the run and shows the report when it ends.
    expect(contributor.locator("#run-status")).to_contain_text("Succeeded with rejections",
                                                               timeout=45_000)
    report = contributor.locator("main")
    expect(report).to_contain_text("invalid_email")
    expect(report).to_contain_text("email_too_long")
    expect(contributor.get_by_role("row", name=re.compile("Sent to Constant Contact"))
           ).to_contain_text("267")
    _shot(contributor, "11-run-report")
    with contributor.expect_download() as download_info:
        contributor.get_by_role("link", name="Download rejected rows (CSV)").first.click()
    path = download_info.value.path()
    with open(path, encoding="utf-8", newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert sorted(r["reason"] for r in rejected) == ["email_too_long", "invalid_email",
                                                       "invalid_email"]
    assert len(site.emulator.control.list_members(site.list_id)) == 267
    contributor.get_by_role("link", name="DE newsletter").first.click()
    expect(contributor.locator("svg.chart")).to_be_visible()
    _nav(contributor, "Exports").click()
    table = contributor.get_by_role("table", name="Export destinations")
    expect(table).to_contain_text("Your permissions")
    expect(table).to_contain_text("view, edit, run, remove")
    _shot(contributor, "12-exports")

    # -- a viewer sees exports and runs, nothing more --------------------------------------
    viewer = _page(browser, site)
    _sign_in(viewer, "viewer")
    expect(_nav(viewer, "Connections")).to_have_count(0)
    expect(viewer.get_by_role("button", name="Run now")).to_have_count(0)
    expect(viewer.get_by_role("table", name="Export destinations")).to_contain_text("view")
    _shot(viewer, "13-viewer-exports")
    viewer.goto("/admin/connections")
    expect(viewer.get_by_role("heading", name="Forbidden")).to_be_visible()
    _shot(viewer, "14-viewer-forbidden")
    with site.world.runtime.sessions() as db:
        from segment_export.definitions.exports import get_export

        export_id = get_export(db, name_or_id="DE newsletter").id
    forced = viewer.request.post(f"/data/exports/{export_id}/run",
                                 headers={"X-CSRF-Token": _csrf(viewer)})
    assert forced.status == 403
    viewer.goto(f"/data/exports/{export_id}")
    expect(viewer.get_by_role("button", name="Run now")).to_have_count(0)

    # Keyboard: the first Tab reaches the skip link, and focus is visible.
    viewer.keyboard.press("Tab")
    focused = viewer.evaluate("document.activeElement.textContent")
    assert focused.strip() == "Skip to content"
    outline = viewer.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    for page in (admin, contributor, viewer):
        page.context.close()


def _csrf(page: Any) -> str:
    value = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert value
    return str(value)


def test_admin_pages_screenshots(browser: Any, site: Site) -> None:
    """The settings pages, for the record (and to see that they render in a browser)."""
    from playwright.sync_api import expect

    admin = _page(browser, site)
    _sign_in(admin, "admin")
    admin.goto("/settings/schedule")
    admin.get_by_label("Cron expression").fill("0 5 * * *")
    admin.get_by_label("Time zone").fill("Europe/Berlin")
    admin.get_by_role("button", name="Save schedule").click()
    expect(admin.get_by_role("status")).to_contain_text("Next refresh")
    _shot(admin, "15-schedule")
    admin.goto("/settings/audit")
    expect(admin.locator("main")).to_contain_text("schedule.refresh_set")
    _shot(admin, "16-audit")
    admin.goto("/admin/users")
    _shot(admin, "17-users")
    admin.context.close()


def test_api_docs_render_without_internet(browser: Any, site: Site) -> None:
    # The machine has no route to a CDN: Swagger UI renders only if the server serves it.
    page = browser.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(site.world.url + "/api/docs")
    page.wait_for_selector(".opblock-tag", timeout=15_000)
    assert page.locator(".opblock").count() > 20
    assert failed == []
    page.close()


def test_a_paused_run_page_reloads_once_the_run_moves_on(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    from segment_export.db.models import Run

    world = site.world
    run_id = world.run(world.export()).id
    with world.runtime.sessions.begin() as db:
        run = db.get(Run, run_id)
        assert run is not None
        run.status, run.error_kind = "paused", "quota_exhausted"
        run.message = "Paused: the daily quota is used up; the run resumes after the reset."
        run.counts = {"retry_at": "2099-01-01T00:00:00+00:00"}  # the tick leaves it alone
    page = _page(browser, site)
    page.clock.install()  # the page looks once a minute: let the test move its clock
    _sign_in(page, "viewer")
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#run-status")).to_contain_text("Paused")
    with world.runtime.sessions.begin() as db:
        run = db.get(Run, run_id)
        assert run is not None
        run.status, run.message = "succeeded", "Sent 0 contacts."
    page.clock.run_for(30_000)
    time.sleep(1.5)  # real time for a look, had one been made, to come back and reload
    expect(page.locator("#run-status")).to_contain_text("Paused")  # not looked yet
    page.clock.run_for(31_000)
    expect(page.locator("#run-status")).not_to_contain_text("Paused")
    page.context.close()
