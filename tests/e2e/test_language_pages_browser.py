"""Every page of segments, connections, the export form and detail, settings and the
confirmations, in Malay in a real browser: no English interface string is left.

The oracle is the catalogue itself: every English msgid whose Malay translation differs must
not appear on a Malay page, neither as a text of its own (a label, a button, a heading, an
option) nor, for the longer ones, anywhere in the page's text, nor in the labels screen
readers get (aria-label) or the texts the page's script shows (data-text-*).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.segments.service import SegmentSpec, create_segment
from tests.api.harness import PASSWORDS
from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, Site, set_language

pytestmark = pytest.mark.browser
LOCALE = Path(__file__).resolve().parents[2] / "src" / "segment_export" / "locale"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")
TAG = re.compile(r"<[^>]+>")
# Everything a page shows as a text of its own, and the labels it gives screen readers and
# its script. Data (codes, SQL, audit details, values typed in) is left out.
PAGE_TEXTS = """() => {
  const skip = "code, pre, td.details, td.target, .who .name, .who-name, .mono, datalist, " +
    "script, style, textarea";
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/\\s+/g, " ").trim();
    if (text && !node.parentElement.closest(skip)) { out.push(text); }
  }
  for (const el of document.querySelectorAll("[aria-label], [placeholder], [title]")) {
    for (const name of ["aria-label", "title"]) {
      if (el.hasAttribute(name)) { out.push(el.getAttribute(name).trim()); }
    }
  }
  for (const el of document.querySelectorAll("*")) {
    for (const [key, value] of Object.entries(el.dataset)) {
      if (key.startsWith("text")) { out.push(value.trim()); }
    }
  }
  out.push(document.title.trim());
  return {texts: out, body: document.body.innerText.replace(/\\s+/g, " ")};
}"""


def _english_left_over() -> tuple[set[str], list[str]]:
    """(whole texts, long fragments): English the Malay catalogue translates differently."""
    with (LOCALE / "ms" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    whole: set[str] = set()
    fragments: list[str] = []
    for message in catalog:
        english, malay = str(message.id), str(message.string)
        if not message.id or english == malay:
            continue
        plain = " ".join(TAG.sub("", english).split())
        if not PLACEHOLDER.search(plain):
            whole.add(plain)
        for piece in PLACEHOLDER.split(plain):
            piece = piece.strip(" .,;:()")
            if len(piece) >= 24 and piece not in malay:
                fragments.append(piece)
    return whole, fragments


def test_no_english_is_left_on_the_malay_pages(browser: Any, site: Site) -> None:
    from playwright.sync_api import expect

    world = site.world
    connection = connect_sandbox(
        world.runtime.sessions, engine=world.engine, settings=world.settings,
        control=site.emulator.control, actor=world.users["admin"], display_name="Kedai Kek",
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        redirect_uri=world.url + "/admin/connections/callback", shared_with_contributors=True)
    with world.runtime.sessions.begin() as db:
        segment = create_segment(
            db,
            world.runtime.store,
            spec=SegmentSpec(name="Pelanggan Jerman", expression="country = 'DE'"),
        ).id
    with world.runtime.sessions.begin() as db:
        export = create_export(db, actor=db.merge(world.users["admin"]), spec=ExportSpec(
            name="Berita Jerman", connection_id=connection.id, list_id=site.list_id,
            list_name="Newsletter", mapping={"email": "email", "first_name": "first_name"},
            segment_ids=[segment], consent_field="consent", mode="mirror")).id
    whole, fragments = _english_left_over()
    assert len(whole) > 300  # the oracle really holds the catalogue
    assert fragments
    set_language(site, "admin", "ms")
    context = browser.new_context(base_url=world.url, locale="ms-MY",
                                  viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    problems: dict[str, list[str]] = {}

    def check(path: str) -> None:
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("lang", "ms")
        seen = page.evaluate(PAGE_TEXTS)
        found = sorted({t for t in seen["texts"] if t in whole}
                       | {f for f in fragments if f in seen["body"]})
        if found:
            problems[path] = found

    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Nama pengguna").fill("admin")
        page.get_by_label("Kata laluan").fill(PASSWORDS["admin"])
        page.get_by_role("button", name="Daftar masuk").click()
        page.wait_for_url(re.compile(r"/data/exports$"))

        # A run first, so that the export page has its runs table and the notice is Malay.
        page.goto(f"/data/exports/{export}")
        page.get_by_role("button", name="Jalankan sekarang").click()
        page.wait_for_url(re.compile(r"/runs/"))
        expect(page.get_by_role("status")).to_have_text("Larian dimulakan.")
        expect(page.locator("#run-status")).to_contain_text("Berjaya", timeout=45_000)
        page.reload()  # the run's message, stored English and shown in Malay
        expect(page.locator("#run-progress-text")).to_contain_text(
            re.compile(r"\d[\d,]* kenalan dihantar \(\d[\d,]* diterima"))
        check(page.url.removeprefix(world.url))

        for path in ["/data/segments", "/data/segments/new", f"/data/segments/{segment}",
                     f"/data/segments/{segment}/delete",
                     "/admin/connections", "/admin/connections/new",
                     f"/admin/connections/{connection.id}",
                     f"/admin/connections/{connection.id}/remove",
                     "/data/exports/new", f"/data/exports/new?connection={connection.id}",
                     f"/data/exports/{export}", f"/data/exports/{export}/edit",
                     f"/data/exports/{export}/remove",
                     "/settings/schedule", "/settings/audit"]:
            check(path)

        # The live count and the connection test are drawn after the page loads.
        page.goto("/data/segments/new")
        page.get_by_role("radio", name="Syarat SQL").check()
        page.locator("#expression").fill("country = 'DE'")
        expect(page.locator("#preview")).to_contain_text("profil sepadan")
        page.goto(f"/admin/connections/{connection.id}")
        page.get_by_role("button", name="Uji sambungan").click()
        expect(page.get_by_role("status")).to_contain_text("Sambungan berfungsi")
        seen = page.evaluate(PAGE_TEXTS)
        found = sorted({t for t in seen["texts"] if t in whole})
        if found:
            problems["connection test"] = found
        # A form refused: the error box and the hint in Malay too.
        page.goto("/settings/schedule")
        page.locator("#cron").fill("0 5 * * *")
        page.locator("#timezone").fill("Bulan/Marikh")
        page.get_by_role("button", name="Simpan jadual").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "Betulkan konfigurasi yang dinamakan dalam mesej dan cuba lagi.")
        page.screenshot(path=str(Path(__file__).with_name("screenshots") / "malay-schedule.png"))
    finally:
        context.close()
        set_language(site, "admin", None)
    assert problems == {}
