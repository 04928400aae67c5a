"""Stage 5a of a run: import bodies built column by column from Arrow, without a dict per contact.

Each contact's JSON object is assembled with Arrow's string kernels, byte for byte what
``orjson.dumps`` makes of the dict with the contact's non-empty fields, and bodies are cut by the
same frame and rules as :func:`segment_export.constant_contact.iter_import_bodies`
(:class:`~segment_export.constant_contact.ImportFrame`): in order, as many contacts as fit both
40,000 contacts and the byte limit. The client's batcher takes dicts, one at a time, for any
caller of the client; this one takes Arrow columns for the run, about ten times faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from segment_export.constant_contact import (
    DEFAULT_MAX_BYTES,
    MAX_CONTACTS_PER_IMPORT,
    ImportBatch,
    ImportFrame,
)
from segment_export.definitions.phones import SMS_KEY_PREFIX
from segment_export.errors import DataError
from segment_export.exports.delivery import BatchMembers
from segment_export.exports.diff import Delivered, DiffTotals, select_changes
from segment_export.exports.validate import ValidatedMembers
from segment_export.languages import N_

T = TypeVar("T")
Ready = tuple[ImportBatch, BatchMembers]  # a body to send, and the contacts it carries

# The bytes JSON escapes in a string: the control characters, quote and backslash. Values
# holding one are rare (validation trims whitespace), so orjson escapes just those values.
_ESCAPED = np.zeros(256, dtype=bool)
_ESCAPED[:0x20] = _ESCAPED[ord('"')] = _ESCAPED[ord("\\")] = True


def _escaped_text(values: pa.Array) -> pa.Array:
    """The strings as they go between a JSON string's quotes (null stays null)."""
    if not len(values):
        return values
    offsets = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)
    data = np.frombuffer(values.buffers()[2], np.uint8, int(offsets[-1] - offsets[0]),
                         int(offsets[0])) if values.buffers()[2] is not None else np.empty(0)
    found = np.flatnonzero(_ESCAPED[data])
    if not found.size:
        return values
    rows = np.unique(np.searchsorted(offsets, found + offsets[0], side="right") - 1)
    escaped = [orjson.dumps(v).decode()[1:-1] for v in values.take(pa.array(rows)).to_pylist()]
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(values, pa.array(mask), pa.array(escaped, pa.string()))


def _field_parts(name: str, values: pa.Array, *, first: bool) -> list[Any]:
    """What a field adds to each contact's object, as arguments of one string join: its key,
    its value as JSON, and for a null value nothing at all."""
    key = ("" if first else ",") + orjson.dumps(name).decode() + ":"
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        parts: list[Any] = [key + '"', _escaped_text(values.cast(pa.string())), '"']
    elif pa.types.is_integer(kind):
        parts = [key, pc.cast(values, pa.string())]
    else:  # anything else validation lets through is rare: orjson writes it, value by value
        parts = [key, pa.array([None if v is None else orjson.dumps(v).decode()
                                for v in values.to_pylist()], pa.string())]
    if not values.null_count:
        return parts
    return [pc.fill_null(pc.binary_join_element_wise(*parts, ""), "")]


def contact_objects(contacts: pa.Table) -> pa.Array:
    """Per contact, its JSON object followed by a comma: ``{"email":"a@b.c","first_name":"A"},``.

    Every column but ``customer_id`` is a field, in column order; a null field is left out, as
    an import updates only the keys it carries. The trailing comma lets a body be one slice of
    the array's data. Built with Arrow's string kernels, one join for the whole object.
    """
    names = [n for n in contacts.column_names if n != "customer_id"]
    columns = [contacts.column(n).combine_chunks() for n in names]
    # The first field opens the object without a comma when it is never null (the email);
    # otherwise every field brings its comma and the object's first one is cut off.
    bare_first = bool(columns) and not columns[0].null_count
    parts: list[Any] = []
    for position, (name, values) in enumerate(zip(names, columns, strict=True)):
        parts += _field_parts(name, values, first=bare_first and position == 0)
    if bare_first:
        return pc.binary_join_element_wise("{", *parts, "},", "")
    fields = (pc.binary_join_element_wise(*parts, "") if parts
              else pa.array([""] * contacts.num_rows, pa.string()))
    return pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(fields, 1), "},", "")


