"""Fixtures of the page tests: the app with an emulator-backed, authorized connection."""

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

CLIENT_ID = "web-test-client"
CLIENT_SECRET = "web-test-secret-0123456789"


def people(n: int = 40) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"customer_id": i, "email": f"p{i}@example.com", "first_name": f"P{i}",
         "last_name": "Doe", "country": "DE" if i % 2 else "FR", "consent": True,
         "lifetime_value": float(i * 10)} for i in range(1, n + 1)]
    rows.append({"customer_id": 999, "email": "broken@", "first_name": "B", "last_name": "R",
                 "country": "DE", "consent": True, "lifetime_value": 1.0})
    return rows


@dataclass
class WebSite:
    world: AppWorld
    emulator: EmulatorServer
    list_id: str


@pytest.fixture(scope="module")
def web_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    data_dir: Path = tmp_path_factory.mktemp("web")
    with EmulatorServer(EmulatorConfig(requests_per_second=50, auto_approve=True,
                                      token_requests_per_second=100)) as emu:
        config = make_settings(data_dir, cc_api_url=emu.api_url, cc_auth_url=emu.auth_url,
                               cc_requests_per_second=40.0)
        with app_world(config, profiles=0, immediate_queue=True) as world:
            world.runtime.store.import_table(pa.Table.from_pylist(people()),
                                             ProfileImport(id_column="customer_id"))
            seeded = emu.control.seed(
                apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                       "redirect_uris": [world.url + "/admin/connections/callback"]}],
                account={"organization_name": "Web Bakery", "contact_email": "o@web.test"},
                lists=["Newsletter", "VIP"])
            yield WebSite(world, emu, seeded.lists["Newsletter"])
