"""SMS settings over the API, the web pages and the run report: the connection's sms_only_allowed,
an export's phone_region and SMS mapping, the SMS counts of a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_run_all import Site, open_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path / "data", "immediate") as opened:
        yield opened


def test_only_admins_change_sms_only_and_every_surface_shows_it(site: Site) -> None:
    connection = site.connection.id
    admin = site.world.api("admin")
    assert admin.get(f"/api/connections/{connection}").json()["sms_only_allowed"] is False
    for role in ("viewer", "contributor"):
        refused = site.world.api(role).patch(f"/api/connections/{connection}",
                                             json={"sms_only_allowed": True})
        assert refused.status_code == 403, refused.text
    changed = admin.patch(f"/api/connections/{connection}", json={"sms_only_allowed": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["sms_only_allowed"] is True
    # Other edits leave it as it is.
    renamed = admin.patch(f"/api/connections/{connection}", json={"display_name": "Texts"})
    assert renamed.json()["sms_only_allowed"] is True

    browser = site.world.browser("admin")
    page = browser.get(f"/admin/connections/{connection}")
    assert 'name="sms_only_allowed" value="true" checked' in page.text
    saved = browser.post(f"/admin/connections/{connection}", {
        "display_name": "Texts", "usable_by": "admins"})  # the box left unticked
    assert saved.status_code == 303, saved.text
    assert admin.get(f"/api/connections/{connection}").json()["sms_only_allowed"] is False
    audit = admin.get("/api/audit").json()
    items = audit["items"] if isinstance(audit, dict) else audit
    changes = [e["details"].get("sms_only_allowed") for e in items
               if e["action"] == "connection.updated" and "sms_only_allowed" in e["details"]]
    assert sorted(changes) == [False, True]

def test_an_export_maps_sms_with_a_region_and_its_run_reports_the_sms_counts(site: Site) -> None:
    site.load([
        {"customer_id": 1, "email": "ann@example.com", "country": "DE", "mobile": "2015550101",
         "texts_ok": True, "texts_ok_on": "2026-11-01"},
        {"customer_id": 2, "email": None, "country": "DE", "mobile": "+12025550102",
         "texts_ok": True, "texts_ok_on": "2026-11-01"}])
    segment = site.segment("Germany", "country = 'DE'")
    admin = site.world.api("admin")
    body = {"name": "Texts", "connection_id": site.connection.id,
            "list_id": site.lists["Germany"], "segment_ids": [segment],
            "mapping": {"email": "email", "sms_number": "mobile", "sms_consent": "texts_ok"}}
    missing_date = admin.post("/api/exports", json=body)
    assert missing_date.status_code in (400, 422), missing_date.text
    assert "sms_consent_date" in missing_date.text
    body["mapping"]["sms_consent_date"] = "texts_ok_on"
    bad_region = admin.post("/api/exports", json={**body, "phone_region": "XX"})
    assert bad_region.status_code in (400, 422), bad_region.text
    assert "phone_region" in bad_region.text
    created = admin.post("/api/exports", json={**body, "phone_region": "us"})
    assert created.status_code == 201, created.text
    export = created.json()
    assert export["phone_region"] == "US"

    run = admin.post(f"/api/exports/{export['id']}/runs", json={})
    assert run.status_code == 202, run.text
    report = admin.get(f"/api/runs/{run.json()['id']}/report")
    assert report.status_code == 200, report.text
    assert report.json()["rejected_by_reason"] == {"sms_not_allowed": 1}
    counts = report.json()["run"]["counts"]
    assert (counts["sms_only"], counts["sms_only_sent"], counts["sms_refused"]) == (0, 0, 1)
    page = site.world.browser("admin").get(f"/runs/{run.json()['id']}")
    assert "Phone numbers refused (SMS)" in page.text
    assert "sms_not_allowed" in page.text
