"""Recording what a batch delivered: the export's member state and Constant Contact's verdicts."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from segment_export.constant_contact import Activity
from segment_export.db.models import ExportMember, ExportMemberBlock, RejectedRow, Run, RunBatch
from segment_export.db.types import utcnow
from segment_export.definitions.phones import SMS_KEY_PREFIX

_ROW_ERROR = re.compile(r"^Row (\d+)(?: \((.*?)\))?: (.*)$")
# Past this many blocks an export's state is folded into one at the start of its next run.
MAX_BLOCKS = 64
# The values hash of members whose delivery is unknown; real hashes never take it (a 64-bit
# hash meets it by chance once in 2**64).
UNCERTAIN_HASH = -0x0F0F_0F0F_0F0F_0F0F
_FETCH_ROWS = 50_000


# Marks a batch's members packed with their emails and customer ids (see BatchMembers.pack);
# a blob without it holds only the keys and hashes (written before they were added).
_PACKED = b"SEXBM02\x00"
# Marks the leavers one removal carries (see RemovalMembers.pack).
_REMOVAL = b"SEXRM01\x00"


@dataclass(slots=True)
class BatchMembers:
    """The contacts one request carries, in the order they were serialized (about 60 bytes a
    contact: numpy and Arrow arrays)."""

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
        """Everything in one blob, kept on the batch's row: a run resumed after a crash settles
        the batches its last attempt left in flight with whom they really carried, even a
        contact that has left the segment since (its email could not be looked up again)."""
        return _pack_blob(_PACKED, (self.keys, self.hashes),
                          {"email": self.emails, "customer_id": self.customer_ids})

    @staticmethod
    def unpack(blob: bytes) -> BatchMembers | None:
        """The members :meth:`pack` made, or None for a blob of keys and hashes only."""
        if not blob.startswith(_PACKED):
            return None
        (keys, hashes), strings = _unpack_blob(blob, _PACKED, 2)
        return BatchMembers(keys, hashes, strings.column("email").combine_chunks(),
                            strings.column("customer_id").combine_chunks())

    @staticmethod
    def unpack_keys(blob: bytes) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The email keys and value hashes of a packed batch, in either form."""
        members = BatchMembers.unpack(blob)
        if members is not None:
            return members.keys, members.hashes
        both = np.frombuffer(blob, "<i8")
        half = both.size // 2
        return both[:half], both[half:]


@dataclass(slots=True)
class RemovalMembers:
    """The leavers one ``remove_list_memberships`` request carries: their email keys, emails
    and Constant Contact contact ids, in request order."""

    keys: np.ndarray[Any, np.dtype[np.int64]]
    emails: pa.Array
    contact_ids: pa.Array

    @classmethod
    def of(cls, keys: Sequence[int], emails: Sequence[str],
           contact_ids: Sequence[str]) -> RemovalMembers:
        return cls(np.array(keys, np.int64), pa.array(emails, pa.string()),
                   pa.array(contact_ids, pa.string()))

    def __len__(self) -> int:
        return int(self.keys.size)

    def pack(self) -> bytes:
        """One blob, kept on the removal's row before it is sent: a resumed run settles a
        removal its last attempt left unconfirmed with exactly whom it named."""
        return _pack_blob(_REMOVAL, (self.keys,),
                          {"email": self.emails, "contact_id": self.contact_ids})

    @staticmethod
    def unpack(blob: bytes | None) -> RemovalMembers | None:
        """The leavers :meth:`pack` made; None for anything else (or a purged blob)."""
        if not blob or not blob.startswith(_REMOVAL):
            return None
        (keys,), strings = _unpack_blob(blob, _REMOVAL, 1)
        return RemovalMembers(keys, strings.column("email").combine_chunks(),
                              strings.column("contact_id").combine_chunks())


