"""Staged profiles into PostgreSQL: a binary COPY, then a swap (replace) or ON CONFLICT (upsert).

The rows come from a DuckDB staging table that the embedded store has already read, checked
and de-duplicated, so only what PostgreSQL itself cannot store is refused here.
"""

# ruff: noqa: S608 -- the DuckDB staging query is built from identifiers quoted by sqlglot.

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import psycopg
from psycopg import sql

from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles.postgres import catalog
from segment_export.profiles.postgres.columns import PgColumn, Transfer, common_type
from segment_export.profiles.store import PROFILES, quote

Connection = psycopg.Connection[Any]

_COPY_ROWS = 10_000
_COPY_AT = re.compile(r"line (\d+)(?:, column ([^:]+))?")
MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True)
class Load:
    """One import on its way: the staged rows, their plan and where they go."""

    conn: Connection
    source: duckdb.DuckDBPyConnection  # holds the staged table PROFILES
    plan: list[Transfer]
    schema: str
    table: str
    id_name: str
    label: str  # "customers.csv" or "the table", for messages

    def ident(self, name: str | None = None) -> sql.Identifier:
        return sql.Identifier(self.schema, name or self.table)


def replace(load: Load) -> None:
    """Build the new table beside the old one and swap it in, in one transaction.

    Readers see the old profiles or the new ones, never a half-loaded table; a failure or a
    crash leaves the old table as it was and nothing else behind.
    """
    conn, new = load.conn, f"_import_{uuid.uuid4().hex}"
    key = f"{new}_pkey"
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(
            load.ident(new), sql.SQL(", ").join(c.definition() for c in load.plan)))
        copy_rows(load, load.ident(new))
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            load.ident(new), sql.Identifier(key), sql.Identifier(load.id_name)))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(load.ident()))
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise ConfigurationError(
                N_("The table %(schema)s.%(table)s cannot be replaced: %(error)s"),
                values={"schema": load.schema, "table": load.table, "error": first_line(exc)},
                hint=N_("Drop the views that use it first, or import with --mode upsert."),
            ) from None
        conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
            load.ident(new), sql.Identifier(load.table)))
        with _unless(conn, psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable):
            # The usual name, unless another relation already has it.
            conn.execute(sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                load.ident(), sql.Identifier(key),
                sql.Identifier(f"{load.table}_pkey"[:MAX_IDENTIFIER_BYTES])))
        conn.execute(sql.SQL("ANALYZE {}").format(load.ident()))


def upsert(load: Load, current: list[PgColumn]) -> None:
    """Insert the staged rows, replacing the profiles with the same ids, in one transaction."""
    conn, staging, table = load.conn, f"_import_{uuid.uuid4().hex}", load.ident()
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            sql.Identifier(staging), sql.SQL(", ").join(c.definition() for c in load.plan)))
        copy_rows(load, sql.Identifier(staging))
        _widen(load, {c.name: c for c in current})
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in load.plan)
        insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            table, names, names, sql.Identifier(staging))
        key = sql.Identifier(load.id_name)
        if catalog.has_unique_key(conn, load.schema, load.table, load.id_name):
            # The whole row is replaced: a column the file lacks becomes empty (or takes its
            # default), as in the embedded store.
            others = [c.name for c in catalog.columns(conn, load.schema, load.table)
                      if c.name != load.id_name]
            action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                for n in others)) if others else sql.SQL("DO NOTHING")
            conn.execute(sql.SQL("{} ON CONFLICT ({}) {}").format(insert, key, action))
        else:
            # Nothing unique to conflict on (a table made elsewhere): delete, then insert.
            conn.execute(sql.SQL(
                "DELETE FROM {} WHERE CAST({} AS text) IN (SELECT CAST({} AS text) FROM {})"
            ).format(table, key, key, sql.Identifier(staging)))
            conn.execute(insert)
        conn.execute(sql.SQL("ANALYZE {}").format(table))


def _widen(load: Load, existing: dict[str, PgColumn]) -> None:
    # A file may add columns or bring wider values (2.5 where there were whole numbers); the
    # table grows to hold them, as the embedded store's UNION BY NAME does.
    for column in load.plan:
        old = existing.get(column.name)
        if old is None:
            load.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(
                load.ident(), column.definition()))
            continue
        wider = common_type(old.declared, column.declared)
        if wider != old.declared:
            name = sql.Identifier(column.name)
            load.conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}")
                              .format(load.ident(), name, sql.SQL(wider), name, sql.SQL(wider)))


def copy_rows(load: Load, target: sql.Identifier) -> None:
    """Send the staged rows with a binary COPY, naming the row PostgreSQL cannot store."""
    oids = [catalog.type_oid(load.conn, c.declared) for c in load.plan]
    converters = [c.convert for c in load.plan]
    rows = load.source.execute(
        f"SELECT {', '.join(c.source for c in load.plan)} FROM {PROFILES}")
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        target, sql.SQL(", ").join(sql.Identifier(c.name) for c in load.plan))
    written = 0
    try:
        with load.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(oids)
            while chunk := rows.fetchmany(_COPY_ROWS):
                for row in chunk:
                    written += 1
                    copy.write_row([v if f is None or v is None else f(v)
                                    for f, v in zip(converters, row, strict=True)])
    except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
        # The server names the line (= row) and column; a value psycopg itself refuses (a NUL
        # character) is the row being written.
        where = _COPY_AT.search(exc.diag.context or "")
        number = int(where.group(1)) if where else written
        column = where.group(2).strip() if where and where.group(2) else None
        found = load.source.execute(
            f"SELECT {quote(load.id_name)} FROM {PROFILES} LIMIT 1 OFFSET ?", [number - 1]
        ).fetchone()
        customer = f" (customer id {found[0]!r})" if found else ""
        at = f", column {column!r}" if column else ""
        raise DataError(
            N_("%(label)s, row %(number)s%(customer)s%(at)s: PostgreSQL cannot store this "
               "value: %(error)s"),
            values={"label": load.label, "number": number, "customer": customer, "at": at,
                    "error": first_line(exc)[:200]},
            row=number,
            column=column,
        ) from None


@contextmanager
def _unless(conn: Connection, *errors: type[Exception]) -> Iterator[None]:
    """Run statements in a savepoint, and carry on if they fail with one of ``errors``."""
    try:
        with conn.transaction():
            yield
    except errors:
        pass


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
