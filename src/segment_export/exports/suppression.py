"""Unsubscribes read back from Constant Contact: the suppression set of each connection.

An unsubscribe in Constant Contact belongs to the contact (account-wide), and Constant Contact
takes an unsubscribed contact off every list, so the account's unsubscribed contacts are read
(``status=unsubscribed``, no ``lists`` filter: one taken off the export's list before opting out
counts too) and recorded per connection. Every run over the connection reads what changed
before it sends (``optout_after`` the watermark), and leaves suppressed members out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from segment_export import audit
from segment_export.config import Settings
from segment_export.constant_contact import ConstantContactClient
from segment_export.db.models import Connection, Suppression, SuppressionSync, User
from segment_export.db.types import utcnow
from segment_export.errors import SegmentExportError
from segment_export.exports.diff import DiffTotals, fingerprints
from segment_export.exports.validate import ValidatedMembers
from segment_export.metrics import Metrics
from segment_export.users import Role, require_role

log = logging.getLogger(__name__)

# An incremental read asks from this long before the latest opt-out already read: an opt-out
# Constant Contact records late (or two in the same millisecond) is then read, never skipped;
# rows read twice change nothing.
OVERLAP = timedelta(hours=1)
PAGE = 500
# How a suppression was learnt; only one way so far.
SOURCE_UNSUBSCRIBED = "unsubscribed"
_INSERT_ROWS = 1_000


def email_hash(email: str) -> str:
    """The key of an email in the suppression set: SHA-256 of it trimmed and lower-cased."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass(slots=True)
class SyncResult:
    """What one read of a connection's unsubscribes did."""

    full: bool
    read: int
    added: int
    lifted: int
    suppressed: int
    optout_after: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"full": self.full, "read": self.read, "added": self.added,
                "lifted": self.lifted, "suppressed": self.suppressed,
                "optout_after": self.optout_after.isoformat() if self.optout_after else None}


@dataclass(slots=True)
class SuppressionStatus:
    """A connection's suppression set at a glance: a count, never an email."""

    suppressed: int
    synced_at: datetime | None
    full_synced_at: datetime | None
    last_result: dict[str, Any]