@dataclass(slots=True)
class Verdict:
    """Constant Contact's counts for one completed import, and the rows it named as refused."""

    accepted: int
    rejected: int
    unsubscribed: int
    refused_rows: dict[int, str]  # 0-based index in the batch -> Constant Contact's reason
    unattributed_errors: list[str]

    @property
    def unnamed_rejections(self) -> int:
        """Rows the counts say were refused but no error names (Constant Contact names none:
        its ``activity_errors`` are free text, FACTS.md "Changes since the spec builds")."""
        return max(self.rejected - len(self.refused_rows), 0)


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
    they are reported with its reason. What was delivered is one packed block (see
    :func:`load_members`), whatever the batch's size.

    When the counts say rows were refused but nothing names them (Constant Contact's errors
    are free text), nobody in the batch is known to be delivered: its members are remembered
    as uncertain (:data:`UNCERTAIN_HASH`), so the next run sends them all again (an import is
    an upsert, so the accepted ones are merely refreshed) and none refused is lost. The batch
    gets one report row with Constant Contact's words.
    """
    unnamed = verdict.unnamed_rejections
    kept = members
    if verdict.refused_rows and not unnamed:
        keep = np.ones(len(members), dtype=bool)
        keep[[i for i in verdict.refused_rows if i < len(members)]] = False
        kept = BatchMembers(members.keys[keep], members.hashes[keep],
                            members.emails.filter(pa.array(keep)),
                            members.customer_ids.filter(pa.array(keep)))
    counts = {"accepted": verdict.accepted, "rejected": verdict.rejected,
              "unsubscribed_not_added": verdict.unsubscribed}
    if not unnamed and len(kept):
        # SMS-only contacts delivered (keyed sms:<E.164>, docs/sms.md), for the run's counts.
        sms_only = int(pc.sum(pc.starts_with(kept.emails, SMS_KEY_PREFIX)).as_py() or 0)
        if sms_only:
            counts["sms_only"] = sms_only
    with engine.begin() as conn:
        if unnamed:
            _remember_uncertain(conn, export_id=export_id, run_id=run_id, keys=members.keys,
                                emails=members.emails)
            counts["rejected_unnamed"] = unnamed
        elif len(kept):
            conn.execute(insert(ExportMemberBlock).values(
                export_id=export_id, run_id=run_id, kind="delivered", members=len(kept),
                keys=_pack_ints(kept.keys), hashes=_pack_ints(kept.hashes),
                emails=_pack_strings(kept.emails)))
        rejected = _refused_rows(run_id, members, verdict.refused_rows)
        if unnamed:
            said = "; ".join(verdict.unattributed_errors) or "no message"
            rejected.append({
                "run_id": run_id, "customer_id": None, "email": None,
                "reason": "rejected_by_constant_contact",
                "detail": (f"Constant Contact refused {unnamed:,} of the {len(members):,} "
                           f"contacts of this request without naming them ({said}); all of "
                           "them are sent again on the next run")[:2000]})
        if rejected:
            conn.execute(insert(RejectedRow), rejected)
        conn.execute(
            update(RunBatch).where(RunBatch.id == batch_id).values(
                state="confirmed", confirmed_at=utcnow(), counts=counts,
                errors=verdict.unattributed_errors[:50],
            )
        )


def _refused_rows(run_id: str, members: BatchMembers,
                  refused: Mapping[int, str]) -> list[dict[str, Any]]:
    if not refused:  # the usual batch: not 80,000 Python strings for nothing
        return []
    ids = members.customer_ids.to_pylist()
    emails = members.emails.to_pylist()
    return [{"run_id": run_id, "customer_id": ids[i], "email": emails[i],
             "reason": "rejected_by_constant_contact", "detail": reason}
            for i, reason in sorted(refused.items()) if i < len(members)]


def record_uncertain(engine: Engine, *, export_id: str, run_id: str, batch_id: int,
                     members: BatchMembers) -> None:
    """Remember a batch whose import may or may not have reached the list (its answer was
    lost), and mark the batch ``unknown``.

    Its members are remembered with :data:`UNCERTAIN_HASH`, which no contact's values give:
    the next diff sends those still in the segment again, and mirror mode removes those that
    left, so neither a delivery nor a leaver is lost track of.
    """
    with engine.begin() as conn:
        _remember_uncertain(conn, export_id=export_id, run_id=run_id, keys=members.keys,
                            emails=members.emails)
        conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(state="unknown"))


def forget_members(engine: Engine, *, export_id: str, keys: Sequence[int]) -> None:
    """Drop members the export removed from the list (mirror mode): one block of removals."""
    if len(keys) == 0:
        return
    with engine.begin() as conn:
        conn.execute(insert(ExportMemberBlock).values(
            export_id=export_id, run_id=None, kind="removed", members=len(keys),
            keys=_pack_ints(np.asarray(keys, dtype=np.int64))))


def record_removed(engine: Engine, *, export_id: str, batch_id: int,
                   members: RemovalMembers) -> None:
    """In one transaction: forget the leavers a completed removal took off the list and mark
    the removal confirmed. From here on they are not the export's: a person who adds one back
    by hand keeps it on the list (until it rejoins the segment and is delivered again)."""
    with engine.begin() as conn:
        if len(members):
            conn.execute(insert(ExportMemberBlock).values(
                export_id=export_id, run_id=None, kind="removed", members=len(members),
                keys=_pack_ints(members.keys)))
        conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(
            state="confirmed", confirmed_at=utcnow(), counts={"removed": len(members)}))


def record_removal_unsettled(engine: Engine, *, export_id: str, run_id: str, batch_id: int,
                             members: RemovalMembers, state: str,
                             errors: Sequence[str] = ()) -> None:
    """A removal that did not end completed (``failed``) or whose outcome is unknown
    (``unknown``: its answer never came, or its activity is gone): in one transaction mark the
    batch and remember its leavers as delivered with :data:`UNCERTAIN_HASH`.

    They stay the export's: mirror mode removes those still on the list, and a leaver who
    rejoined the segment meanwhile is sent again (a failed removal may have taken some off).
    """
    with engine.begin() as conn:
        _remember_uncertain(conn, export_id=export_id, run_id=run_id, keys=members.keys,
                            emails=members.emails)
        conn.execute(update(RunBatch).where(RunBatch.id == batch_id).values(
            state=state, errors=list(errors)[:50]))


def record_off_list(engine: Engine, *, export_id: str, run_id: str,
                    keys: Sequence[int]) -> None:
    """Forget leavers that are no longer on the list (removed by hand, unsubscribed, deleted,
    or by a removal whose answer was lost) and count them on the run, in one transaction."""
    if len(keys) == 0:
        return
    with engine.begin() as conn:
        conn.execute(insert(ExportMemberBlock).values(
            export_id=export_id, run_id=None, kind="removed", members=len(keys),
            keys=_pack_ints(np.asarray(keys, dtype=np.int64))))
        counts = conn.execute(select(Run.counts).where(Run.id == run_id)).scalar_one()
        conn.execute(update(Run).where(Run.id == run_id).values(counts={
            **counts, "already_off_list": int(counts.get("already_off_list", 0)) + len(keys)}))


def _remember_uncertain(conn: Connection, *, export_id: str, run_id: str,
                        keys: np.ndarray[Any, Any], emails: pa.Array) -> None:
    """Keep members whose delivery (or removal) is unknown as delivered with
    :data:`UNCERTAIN_HASH`, so the next diff decides them again."""
    if len(keys):
        conn.execute(insert(ExportMemberBlock).values(
            export_id=export_id, run_id=run_id, kind="delivered", members=len(keys),
            keys=_pack_ints(keys),
            hashes=_pack_ints(np.full(len(keys), UNCERTAIN_HASH, dtype=np.int64)),
            emails=_pack_strings(emails)))


@dataclass(slots=True)
class DeliveredMembers:
    """An export's delivered state: email keys sorted, their value hashes and (if asked) emails."""

    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]]
    emails: pa.Array | None = None

    def __len__(self) -> int:
        return int(self.keys.size)


