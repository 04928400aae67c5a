"""What PostgreSQL's catalog says about the profile table: columns, keys, kind."""

from __future__ import annotations

from typing import Any

import psycopg

from segment_export.profiles.postgres.columns import PgColumn

Connection = psycopg.Connection[Any]


def columns(conn: Connection, schema: str, table: str) -> list[PgColumn]:
    """The table's (or view's) columns in order, domains read as their base type; [] if none."""
    rows = conn.execute(
        """
        SELECT a.attname, base.typname, elem.typname,
               CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
               format_type(a.atttypid, a.atttypmod)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        JOIN pg_type base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype
                                             ELSE t.oid END
        LEFT JOIN pg_type elem ON elem.oid = base.typelem AND base.typcategory = 'A'
        WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        [schema, table],
    ).fetchall()
    return [PgColumn(name=r[0], typname=r[1], element=r[2], typmod=r[3], declared=r[4])
            for r in rows]


def primary_key(conn: Connection, schema: str, table: str) -> str | None:
    """The column of a one-column primary key, else None."""
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
        WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary
        """,
        [schema, table],
    ).fetchall()
    return str(rows[0][0]) if len(rows) == 1 else None


def has_unique_key(conn: Connection, schema: str, table: str, column: str) -> bool:
    """Whether a unique index on exactly ``column`` exists (what ON CONFLICT needs)."""
    row = conn.execute(
        """
        SELECT count(*) FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
        WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indnkeyatts = 1
          AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = %s
        """,
        [schema, table, column],
    ).fetchone()
    return bool(row and row[0])


def relation_kind(conn: Connection, schema: str, name: str) -> str | None:
    """pg_class.relkind of the relation (r table, p partitioned, v view ...), None if absent."""
    row = conn.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        [schema, name],
    ).fetchone()
    return None if row is None else str(row[0])


def schema_exists(conn: Connection, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        [schema]).fetchone() is not None


def type_oid(conn: Connection, declared: str) -> int:
    """The oid of a type named as format_type() names it (for binary COPY)."""
    row = conn.execute("SELECT %s::regtype::oid", [declared]).fetchone()
    assert row is not None
    return int(row[0])
