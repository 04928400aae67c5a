"""Bad export input: each refused with a message that names the field, and nothing sent."""

from __future__ import annotations

import pytest

from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.definitions.lists import resolve_list
from segment_export.definitions.mapping import validate_mapping
from segment_export.errors import ConfigurationError
from segment_export.profiles import generate_profiles
from segment_export.profiles.imports import ProfileImport
from tests.world import World


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"first_name": "first_name"}, "email"),
        ({"email": "email", "nickname": "first_name"}, "does not accept a field named 'nickname'"),
        ({"email": "email", "cf:has space": "x"}, "cf:has space"),
        ({"email": "email", "first_name": "no_such_column"}, "no_such_column"),
        ({"email": "email", **{f"cf:f{i}": "first_name" for i in range(26)}}, "at most 25"),
    ],
)
def test_mappings_constant_contact_would_refuse(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_mapping(mapping, profile_columns={"email": "VARCHAR", "first_name": "VARCHAR",
                                                   "x": "VARCHAR"})


def test_malformed_list_id_is_refused_before_saving(world: World) -> None:
    world.load_profiles([{"customer_id": 1, "email": "a@example.com", "country": "DE"}])
    segment = world.segment("all", "country = 'DE'")
    with world.sessions() as session, pytest.raises(ConfigurationError, match="not a Constant"):
        create_export(session, actor=world.admin, spec=ExportSpec(
            name="bad list", connection_id=world.connection.id, list_id="my-newsletter",
            mapping={"email": "email"}, segment_ids=[segment]))


def test_list_of_another_account_is_refused(world: World) -> None:
    other_accounts_list = "7a0c1b2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    with pytest.raises(ConfigurationError, match="does not exist in the account"):
        resolve_list(world.connection, settings=world.settings, engine=world.engine,
                     list_id=other_accounts_list)
    found = resolve_list(world.connection, settings=world.settings, engine=world.engine,
                         list_id=world.list_id)
    assert found.name == "Newsletter"


@pytest.mark.slow
def test_a_segment_of_1_000_001_contacts_is_skipped_before_sending(world: World) -> None:
    world.store.import_table(generate_profiles(rows=1_000_001, seed=3),
                             ProfileImport(id_column="customer_id"))
    export = world.export("too big", [world.segment("everyone", "lifetime_value >= 0")],
                          mapping={"email": "email"})
    before = len(world.control.requests())
    run = world.run(export)
    assert run.status == "skipped"
    assert "1,000,001" in (run.message or "")
    assert "1,000,000" in (run.message or "")
    assert [r for r in world.control.requests()[before:] if "v3" in r.path] == []