@dataclass(slots=True)
class _Part:
    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]] | None  # None: these keys were removed
    emails: pa.Array | None


def load_members(engine: Engine, export_id: str, *, run_id: str | None = None,
                 emails: bool = False) -> DeliveredMembers:
    """The export's delivered state: its ``export_members`` rows overlaid with its blocks.

    Blocks apply oldest first: a later delivery of a key replaces an earlier one, a removal
    drops it. With ``run_id``, only what that run delivered. Emails are read only if asked.
    """
    with engine.connect() as conn:
        return _load(conn, export_id, run_id=run_id, emails=emails)


def _load(conn: Connection, export_id: str, *, run_id: str | None,
          emails: bool) -> DeliveredMembers:
    parts = [_rows_part(conn, export_id, run_id=run_id, emails=emails)]
    query = select(ExportMemberBlock.kind, ExportMemberBlock.keys, ExportMemberBlock.hashes,
                   *([ExportMemberBlock.emails] if emails else [])).where(
        ExportMemberBlock.export_id == export_id).order_by(ExportMemberBlock.id)
    if run_id is not None:
        query = query.where(ExportMemberBlock.run_id == run_id)
    for row in conn.execute(query):
        removed = row.kind == "removed"
        parts.append(_Part(
            _unpack_ints(row.keys),
            None if removed else _unpack_ints(row.hashes),
            None if removed or not emails else _unpack_strings(row.emails)))
    return _overlay(parts, emails=emails)