def sync_unsubscribes(engine: Engine, client: ConstantContactClient, *, connection_id: str,
                      full: bool = False) -> SyncResult:
    """Read the account's unsubscribed contacts into the connection's suppression set.

    Incremental (``optout_after`` the watermark, the latest opt-out date read so far, less
    :data:`OVERLAP`) once a first read was made; ``full`` reads them all and lifts the
    suppressions Constant Contact no longer shows unsubscribed (the person opted back in
    themselves). Nothing is written until every page
    was read, so a read that fails halfway changes nothing.
    """
    with engine.connect() as conn:
        state = conn.execute(select(SuppressionSync.watermark, SuppressionSync.synced_at).where(
            SuppressionSync.connection_id == connection_id)).first()
    watermark = state.watermark if state is not None else None
    # Before any opt-out was seen, the previous read's own time stands in for the watermark
    # (our clock, not Constant Contact's: the overlap also covers a skew below an hour).
    since = watermark or (state.synced_at if state is not None else None)
    full = full or since is None
    after = None if full or since is None else since - OVERLAP
    seen: dict[str, tuple[str | None, datetime | None]] = {}
    latest = watermark
    for contact in client.find_contacts(status="unsubscribed", optout_after=after, limit=PAGE):
        address = contact.email_address
        if address is None or not address.address:
            continue  # an SMS-only contact: no email to suppress
        if address.permission_to_send not in (None, "unsubscribed"):
            continue  # a filter Constant Contact ignored must not suppress a subscriber
        opted_out = address.opt_out_date
        seen[email_hash(address.address)] = (address.opt_out_source, opted_out)
        if opted_out is not None and (latest is None or opted_out > latest):
            latest = opted_out
    now = utcnow()
    with engine.begin() as conn:
        added = 0
        insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)
        rows = [{"connection_id": connection_id, "email_hash": key,
                 "source": SOURCE_UNSUBSCRIBED, "opt_out_source": source,
                 "opted_out_at": opted_out, "learnt_at": now}
                for key, (source, opted_out) in seen.items()]
        for start in range(0, len(rows), _INSERT_ROWS):
            # Another run of the same connection may be syncing at the same moment.
            result = conn.execute(insert(Suppression).values(rows[start:start + _INSERT_ROWS])
                                  .on_conflict_do_nothing())
            added += max(result.rowcount, 0)
        lifted = 0
        if full:
            recorded = set(conn.scalars(select(Suppression.email_hash).where(
                Suppression.connection_id == connection_id)))
            gone = sorted(recorded - seen.keys())
            for start in range(0, len(gone), _INSERT_ROWS):
                lifted += conn.execute(delete(Suppression).where(
                    Suppression.connection_id == connection_id,
                    Suppression.email_hash.in_(gone[start:start + _INSERT_ROWS]))).rowcount
        total = conn.execute(select(func.count()).select_from(Suppression).where(
            Suppression.connection_id == connection_id)).scalar_one()
        result_row = SyncResult(full=full, read=len(seen), added=added, lifted=lifted,
                                suppressed=total, optout_after=after)
        values: dict[str, Any] = {"watermark": latest, "synced_at": now,
                                  "last_result": result_row.as_dict()}
        if full:
            values["full_synced_at"] = now
        upsert = insert(SuppressionSync).values(connection_id=connection_id, **values)
        conn.execute(upsert.on_conflict_do_update(index_elements=["connection_id"],
                                                  set_=values))
    log.info("unsubscribes of connection %s: read %d (%s), %d new, %d lifted, %d suppressed",
             connection_id, result_row.read, "full" if full else "since the watermark",
             added, lifted, total)
    return result_row


def read_before_run(engine: Engine, client: ConstantContactClient, *, connection_id: str,
                    full: bool) -> pa.Array:
    """A run's first step: bring the suppression set up to date (one request when nothing
    changed; everything on a full resync) and return it."""
    sync_unsubscribes(engine, client, connection_id=connection_id, full=full)
    return load_suppressed(engine, connection_id=connection_id)


def suppression_status(engine: Engine, *, connection_id: str) -> SuppressionStatus:
    """How many contacts the connection suppresses and when its unsubscribes were last read."""
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(Suppression).where(
            Suppression.connection_id == connection_id)).scalar_one()
        state = conn.execute(select(SuppressionSync).where(
            SuppressionSync.connection_id == connection_id)).first()
    if state is None:
        return SuppressionStatus(int(count), None, None, {})
    return SuppressionStatus(int(count), state.synced_at, state.full_synced_at,
                             dict(state.last_result or {}))


def is_suppressed(engine: Engine, *, connection_id: str, email: str) -> bool:
    """Whether one address is in the connection's suppression set (for admins checking one)."""
    with engine.connect() as conn:
        return conn.execute(select(Suppression.email_hash).where(
            Suppression.connection_id == connection_id,
            Suppression.email_hash == email_hash(email))).first() is not None


def load_suppressed(engine: Engine, *, connection_id: str | None) -> pa.Array:
    """The connection's suppressed email hashes (none for a detached export)."""
    if connection_id is None:
        return pa.array([], pa.string())
    with engine.connect() as conn:
        hashes = conn.scalars(select(Suppression.email_hash).where(
            Suppression.connection_id == connection_id)).all()
    return pa.array(hashes, pa.string())


@dataclass(slots=True)
class SuppressedTally:
    """How many members the filter held back, summed over the chunks."""

    suppressed: int = 0


