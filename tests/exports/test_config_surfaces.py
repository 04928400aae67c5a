"""One export configuration service behind the API, the web form and the CLI: the same bad
configuration is refused with the same message, naming the field, on all three (over real HTTP
to the app, and to the emulator behind it)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from segment_export.cli import cli
from segment_export.definitions import connections
from segment_export.demo import connect_sandbox
from segment_export.emulator import EmulatorConfig, EmulatorServer
from segment_export.profiles.imports import ProfileImport
from tests.api.harness import AppWorld, app_world, make_settings

CLIENT_ID = "surfaces-client"
CLIENT_SECRET = "surfaces-secret-0123456789"
ACCOUNT = "Surface Bakery"


@dataclass
class Site:
    world: AppWorld
    emulator: EmulatorServer
    connection_id: str
    segment_id: str
    list_id: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir: Path = tmp_path_factory.mktemp("surfaces")
    with EmulatorServer(EmulatorConfig(requests_per_second=50, auto_approve=True,
                                      token_requests_per_second=100)) as emu:
        config = make_settings(data_dir, cc_api_url=emu.api_url, cc_auth_url=emu.auth_url,
                               cc_requests_per_second=40.0)
        seeded = emu.control.seed(
            apps=[{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [connections.DEFAULT_REDIRECT_URI]}],
            account={"organization_name": ACCOUNT}, lists=["Newsletter"],
            custom_fields=[{"name": "tier", "type": "single_select",
                            "choices": ["Gold", "Silver"]}])
        with app_world(config, profiles=0, immediate_queue=True) as world:
            world.runtime.store.import_table(pa.Table.from_pylist([
                {"customer_id": i, "email": f"p{i}@example.com", "tier": "Gold",
                 "country": "DE"} for i in range(1, 4)]), ProfileImport(id_column="customer_id"))
            conn = connect_sandbox(world.runtime.sessions, engine=world.engine, settings=config,
                                   control=emu.control, actor=world.users["admin"],
                                   display_name="Bakery", client_id=CLIENT_ID,
                                   client_secret=CLIENT_SECRET, shared_with_contributors=True)
            segment = world.segment("country = 'DE'")
            env = {"SEGMENT_EXPORT_DATA_DIR": str(data_dir),
                   "SEGMENT_EXPORT_SECRET_KEY": config.secret_key.get_secret_value(),
                   "SEGMENT_EXPORT_CC_API_URL": emu.api_url,
                   "SEGMENT_EXPORT_CC_AUTH_URL": emu.auth_url, "COLUMNS": "200"}
            yield Site(world, emu, conn.id, segment.id, seeded.lists["Newsletter"], env)


def _api(site: Site, name: str, mapping: dict[str, str], **extra: Any) -> Any:
    body = {"name": name, "connection_id": site.connection_id, "mapping": mapping,
            "segment_ids": [site.segment_id], **extra}
    body.setdefault("list_id", None if "create_list_name" in extra else site.list_id)
    return site.world.api("admin").post("/api/exports", json=body)


def _web(site: Site, name: str, mapping: dict[str, str]) -> Any:
    browser = site.world.browser("admin")
    attributes = [(k, v) for k, v in mapping.items() if k != "email"]
    return browser.post("/data/exports/new", {
        "name": name, "connection_id": site.connection_id, "list_choice": "id",
        "list_id_typed": site.list_id, "email_column": mapping["email"],
        "attr_field": [k for k, _ in attributes], "attr_column": [v for _, v in attributes],
        "segment_ids": [site.segment_id], "mode": "add_update", "schedule_kind": "manual",
        "timezone": "UTC", "enabled": "true"})


def _cli(site: Site, name: str, mapping: dict[str, str],
         monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in site.env.items():
        monkeypatch.setenv(key, value)
    maps = [arg for k, v in mapping.items() for arg in ("--map", f"{k}={v}")]
    with site.world.runtime.sessions() as db:
        from segment_export.db.models import Segment

        segment = db.get(Segment, site.segment_id)
        assert segment is not None
        segment_name = segment.name
    return CliRunner().invoke(cli, ["exports", "create", name, "--connection", "Bakery",
                                    "--list-id", site.list_id, *maps, "--segment",
                                    segment_name])


@pytest.mark.parametrize(("mapping", "message", "field"), [
    ({"email": "email", "cf:nope": "tier"},
     f"Custom field cf:nope does not exist in the Constant Contact account {ACCOUNT}",
     "cf:nope"),
    ({"email": "email", "cf:tier": "no_such_column"},
     "Field 'cf:tier' is mapped to column 'no_such_column', which the profiles do not have",
     "cf:tier"),
])
def test_the_same_mistake_gets_the_same_error_everywhere(
    site: Site, monkeypatch: pytest.MonkeyPatch, mapping: dict[str, str], message: str,
    field: str,
) -> None:
    api = _api(site, "api export", mapping)
    assert api.status_code == 422, api.text
    problem = api.json()
    assert problem["detail"] == message
    assert problem["field"] == field

    web = _web(site, "web export", mapping)
    assert web.status_code == 422
    assert message in html.unescape(web.text)

    cli_result = _cli(site, "cli export", mapping, monkeypatch)
    assert cli_result.exit_code == 2, cli_result.output  # a usage error
    assert message in cli_result.output

    saved = site.world.api("admin").get("/api/exports").json()
    assert not [e for e in saved if e["name"] in ("api export", "web export", "cli export")]


def test_the_refusal_names_the_account_fields_and_creates_nothing(site: Site) -> None:
    lists_before = len(site.emulator.control.state()["lists"])
    refused = _api(site, "new list export", {"email": "email", "cf:Tier": "tier"},
                   create_list_name="Made for nothing")
    assert refused.status_code == 422
    assert "silently ignore" in refused.json()["hint"]
    assert "cf:tier (single_select)" in refused.json()["hint"]
    # The list to create comes last: a refused configuration leaves nothing in the account.
    assert len(site.emulator.control.state()["lists"]) == lists_before


def test_a_good_mapping_saves_on_every_surface(site: Site,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = {"email": "email", "cf:tier": "tier"}
    assert _api(site, "api ok", mapping).status_code == 201
    assert _web(site, "web ok", mapping).status_code == 303
    result = _cli(site, "cli ok", mapping, monkeypatch)
    assert result.exit_code == 0, result.output
    saved = {e["name"]: e for e in site.world.api("admin").get("/api/exports").json()}
    assert {"api ok", "web ok", "cli ok"} <= set(saved)
    assert all(saved[n]["mapping"] == mapping for n in ("api ok", "web ok", "cli ok"))


def test_an_edit_starts_from_every_saved_setting() -> None:
    # ExportUpdate.of reads the saved spec field by field: a setting added to one and not the
    # other would be silently reset by every edit that does not name it.
    from dataclasses import fields

    from segment_export.db.models import Export
    from segment_export.definitions.configuration import ExportCreate, ExportUpdate
    from segment_export.definitions.exports import ExportSpec

    spec_fields = {f.name for f in fields(ExportSpec)} - {"list_name"}
    assert spec_fields == set(ExportCreate.model_fields) - {"create_list_name"}
    saved = {"name": "Weekly", "connection_id": "c1", "list_id": "l1",
             "mapping": {"first_name": "fn"}, "segment_ids": ["s1"], "consent_field": "opt_in",
             "mode": "mirror", "schedule_kind": "cron", "cron": "0 6 * * 1",
             "timezone": "Asia/Kuala_Lumpur", "enabled": False, "max_contacts": 500,
             "rejected_alert_threshold": 0.2, "phone_region": "MY"}
    assert set(saved) == spec_fields
    edit = ExportUpdate.of(Export(list_name="Customers", **saved))
    assert {name: getattr(edit, name) for name in spec_fields} == saved
    assert edit.create_list_name is None