def delivered_emails(engine: Engine, export_id: str,
                     keys: np.ndarray[Any, Any]) -> dict[str, int]:
    """email -> key for those of ``keys`` the export's delivered state holds.

    The state as :func:`load_members` overlays it (later parts win per key, a removal drops
    it), read one part at a time and keeping only the wanted keys' emails: a mirror run asks
    for its leavers' (~1 % of the members), never for the whole state's emails at once.
    """
    wanted = np.unique(np.asarray(keys, np.int64))
    found: dict[int, str | None] = {}
    if not wanted.size:
        return {}

    def overlay(part_keys: np.ndarray[Any, Any], emails: Any, *, removed: bool) -> None:
        hit = np.flatnonzero(_sorted_in(part_keys, wanted))
        if not hit.size:
            return
        if removed:
            for key in part_keys[hit].tolist():
                found.pop(key, None)
            return
        values = emails(hit)
        for key, email in zip(part_keys[hit].tolist(), values, strict=True):
            found.pop(key, None)  # re-inserted: the dict's order is not the state's
            found[key] = email

    with engine.connect() as conn:
        for part_keys, part_emails in _row_chunks(conn, export_id):
            overlay(part_keys, lambda hit, e=part_emails: [e[i] for i in hit.tolist()],
                    removed=False)
        query = select(ExportMemberBlock.id, ExportMemberBlock.kind,
                       ExportMemberBlock.keys).where(
            ExportMemberBlock.export_id == export_id).order_by(ExportMemberBlock.id)
        for row in conn.execute(query).all():
            removed = row.kind == "removed"

            def emails(hit: np.ndarray[Any, Any], block_id: int = row.id) -> list[str | None]:
                blob = conn.execute(select(ExportMemberBlock.emails).where(
                    ExportMemberBlock.id == block_id)).scalar_one()
                if blob is None:
                    return [None] * int(hit.size)
                return list(_unpack_strings(blob).take(pa.array(hit)).to_pylist())

            overlay(_unpack_ints(row.keys), emails, removed=removed)
    return {email: key for key, email in found.items() if email is not None}


def _sorted_in(values: np.ndarray[Any, Any], sorted_keys: np.ndarray[Any, Any]) -> Any:
    """``np.isin(values, sorted_keys)`` for a sorted ``sorted_keys``, by binary search."""
    if not sorted_keys.size or not values.size:
        return np.zeros(values.shape, bool)
    position = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[position] == values


def _row_chunks(conn: Connection, export_id: str,
                ) -> Iterator[tuple[np.ndarray[Any, Any], list[str | None]]]:
    """The export's ``export_members`` rows (written before blocks existed), as keys and
    emails, a fetch at a time."""
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = ("SELECT email_key, email FROM export_members WHERE export_id = "  # noqa: S608
           + marker)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, (export_id,))
        while rows := cursor.fetchmany(_FETCH_ROWS):
            columns = list(zip(*rows, strict=True))
            yield np.array(columns[0], dtype=np.int64), list(columns[1])
    finally:
        cursor.close()


def compact_members(engine: Engine, export_id: str, *, max_blocks: int = MAX_BLOCKS) -> bool:
    """Fold the export's rows and blocks into one block once there are more than ``max_blocks``
    blocks (or any rows, written before blocks existed), so reading the state stays one
    sequential read. The state itself does not change. Returns whether it folded.
    """
    with engine.connect() as conn:
        blocks = conn.execute(select(func.count()).select_from(ExportMemberBlock).where(
            ExportMemberBlock.export_id == export_id)).scalar_one()
        has_rows = conn.execute(select(ExportMember.email_key).where(
            ExportMember.export_id == export_id).limit(1)).first() is not None
    if blocks <= max_blocks and not has_rows:
        return False
    with engine.begin() as conn:
        last = conn.execute(select(func.max(ExportMemberBlock.id)).where(
            ExportMemberBlock.export_id == export_id)).scalar()
        state = _load(conn, export_id, run_id=None, emails=True)
        assert state.emails is not None
        conn.execute(delete(ExportMember).where(ExportMember.export_id == export_id))
        conn.execute(delete(ExportMemberBlock).where(ExportMemberBlock.export_id == export_id,
                                                     ExportMemberBlock.id <= (last or 0)))
        if len(state):
            conn.execute(insert(ExportMemberBlock).values(
                export_id=export_id, run_id=None, kind="delivered", members=len(state),
                keys=_pack_ints(state.keys), hashes=_pack_ints(state.hashes),
                emails=_pack_strings(state.emails)))
    return True


