"""Unsubscribes flow back: read from the emulator over HTTP, recorded, never sent again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
from sqlalchemy import Engine, select

from segment_export.config import Settings
from segment_export.db.models import Suppression, SuppressionSync
from segment_export.definitions.connections import client_for
from segment_export.exports.suppression import (
    email_hash,
    is_suppressed,
    suppression_status,
    sync_unsubscribes,
)
from segment_export.profiles.imports import ProfileImport
from segment_export.segments.refresh import refresh_segments
from tests.world import World, open_world


@pytest.fixture
def any_world(settings: Settings, engine: Engine) -> Iterator[World]:
    """The world on SQLite and on PostgreSQL."""
    with open_world(settings, engine) as opened:
        yield opened


def _people(n: int, *, country: str = "DE") -> list[dict[str, object]]:
    return [{"customer_id": i, "email": f"person{i}@example.com", "first_name": f"P{i}",
             "last_name": "Doe", "country": country} for i in range(1, n + 1)]


def _contact_reads(world: World, since: int = 0) -> list[dict[str, list[str]]]:
    return [parse_qs(r.query) for r in world.control.requests(since)
            if r.method == "GET" and r.path == "/v3/contacts"]


def _refresh(world: World) -> None:
    with world.sessions() as session:
        refresh_segments(session, world.store)
        session.commit()


def test_an_unsubscribe_is_read_back_and_never_sent_again(any_world: World) -> None:
    world = any_world
    rows = _people(5)
    world.load_profiles(rows)
    export = world.export("DE", [world.segment("Germany", "country = 'DE'")], mode="mirror")
    first = world.run(export)
    assert first.status == "succeeded", first.message
    assert first.counts["suppressed"] == 0
    # The first read is a full one: no watermark yet.
    assert [q.get("status") for q in _contact_reads(world)] == [["unsubscribed"]]
    assert "optout_after" not in _contact_reads(world)[0]

    assert world.control.unsubscribe(["person2@example.com"]) == ["person2@example.com"]
    since = world.control.requests()[-1].seq
    rows[0]["first_name"] = "Changed"  # person1 changes: their update is sent, person2's not
    rows[1]["first_name"] = "Changed too"
    world.load_profiles(rows)
    second = world.run(export)
    assert second.status == "succeeded", second.message
    c = second.counts
    assert c["suppressed"] == 1
    assert c["sent"] == 1
    assert c["unsubscribed_not_added"] == 0
    assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c[
        "no_consent"] + c["suppressed"]
    # Mirror mode: a suppressed member still in the segment is no leaver; nothing removed.
    assert c.get("removed", 0) == 0
    assert "1 unsubscribed in Constant Contact and held back" in (second.message or "")
    reads = _contact_reads(world, since)
    assert len(reads) == 1, "one request when little changed"
    watermark = datetime.fromisoformat(reads[0]["optout_after"][0].replace("Z", "+00:00"))
    assert watermark < datetime.now(UTC)
    assert is_suppressed(world.engine, connection_id=world.connection.id,
                         email=" Person2@Example.com ")
    with world.sessions() as session:
        stored = session.scalars(select(Suppression)).all()
    assert [(s.email_hash, s.source, s.opt_out_source) for s in stored] == [
        (email_hash("person2@example.com"), "unsubscribed", "Contact")]
    # The state store keeps no address of the person who asked to hear nothing.
    assert all("@" not in s.email_hash for s in stored)

    # They leave the segment and come back: still never sent, even on a full resync.
    rows[1]["country"] = "FR"
    world.load_profiles(rows)
    _refresh(world)
    world.run(export)
    rows[1]["country"] = "DE"
    rows[1]["first_name"] = "Back again"
    world.load_profiles(rows)
    _refresh(world)
    since = world.control.requests()[-1].seq
    rejoined = world.run(export)
    assert rejoined.counts["suppressed"] == 1, rejoined.message
    assert rejoined.counts["sent"] == 0
    full = world.run(export, full_resync=True)
    assert full.counts["suppressed"] == 1, full.message
    assert full.counts["sent"] == 4, full.message
    imports = [r for r in world.control.requests(since) if r.path.endswith("json_import")]
    assert len(imports) == 1  # only the full resync's four
    contacts = {c["email"]: c for c in world.control.contacts()}
    assert contacts["person2@example.com"]["permission_to_send"] == "unsubscribed"
    assert "person2@example.com" not in world.members()

    # A dry run holds them back too, from what was recorded, asking Constant Contact nothing.
    since = world.control.requests()[-1].seq
    dry = world.run(export, dry_run=True)
    assert dry.counts["suppressed"] == 1, dry.message
    assert dry.counts["would_add"] == 0, dry.message
    assert _contact_reads(world, since) == []


def test_an_unsubscribe_from_before_the_list_counts_too(world: World) -> None:
    """Someone who unsubscribed without ever being on the export's list (an opt-out is
    account-wide) is suppressed from the first run: nothing about them is sent."""
    world.control.seed(contacts=[{"email": "person3@example.com",
                                  "permission_to_send": "unsubscribed"}])
    world.load_profiles(_people(3))
    export = world.export("all", [world.segment("all", "country = 'DE'")])
    run = world.run(export)
    assert run.counts["suppressed"] == 1, run.message
    assert run.counts["sent"] == 2
    assert run.counts["unsubscribed_not_added"] == 0
    assert world.members() == {"person1@example.com", "person2@example.com"}


def test_opting_back_in_lifts_the_suppression_at_a_full_read_only(world: World) -> None:
    world.load_profiles(_people(3))
    export = world.export("all", [world.segment("all", "country = 'DE'")])
    world.run(export)
    world.control.unsubscribe(["person1@example.com"])
    assert world.run(export).counts["suppressed"] == 1
    assert world.control.opt_back_in(["person1@example.com"]) == ["person1@example.com"]
    # An incremental read sees only new opt-outs: the suppression stays.
    assert world.run(export).counts["suppressed"] == 1
    # The full read no longer finds them unsubscribed: lifted, and sent again.
    full = world.run(export, full_resync=True)
    assert full.counts["suppressed"] == 0, full.message
    status = suppression_status(world.engine, connection_id=world.connection.id)
    assert status.suppressed == 0
    assert status.last_result["lifted"] == 1
    assert status.full_synced_at is not None
    assert "person1@example.com" in world.members()


def test_paging_over_more_than_500_unsubscribes_then_incremental(world: World) -> None:
    world.control.seed(contacts=[{"email": f"gone{i}@example.com",
                                  "permission_to_send": "unsubscribed"} for i in range(1203)])
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        first = sync_unsubscribes(world.engine, client, connection_id=world.connection.id)
        assert first.full
        assert first.read == first.added == first.suppressed == 1203
        reads = _contact_reads(world)
        assert len(reads) == 3  # 500 + 500 + 203, following _links.next
        assert reads[0]["limit"] == ["500"]
        assert "optout_after" not in reads[0]
        since = world.control.requests()[-1].seq
        again = sync_unsubscribes(world.engine, client, connection_id=world.connection.id)
    assert not again.full
    assert again.added == 0
    assert again.suppressed == 1203
    # Within the overlap the same opt-outs come back; they change nothing.
    assert again.read == 1203
    incremental = _contact_reads(world, since)
    assert "optout_after" in incremental[0]
    with world.sessions() as session:
        sync = session.get(SuppressionSync, world.connection.id)
        assert sync is not None
        assert sync.watermark is not None
        assert sync.synced_at is not None


def test_a_read_that_fails_halfway_records_nothing(world: World) -> None:
    world.control.seed(contacts=[{"email": f"gone{i}@example.com",
                                  "permission_to_send": "unsubscribed"} for i in range(600)])
    armed: list[str] = []

    def after_first_page(method: str, path: str, status: int | None, sent: int,
                         seconds: float) -> None:
        # Once the first page arrived, every later one answers 500, past the retries.
        if path.endswith("contacts") and not armed:
            armed.append(path)
            world.control.inject_fault(kind="status", status=500, count=50,
                                       path_prefix="/v3/contacts")

    from segment_export.errors import SegmentExportError

    with client_for(world.connection, settings=world.settings, engine=world.engine,
                    on_request=after_first_page, backoff_base=0.01, backoff_cap=0.02,
                    ) as client, pytest.raises(SegmentExportError):
        sync_unsubscribes(world.engine, client, connection_id=world.connection.id)
    assert armed
    assert len(_contact_reads(world)) >= 2
    status = suppression_status(world.engine, connection_id=world.connection.id)
    assert status.suppressed == 0
    assert status.synced_at is None


def _unsubscribe_and_sync(world: World, emails: list[str]) -> None:
    world.control.seed(contacts=[{"email": e} for e in emails])
    world.control.unsubscribe(emails)
    with client_for(world.connection, settings=world.settings, engine=world.engine) as client:
        sync_unsubscribes(world.engine, client, connection_id=world.connection.id)


def _rule_members(world: World, store: object, value: bool) -> set[str]:
    from segment_export.segments.service import SegmentSpec, create_segment, preview_segment

    rule = {"all": [{"field": "country", "op": "eq", "value": "DE"},
                    {"field": "unsubscribed_in_constant_contact", "op": "eq", "value": value}]}
    with world.sessions.begin() as session:
        segment = create_segment(session, store, spec=SegmentSpec(name=f"unsub {value}", rule=rule))  # type: ignore[arg-type]
        preview = preview_segment(session, store, name_or_id=segment.id, limit=100)  # type: ignore[arg-type]
        assert segment.size == preview.count
    return {str(r["email"]).strip().lower() for r in preview.rows}


def test_a_segment_rule_tests_unsubscribes_duckdb(world: World) -> None:
    rows = _people(4)
    rows[2]["email"] = " PERSON3@Example.com "  # normalised as a run normalises it
    world.load_profiles(rows)
    _unsubscribe_and_sync(world, ["person3@example.com"])
    assert _rule_members(world, world.store, True) == {"person3@example.com"}
    assert _rule_members(world, world.store, False) == {
        "person1@example.com", "person2@example.com", "person4@example.com"}
    # The refresh copies the set again: a new unsubscribe joins the segment.
    _unsubscribe_and_sync(world, ["person1@example.com"])
    _refresh(world)
    from segment_export.db.models import Segment

    with world.sessions() as session:
        sizes = {s.name: s.size for s in session.scalars(select(Segment))}
    assert sizes == {"unsub True": 2, "unsub False": 2}


@pytest.mark.postgres
def test_a_segment_rule_tests_unsubscribes_postgres(world: World) -> None:
    import pyarrow as pa

    from segment_export.profiles.postgres.store import PostgresProfileStore
    from tests.services import postgres_schema_url

    with postgres_schema_url() as url:
        options = parse_qs(url.split("?", 1)[1])["options"][0]
        schema = options.split("=", 1)[1]
        base = url.split("?", 1)[0].replace("postgresql+psycopg://", "postgresql://")
        # An explicit schema, not the search_path: the suppression table must follow it.
        with PostgresProfileStore.from_url(f"{base}?schema={schema}&table=profiles") as pg:
            pg.import_table(pa.Table.from_pylist(_people(3)),
                            ProfileImport(id_column="customer_id"))
            _unsubscribe_and_sync(world, ["person2@example.com"])
            assert _rule_members(world, pg, True) == {"person2@example.com"}
            assert _rule_members(world, pg, False) == {"person1@example.com",
                                                       "person3@example.com"}


def test_the_rule_field_needs_a_true_or_false_and_an_email_column(world: World) -> None:
    from segment_export.errors import DataError
    from segment_export.segments.service import preview_segment

    world.load_profiles(_people(2))
    with world.sessions() as session, pytest.raises(DataError, match="true/false"):
        preview_segment(session, world.store, rule={
            "field": "unsubscribed_in_constant_contact", "op": "eq", "value": "yes"})
    world.store.import_table(__import__("pyarrow").Table.from_pylist(
        [{"customer_id": 1, "mail": "a@example.com"}]), ProfileImport(id_column="customer_id"))
    with world.sessions() as session, pytest.raises(DataError, match="'email' column"):
        preview_segment(session, world.store, rule={
            "field": "unsubscribed_in_constant_contact", "op": "eq", "value": True})


def test_the_sync_command(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from segment_export.cli import cli
    from tests.exports.faults_support import cli_env

    for key, value in cli_env(world, batch=100).items():
        monkeypatch.setenv(key, value)
    world.control.seed(contacts=[{"email": "gone@example.com",
                                  "permission_to_send": "unsubscribed"}])
    runner = CliRunner()
    result = runner.invoke(cli, ["connections", "sync-unsubscribes", "Sandbox"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Sandbox: read 1 unsubscribed (full read), 1 new, 0 lifted; 1 suppressed." in (
        result.output)
    again = runner.invoke(cli, ["connections", "sync-unsubscribes"], catch_exceptions=False)
    assert "(since the last read), 0 new" in again.output, again.output
    shown = runner.invoke(cli, ["connections", "suppression", "Sandbox", "--check",
                                "GONE@example.com"], catch_exceptions=False)
    assert "1 suppressed" in shown.output
    assert "GONE@example.com: suppressed." in shown.output
