"""Recording what a batch delivered: the export's member state and Constant Contact's verdicts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, delete, insert, update

from segment_export.constant_contact import Activity
from segment_export.db.models import ExportMember, RejectedRow, RunBatch
from segment_export.db.types import utcnow

_ROW_ERROR = re.compile(r"^Row (\d+)(?: \((.*?)\))?: (.*)$")


@dataclass(slots=True)
class BatchMembers:
    """The contacts one request carries, in the order they were serialized.

    Held compactly (numpy and Arrow arrays, about 60 bytes a contact) because several batches
    of 40,000 are in flight at once.
    """

    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]]
    emails: pa.Array
    customer_ids: pa.Array

    @classmethod
    def of(cls, keys: Sequence[int], hashes: Sequence[int], emails: Sequence[str],
           customer_ids: Sequence[str]) -> BatchMembers:
        return cls(np.array(keys, np.int64), np.array(hashes, np.int64),
                   pa.array(emails, pa.string()), pa.array(customer_ids, pa.string()))

    def __len__(self) -> int:
        return int(self.keys.size)

    def pack(self) -> bytes:
        return self.keys.astype("<i8").tobytes() + self.hashes.astype("<i8").tobytes()

    @staticmethod
    def unpack_keys(blob: bytes) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        both = np.frombuffer(blob, "<i8")
        half = both.size // 2
        return both[:half], both[half:]


@dataclass(slots=True)
class Verdict:
    """Constant Contact's counts for one completed import, and the rows it named as refused."""

    accepted: int
    rejected: int
    unsubscribed: int
    refused_rows: dict[int, str]  # 0-based index in the batch -> Constant Contact's reason
    unattributed_errors: list[str]


def read_verdict(activity: Activity, batch_size: int) -> Verdict:
    """Turn an import activity's counts and free-text errors into per-row outcomes."""
    status = activity.status
    rejected = (status.error_count or 0) + (status.correctable_count or 0)
    unsubscribed = status.cannot_add_to_list_count or 0
    refused: dict[int, str] = {}
    unattributed: list[str] = []
    for message in activity.activity_errors:
        match = _ROW_ERROR.match(message)
        if match and 1 <= int(match.group(1)) <= batch_size:
            refused[int(match.group(1)) - 1] = match.group(3)
        else:
            unattributed.append(message)
    accepted = max(batch_size - rejected - unsubscribed, 0)
    return Verdict(accepted, rejected, unsubscribed, refused, unattributed)


def record_delivered(
    engine: Engine,
    *,
    export_id: str,
    run_id: str,
    batch_id: int,
    members: BatchMembers,
    verdict: Verdict,
) -> None:
    """In one transaction: remember what the batch delivered and mark the batch confirmed.

    Rows Constant Contact refused are not remembered, so the next run sends them again, and
    they are reported with its reason.
    """
    emails = members.emails.to_pylist()
    rows = [
        (export_id, k, e, h, run_id)
        for i, (k, h, e) in enumerate(zip(members.keys.tolist(), members.hashes.tolist(), emails,
                                          strict=True))
        if i not in verdict.refused_rows
    ]
    marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    # Straight to the driver: SQLAlchemy's per-statement work costs more than SQLite's own
    # insert at these volumes. ON CONFLICT ... excluded is the same on SQLite and PostgreSQL.
    # Only the driver's placeholders are formatted in; every value travels as a parameter.
    values = ", ".join([marker] * 5)
    upsert = (
        "INSERT INTO export_members (export_id, email_key, email, values_hash, run_id) "  # noqa: S608
        "VALUES (" + values + ") ON CONFLICT (export_id, email_key) DO UPDATE SET "
        "email = excluded.email, values_hash = excluded.values_hash, run_id = excluded.run_id"
    )
    with engine.begin() as conn:
        if rows:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.executemany(upsert, rows)
            finally:
                cursor.close()
        if verdict.refused_rows:
            ids = members.customer_ids.to_pylist()
            conn.execute(insert(RejectedRow), [
                {"run_id": run_id, "customer_id": ids[i], "email": emails[i],
                 "reason": "rejected_by_constant_contact", "detail": reason}
                for i, reason in sorted(verdict.refused_rows.items())
            ])
        conn.execute(
            update(RunBatch).where(RunBatch.id == batch_id).values(
                state="confirmed", confirmed_at=utcnow(),
                counts={"accepted": verdict.accepted, "rejected": verdict.rejected,
                        "unsubscribed_not_added": verdict.unsubscribed},
                errors=verdict.unattributed_errors[:50],
            )
        )


def forget_members(engine: Engine, *, export_id: str, keys: Sequence[int]) -> None:
    """Drop members the export removed from the list (mirror mode)."""
    with engine.begin() as conn:
        for start in range(0, len(keys), 500):
            conn.execute(delete(ExportMember).where(
                ExportMember.export_id == export_id,
                ExportMember.email_key.in_([int(k) for k in keys[start:start + 500]]),
            ))
