"""Kept contact ids against a plain-Python recomputation (SQLite and PostgreSQL): repeated
keys, ids claimed by two keys, non-canonical ids and forgotten ones, over several learnings."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.db.models import Export
from segment_export.exports.contact_ids import (
    forget_contact_ids,
    kept_contact_ids,
    learn_contact_ids,
)


def _export(sessions: sessionmaker[Session]) -> str:
    with sessions.begin() as session:
        export = Export(name="ids", list_id="list-1", mapping={"email": "email"},
                        segment_ids=[])
        session.add(export)
        session.flush()
        return export.id


def test_kept_ids_are_what_a_plain_recomputation_says(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    export_id = _export(sessions)
    rng = random.Random(7)
    pool = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(12)]
    truth: dict[int, str | None] = {}  # key -> its latest id (None: forgotten / seen twice)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    for step in range(12):
        at += timedelta(minutes=1)
        if step % 4 == 3:
            gone = rng.sample(range(30), 5)
            forget_contact_ids(engine, export_id=export_id, list_id="list-1",
                               keys=np.array(gone, np.int64))
            truth.update(dict.fromkeys(gone))
            continue
        keys = [rng.randrange(30) for _ in range(rng.randrange(1, 25))]
        ids = [rng.choice([*pool, "NOT-A-UUID", pool[0].upper()]) for _ in keys]
        learn_contact_ids(engine, export_id=export_id, list_id="list-1",
                          keys=np.array(keys, np.int64), ids=pa.array(ids), learnt_at=at)
        for key in set(keys):
            seen = [i for k, i in zip(keys, ids, strict=True) if k == key]
            if len(seen) > 1:
                truth[key] = None  # seen twice: forgets what it had
            elif seen[0] == seen[0].lower() and len(seen[0]) == 36:
                truth[key] = seen[0]
            # a non-canonical id alone leaves the key's older id as it was
        claims: dict[str, int] = {}
        for value in truth.values():
            if value is not None:
                claims[value] = claims.get(value, 0) + 1
        expected = {k: v for k, v in truth.items()
                    if v is not None and claims[v] == 1}
        kept = kept_contact_ids(engine, export_id=export_id, list_id="list-1",
                                keys=np.arange(-5, 40, dtype=np.int64))
        assert {k: item.contact_id for k, item in kept.items()} == expected, step
