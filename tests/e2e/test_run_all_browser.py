"""Run all in a real browser: a contributor presses the exports page's *Run all* and reads the
summary (what was queued, what was skipped and why); the queued run goes through."""

from __future__ import annotations

import re
from typing import Any

import pytest

from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.segments.service import SegmentSpec, create_segment
from tests.api.harness import PASSWORDS
from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, Site

pytestmark = pytest.mark.browser


def test_run_all_shows_what_it_queued_and_skipped(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    world = site.world
    admin = world.users["admin"]
    connection = connect_sandbox(
        world.runtime.sessions, engine=world.engine, settings=world.settings,
        control=site.emulator.control, actor=admin, display_name="Browser Bakery",
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        redirect_uri=world.url + "/admin/connections/callback", shared_with_contributors=True)
    with world.runtime.sessions.begin() as db:
        segment = create_segment(
            db, world.runtime.store, spec=SegmentSpec(name="Austria", expression="country = 'AT'")
        ).id
    for name, enabled in (("AT newsletter", True), ("AT archive", False)):
        with world.runtime.sessions.begin() as db:
            create_export(db, actor=db.merge(admin), spec=ExportSpec(
                name=name, connection_id=connection.id, list_id=site.list_id,
                list_name="Newsletter", mapping={"email": "email"}, segment_ids=[segment],
                enabled=enabled))

    context = browser.new_context(base_url=world.url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("User name").fill("contributor")
    page.get_by_label("Password").fill(PASSWORDS["contributor"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/data/exports$"))

    page.get_by_role("button", name="Run all").click()

    page.wait_for_url(re.compile(r"/data/exports\?run_all=\d+$"))
    expect(page.get_by_role("status")).to_have_text("Run all: 1 run queued, 1 export skipped.")
    summary = page.get_by_role("region", name="Run all")
    expect(summary).to_contain_text("Segments refreshed first: Austria.")
    expect(summary).to_contain_text("Queued (1)")
    expect(summary).to_contain_text("AT archive: disabled")
    summary.get_by_role("link", name="AT newsletter").click()
    page.wait_for_url(re.compile(r"/runs/"))
    expect(page.locator("#run-status")).to_contain_text("Succeeded", timeout=45_000)
    assert len(site.emulator.control.list_members(site.list_id)) == 133  # every third of 400
    context.close()
