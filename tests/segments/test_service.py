"""Segment services and refresh over the state store (SQLite and PostgreSQL) and DuckDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from sqlalchemy.orm import Session, sessionmaker

from segment_export.db.models import Export, Segment
from segment_export.errors import ConfigurationError, DataError, NotFoundError
from segment_export.profiles import DuckDBProfileStore, generate_profiles
from segment_export.segments import (
    SegmentChanges,
    SegmentSpec,
    compile_segment,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    preview_segment,
    refresh_segments,
    size_history,
    update_segment,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
GERMANS = {"field": "country", "op": "eq", "value": "DE"}


@pytest.fixture
def loaded(store: DuckDBProfileStore) -> DuckDBProfileStore:
    store.import_table(generate_profiles(rows=5_000, seed=5, as_of=date(2025, 6, 1)))
    return store


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    with sessions() as opened:
        yield opened


def test_create_evaluates_at_once_and_previews(
    session: Session, loaded: DuckDBProfileStore
) -> None:
    segment = create_segment(
        session,
        loaded,
        spec=SegmentSpec(name="  Germans ", rule=GERMANS, description="DE only"),
        now=NOW,
    )
    assert segment.name == "Germans"
    assert segment.rule == GERMANS
    assert segment.expression is None
    expected = loaded.count_where(compile_segment(schema=loaded.schema(), rule=GERMANS))
    assert segment.size == expected > 0
    assert segment.refreshed_at == NOW
    assert loaded.membership_size([segment.id]) == expected
    preview = preview_segment(session, loaded, name_or_id="Germans", limit=3)
    assert preview.count == expected
    assert [r["country"] for r in preview.rows] == ["DE"] * 3
    assert preview.sql == "\"country\" = 'DE'"


def test_expression_segments_and_unsaved_preview(
    session: Session, loaded: DuckDBProfileStore
) -> None:
    segment = create_segment(
        session,
        loaded,
        spec=SegmentSpec(name="big spenders", expression="  lifetime_value > 1000  "),
        now=NOW,
    )
    assert segment.expression == "lifetime_value > 1000"
    live = preview_segment(session, loaded, expression="lifetime_value > 1000", limit=0)
    assert live.count == segment.size
    assert live.rows == []


def test_inactive_segment_is_not_evaluated(session: Session, loaded: DuckDBProfileStore) -> None:
    segment = create_segment(
        session, loaded, spec=SegmentSpec(name="later", rule=GERMANS, active=False)
    )
    assert segment.size is None
    assert segment.refreshed_at is None
    assert refresh_segments(session, loaded, now=NOW) == []
    update_segment(
        session, loaded, changes=SegmentChanges(active=True), name_or_id="later", now=NOW
    )
    assert get_segment(session, name_or_id=segment.id).size is not None


def test_names_are_unique_and_checked(session: Session, loaded: DuckDBProfileStore) -> None:
    create_segment(session, loaded, spec=SegmentSpec(name="a", rule=GERMANS))
    with pytest.raises(DataError, match="already exists"):
        create_segment(session, loaded, spec=SegmentSpec(name="a", expression="country = 'FR'"))
    create_segment(session, loaded, spec=SegmentSpec(name="b", rule=GERMANS))
    with pytest.raises(DataError, match="already exists"):
        update_segment(session, loaded, changes=SegmentChanges(name="a"), name_or_id="b")
    for bad in ("", "   ", "x" * 201, "tab\there"):
        with pytest.raises(DataError, match="name"):
            create_segment(session, loaded, spec=SegmentSpec(name=bad, rule=GERMANS))


def test_definition_errors(session: Session, loaded: DuckDBProfileStore) -> None:
    with pytest.raises(DataError, match="exactly one"):
        create_segment(session, loaded, spec=SegmentSpec(name="x"))
    with pytest.raises(DataError, match="Unknown field 'nope'"):
        create_segment(
            session,
            loaded,
            spec=SegmentSpec(name="x", rule={"field": "nope", "op": "eq", "value": 1}),
        )
    with pytest.raises(DataError, match="cannot be evaluated"):
        create_segment(
            session, loaded, spec=SegmentSpec(name="x", expression="lifetime_value > 'lots'")
        )
    with pytest.raises(DataError, match=r"cannot be evaluated.*[Oo]verflow"):
        create_segment(
            session,
            loaded,
            spec=SegmentSpec(
                name="x", expression="lifetime_value::BIGINT * 9223372036854775807 > 1"
            ),
        )
    assert list_segments(session) == []


def test_no_profiles_yet(session: Session, store: DuckDBProfileStore) -> None:
    with pytest.raises(ConfigurationError, match="No profiles"):
        create_segment(session, store, spec=SegmentSpec(name="x", rule=GERMANS))
    with pytest.raises(ConfigurationError, match="No profiles"):
        refresh_segments(session, store)


def test_edit_replaces_the_definition_and_recomputes(
    session: Session, loaded: DuckDBProfileStore
) -> None:
    segment = create_segment(session, loaded, spec=SegmentSpec(name="s", rule=GERMANS), now=NOW)
    later = NOW + timedelta(hours=1)
    updated = update_segment(
        session,
        loaded,
        changes=SegmentChanges(expression="country = 'FR'", description="French"),
        name_or_id="s",
        now=later,
    )
    assert updated.rule is None
    assert updated.expression == "country = 'FR'"
    assert updated.refreshed_at == later
    assert updated.size == loaded.membership_size([segment.id])
    assert [p.size for p in size_history(session, segment_id=segment.id)][-1] == updated.size
    update_segment(session, loaded, changes=SegmentChanges(description=""), name_or_id="s")
    assert get_segment(session, name_or_id="s").description is None
    with pytest.raises(DataError, match="not both"):
        update_segment(
            session, loaded, changes=SegmentChanges(rule=GERMANS, expression="1=1"), name_or_id="s"
        )


def test_refresh_records_history_and_survives_a_broken_segment(
    session: Session, loaded: DuckDBProfileStore
) -> None:
    ok = create_segment(session, loaded, spec=SegmentSpec(name="ok", rule=GERMANS), now=NOW)
    broken = create_segment(
        session,
        loaded,
        spec=SegmentSpec(name="broken", rule={"field": "company", "op": "is_not_empty"}),
        now=NOW,
    )
    # A re-import without the `company` column breaks one segment, not the refresh.
    table = generate_profiles(rows=3_000, seed=6, as_of=date(2025, 6, 1)).drop_columns(["company"])
    loaded.import_table(table)
    old_size = broken.size
    results = refresh_segments(session, loaded, now=NOW + timedelta(days=1))
    by_name = {r.name: r for r in results}
    assert by_name["ok"].ok
    assert by_name["ok"].size == loaded.membership_size([ok.id])
    assert not by_name["broken"].ok
    assert "Unknown field 'company'" in (by_name["broken"].error or "")
    assert get_segment(session, name_or_id="broken").size == old_size
    history = size_history(session, segment_id=ok.id)
    assert [p.refreshed_at for p in history] == [NOW, NOW + timedelta(days=1)]
    assert len(size_history(session, segment_id=broken.id)) == 1
    latest = size_history(session, segment_id=ok.id, limit=1)
    assert latest[0].refreshed_at == NOW + timedelta(days=1)


def test_delete_drops_membership_and_history(session: Session, loaded: DuckDBProfileStore) -> None:
    segment = create_segment(session, loaded, spec=SegmentSpec(name="gone", rule=GERMANS), now=NOW)
    delete_segment(session, loaded, name_or_id="gone")
    # The stored members wait for the caller's commit (the profile store is outside it).
    assert loaded.membership_size([segment.id]) == segment.size > 0
    session.commit()
    assert loaded.membership_size([segment.id]) == 0
    assert size_history(session, segment_id=segment.id) == []
    with pytest.raises(NotFoundError):
        get_segment(session, name_or_id="gone")


def test_the_caller_owns_the_unit_of_work(sessions: sessionmaker[Session],
                                         loaded: DuckDBProfileStore) -> None:
    """The services write but do not commit: what a caller rolls back was never saved, and
    what it commits is seen by everyone else."""
    with sessions() as session:
        create_segment(session, loaded, spec=SegmentSpec(name="abandoned", rule=GERMANS), now=NOW)
        session.rollback()
    with sessions.begin() as session:
        kept = create_segment(session, loaded, spec=SegmentSpec(name="kept", rule=GERMANS), now=NOW)
    with sessions() as other:
        assert [s.name for s in list_segments(other)] == ["kept"]
        assert size_history(other, segment_id=kept.id)[0].size == kept.size
    with sessions() as session:
        delete_segment(session, loaded, name_or_id="kept")
        session.rollback()
        session.commit()  # a later commit of the same session does not drop them either
    with sessions() as session:
        delete_segment(session, loaded, name_or_id="kept")
        # closed without a commit
    with sessions() as other:
        assert get_segment(other, name_or_id="kept").id == kept.id
    # A rolled-back deletion keeps the segment's members too: an export of it would otherwise
    # send an empty segment (and a mirror export empty its list).
    assert loaded.membership_size([kept.id]) == kept.size > 0


def test_delete_refused_while_an_export_uses_it(
    session: Session, loaded: DuckDBProfileStore
) -> None:
    segment = create_segment(session, loaded, spec=SegmentSpec(name="used", rule=GERMANS))
    session.add(Export(name="newsletter", list_id="x", mapping={}, segment_ids=[segment.id]))
    session.commit()
    with pytest.raises(ConfigurationError, match="newsletter"):
        delete_segment(session, loaded, name_or_id="used")
    assert session.get(Segment, segment.id) is not None


def test_lookup_by_id_and_name(session: Session, loaded: DuckDBProfileStore) -> None:
    segment = create_segment(session, loaded, spec=SegmentSpec(name="Ünïcode 名前", rule=GERMANS))
    assert get_segment(session, name_or_id=segment.id).id == segment.id
    assert get_segment(session, name_or_id="Ünïcode 名前").id == segment.id
    assert [s.name for s in list_segments(session, active=True)] == ["Ünïcode 名前"]
    assert list_segments(session, active=False) == []


def test_read_members_union_is_distinct_ordered_and_streamed(
    session: Session, store: DuckDBProfileStore
) -> None:
    store.import_table(pa.table({
        "customer_id": pa.array(range(1, 1001), pa.int64()),
        "email": [f"p{i}@example.com" for i in range(1, 1001)],
        "n": [i % 3 for i in range(1, 1001)],
    }))
    a = create_segment(
        session, store, spec=SegmentSpec(name="a", expression="n = 0 OR customer_id <= 10")
    )
    b = create_segment(session, store, spec=SegmentSpec(name="b", expression="n = 1"))
    expected = sorted({i for i in range(1, 1001) if i % 3 == 0 or i <= 10} |
                      {i for i in range(1, 1001) if i % 3 == 1})
    assert store.membership_size([a.id, b.id]) == len(expected)
    batches = list(store.read_members([a.id, b.id], ["email", "customer_id"], batch_size=100))
    assert all(batch.num_rows <= 100 for batch in batches)
    assert batches[0].schema.names == ["customer_id", "email"]
    got = [r["customer_id"] for batch in batches for r in batch.to_pylist()]
    assert got == expected
    assert list(store.read_members([], ["email"])) == []
    with pytest.raises(DataError, match="'nope'"):
        list(store.read_members([a.id], ["nope"]))
    # Profiles gone after a re-import are no longer members, even before the next refresh.
    store.import_table(pa.table({"customer_id": pa.array([3, 4], pa.int64()),
                                 "email": ["x@example.com", "y@example.com"], "n": [0, 1]}))
    assert store.membership_size([a.id, b.id]) == 2


def test_changes_are_audited(session: Session, loaded: DuckDBProfileStore) -> None:
    from segment_export.audit import list_events

    segment = create_segment(session, loaded, spec=SegmentSpec(name="audited", rule=GERMANS))
    update_segment(session, loaded, changes=SegmentChanges(description="x"), name_or_id="audited")
    delete_segment(session, loaded, name_or_id="audited")
    events = list_events(session, target_id=segment.id)
    assert [e.action for e in events] == ["segment.delete", "segment.update", "segment.create"]
    assert events[1].details["changed"] == ["description"]
    assert events[2].actor_name == "system"
