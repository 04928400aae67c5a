"""The delivered state: export_members rows overlaid with packed blocks (SQLite, PostgreSQL)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from segment_export.db.models import Export, ExportMember, ExportMemberBlock, Run, RunBatch
from segment_export.definitions.exports import forget_export_state
from segment_export.exports.delivery import (
    BatchMembers,
    Verdict,
    compact_members,
    delivered_emails,
    forget_members,
    load_members,
    record_delivered,
)
from segment_export.exports.diff import load_delivered


def _export_and_run(sessions: sessionmaker[Session]) -> tuple[str, str]:
    with sessions.begin() as session:
        export = Export(name="state", list_id="list-1", mapping={"email": "email"},
                        segment_ids=[])
        session.add(export)
        session.flush()
        run = Run(export_id=export.id)
        session.add(run)
        session.flush()
        return export.id, run.id


def _batch(sessions: sessionmaker[Session], run_id: str, seq: int) -> int:
    with sessions.begin() as session:
        batch = RunBatch(run_id=run_id, seq=seq, kind="import", state="sent", contacts=0)
        session.add(batch)
        session.flush()
        return batch.id


def _deliver(engine: Engine, sessions: sessionmaker[Session], export_id: str, run_id: str,
             seq: int, rows: list[tuple[int, int, str]], refused: dict[int, str] | None = None,
             ) -> None:
    members = BatchMembers.of([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                              [str(r[0]) for r in rows])
    refused = refused or {}
    verdict = Verdict(len(rows) - len(refused), len(refused), 0, refused, [])
    record_delivered(engine, export_id=export_id, run_id=run_id,
                     batch_id=_batch(sessions, run_id, seq), members=members, verdict=verdict)


def _state(engine: Engine, export_id: str) -> dict[str, tuple[int, int]]:
    state = load_members(engine, export_id, emails=True)
    assert state.emails is not None
    assert list(state.keys) == sorted(state.keys)
    return {e: (int(k), int(h)) for e, k, h in zip(state.emails.to_pylist(), state.keys,
                                                    state.hashes, strict=True)}


def test_later_deliveries_win_removals_drop_and_refused_rows_are_not_remembered(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    export_id, run_id = _export_and_run(sessions)
    _deliver(engine, sessions, export_id, run_id, 0,
             [(5, 50, "e@x.co"), (-3, 30, "c@x.co"), (9, 90, "i@x.co")], refused={2: "bad"})
    _deliver(engine, sessions, export_id, run_id, 1, [(-3, 31, "c@x.co"), (7, 70, "g@x.co")])
    assert _state(engine, export_id) == {"e@x.co": (5, 50), "c@x.co": (-3, 31),
                                         "g@x.co": (7, 70)}
    forget_members(engine, export_id=export_id, keys=[5, 123])
    assert _state(engine, export_id) == {"c@x.co": (-3, 31), "g@x.co": (7, 70)}
    assert delivered_emails(engine, export_id, np.array([7, 5, -3])) == {"c@x.co": -3,
                                                                         "g@x.co": 7}
    delivered = load_delivered(engine, export_id)
    assert (list(delivered.keys), list(delivered.hashes)) == ([-3, 7], [31, 70])
    with sessions() as session:
        states = session.scalars(select(RunBatch.state).order_by(RunBatch.seq)).all()
        assert states == ["confirmed", "confirmed"]


def test_rows_written_before_blocks_are_read_and_folded_once(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    export_id, run_id = _export_and_run(sessions)
    with sessions.begin() as session:
        session.add_all([
            ExportMember(export_id=export_id, email_key=1, email="a@x.co", values_hash=10,
                         run_id="older"),
            ExportMember(export_id=export_id, email_key=2, email="b@x.co", values_hash=20,
                         run_id="older"),
        ])
    _deliver(engine, sessions, export_id, run_id, 0, [(2, 21, "b@x.co"), (3, 30, "c@x.co")])
    before = _state(engine, export_id)
    assert before == {"a@x.co": (1, 10), "b@x.co": (2, 21), "c@x.co": (3, 30)}
    by_run = load_delivered(engine, export_id, run_id=run_id)
    assert list(by_run.keys) == [2, 3]
    assert compact_members(engine, export_id) is True
    assert _state(engine, export_id) == before
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(ExportMember)) == 0
        assert session.scalar(select(func.count()).select_from(ExportMemberBlock)) == 1
    assert compact_members(engine, export_id) is False


@pytest.mark.parametrize("blocks", [3])
def test_many_blocks_fold_into_one_without_changing_the_state(
    engine: Engine, sessions: sessionmaker[Session], blocks: int
) -> None:
    export_id, run_id = _export_and_run(sessions)
    for seq in range(blocks):
        _deliver(engine, sessions, export_id, run_id, seq,
                 [(seq, seq, f"{seq}@x.co"), (100, seq, "same@x.co")])
    before = _state(engine, export_id)
    assert before["same@x.co"] == (100, blocks - 1)
    assert compact_members(engine, export_id, max_blocks=blocks) is False
    assert compact_members(engine, export_id, max_blocks=blocks - 1) is True
    assert _state(engine, export_id) == before
    with sessions.begin() as session:
        forget_export_state(session, export_id=export_id)
    assert _state(engine, export_id) == {}


def test_rejections_written_through_the_driver_read_back_like_any_row(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    import pyarrow as pa

    from segment_export.db.models import RejectedRow
    from segment_export.db.types import utcnow
    from segment_export.exports.members import store_rejections
    from segment_export.exports.validate import ValidatedMembers

    _, run_id = _export_and_run(sessions)
    rejected = pa.table({"customer_id": ["7", None], "email": ["bad", None],
                         "reason": ["invalid_email", "missing_email"],
                         "detail": ["not a valid email address", None]})
    started = utcnow()
    store_rejections(engine, run_id, ValidatedMembers(
        contacts=pa.table({"customer_id": pa.array([], pa.string())}), rejected=rejected,
        in_segment=2, no_consent=0))
    with sessions() as session:
        rows = session.scalars(select(RejectedRow).order_by(RejectedRow.id)).all()
    assert [(r.run_id, r.customer_id, r.email, r.reason, r.detail) for r in rows] == [
        (run_id, "7", "bad", "invalid_email", "not a valid email address"),
        (run_id, None, None, "missing_email", None)]
    assert all(r.created_at.tzinfo is not None and r.created_at >= started.replace(microsecond=0)
               for r in rows)
    # Stored as the ORM stores it, so SQL comparisons on the column keep working (SQLite keeps
    # text: SQLAlchemy's form, without the offset sqlite3's own adapter would add).
    with sessions.begin() as session:
        session.add(RejectedRow(run_id=run_id, reason="missing_email"))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT created_at FROM rejected_rows")).scalars().all()
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", value)
                   for value in stored), stored


def test_a_batch_packs_whom_it_carries_and_older_blobs_still_give_their_keys() -> None:
    members = BatchMembers.of([3, -9, 2**62], [7, 8, -1], ["a@x.co", "é@x.co", "c@x.co"],
                              ["1", "2", "3"])
    unpacked = BatchMembers.unpack(members.pack())
    assert unpacked is not None
    assert (unpacked.keys.tolist(), unpacked.hashes.tolist()) == ([3, -9, 2**62], [7, 8, -1])
    assert unpacked.emails.to_pylist() == ["a@x.co", "é@x.co", "c@x.co"]
    assert unpacked.customer_ids.to_pylist() == ["1", "2", "3"]
    assert [a.tolist() for a in BatchMembers.unpack_keys(members.pack())] == [[3, -9, 2**62],
                                                                            [7, 8, -1]]
    older = np.array([3, -9], "<i8").tobytes() + np.array([7, 8], "<i8").tobytes()
    assert BatchMembers.unpack(older) is None
    assert [a.tolist() for a in BatchMembers.unpack_keys(older)] == [[3, -9], [7, 8]]


def test_the_leavers_emails_are_the_full_states_for_any_deliveries_and_removals(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """delivered_emails reads a part at a time: it must answer what the whole overlaid state
    (load_members) says, for keys delivered again, removed, and delivered after a removal."""
    import random

    export_id, run_id = _export_and_run(sessions)
    rng = random.Random(3)
    with sessions.begin() as session:
        session.add_all([ExportMember(export_id=export_id, email_key=k, email=f"old{k}@x.co",
                                      values_hash=k, run_id="older") for k in range(0, 40, 3)])
    for seq in range(10):
        if seq % 3 == 2:
            forget_members(engine, export_id=export_id, keys=rng.sample(range(40), 8))
            continue
        keys = rng.sample(range(40), 12)
        _deliver(engine, sessions, export_id, run_id, seq,
                 [(k, seq, f"p{k}-{seq}@x.co") for k in keys])
        state = load_members(engine, export_id, emails=True)
        assert state.emails is not None
        whole = dict(zip(state.keys.tolist(), state.emails.to_pylist(), strict=True))
        asked = np.array(rng.sample(range(-5, 45), 20), np.int64)
        assert delivered_emails(engine, export_id, asked) == {
            whole[k]: k for k in asked.tolist() if k in whole}