@dataclass(slots=True)
class _Pending:
    """Contacts serialized but not yet in a body, in input order."""

    objects: pa.Array  # contact_objects output
    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]]
    emails: pa.Array
    customer_ids: pa.Array

    def __len__(self) -> int:
        return len(self.objects)

    def then(self, more: _Pending) -> _Pending:
        if not len(self):
            return more
        return _Pending(pa.concat_arrays([self.objects, more.objects]),
                        np.concatenate([self.keys, more.keys]),
                        np.concatenate([self.hashes, more.hashes]),
                        pa.concat_arrays([self.emails, more.emails]),
                        pa.concat_arrays([self.customer_ids, more.customer_ids]))

    def tail(self, start: int) -> _Pending:
        return _Pending(self.objects.slice(start), self.keys[start:].copy(),
                        self.hashes[start:].copy(), self.emails.slice(start),
                        self.customer_ids.slice(start))


class BodyCutter:
    """Cuts serialized contacts into import bodies within both of Constant Contact's limits."""

    def __init__(self, *, list_ids: Sequence[str], max_contacts: int = MAX_CONTACTS_PER_IMPORT,
                 max_bytes: int = DEFAULT_MAX_BYTES, sms_permission: str | None = None) -> None:
        # The SMS permission is the body's (Constant Contact's contacts_json_import), so
        # explicit and not_set contacts travel in bodies of their own (see SplitByConsent).
        frame = ImportFrame.of(list_ids, max_contacts=max_contacts, max_bytes=max_bytes,
                               sms_permission=sms_permission)
        self.head, self.tail = frame.head, frame.tail
        self.capacity, self.max_contacts = frame.capacity, frame.max_contacts
        self.start = 0  # input index of the first pending contact
        self.pending: _Pending | None = None

    def add(self, contacts: pa.Table, keys: np.ndarray[Any, np.dtype[np.int64]],
            hashes: np.ndarray[Any, np.dtype[np.int64]]) -> Iterator[Ready]:
        """Take more contacts (with their email keys and value hashes); yield the bodies that
        are full. A body that could still take contacts waits for the next call or ``finish``."""
        more = _Pending(contact_objects(_without_sms_keys(contacts)), keys, hashes,
                        contacts.column("email").combine_chunks(),
                        contacts.column("customer_id").combine_chunks())
        self.pending = more if self.pending is None else self.pending.then(more)
        yield from self._cut(final=False)

    def finish(self) -> Iterator[Ready]:
        """Yield the last, partly filled body."""
        yield from self._cut(final=True)

    def _cut(self, *, final: bool) -> Iterator[Ready]:
        pending = self.pending
        if pending is None or not len(pending):
            return
        offsets = np.frombuffer(pending.objects.buffers()[1], np.int32,
                                len(pending) + 1, pending.objects.offset * 4)
        ends = (offsets[1:] - offsets[0]).astype(np.int64)  # cumulative cost of each contact
        costs = np.diff(offsets)
        too_big = np.flatnonzero(costs > self.capacity)
        usable = int(too_big[0]) if too_big.size else len(pending)
        position = 0
        while position < usable:
            base = int(ends[position - 1]) if position else 0
            fit = int(np.searchsorted(ends, base + self.capacity, side="right")) - position
            fit = min(fit, self.max_contacts, usable - position)
            end = position + fit
            closed = fit == self.max_contacts or end < len(pending) or final
            if not closed:
                break
            yield self._body(pending, position, end, offsets)
            position = end
        if too_big.size and position == usable:
            index = self.start + position
            email = pending.emails[position].as_py()
            size = int(costs[position]) - 1
            raise DataError(
                N_("Contact #%(index)s alone serializes to %(size)s bytes, more than an import "
                   "body may carry (%(value)s)"),
                values={"index": index, "size": size,
                        "value": self.capacity - 1}, index=index, email=email)
        self.pending = pending.tail(position) if position else pending
        self.start += position

    def _body(self, pending: _Pending, start: int, end: int,
              offsets: np.ndarray[Any, np.dtype[np.int32]]) -> Ready:
        data = memoryview(pending.objects.buffers()[2])
        # The objects' bytes from the first to the last, without the last one's comma.
        body = b"".join((self.head, data[int(offsets[start]):int(offsets[end]) - 1], self.tail))
        emails = pending.emails.slice(start, end - start)
        batch = ImportBatch(body=body, count=end - start, nbytes=len(body),
                            start=self.start + start, emails=_Strings(emails))
        # Copies, not slices: a batch stays in flight until Constant Contact confirms it, and a
        # slice would keep the whole chunk it came from alive.
        members = BatchMembers(pending.keys[start:end].copy(), pending.hashes[start:end].copy(),
                               pa.concat_arrays([emails]),
                               pa.concat_arrays([pending.customer_ids.slice(start, end - start)]))
        return batch, members


