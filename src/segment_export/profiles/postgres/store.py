"""Profiles in a PostgreSQL table: segments and exports run where the profiles already live.

``SEGMENT_EXPORT_PROFILE_STORE=postgresql://user@host:5432/db?schema=crm&table=customers``.
The table may be one the product imported (the embedded store's checks, then a binary COPY)
or one that already lives there; its customer id column is ``id_column=`` when given, else
the table's one-column primary key.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql
from sqlglot import exp

from segment_export import log as logs
from segment_export.errors import ConfigurationError, DataError, RetriableError
from segment_export.languages import N_
from segment_export.profiles.duckdb import DuckDBProfileStore
from segment_export.profiles.imports import ImportMode, ProfileImport
from segment_export.profiles.postgres import catalog, load
from segment_export.profiles.postgres.columns import (
    PgColumn,
    arrow_batch,
    column_select,
    transfer_plan,
)
from segment_export.profiles.postgres.dialect import adapt_condition, byte_order, re2_to_postgres
from segment_export.profiles.postgres.load import first_line as _first_line
from segment_export.profiles.store import (
    MEMBERS,
    PROFILES,
    SUPPRESSIONS,
    ImportSummary,
    member_columns,
    table_options,
)

log = logging.getLogger(__name__)

# Query parameters of the URL that are the store's own; every other one goes to libpq.
_OWN_PARAMS = ("schema", "table", "id_column")
_MAX_IDLE = 4
_TRUSTED_IDLE_SECONDS = 30.0
_NO_PROFILES = N_("No profiles have been imported yet")
_IMPORT_HINT = N_("Run `segment-export profiles import FILE` (or `profiles generate`) first.")


@dataclass(frozen=True)
class _Target:
    """The profile table's columns and customer id column, read from the catalog."""

    columns: list[PgColumn]
    id_name: str

    def column(self, name: str) -> PgColumn:
        return next(c for c in self.columns if c.name == name)

    @property
    def types(self) -> dict[str, str]:
        return {c.name: c.normalized for c in self.columns}


