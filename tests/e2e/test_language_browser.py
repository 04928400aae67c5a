"""The interface in Malay in a real browser: the sign-in page follows Accept-Language, a user whose
setting is Malay sees the exports page and a run's report in Malay with Malay dates and grouped
numbers, and switching the setting to English on the account page turns the pages English."""

from __future__ import annotations

import re
from typing import Any

import pytest

from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.segments.service import SegmentSpec, create_segment
from tests.api.harness import PASSWORDS
from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, Site, set_language

pytestmark = pytest.mark.browser
MALAY_DATE = re.compile(r"\b\d{1,2} (Jan|Feb|Mac|Apr|Mei|Jun|Jul|Ogo|Sep|Okt|Nov|Dis) \d{4} "
                        r"\d\d:\d\d UTC")


def test_malay_pages_then_english_after_the_setting_changes(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    world = site.world
    connection = connect_sandbox(
        world.runtime.sessions, engine=world.engine, settings=world.settings,
        control=site.emulator.control, actor=world.users["admin"], display_name="Kedai Roti",
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        redirect_uri=world.url + "/admin/connections/callback", shared_with_contributors=True)
    with world.runtime.sessions.begin() as db:
        segment = create_segment(
            db, world.runtime.store, spec=SegmentSpec(name="Jerman", expression="country = 'DE'")
        ).id
    with world.runtime.sessions.begin() as db:
        create_export(db, actor=db.merge(world.users["contributor"]), spec=ExportSpec(
            name="Surat berita DE", connection_id=connection.id, list_id=site.list_id,
            list_name="Newsletter", mapping={"email": "email"}, segment_ids=[segment]))
    set_language(site, "contributor", "ms")
    context = browser.new_context(base_url=world.url, locale="ms-MY",
                                  viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        # Signed out: the browser's Accept-Language (ms-MY) decides.
        page.goto("/login")
        expect(page.locator("html")).to_have_attribute("lang", "ms")
        expect(page.get_by_role("heading", name="Daftar masuk")).to_be_visible()
        page.get_by_label("Nama pengguna").fill("contributor")
        page.get_by_label("Kata laluan").fill(PASSWORDS["contributor"])
        page.get_by_role("button", name="Daftar masuk").click()
        page.wait_for_url(re.compile(r"/data/exports$"))

        expect(page.get_by_role("heading", name="Eksport", exact=True)).to_be_visible()
        expect(page.get_by_role("link", name="Tambah destinasi")).to_be_visible()
        expect(page.get_by_role("navigation", name="Utama")).to_contain_text("Segmen")
        expect(page.locator("table.exports")).to_contain_text("Belum dijalankan")
        page.get_by_role("button", name="Jalankan sekarang").click()
        page.wait_for_url(re.compile(r"/runs/"))
        expect(page.locator("#run-status")).to_contain_text("Berjaya", timeout=45_000)
        page.reload()  # the finished report, rendered by the server
        counts = page.get_by_role("region", name="Kiraan")
        # 400 profiles, 267 of them in DE (every third is AT), plus the three bad rows (DE).
        expect(counts).to_contain_text("Dalam segmen")
        expect(counts.get_by_role("row", name=re.compile("Dalam segmen"))).to_contain_text("270")
        expect(page.get_by_role("heading", name="Baris yang ditolak")).to_be_visible()
        expect(page.locator(".page-head .muted")).to_have_text(MALAY_DATE)
        assert MALAY_DATE.search(page.locator(".page-head .muted").inner_text())

        # Back to English from the account page.
        page.goto("/account")
        page.get_by_label("Bahasa antara muka").select_option("en")
        page.get_by_role("button", name="Simpan bahasa").click()
        page.wait_for_url(re.compile(r"/account$"))
        expect(page.get_by_role("status")).to_have_text("Language saved.")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.goto("/data/exports")
        expect(page.get_by_role("heading", name="Exports", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Run now")).to_be_visible()
        expect(page.locator("table.exports")).to_contain_text(
            re.compile(r"[A-Z][a-z]{2} \d{1,2}, \d{4} \d\d:\d\d UTC"))
    finally:
        context.close()
        set_language(site, "contributor", None)  # the site is shared with other tests