def without_suppressed(chunks: Iterable[ValidatedMembers], *, suppressed: pa.Array,
                       tally: SuppressedTally,
                       totals: DiffTotals | None = None) -> Iterator[ValidatedMembers]:
    """The chunks less their suppressed contacts, counted in ``tally``.

    A suppressed member still in the segment is no leaver: with ``totals`` its key joins the
    keys seen, so a mirror run does not take it off the list either (it sends nothing about it).
    """
    if not len(suppressed):
        yield from chunks
        return
    with duckdb.connect() as con:
        for chunk in chunks:
            contacts = chunk.contacts
            if not contacts.num_rows:
                yield chunk
                continue
            mask = _suppressed_mask(con, contacts.column("email"), suppressed)
            held = int(pc.sum(mask).as_py() or 0)
            if not held:
                yield chunk
                continue
            tally.suppressed += held
            if totals is not None and totals.keep_keys:
                keys, _ = fingerprints(contacts.filter(mask), con=con)
                totals.see(keys)
            yield dataclasses.replace(chunk, contacts=contacts.filter(pc.invert(mask)))


def _suppressed_mask(con: duckdb.DuckDBPyConnection, emails: pa.ChunkedArray,
                     suppressed: pa.Array) -> pa.ChunkedArray:
    # DuckDB hashes a chunk's (already normalised) emails vectorised; Python's hashlib one by
    # one costs about ten times as much.
    cursor = con.cursor()
    try:
        cursor.register("emails_view", pa.table({"email": emails}))
        table = cursor.sql("SELECT sha256(email) AS h FROM emails_view").to_arrow_table()
        assert table is not None
        column = table.column("h")
    finally:
        cursor.close()
    return pc.fill_null(pc.is_in(column, value_set=suppressed), False)


# -- services: what the CLI, the API and the web pages call -----------------------------------


def sync_connection(session: Session, *, actor: User | None, connection: Connection,
                    settings: Settings, engine: Engine, full: bool = False,
                    transport: httpx.BaseTransport | None = None,
                    metrics: Metrics | None = None) -> SyncResult:
    """Read a connection's unsubscribes now (admins; ``actor`` None = the scheduler)."""
    if actor is not None:
        require_role(actor, Role.ADMIN)
    from segment_export.definitions.connections import client_for

    with client_for(connection, settings=settings, engine=engine, transport=transport,
                    metrics=metrics) as client:
        result = sync_unsubscribes(engine, client, connection_id=connection.id, full=full)
    audit.record(session, actor=actor, action="connection.unsubscribes_synced",
                 target_type="connection", target_id=connection.id,
                 name=connection.display_name, **{k: v for k, v in result.as_dict().items()
                                                  if k != "optout_after"})
    return result


def connection_suppression(*, actor: User, connection: Connection,
                           engine: Engine) -> SuppressionStatus:
    """A connection's suppression count and last read (admins: connections are theirs)."""
    require_role(actor, Role.ADMIN)
    return suppression_status(engine, connection_id=connection.id)


def check_email(*, actor: User, connection: Connection, engine: Engine, email: str) -> bool:
    """Whether the connection suppresses one address (admins only: it confirms a person)."""
    require_role(actor, Role.ADMIN)
    return is_suppressed(engine, connection_id=connection.id, email=email)


def sync_all_connections(sessions: sessionmaker[Session], *, settings: Settings,
                         engine: Engine, metrics: Metrics | None = None
                         ) -> dict[str, SyncResult | str]:
    """The scheduled read: every connected connection, one failing not stopping the rest."""
    outcome: dict[str, SyncResult | str] = {}
    with sessions() as session:
        connections = session.scalars(select(Connection).where(
            Connection.status == "connected")).all()
    for connection in connections:
        try:
            with sessions.begin() as session:
                outcome[connection.display_name] = sync_connection(
                    session, actor=None, connection=connection, settings=settings,
                    engine=engine, metrics=metrics)
        except SegmentExportError as exc:
            log.warning("unsubscribes of %r not read: %s", connection.display_name, exc)
            outcome[connection.display_name] = str(exc)
    return outcome
