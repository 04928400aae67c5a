"""Constant Contact contact ids learnt for an export's members, kept with its delivered state.

Removing list memberships takes contact ids, never emails (FACTS.md §4.3). A mirror run that
downloads the list's contact export sees the id of every member on the list: they are kept
here (per email key, 16 bytes an id), so a later run looks its leavers up here and needs no
export for them. Conservative by construction:

- ids are kept per list: an id learnt on another list (the export's list changed) is never
  used, and ``forget_export_state`` drops them all;
- only ids in Constant Contact's canonical form (a lower-case UUID, FACTS.md §1) are kept, so
  the id sent is byte for byte the one seen;
- an id two keys claim is used for neither (a contact whose address changed between two
  exports), and a key the export showed twice is not learnt;
- a removal that does not report every contact it named as done forgets its keys' ids (see
  exports/mirror.py): its leavers are looked up again on the list;
- each block of ids keeps when it was learnt (``learnt_at``, just before the export that showed
  them was asked for): an address edit in Constant Contact keeps the contact's id, so before
  an id is used the contacts updated since are checked (exports/mirror.py); an id without a
  ``learnt_at`` (kept before migration 0012) is never used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, delete, func, insert, select

from segment_export.db.models import ExportContactIds

# Past this many rows an export's ids are folded into one when more are learnt.
MAX_ID_BLOCKS = 8
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10, dtype=np.uint8)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16, dtype=np.uint8)
# The hex digits' positions in the 36-character form (the four dashes left out).
_DASHES = np.array([8, 13, 18, 23])
_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


class KeptId(NamedTuple):
    """A usable kept contact id and when it was learnt."""

    contact_id: str
    learnt_at: datetime


def uuid_bytes(ids: pa.Array) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Which of ``ids`` are canonical UUIDs, and all of them as 16 bytes each (zero where not),
    vectorised with numpy over the Arrow buffers."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    ids = pc.fill_null(ids.cast(pa.string()), "")
    n = len(ids)
    out = np.zeros((n, 16), np.uint8)
    if not n:
        return np.zeros(0, bool), out
    offsets = np.frombuffer(ids.buffers()[1], np.int32)[ids.offset:ids.offset + n + 1]
    data = ids.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    valid = (offsets[1:] - offsets[:-1]) == 36
    if not valid.any():
        return valid, out
    if valid.all():  # every value 36 bytes, back to back: a view, no gather
        text = raw[offsets[0]:offsets[0] + 36 * n].reshape(n, 36)
    else:
        text = raw[offsets[:-1][valid][:, None] + np.arange(36)[None, :]]  # (m, 36)
    nibbles = _HEX[text[:, _DIGITS]]
    good = (text[:, _DASHES] == ord("-")).all(axis=1) & (nibbles != 255).all(axis=1)
    where = np.flatnonzero(valid)
    valid[where[~good]] = False
    out[where[good]] = (nibbles[good][:, 0::2] << 4) | nibbles[good][:, 1::2]
    return valid, out


def uuid_text(raw: np.ndarray[Any, Any]) -> str:
    """The canonical text of 16 UUID bytes."""
    h = bytes(raw).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def learn_contact_ids(engine: Engine, *, export_id: str, list_id: str,
                      keys: np.ndarray[Any, Any], ids: pa.Array, learnt_at: datetime) -> int:
    """Keep the contact ids seen for these member keys on ``list_id`` at ``learnt_at`` (no
    later than the moment Constant Contact was asked for them); returns how many.

    A key given twice (two contacts on the list answer to one member's address) is not kept,
    and any id it had before is forgotten.
    """
    valid, raw = uuid_bytes(ids)
    return learn_contact_id_bytes(engine, export_id=export_id, list_id=list_id, keys=keys,
                                  valid=valid, raw=raw, learnt_at=learnt_at)


def learn_contact_id_bytes(engine: Engine, *, export_id: str, list_id: str,
                           keys: np.ndarray[Any, Any], valid: np.ndarray[Any, Any],
                           raw: np.ndarray[Any, Any], learnt_at: datetime) -> int:
    """:func:`learn_contact_ids` with the ids as :func:`uuid_bytes` gave them."""
    keys = np.asarray(keys, np.int64)
    twice = np.zeros(keys.size, bool)
    if keys.size > 1:
        # (At a million members: one sorted copy of the keys to learn that none is twice,
        # the usual case, before the order that names which.)
        ordered = np.sort(keys)
        repeated = bool((ordered[1:] == ordered[:-1]).any())
        del ordered
        if repeated:
            order = np.argsort(keys, kind="stable")
            same = keys[order[1:]] == keys[order[:-1]]
            twice[order[1:][same]] = True
            twice[order[:-1][same]] = True
            del order, same
    keep = valid | twice  # a twice-seen key is written with no id: it forgets an older one
    if not keep.any():
        return 0
    # The caller's arrays are never changed: selecting makes copies, and so does zeroing the
    # twice-seen keys' ids when nothing was left out (the usual case writes them as given).
    if not keep.all():
        keys, raw = keys[keep], raw[keep]
    elif twice.any():
        raw = raw.copy()
    if twice.any():
        raw[twice[keep]] = 0
    if twice.any():  # one row per key
        first = np.unique(keys, return_index=True)[1]
        keys, raw = keys[first], raw[first]
    _write(engine, export_id=export_id, list_id=list_id, keys=keys, raw=raw,
           learnt_at=learnt_at)
    words = np.ascontiguousarray(raw).view("<u8").reshape(-1, 2)
    return int(((words[:, 0] | words[:, 1]) != 0).sum())


def forget_contact_ids(engine: Engine, *, export_id: str, list_id: str,
                       keys: np.ndarray[Any, Any]) -> None:
    """Forget the ids of these keys (a removal that named them did not report them done)."""
    keys = np.unique(np.asarray(keys, np.int64))
    if keys.size:
        _write(engine, export_id=export_id, list_id=list_id, keys=keys,
               raw=np.zeros((keys.size, 16), np.uint8), learnt_at=None)


def known_contact_ids(engine: Engine, *, export_id: str, list_id: str,
                      keys: np.ndarray[Any, Any]) -> dict[int, str]:
    """key -> contact id for those of ``keys`` with a usable id on ``list_id``."""
    kept = kept_contact_ids(engine, export_id=export_id, list_id=list_id, keys=keys)
    return {key: item.contact_id for key, item in kept.items()}


def kept_contact_ids(engine: Engine, *, export_id: str, list_id: str,
                     keys: np.ndarray[Any, Any]) -> dict[int, KeptId]:
    """key -> contact id and when it was learnt, for those of ``keys`` with a usable id on
    ``list_id`` (one with a ``learnt_at``, claimed by no other key)."""
    keys = np.asarray(keys, np.int64)
    if not keys.size:
        return {}
    with engine.connect() as conn:
        all_keys, raw, learnt = _overlaid(conn, export_id, list_id)
    if not all_keys.size:
        return {}
    # (Every step over the export's ids, up to a million, makes 8 bytes an id at most: the
    # few asked for are looked up in the whole sorted table, never in filtered copies of it.)
    words = np.ascontiguousarray(raw).view("<u8").reshape(-1, 2)
    known = (words[:, 0] | words[:, 1]) != 0
    # An id two keys claim belongs to one contact at most: neither key uses it.
    # (Compared by a 64-bit mix of the 16 bytes: a collision only drops two more ids.)
    mixed = words[:, 0] ^ (words[:, 1] * np.uint64(0x9E3779B97F4A7C15))
    ordered = np.sort(mixed[known])
    claimed_twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    position = np.minimum(np.searchsorted(all_keys, keys), all_keys.size - 1)
    # An id with no learnt_at cannot be checked for an address edit since: not used.
    hit = ((all_keys[position] == keys) & known[position] & ~np.isnan(learnt[position])
           & ~np.isin(mixed[position], claimed_twice))
    return {int(k): KeptId(uuid_text(raw[p]), datetime.fromtimestamp(float(learnt[p]), UTC))
            for k, p, h in zip(keys.tolist(), position.tolist(), hit.tolist(), strict=True)
            if h}


def _overlaid(conn: Any, export_id: str, list_id: str,
              ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The export's keys on ``list_id``, sorted, each with its latest 16 id bytes and when
    they were learnt (epoch seconds; NaN: not known)."""
    key_parts, id_parts, learnt_parts = [], [], []
    for row in conn.execute(select(ExportContactIds.keys, ExportContactIds.contact_ids,
                                   ExportContactIds.learnt_at).where(
            ExportContactIds.export_id == export_id, ExportContactIds.list_id == list_id,
    ).order_by(ExportContactIds.id)):
        block = np.frombuffer(row.keys, "<i8").astype(np.int64)
        key_parts.append(block)
        id_parts.append(np.frombuffer(row.contact_ids, np.uint8).reshape(-1, 16))
        learnt_parts.append(np.full(block.size, row.learnt_at.timestamp()
                                    if row.learnt_at is not None else np.nan))
    if not key_parts:
        return np.empty(0, np.int64), np.zeros((0, 16), np.uint8), np.empty(0)
    keys = np.concatenate(key_parts)
    raw = np.concatenate(id_parts)
    learnt = np.concatenate(learnt_parts)
    order = np.argsort(keys, kind="stable")  # equal keys keep row order: the last one wins
    ordered = keys[order]
    last = np.ones(ordered.size, bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    picked = order[last]
    return keys[picked], raw[picked], learnt[picked]


def _write(engine: Engine, *, export_id: str, list_id: str, keys: np.ndarray[Any, Any],
           raw: np.ndarray[Any, Any], learnt_at: datetime | None) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ExportContactIds).values(
            export_id=export_id, list_id=list_id, members=int(keys.size),
            # The arrays' own bytes, not copies: the driver copies them once more anyway
            # (24 MB a million members).
            keys=np.ascontiguousarray(keys, "<i8").data.cast("B"),
            contact_ids=np.ascontiguousarray(raw, np.uint8).data.cast("B"),
            learnt_at=learnt_at))
        rows = conn.execute(select(func.count()).select_from(ExportContactIds).where(
            ExportContactIds.export_id == export_id)).scalar_one()
        if rows <= MAX_ID_BLOCKS:
            return
        # Fold: one row of the current list's ids (forgotten ones, and ones with no learnt_at,
        # dropped); other lists' go. The row is as old as the oldest ids it keeps.
        folded_keys, folded, learnt = _overlaid(conn, export_id, list_id)
        known = folded.any(axis=1) & ~np.isnan(learnt)
        conn.execute(delete(ExportContactIds).where(ExportContactIds.export_id == export_id))
        if known.any():
            conn.execute(insert(ExportContactIds).values(
                export_id=export_id, list_id=list_id, members=int(known.sum()),
                keys=np.ascontiguousarray(folded_keys[known], "<i8").tobytes(),
                contact_ids=np.ascontiguousarray(folded[known], np.uint8).tobytes(),
                learnt_at=datetime.fromtimestamp(float(learnt[known].min()), UTC)))