class PostgresProfileStore:
    """Profiles in one PostgreSQL table; segment memberships in ``segment_members`` beside it.

    Safe to share between threads: every call borrows a connection of its own.
    """

    dialect = "postgres"

    def __init__(
        self,
        conninfo: str,
        *,
        display: str,
        schema: str | None = None,
        table: str = PROFILES,
        id_column: str | None = None,
        password: str | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._display = display
        self._schema = schema
        self.table = table
        self._fixed_id = id_column
        self._password = password
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []  # with when released
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> PostgresProfileStore:
        """A store from ``postgresql[+driver]://user[:password]@host[:port]/db[?params]``.

        ``schema`` (default: the first schema of the connection's search_path, normally
        public), ``table`` (default ``profiles``) and ``id_column`` are the store's own
        parameters; the others (sslmode, options, connect_timeout ...) are passed to libpq.
        """
        parts = urlsplit(url.strip())
        scheme = parts.scheme.split("+", 1)[0].lower()
        if scheme not in ("postgresql", "postgres"):
            raise ConfigurationError(
                N_("%(scheme)s is not a PostgreSQL URL; use postgresql://user@host:5432/db"),
                values={"scheme": repr(scheme or 'The setting')}
            )
        password = unquote(parts.password) if parts.password else None
        params: list[tuple[str, str]] = []
        own: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OWN_PARAMS:
                if not value.strip():
                    raise ConfigurationError(
                        N_("The profile store URL gives an empty %(key)s=; name the %(key)s or "
                           "leave the parameter out"),
                        values={"key": key}
                    )
                own[key] = value.strip()
            else:
                if key == "password":
                    password = value
                params.append((key, value))
        for secret in (password, parts.password):
            logs.register_secret(secret)
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(params), ""))
        try:
            psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                N_("SEGMENT_EXPORT_PROFILE_STORE is not a valid PostgreSQL URL: %(error)s"),
                values={"error": _scrub(str(exc).strip(), password)}
            ) from None
        host = parts.hostname or "localhost"
        user = f"{unquote(parts.username)}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        display = f"postgresql://{user}{host}{port}{parts.path or '/'}"
        return cls(conninfo, display=display, schema=own.get("schema"),
                   table=own.get("table", PROFILES), id_column=own.get("id_column"),
                   password=password)

    def __repr__(self) -> str:
        return f"PostgresProfileStore({self.location!r})"

    def __enter__(self) -> PostgresProfileStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        """The server, database and table, never the password."""
        table = f"{self._schema}.{self.table}" if self._schema else self.table
        return f"PostgreSQL table {table} at {self._display}"

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            reason = _scrub(_first_line(exc), self._password)
            state = exc.sqlstate or ""
            if state.startswith(("28", "3D")):  # authentication, unknown database
                raise ConfigurationError(
                    N_("The profile store %(display)s refused the connection: %(reason)s"),
                    values={"display": self._display, "reason": reason},
                    hint=N_("Fix the user, password or database in SEGMENT_EXPORT_PROFILE_STORE."),
                ) from None
            raise RetriableError(
                N_("The profile store %(display)s cannot be reached: %(reason)s"),
                values={"display": self._display, "reason": reason},
                hint=N_("Check that PostgreSQL is running and SEGMENT_EXPORT_PROFILE_STORE names "
                        "it; runs retry by themselves."),
            ) from None
        # Rules compare dates in UTC, as the embedded store does; sqlglot writes literals for
        # standard-conforming strings (a backslash is an ordinary character).
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET standard_conforming_strings = on")
        return conn

    def _checkout(self) -> psycopg.Connection[Any]:
        with self._lock:
            idle = self._idle.pop() if self._idle else None
        if idle is not None:
            conn, since = idle
            if time.monotonic() - since < _TRUSTED_IDLE_SECONDS:
                return conn
            # The server may have restarted meanwhile: test the connection before trusting it.
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()
        return self._connect()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._checkout()
        try:
            yield conn
        except psycopg.OperationalError as exc:
            conn.close()
            raise RetriableError(
                N_("The connection to the profile store %(display)s failed: %(error)s"),
                values={"display": self._display, "error": _scrub(_first_line(exc), self._password)}
            ) from None
        finally:
            self._release(conn)

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        # Kept for the next call only when it is healthy and outside any transaction.
        if conn.closed:
            return
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with self._lock:
                if len(self._idle) < _MAX_IDLE:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; the store reconnects on the next call."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _since in idle:
            conn.close()

    # -- catalog -----------------------------------------------------------------------------

    def _schema_name(self, conn: psycopg.Connection[Any]) -> str:
        if self._schema is None:
            row = conn.execute("SELECT current_schema()").fetchone()
            if row is None or row[0] is None:
                raise ConfigurationError(
                    N_("The profile store %(display)s has no schema to use: the search_path "
                       "names no existing schema"),
                    values={"display": self._display},
                    hint=N_("Add schema=NAME to SEGMENT_EXPORT_PROFILE_STORE."),
                )
            self._schema = str(row[0])
        return self._schema

    def _ident(self, conn: psycopg.Connection[Any], name: str) -> sql.Identifier:
        return sql.Identifier(self._schema_name(conn), name)

    def _table(self, conn: psycopg.Connection[Any], name: str | None = None) -> exp.Table:
        return exp.table_(name or self.table, db=self._schema_name(conn), quoted=True)

    def _columns(self, conn: psycopg.Connection[Any]) -> list[PgColumn]:
        return catalog.columns(conn, self._schema_name(conn), self.table)

    def _resolve_id(self, conn: psycopg.Connection[Any], columns: list[PgColumn]) -> str | None:
        if self._fixed_id is None:
            return catalog.primary_key(conn, self._schema_name(conn), self.table)
        names = [c.name for c in columns]
        if self._fixed_id in names:
            return self._fixed_id
        folded = [n for n in names if n.casefold() == self._fixed_id.casefold()]
        if len(folded) == 1:
            return folded[0]
        raise ConfigurationError(
            N_("id_column=%(fixed_id)s names no column of the table %(schema)s.%(table)s (its "
               "columns: %(names)s)"),
            values={"fixed_id": repr(self._fixed_id), "schema": self._schema_name(conn),
                    "table": self.table, "names": ', '.join(names[:12])},
            hint=N_("Fix id_column= in SEGMENT_EXPORT_PROFILE_STORE."),
        )

    def _require(self, conn: psycopg.Connection[Any]) -> _Target:
        columns = self._columns(conn)
        if not columns:
            raise ConfigurationError(
                _NO_PROFILES,
                hint=f"{_IMPORT_HINT} (There is no table {self._schema_name(conn)}.{self.table} "
                "in PostgreSQL.)",
            )
        id_name = self._resolve_id(conn, columns)
        if id_name is None:
            raise ConfigurationError(
                N_("The table %(schema)s.%(table)s has no one-column primary key, so the customer "
                   "id column is not known"),
                values={"schema": self._schema_name(conn), "table": self.table},
                hint=N_("Add id_column=NAME to SEGMENT_EXPORT_PROFILE_STORE."),
            )
        return _Target(columns, id_name)

    @property
    def id_column(self) -> str | None:
        """``id_column=`` of the URL, else the table's primary key; None without a table."""
        with self._connection() as conn:
            columns = self._columns(conn)
            return self._resolve_id(conn, columns) if columns else None

    def schema(self) -> dict[str, str]:
        """Column -> normalized type, as the embedded store names them; empty without a table."""
        with self._connection() as conn:
            return {c.name: c.normalized for c in self._columns(conn)}

    # -- queries -----------------------------------------------------------------------------

    def _run(self, conn: psycopg.Connection[Any], query: exp.Expr) -> psycopg.Cursor[Any]:
        # Sent without parameters: psycopg would read every '%' of a LIKE pattern as a
        # placeholder. Values are literals written by sqlglot, which doubles quotes; with
        # standard_conforming_strings on, that is all a literal needs.
        try:
            return conn.execute(query.sql(dialect=self.dialect).encode())
        except (psycopg.DataError, psycopg.ProgrammingError) as exc:
            if isinstance(exc, psycopg.errors.InsufficientPrivilege):
                raise ConfigurationError(
                    N_("The profile store %(display)s refused a query: %(error)s"),
                    values={"display": self._display, "error": _first_line(exc)},
                    hint=N_("Grant the user of SEGMENT_EXPORT_PROFILE_STORE access to the table."),
                ) from None
            raise DataError(
                N_("The segment condition cannot be evaluated: %(error)s"),
                values={"error": _first_line(exc)[:300]}
            ) from exc

    def _where(self, condition: exp.Expr, target: _Target) -> exp.Expr:
        # _require resolved the schema; the suppression table of a rule lies beside profiles.
        return adapt_condition(condition, target.types, schema=self._schema)

    def _id_order(self, target: _Target, column: str | None = None) -> exp.Expr:
        key: exp.Expr = exp.column(column or target.id_name, quoted=True)
        # Byte order, as DuckDB sorts, so a run resumes in the same order on either engine.
        return byte_order(key) if target.column(target.id_name).is_text else key

    def _count(self, conn: psycopg.Connection[Any]) -> int:
        return _scalar(self._run(conn, exp.select("count(*)").from_(self._table(conn))))

    def count(self) -> int:
        """How many profiles there are (0 before the first import)."""
        with self._connection() as conn:
            return self._count(conn) if self._columns(conn) else 0

    def count_where(self, condition: exp.Expr) -> int:
        """How many profiles match ``condition``."""
        with self._connection() as conn:
            target = self._require(conn)
            query = exp.select(exp.Count(this=exp.Star())).from_(self._table(conn)).where(
                self._where(condition, target))
            return _scalar(self._run(conn, query))

    def sample_where(self, condition: exp.Expr, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` (≤ 1000) matching profiles, lowest customer ids first."""
        limit = max(0, min(int(limit), 1000))
        with self._connection() as conn:
            target = self._require(conn)
            query = (
                exp.select("*").from_(self._table(conn)).where(self._where(condition, target))
                .order_by(self._id_order(target)).limit(limit)
            )
            cur = self._run(conn, query)
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    # -- memberships -------------------------------------------------------------------------

    def _members_exist(self, conn: psycopg.Connection[Any]) -> bool:
        return catalog.relation_kind(conn, self._schema_name(conn), MEMBERS) is not None

    def _ensure_members(self, conn: psycopg.Connection[Any]) -> None:
        if self._members_exist(conn):
            return
        members = self._ident(conn, MEMBERS)
        with conn.transaction():
            self._lock_creation(conn, MEMBERS)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (segment_id text NOT NULL, "
                "customer_id text NOT NULL)").format(members))
            # The members of one segment are read and replaced together.
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (segment_id, "
                                 "customer_id)").format(
                sql.Identifier(f"{MEMBERS}_segment"), members))

    def _lock_creation(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Serialise the creation of one of the store's tables until the transaction ends.

        ``CREATE TABLE IF NOT EXISTS`` is not safe against itself: two sessions creating the
        same table at once can both pass the check, and the second fails on the catalogue
        (``type ... already exists``). Under this lock the second waits, then finds it."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     [f"create:{self._schema_name(conn)}.{table}"])

    def store_membership(self, segment_id: str, condition: exp.Expr) -> int:
        """Replace the segment's members with the matching customer ids, in one transaction."""
        with self._connection() as conn:
            target = self._require(conn)
            self._ensure_members(conn)
            select = (
                exp.select(
                    exp.Literal.string(segment_id),
                    exp.cast(exp.column(target.id_name, quoted=True), exp.DataType.build("TEXT")),
                )
                .from_(self._table(conn))
                .where(self._where(condition, target))
            )
            insert = exp.insert(select, self._table(conn, MEMBERS),
                                columns=["segment_id", "customer_id"])
            with conn.transaction():
                # Two refreshes of one segment at once would otherwise both insert.
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                             [segment_id])
                conn.execute(sql.SQL("DELETE FROM {} WHERE segment_id = %s").format(
                    self._ident(conn, MEMBERS)), [segment_id])
                size = self._run(conn, insert).rowcount
            # Fresh statistics, or the export's join is planned for a handful of members.
            conn.execute(sql.SQL("ANALYZE {}").format(self._ident(conn, MEMBERS)))
            return size

    def replace_suppressions(self, table: pa.Table) -> None:
        """Replace the copy of the suppression set segment rules read, in one transaction."""
        with self._connection() as conn:
            target = self._ident(conn, SUPPRESSIONS)
            with conn.transaction():
                self._lock_creation(conn, SUPPRESSIONS)
                conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (connection_id text NOT "
                                     "NULL, email_hash text NOT NULL)").format(target))
                # Serialises two publishers: the second waits, then replaces in full.
                conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(target))
                conn.execute(sql.SQL("DELETE FROM {}").format(target))
                with conn.cursor().copy(sql.SQL(
                        "COPY {} (connection_id, email_hash) FROM STDIN").format(target)) as copy:
                    for row in zip(table.column("connection_id").to_pylist(),
                                   table.column("email_hash").to_pylist(), strict=True):
                        copy.write_row(row)
            conn.execute(sql.SQL("ANALYZE {}").format(target))

    def drop_membership(self, segment_id: str) -> None:
        """Forget a segment's members (the segment was deleted)."""
        with self._connection() as conn:
            if self._members_exist(conn):
                conn.execute(sql.SQL("DELETE FROM {} WHERE segment_id = %s").format(
                    self._ident(conn, MEMBERS)), [segment_id])

    def _members_query(
        self, conn: psycopg.Connection[Any], target: _Target, segment_ids: Sequence[str],
        select: list[exp.Expr],
    ) -> exp.Select:
        # Members are matched back to the current profiles, so profiles removed by a
        # re-import since the last refresh are not exported.
        ids = exp.select("customer_id").from_(self._table(conn, MEMBERS)).where(
            exp.column("segment_id").isin(*[exp.Literal.string(s) for s in segment_ids]))
        key = exp.cast(exp.column(target.id_name, quoted=True), exp.DataType.build("TEXT"))
        return exp.select(*select).from_(self._table(conn)).where(key.isin(query=ids))

    def membership_size(self, segment_ids: Sequence[str]) -> int:
        """Distinct current profiles in the union of the segments' memberships."""
        if not segment_ids:
            return 0
        with self._connection() as conn:
            target = self._require(conn)
            if not self._members_exist(conn):
                return 0
            query = self._members_query(conn, target, segment_ids,
                                        [exp.Count(this=exp.Star())])
            return _scalar(self._run(conn, query))

    def duplicate_emails(
        self, segment_ids: Sequence[str], *, email_column: str, consent_column: str | None,
        pattern: str, max_length: int,
    ) -> pa.Table:
        """Normalised emails that several sendable members share, with the highest id of each.

        Computed in PostgreSQL, with the embedded store's rules (see
        :meth:`DuckDBProfileStore.duplicate_emails`); the RE2 ``pattern`` is matched with ``~``.
        """
        empty = pa.table({"email": pa.array([], pa.string()), "sort_id_max": pa.array([])})
        if not segment_ids:
            return empty
        with self._connection() as conn:
            target = self._require(conn)
            types = target.types
            for column in (email_column, consent_column):
                if column is not None and column not in types:
                    raise DataError(N_("Unknown profile column %(column)s"),
                                    values={"column": repr(column)}, field="columns")
            id_type = target.column(target.id_name).arrow_type
            if not self._members_exist(conn):
                return pa.table({"email": pa.array([], pa.string()),
                                 "sort_id_max": pa.array([], id_type)})
            # Matched before lower-casing (see DuckDBProfileStore.duplicate_emails).
            trimmed = exp.RegexpReplace(
                this=exp.cast(exp.column(email_column, quoted=True), "TEXT"),
                expression=exp.Literal.string(re2_to_postgres(r"^\s+|\s+$")),
                replacement=exp.Literal.string(""),
                modifiers=exp.Literal.string("g"),
            )
            inner = self._members_query(conn, target, segment_ids, [
                exp.Lower(this=trimmed).as_("email"), trimmed.as_("trimmed"),
                exp.column(target.id_name, quoted=True).as_("sort_id")])
            if consent_column is not None:
                consent = exp.column(consent_column, quoted=True)
                if types[consent_column] == "BOOLEAN":
                    inner = inner.where(exp.Is(this=consent, expression=exp.true()))
                else:
                    inner = inner.where(exp.Lower(this=exp.cast(consent, "TEXT")).isin(
                        *[exp.Literal.string(v) for v in ("true", "yes", "1", "y")]))
            e = exp.column("email")
            query = (
                exp.select(e, exp.Max(this=self._id_order(target, "sort_id")).as_("sort_id_max"))
                .from_(inner.subquery("sendable"))
                .where(exp.and_(
                    exp.NEQ(this=e, expression=exp.Literal.string("")),
                    exp.LTE(this=exp.Length(this=e), expression=exp.Literal.number(max_length)),
                    exp.RegexpLike(this=exp.column("trimmed"), expression=exp.Literal.string(
                        re2_to_postgres(pattern))),
                ))
                .group_by(e)
                .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            )
            rows = self._run(conn, query).fetchall()
            return pa.table({
                "email": pa.array([r[0] for r in rows], pa.string()),
                "sort_id_max": pa.array([r[1] for r in rows], id_type),
            })

    def read_members(
        self, segment_ids: Sequence[str], columns: Sequence[str], *, batch_size: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the union of the segments' members as Arrow batches, ordered by customer id.

        A server-side cursor hands over ``batch_size`` rows at a time, on a connection of its
        own, so a million members never sit in memory at once and other calls are not held up.
        """
        if batch_size < 1:
            raise DataError("batch_size must be at least 1", field="batch_size")
        with self._connection() as conn:
            target = self._require(conn)
            available = {c.name for c in target.columns}
            wanted = [target.column(n)
                      for n in member_columns(target.id_name, columns, available)]
            if not segment_ids or not self._members_exist(conn):
                return
            query = self._members_query(
                conn, target, segment_ids, [column_select(c) for c in wanted]
            ).order_by(self._id_order(target))
            text = query.sql(dialect=self.dialect).encode()
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name=f"members_{uuid.uuid4().hex}",
                                                 binary=True) as cur:
                cur.execute(text)
                while rows := cur.fetchmany(batch_size):
                    yield arrow_batch(wanted, rows)
        except psycopg.OperationalError as exc:
            raise RetriableError(
                N_("Reading members from the profile store %(display)s failed: %(error)s"),
                values={"display": self._display, "error": _scrub(_first_line(exc), self._password)}
            ) from None
        finally:
            conn.close()

    # -- import ------------------------------------------------------------------------------

    def import_file(self, path: Path, options: ProfileImport | None = None) -> ImportSummary:
        """Load a CSV, Parquet or JSON Lines file; see :class:`ProfileStore`.

        The file is read and checked by the embedded store, so its errors are the same, then
        copied to PostgreSQL (binary COPY): replace swaps the table in one transaction,
        upsert inserts with ``ON CONFLICT`` on the customer id.
        """
        path, options = Path(path), options or ProfileImport()
        return self._import(lambda staging: staging.import_file(path, options),
                            label=path.name, mode=options.mode)

    def import_table(self, table: pa.Table, options: ProfileImport | None = None) -> ImportSummary:
        """Load an Arrow table (the generator's output), with the same checks as a file."""
        options = table_options(options)
        return self._import(lambda staging: staging.import_table(table, options),
                            label="the table", mode=options.mode)

    def _import(
        self, stage: Callable[[DuckDBProfileStore], ImportSummary], *, label: str,
        mode: ImportMode,
    ) -> ImportSummary:
        with tempfile.TemporaryDirectory(prefix="segment-export-import-") as folder:
            staging_path = Path(folder) / "staging.duckdb"
            # The embedded store reads, checks and (for upsert) de-duplicates the rows, so a
            # bad file gets the very same message from either store.
            with DuckDBProfileStore(staging_path) as staging:
                staged = stage(staging)
            self._check_names(staged, label)
            with duckdb.connect(str(staging_path), read_only=True) as source, \
                    self._connection() as conn:
                source.execute("SET memory_limit = '128MB'")
                source.execute("SET TimeZone = 'UTC'")
                try:
                    self._load(conn, source, staged, label=label, mode=mode)
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise ConfigurationError(
                        N_("The profile store %(display)s refused the import: %(error)s"),
                        values={"display": self._display, "error": _first_line(exc)},
                        hint=N_("Grant the user of SEGMENT_EXPORT_PROFILE_STORE the right to "
                                "create and change tables in the schema."),
                    ) from None
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    raise DataError(
                        N_("%(label)s: PostgreSQL refused the profiles: %(error)s"),
                        values={"label": label, "error": _first_line(exc)[:300]}
                    ) from None
                total = self._count(conn)
                schema = {c.name: c.normalized for c in self._columns(conn)}
        log.info("Imported %d profiles into %s (%s)", staged.rows, self.location, mode)
        return ImportSummary(rows=staged.rows, columns=staged.columns,
                             id_column=staged.id_column, mode=mode, total=total,
                             superseded=staged.superseded, schema=schema)

    def _check_names(self, staged: ImportSummary, label: str) -> None:
        if self._fixed_id is not None and (
            staged.id_column.casefold() != self._fixed_id.casefold()
        ):
            raise DataError(
                N_("The profile store is keyed by %(fixed_id)s (id_column= in "
                   "SEGMENT_EXPORT_PROFILE_STORE), not %(id_column)s; import with --id-column "
                   "%(fixed_id2)s"),
                values={"fixed_id": repr(self._fixed_id), "id_column": repr(staged.id_column),
                        "fixed_id2": self._fixed_id},
                column=staged.id_column,
            )
        for name in staged.columns:
            # PostgreSQL would silently cut a longer name, and rules would no longer find it.
            if len(name.encode()) > load.MAX_IDENTIFIER_BYTES:
                raise DataError(
                    N_("%(label)s: the column name %(name)s… is longer than PostgreSQL's "
                       "%(most)s bytes; shorten it"),
                    values={"label": label, "name": repr(name[:40]),
                            "most": load.MAX_IDENTIFIER_BYTES},
                    column=name,
                )

    def _load(
        self, conn: psycopg.Connection[Any], source: duckdb.DuckDBPyConnection,
        staged: ImportSummary, *, label: str, mode: ImportMode,
    ) -> None:
        described = source.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index", [PROFILES]
        ).fetchall()
        plan = transfer_plan([(str(n), str(t)) for n, t in described], id_column=staged.id_column)
        schema = self._schema_name(conn)
        if not catalog.schema_exists(conn, schema):
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        kind = catalog.relation_kind(conn, schema, self.table)
        if kind is not None and kind not in ("r", "p"):
            raise ConfigurationError(
                N_("%(schema)s.%(table)s is a view or another kind of relation, not a table; "
                   "profiles can only be imported into a table"),
                values={"schema": schema, "table": self.table},
                hint=N_("Point table= in SEGMENT_EXPORT_PROFILE_STORE at a table, or load the "
                        "view's own tables with your usual tools."),
            )
        job = load.Load(conn=conn, source=source, plan=plan, schema=schema, table=self.table,
                        id_name=staged.id_column, label=label)
        if mode == "upsert" and kind is not None:
            current = self._require(conn)
            if current.id_name != staged.id_column:
                # The embedded store's words, so both stores refuse alike.
                raise DataError(
                    N_("The profiles are keyed by %(id_name)s, not %(id_column)s; upsert with "
                       "--id-column %(id_name2)s, or replace the profiles"),
                    values={"id_name": repr(current.id_name), "id_column": repr(staged.id_column),
                            "id_name2": current.id_name},
                    column=staged.id_column,
                )
            load.upsert(job, current.columns)
        else:
            load.replace(job)


def _scalar(cur: psycopg.Cursor[Any]) -> int:
    row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text