def _rows_part(conn: Connection, export_id: str, *, run_id: str | None,
               emails: bool) -> _Part:
    """The export's ``export_members`` rows, straight through the driver's cursor: building a
    SQLAlchemy Row per member costs more than the database's own read of a million of them."""
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    # Only the driver's placeholders are formatted in; the ids travel as parameters.
    wanted = "email_key, values_hash" + (", email" if emails else "")
    sql = "SELECT " + wanted + " FROM export_members WHERE export_id = " + marker  # noqa: S608
    params: tuple[str, ...] = (export_id,)
    if run_id is not None:
        sql += " AND run_id = " + marker
        params += (run_id,)
    key_blocks: list[np.ndarray[Any, Any]] = []
    hash_blocks: list[np.ndarray[Any, Any]] = []
    email_blocks: list[pa.Array] = []
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(_FETCH_ROWS):
            columns = list(zip(*rows, strict=True))
            key_blocks.append(np.array(columns[0], dtype=np.int64))
            hash_blocks.append(np.array(columns[1], dtype=np.int64))
            if emails:
                email_blocks.append(pa.array(columns[2], pa.string()))
    finally:
        cursor.close()
    empty = np.empty(0, np.int64)
    return _Part(
        np.concatenate(key_blocks) if key_blocks else empty,
        np.concatenate(hash_blocks) if hash_blocks else empty,
        (pa.concat_arrays(email_blocks) if email_blocks else pa.array([], pa.string()))
        if emails else None)


def _overlay(parts: list[_Part], *, emails: bool) -> DeliveredMembers:
    """Later parts win per key; a removal part drops its keys. Sorted by key."""
    parts = [p for p in parts if p.keys.size]
    if not parts:
        return DeliveredMembers(np.empty(0, np.int64), np.empty(0, np.int64),
                                pa.array([], pa.string()) if emails else None)
    keys = np.concatenate([p.keys for p in parts])
    hashes = np.concatenate([p.hashes if p.hashes is not None else np.zeros_like(p.keys)
                             for p in parts])
    present = np.concatenate([np.full(p.keys.size, p.hashes is not None) for p in parts])
    order = np.argsort(keys, kind="stable")  # equal keys stay in part order: last one wins
    ordered = keys[order]
    last = np.ones(ordered.size, dtype=bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    picked = order[last]
    picked = picked[present[picked]]
    found_emails = None
    if emails:
        strings = pa.chunked_array(
            [p.emails if p.emails is not None else pa.nulls(p.keys.size, pa.string())
             for p in parts], pa.string())
        found_emails = strings.take(pa.array(picked)).combine_chunks()
    return DeliveredMembers(keys[picked], hashes[picked], found_emails)


def _pack_ints(values: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(values, dtype="<i8").tobytes()


def _pack_blob(magic: bytes, ints: Sequence[np.ndarray[Any, Any]],
               strings: Mapping[str, pa.Array]) -> bytes:
    """``magic``, the row count, each int64 column, then the text columns as one Arrow IPC
    stream: the layout of a batch's or a removal's members on its row."""
    batch = pa.record_batch([values.cast(pa.string()) for values in strings.values()],
                            names=list(strings))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return b"".join((magic, np.uint64(len(ints[0])).astype("<u8").tobytes(),
                     *(_pack_ints(values) for values in ints), sink.getvalue().to_pybytes()))


def _unpack_blob(blob: bytes, magic: bytes, int_columns: int,
                 ) -> tuple[list[np.ndarray[Any, np.dtype[np.int64]]], pa.Table]:
    """The int64 columns and the text table :func:`_pack_blob` wrote after ``magic``."""
    count = int(np.frombuffer(blob, "<u8", 1, len(magic))[0])
    start = len(magic) + 8
    ints = [np.frombuffer(blob, "<i8", count, start + 8 * count * i).astype(np.int64)
            for i in range(int_columns)]
    strings = pa.ipc.open_stream(memoryview(blob)[start + 8 * count * int_columns:]).read_all()
    return ints, strings


def _unpack_ints(blob: bytes | None) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.frombuffer(blob or b"", "<i8").astype(np.int64)


def _pack_strings(values: pa.Array) -> bytes:
    batch = pa.record_batch([values.cast(pa.string())], names=["email"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def _unpack_strings(blob: bytes | None) -> pa.Array:
    if not blob:
        return pa.array([], pa.string())
    table = pa.ipc.open_stream(blob).read_all()
    return table.column(0).combine_chunks()
