"""Export runs end to end over real HTTP against the emulator."""

from __future__ import annotations

from sqlalchemy import select

from segment_export.db.models import Connection, RejectedRow
from tests.world import World


def _people(n: int, *, start: int = 1, **extra: object) -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": "DE", "consent": True, **extra}
            for i in range(start, start + n)]


def test_connection_is_authorized_and_names_the_account(world: World) -> None:
    with world.sessions() as session:
        conn = session.get(Connection, world.connection.id)
        assert conn is not None
        assert conn.status == "connected"
        assert conn.account_name == "Sandbox Bakery"
        assert conn.export_user_id == world.admin.id


def test_first_run_then_incremental_then_mirror(world: World) -> None:
    rows = _people(30)
    rows += [{"customer_id": 100, "email": "bad@", "first_name": "X", "last_name": "Y",
              "country": "DE", "consent": True},
             {"customer_id": 101, "email": " PERSON1@example.com ", "first_name": "Dup",
              "last_name": "Z", "country": "DE", "consent": True}]
    world.load_profiles(rows)
    segment = world.segment("Germany", "country = 'DE'")
    export = world.export("DE newsletter", [segment], mode="mirror")

    first = world.run(export)
    assert first.status == "succeeded_with_rejections", first.message
    expected = {f"person{i}@example.com" for i in range(1, 31)}
    assert world.members() == expected
    counts = first.counts
    assert counts["in_segment"] == 32
    assert counts["sent"] == 30
    assert counts["rejected_locally"] == 2
    assert counts["in_segment"] == counts["sent"] + counts["unchanged"] + counts[
        "rejected_locally"] + counts["no_consent"]
    with world.sessions() as session:
        reasons = {r.reason for r in session.scalars(
            select(RejectedRow).where(RejectedRow.run_id == first.id))}
    assert reasons == {"invalid_email", "superseded"}

    # Incremental: one changed name, nothing else is re-sent.
    rows[1]["first_name"] = "Changed"
    world.load_profiles(rows)
    again = world.run(export)
    assert again.counts["sent"] == 1
    assert again.counts["unchanged"] == 29

    # Mirror: three leave the segment and come off the list; nobody is unsubscribed.
    for row in rows[1:4]:
        row["country"] = "FR"
    world.load_profiles(rows)
    from segment_export.segments.refresh import refresh_segments

    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()
    mirrored = world.run(export)
    assert mirrored.counts["removed"] == 3, mirrored.message
    assert world.members() == expected - {f"person{i}@example.com" for i in (2, 3, 4)}
    # Removed from the list only: the contacts still exist and are not unsubscribed.
    contacts = {c["email"]: c for c in world.control.contacts()}
    assert contacts["person2@example.com"]["permission_to_send"] == "implicit"


def test_dry_run_sends_nothing(world: World) -> None:
    world.load_profiles(_people(5))
    export = world.export("dry", [world.segment("all", "country = 'DE'")])
    before = len(world.control.requests())
    run = world.run(export, dry_run=True)
    assert run.status == "succeeded"
    assert run.counts["would_add"] == 5
    assert world.members() == set()
    imports = [r for r in world.control.requests()[before:] if "import" in r.path]
    assert imports == []


def test_over_the_limit_is_skipped_before_sending(world: World) -> None:
    world.load_profiles(_people(12))
    export = world.export("small limit", [world.segment("all", "country = 'DE'")],
                          max_contacts=10)
    run = world.run(export)
    assert run.status == "skipped"
    assert "12" in (run.message or "")
    assert world.members() == set()


def test_unsubscribed_contacts_are_not_re_added(world: World) -> None:
    world.control.seed(contacts=[{"email": "person2@example.com",
                                  "permission_to_send": "unsubscribed"}])
    world.load_profiles(_people(3))
    export = world.export("unsub", [world.segment("all", "country = 'DE'")])
    run = world.run(export)
    # Read back before sending (docs/suppression.md): held back, not even offered to the import.
    assert run.counts["suppressed"] == 1
    assert run.counts["unsubscribed_not_added"] == 0
    assert world.members() == {"person1@example.com", "person3@example.com"}


def test_no_consent_is_never_sent(world: World) -> None:
    rows = _people(4)
    rows[0]["consent"] = False
    world.load_profiles(rows)
    export = world.export("consent", [world.segment("all", "country = 'DE'")],
                          consent_field="consent")
    run = world.run(export)
    assert run.counts["no_consent"] == 1
    assert "person1@example.com" not in world.members()
    assert len(world.members()) == 3


def test_custom_fields_must_exist_and_are_delivered(world: World) -> None:
    import pytest

    from segment_export.definitions.connections import client_for
    from segment_export.definitions.custom_fields import check_mapping, read_account_fields
    from segment_export.errors import ConfigurationError

    world.control.seed(custom_fields=["tier"])
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        fields = read_account_fields(client)
    check_mapping({"email": "email", "cf:tier": "tier"}, fields, account="Sandbox Bakery")
    with pytest.raises(ConfigurationError, match="cf:nope"):
        check_mapping({"email": "email", "cf:nope": "tier"}, fields, account="Sandbox Bakery")
    world.load_profiles([{**row, "tier": "gold"} for row in _people(2)])
    export = world.export("with cf", [world.segment("all", "country = 'DE'")],
                          mapping={"email": "email", "cf:tier": "tier"})
    run = world.run(export)
    assert run.status == "succeeded", run.message
    contacts = {c["email"]: c for c in world.control.contacts()}
    assert "gold" in str(contacts["person1@example.com"])
