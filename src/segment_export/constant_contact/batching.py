"""Contacts serialized into contacts_json_import bodies that stay within both hard limits."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Any

import orjson

from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_

MAX_CONTACTS_PER_IMPORT = 40_000
# "less than 4 MB": read as 4,000,000 bytes, the smaller of the two meanings. Past it Constant
# Contact silently drops the rest of the body, so the batcher never gets near it.
HARD_MAX_BYTES = 4_000_000
DEFAULT_MAX_BYTES = 3_900_000
MAX_LIST_IDS = 50
_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class ImportFrame:
    """What every import body for one set of lists shares, checked once: the bytes around the
    contacts and how many contacts' bytes fit between them.

    Each contact costs its serialized length plus one comma, and the last comma is not sent,
    so ``capacity`` is one more than the bytes left for contacts. The pipeline's Arrow cutter
    (``exports/bodies.py``) and :func:`iter_import_bodies` both cut by this frame.
    """

    head: bytes
    tail: bytes
    capacity: int
    max_contacts: int

    @classmethod
    def of(cls, list_ids: Sequence[str], *, max_contacts: int = MAX_CONTACTS_PER_IMPORT,
           max_bytes: int = DEFAULT_MAX_BYTES, sms_permission: str | None = None) -> ImportFrame:
        """The frame for ``list_ids``; ``sms_permission`` is the body's ``sms_permission_to_send``
        (Constant Contact sets it per body, not per contact). Limits out of range raise
        ConfigurationError."""
        if not 1 <= len(list_ids) <= MAX_LIST_IDS:
            raise ConfigurationError(
                N_("An import needs 1 to %(max_list_ids)s list ids, not %(count)s"),
                values={"max_list_ids": MAX_LIST_IDS, "count": len(list_ids)})
        if not 1 <= max_contacts <= MAX_CONTACTS_PER_IMPORT:
            raise ConfigurationError(N_("max_contacts must be 1..%(max_contacts_per_import)s"),
                                     values={"max_contacts_per_import": MAX_CONTACTS_PER_IMPORT})
        if max_bytes >= HARD_MAX_BYTES:
            raise ConfigurationError(N_("max_bytes must stay below %(hard_max_bytes)s"),
                                     values={"hard_max_bytes": HARD_MAX_BYTES})
        permission = (b'"sms_permission_to_send":' + orjson.dumps(sms_permission) + b","
                      if sms_permission else b"")
        head = (b'{"list_ids":' + orjson.dumps(list(list_ids)) + b"," + permission
                + b'"import_data":[')
        tail = b"]}"
        if len(head) + len(tail) >= max_bytes:
            raise ConfigurationError(N_("max_bytes is too small for even an empty import body"))
        return cls(head, tail, max_bytes - len(head) - len(tail) + 1, max_contacts)


@dataclass(frozen=True, slots=True)
class ImportBatch:
    """One import request: ``body`` is exactly what is sent, ``nbytes == len(body)``.

    ``start`` is the index in the input of the first contact carried, so the batch holds input
    contacts ``start`` to ``start + count - 1``; ``emails`` lists their ``email`` values (None
    for a contact without one) in order.
    """

    body: bytes
    count: int
    nbytes: int
    start: int
    emails: Sequence[str | None]

    @property
    def stop(self) -> int:
        """One past the index of the last contact carried."""
        return self.start + self.count


def iter_import_bodies(
    contacts: Iterable[dict[str, Any]],
    *,
    list_ids: Sequence[str],
    max_contacts: int = MAX_CONTACTS_PER_IMPORT,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Iterator[ImportBatch]:
    """Stream ``contacts`` into import bodies of at most ``max_contacts`` and ``max_bytes`` each.

    Each contact is serialized once (orjson) and the body is the joined pieces, so the size is
    measured on the very bytes sent, never estimated. Input order is kept. A contact that alone
    cannot fit raises DataError (validation caps field lengths, so this means a bug upstream).
    """
    frame = ImportFrame.of(list_ids, max_contacts=max_contacts, max_bytes=max_bytes)
    head, tail, capacity = frame.head, frame.tail, frame.capacity

    # Work in chunks so that serializing, measuring and cutting run in C (map, accumulate,
    # bisect) rather than as Python statements per contact: 1M contacts take about a second.
    # Runs of serialized contacts, each already joined: orjson hands back every contact in a
    # buffer of about 4 KB, so holding 40,000 single pieces would cost 160 MB, not 4 MB.
    pieces: list[bytes] = []
    count = 0  # contacts in pieces
    emails: list[str | None] = []
    used = 0  # sum of (len(piece) + 1) over the contacts in pieces
    start = 0  # input index of the first contact in pieces
    offset = 0  # input index of chunk[0]
    iterator = iter(contacts)
    while chunk := list(islice(iterator, _CHUNK)):
        serialized = list(map(orjson.dumps, chunk))
        costs = [n + 1 for n in map(len, serialized)]
        too_big = next((i for i, cost in enumerate(costs) if cost > capacity), None)
        if too_big is not None:
            # Emit what precedes the offending contact, as the per-contact loop would have.
            del chunk[too_big + 1 :], serialized[too_big:], costs[too_big:]
        cumulative = list(accumulate(costs))
        position = 0
        while position < len(serialized):
            if not count:
                start = offset + position
            base = cumulative[position - 1] if position else 0
            fit = bisect_right(cumulative, base + capacity - used, lo=position) - position
            fit = min(fit, max_contacts - count)
            if fit == 0:
                yield _batch(head, pieces, tail, start, emails, count)
                pieces, emails, used, count = [], [], 0, 0
                continue
            end = position + fit
            pieces.append(b",".join(serialized[position:end]))
            count += fit
            emails.extend(c.get("email") for c in chunk[position:end])
            used += cumulative[end - 1] - base
            position = end
            if count >= max_contacts:
                yield _batch(head, pieces, tail, start, emails, count)
                pieces, emails, used, count = [], [], 0, 0
        if too_big is not None:
            if pieces:  # everything before the offending contact is still delivered
                yield _batch(head, pieces, tail, start, emails, count)
            index = offset + too_big
            raise DataError(
                N_("Contact #%(index)s alone serializes to %(size)s bytes, more than an import "
                   "body may carry (%(value)s)"),
                values={"index": index, "size": len(orjson.dumps(chunk[too_big])),
                        "value": capacity - 1},
                index=index, email=chunk[too_big].get("email"))
        offset += len(chunk)
    if pieces:
        yield _batch(head, pieces, tail, start, emails, count)


def _batch(
    head: bytes, pieces: list[bytes], tail: bytes, start: int, emails: list[str | None],
    count: int,
) -> ImportBatch:
    body = b"".join((head, b",".join(pieces), tail))
    return ImportBatch(body=body, count=count, nbytes=len(body), start=start, emails=emails)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "HARD_MAX_BYTES",
    "MAX_CONTACTS_PER_IMPORT",
    "MAX_LIST_IDS",
    "ImportBatch",
    "ImportFrame",
    "iter_import_bodies",
]
