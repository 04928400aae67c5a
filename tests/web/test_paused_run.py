"""A run paused for Constant Contact's daily quota, as the run page and the REST API show it:
paused, until when, not polled for hours, and cancellable."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from segment_export.exports.runs import get_run, request_run
from tests.api.harness import app_world, make_settings


def test_the_run_page_and_the_api_say_paused_until_the_reset(tmp_path: Path) -> None:
    resets = datetime(2030, 1, 2, tzinfo=UTC)
    message = (f"Paused: Constant Contact's daily request quota for this API key is used up. It "
               f"resets at {resets.isoformat()}; then the run resumes by itself.")
    with app_world(make_settings(tmp_path / "data"), profiles=50) as site:
        export = site.export()
        with site.runtime.sessions.begin() as db:
            run = request_run(db, actor=db.merge(site.users["admin"]), export=export)
            # What the engine leaves behind when the quota runs out (tested end to end in
            # tests/exports/test_faults_grant_and_quota.py).
            run.status, run.error_kind, run.message = "paused", "quota_exhausted", message
            run.counts = {"retry_at": resets.isoformat(), "in_segment": 50, "sent_so_far": 20}
        page = site.browser("viewer").get(f"/runs/{run.id}")
        assert page.status_code == 200
        assert "Paused (daily quota)" in page.text
        assert resets.isoformat() in page.text
        # Looked at once a minute, not every second: the reset may be hours away.
        assert 'data-paused="true"' in page.text
        assert "Cancel run" not in page.text  # viewers may not

        body = site.api("viewer").get(f"/api/runs/{run.id}").json()
        assert (body["status"], body["finished"]) == ("paused", False)
        assert body["counts"]["retry_at"] == resets.isoformat()
        assert body["error_kind"] == "quota_exhausted"

        admin = site.browser("admin")
        assert "Cancel run" in admin.get(f"/runs/{run.id}").text
        assert admin.post(f"/runs/{run.id}/cancel").status_code == 303
        with site.runtime.sessions() as db:
            assert get_run(db, run_id=run.id).status == "cancelled"
