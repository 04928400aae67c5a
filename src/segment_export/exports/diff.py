"""Stage 4 of a run: fingerprint contacts and compare them with what the export last delivered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
import sqlglot.expressions
from sqlalchemy import Engine

from segment_export.exports.delivery import load_members

_CHUNK = 50_000


def fingerprints(
    contacts: pa.Table, *, con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:
    """Per contact: a 64-bit key of its email and a 64-bit hash of every value it sends.

    Computed by DuckDB over the Arrow table, vectorised: a million rows take a tenth of a
    second, where hashing serialized rows one by one in Python takes seconds. A DuckDB upgrade
    that changed its hash would make every contact look changed once (a full resync), never
    lose one. ``con`` (an in-memory DuckDB) is reused across chunks when given: opening one
    per chunk costs more than the hashing.
    """
    fields = [n for n in contacts.column_names if n != "customer_id"]
    query = sqlglot.select(
        sqlglot.exp.func("hash", sqlglot.exp.column("email", quoted=True)).as_("k"),
        sqlglot.exp.func("hash", *(sqlglot.exp.column(f, quoted=True) for f in fields)).as_("h"),
    ).from_("contacts_view")
    with duckdb.connect() if con is None else con.cursor() as cursor:
        cursor.register("contacts_view", contacts)
        try:
            result = cursor.execute(query.sql(dialect="duckdb")).fetchnumpy()
        finally:
            cursor.unregister("contacts_view")
    return (
        np.asarray(result["k"], dtype=np.uint64).view(np.int64),
        np.asarray(result["h"], dtype=np.uint64).view(np.int64),
    )


@dataclass(slots=True)
class Delivered:
    """What the export delivered before: sorted email keys with their value hashes."""

    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]]

    @classmethod
    def empty(cls) -> Delivered:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64))

    def __len__(self) -> int:
        return int(self.keys.size)


def load_delivered(engine: Engine, export_id: str, *, run_id: str | None = None) -> Delivered:
    """Read the export's delivered state into two sorted int64 arrays (16 bytes a member).

    With ``run_id``, only what that run delivered (a resumed full resync skips just those).
    """
    state = load_members(engine, export_id, run_id=run_id)
    return Delivered(state.keys, state.hashes)


@dataclass(slots=True)
class Change:
    """A contact to send: its import dict, key and values hash, and whether it is new."""

    contact: dict[str, Any]
    customer_id: str
    key: int
    values_hash: int
    is_new: bool


@dataclass(slots=True)
class DiffTotals:
    """Summed over every chunk diffed: how many were new, changed and unchanged."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    seen_keys: list[np.ndarray[Any, np.dtype[np.int64]]] = field(default_factory=list)
    # Whether to keep the keys seen (8 bytes a member, kept to the run's end): only a mirror
    # run asks for current_keys.
    keep_keys: bool = True

    def see(self, keys: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        """Note the keys of valid contacts diffed (or held back) for :attr:`current_keys`."""
        if self.keep_keys:
            self.seen_keys.append(keys)

    @property
    def current_keys(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The keys of every valid contact seen (for mirror-mode removals)."""
        if not self.seen_keys:
            return np.empty(0, np.int64)
        return np.sort(np.concatenate(self.seen_keys))


def _rows(table: pa.Table) -> Iterator[tuple[str, dict[str, Any]]]:
    names = [n for n in table.column_names if n != "customer_id"]
    for batch in table.to_batches(max_chunksize=_CHUNK):
        ids = batch.column("customer_id").to_pylist()
        columns = [batch.column(n).to_pylist() for n in names]
        for customer_id, values in zip(ids, zip(*columns, strict=True), strict=True):
            # Only the fields with a value are sent: an import updates just the keys it carries.
            yield customer_id, {n: v for n, v in zip(names, values, strict=True) if v is not None}


@dataclass(slots=True)
class Changes:
    """The contacts of one chunk to send, with their email keys, value hashes and newness."""

    contacts: pa.Table
    keys: np.ndarray[Any, np.dtype[np.int64]]
    hashes: np.ndarray[Any, np.dtype[np.int64]]
    is_new: np.ndarray[Any, np.dtype[np.bool_]]


def select_changes(
    contacts: pa.Table, delivered: Delivered, totals: DiffTotals, *,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Changes:
    """The contacts that are new or whose mapped values changed since last delivery, vectorised.

    A full resync passes what its own run delivered so far (nothing, on its first attempt), so
    it sends every contact once. ``totals`` (which may span several chunks) counts new, changed
    and unchanged contacts. ``con``: see :func:`fingerprints`.
    """
    keys, hashes = fingerprints(contacts, con=con)
    if len(delivered):
        # Searching in key order keeps the binary searches in cache: about twice as fast.
        order = np.argsort(keys)
        position = np.empty_like(order)
        position[order] = np.searchsorted(delivered.keys, keys[order])
        position = np.minimum(position, len(delivered) - 1)
        known = delivered.keys[position] == keys
        same = known & (delivered.hashes[position] == hashes)
    else:
        known = same = np.zeros(len(keys), dtype=bool)
    totals.unchanged += int(same.sum())
    totals.changed += int((known & ~same).sum())
    totals.new += int((~known).sum())
    totals.see(keys)
    if not same.any():
        return Changes(contacts, keys, hashes, ~known)
    to_send = np.flatnonzero(~same)
    return Changes(contacts.take(pa.array(to_send)), keys[to_send], hashes[to_send],
                   ~known[to_send])


def iter_changes(
    contacts: pa.Table, delivered: Delivered, totals: DiffTotals
) -> Iterator[Change]:
    """Yield the contacts that are new or whose mapped values changed since last delivery.

    The comparison is vectorised (:func:`select_changes`); only the contacts to send become
    Python dicts. ``totals`` is updated before the first yield.
    """
    changes = select_changes(contacts, delivered, totals)
    for offset, (customer_id, contact) in enumerate(_rows(changes.contacts)):
        yield Change(contact, customer_id, int(changes.keys[offset]),
                     int(changes.hashes[offset]), is_new=bool(changes.is_new[offset]))


def leavers(delivered: Delivered, current_keys: np.ndarray[Any, np.dtype[np.int64]]) -> Any:
    """Keys the export delivered before that are no longer among its valid members."""
    return delivered.keys[~sorted_member(delivered.keys, current_keys)]


def sorted_member(values: np.ndarray[Any, Any], sorted_keys: np.ndarray[Any, Any]) -> Any:
    """``np.isin(values, sorted_keys)`` for ``sorted_keys`` already sorted: one binary search
    per value instead of sorting both (a tenth of the time at a million keys)."""
    if not sorted_keys.size:
        return np.zeros(values.shape, dtype=bool)
    position = np.minimum(np.searchsorted(sorted_keys, values), sorted_keys.size - 1)
    return sorted_keys[position] == values
