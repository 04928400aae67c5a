"""Suppression over the API and the web pages: sync, counts, who may see them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_run_all import Site, open_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with open_site(tmp_path / "data", "immediate") as opened:
        yield opened


def test_sync_over_the_api_and_the_count_on_the_connection_page(site: Site) -> None:
    site.emulator.control.seed(contacts=[
        {"email": "gone@example.com", "permission_to_send": "unsubscribed"},
        {"email": "stays@example.com"}])
    connection = site.connection.id
    for role in ("viewer", "contributor"):
        assert site.world.api(role).post(
            f"/api/connections/{connection}/sync-unsubscribes").status_code == 403
        assert site.world.api(role).get(
            f"/api/connections/{connection}/suppression").status_code == 403
    admin = site.world.api("admin")
    before = admin.get(f"/api/connections/{connection}/suppression").json()
    assert before["suppressed"] == 0
    assert before["synced_at"] is None
    synced = admin.post(f"/api/connections/{connection}/sync-unsubscribes")
    assert synced.status_code == 200, synced.text
    body = synced.json()
    assert body["suppressed"] == 1
    assert body["synced_at"] is not None
    assert body["last_result"]["full"] is True
    assert body["last_result"]["added"] == 1
    assert "gone@example.com" not in synced.text  # counts, never emails

    page = site.world.browser("admin").get(f"/admin/connections/{connection}")
    assert page.status_code == 200
    assert "1 suppressed; last read" in page.text
    button = site.world.browser("admin").post(
        f"/admin/connections/{connection}/sync-unsubscribes")
    assert button.status_code in (302, 303), button.text
    audit = admin.get("/api/audit").json()
    assert any(e["action"] == "connection.unsubscribes_synced"
               for e in (audit["items"] if isinstance(audit, dict) else audit))
