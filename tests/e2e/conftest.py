"""Browser tests: Debian's Chromium driven by Playwright against the app on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.profiles.imports import ProfileImport
from tests.api.harness import AppWorld, app_world, make_settings
from tests.services import CHROMIUM, require

SCREENSHOTS = Path(__file__).with_name("screenshots")
CLIENT_ID = "browser-test-client"
CLIENT_SECRET = "browser-test-secret-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def profiles(n: int = 400) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"customer_id": i, "email": f"customer{i}@example.com", "first_name": f"Ann{i}",
         "last_name": "Baker", "country": "DE" if i % 3 else "AT", "consent": True,
         "lifetime_value": float(i)} for i in range(1, n + 1)]
    rows += [{"customer_id": 9000 + i, "email": email, "first_name": "Bad", "last_name": "Row",
              "country": "DE", "consent": True, "lifetime_value": 1.0}
             for i, email in enumerate(["not-an-email", "missing@tld", "x" * 60 + "@ex.com"])]
    return rows


@dataclass
class Site:
    world: AppWorld
    emulator: EmulatorServer
    list_id: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The app with its in-process worker, and an emulator whose consent page asks first."""
    require(CHROMIUM.exists(), "Debian's chromium at /usr/bin/chromium")
    data_dir: Path = tmp_path_factory.mktemp("e2e")
    config = EmulatorConfig(requests_per_second=50, auto_approve=False, activity_seconds=0.3)
    with EmulatorServer(config) as emu:
        settings = make_settings(data_dir, cc_api_url=emu.api_url, cc_auth_url=emu.auth_url,
                                 cc_requests_per_second=40.0)
        with app_world(settings, profiles=0, start_worker=True) as world:
            world.runtime.store.import_table(pa.Table.from_pylist(profiles()),
                                             ProfileImport(id_column="customer_id"))
            seeded = emu.control.seed(
                apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                       "redirect_uris": [world.url + "/admin/connections/callback"],
                       "name": "segment-export"}],
                account={"organization_name": "Browser Bakery",
                         "contact_email": "owner@bakery.test"},
                lists=["Newsletter", "Events"])
            yield Site(world, emu, seeded.lists["Newsletter"])


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def set_language(site: Site, username: str, language: str | None) -> None:
    """Set a user's interface language (None: not chosen) straight in the state store."""
    from sqlalchemy import update

    from segment_export.db.models import User

    with site.world.runtime.sessions.begin() as db:
        db.execute(update(User).where(User.username == username).values(language=language))