def _without_sms_keys(contacts: pa.Table) -> pa.Table:
    """The contacts as sent: an SMS-only contact's ``sms:`` key is its delivered-state key,
    never an email, so its row carries no ``email`` (Constant Contact keys it by number)."""
    if "sms_number" not in contacts.column_names:
        return contacts
    emails = contacts.column("email")
    sms_only = pc.starts_with(emails, SMS_KEY_PREFIX)
    if not pc.any(sms_only).as_py():
        return contacts
    return contacts.set_column(contacts.column_names.index("email"), "email",
                               pc.if_else(sms_only, pa.scalar(None, pa.string()), emails))


class SplitByConsent:
    """Two cutters, one per SMS permission: a contact with an SMS consent date (the profile
    gave consent: see validate.split_sms) goes in an ``explicit`` body, every other in a
    ``not_set`` one. Same interface as :class:`BodyCutter`."""

    def __init__(self, *, list_ids: Sequence[str], max_contacts: int = MAX_CONTACTS_PER_IMPORT,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.explicit = BodyCutter(list_ids=list_ids, max_contacts=max_contacts,
                                   max_bytes=max_bytes, sms_permission="explicit")
        self.not_set = BodyCutter(list_ids=list_ids, max_contacts=max_contacts,
                                  max_bytes=max_bytes, sms_permission="not_set")

    def add(self, contacts: pa.Table, keys: np.ndarray[Any, np.dtype[np.int64]],
            hashes: np.ndarray[Any, np.dtype[np.int64]]) -> Iterator[Ready]:
        """As :meth:`BodyCutter.add`, each contact to the cutter of its permission."""
        dates = contacts.column("sms_consent_date") if (
            "sms_consent_date" in contacts.column_names) else None
        explicit = (np.zeros(contacts.num_rows, dtype=bool) if dates is None
                    else np.asarray(pc.is_valid(dates).to_numpy(zero_copy_only=False)))
        for cutter, mask in ((self.explicit, explicit), (self.not_set, ~explicit)):
            if mask.any():
                yield from cutter.add(contacts.filter(pa.array(mask)), keys[mask], hashes[mask])

    def finish(self) -> Iterator[Ready]:
        yield from self.explicit.finish()
        yield from self.not_set.finish()


class _Strings(Sequence[str | None]):
    """An Arrow string array seen as a sequence of str: 40,000 Python strings per body would
    cost megabytes while the body waits for its turn, and are rarely read."""

    def __init__(self, values: pa.Array) -> None:
        self._values = values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._values.slice(*_slice_bounds(index, len(self))).to_pylist()
        return self._values[index].as_py()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so unhashable like them


def _slice_bounds(index: slice, size: int) -> tuple[int, int]:
    start, stop, step = index.indices(size)
    if step != 1:
        raise ValueError("only contiguous slices of a batch's emails are supported")
    return start, max(stop - start, 0)


def prepare_batches(
    chunks: Iterable[ValidatedMembers],
    *,
    delivered: Delivered,
    totals: DiffTotals,
    cutter: BodyCutter | SplitByConsent,
    seconds: dict[str, float],
    on_chunk: Callable[[ValidatedMembers], None] = lambda chunk: None,
) -> Iterator[Ready]:
    """Validated chunks -> the contacts to send (diff) -> import bodies with what each carries.

    ``on_chunk`` sees every chunk first (the run stores its rejections); ``seconds`` gains the
    time spent in "diff" and "prepare" (serializing and cutting).
    """
    with duckdb.connect() as hashing:
        for chunk in chunks:
            on_chunk(chunk)
            started = time.perf_counter()
            changes = select_changes(chunk.contacts, delivered, totals, con=hashing)
            _add(seconds, "diff", started)
            yield from _timed(cutter.add(changes.contacts, changes.keys, changes.hashes), seconds)
            # Hand back what the chunk's kernels used: Arrow's allocator keeps freed pages.
            pa.default_memory_pool().release_unused()
    yield from _timed(cutter.finish(), seconds)


def _timed(items: Iterator[T], seconds: dict[str, float]) -> Iterator[T]:
    """``items``, with the time spent making each (not the consumer's) added to "prepare"."""
    while True:
        started = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            _add(seconds, "prepare", started)
        yield item


def _add(seconds: dict[str, float], stage: str, started: float) -> None:
    seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - started, 3)
