"""The profile store's interface, and what every store engine shares: the tables' names, the
summary of an import, identifier quoting, type names and the member-read column check.

The engines are subpackages: ``profiles.duckdb`` (embedded, the default), ``profiles.postgres``
and ``profiles.spark``; ``profiles.engines`` picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
from sqlglot import exp

from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles.imports import ImportMode, ProfileImport

PROFILES = "profiles"
MEMBERS = "segment_members"
SUPPRESSIONS = "segment_export_suppressions"  # segments.unsubscribed.TABLE
META = "profile_store_meta"


@dataclass(frozen=True)
class ImportSummary:
    """What an import did: rows read, the file's columns, and the store's size afterwards."""

    rows: int
    columns: list[str]
    id_column: str
    mode: ImportMode = "replace"
    total: int = 0
    # Rows of the file superseded by a later row with the same id (upsert keeps the last one).
    superseded: int = 0
    schema: dict[str, str] = field(default_factory=dict)


class ProfileStore(Protocol):
    """What the segments and the export engine need from wherever the profiles live.

    Conditions are sqlglot expressions over the profile table's columns; each store renders
    them in its own SQL ``dialect``, so another engine (PostgreSQL, Spark) can serve the same
    segments.
    """

    dialect: str

    @property
    def location(self) -> str:
        """Where the profiles are, for people (a path, a table name; never a password)."""
        ...

    @property
    def id_column(self) -> str | None:
        """The column that holds the customer id, or None before the first import."""
        ...

    def import_file(self, path: Path, options: ProfileImport | None = None) -> ImportSummary:
        """Load a CSV, Parquet or JSON Lines file, replacing the profiles or upserting by id
        (``options`` None: the defaults of :class:`ProfileImport`)."""
        ...

    def import_table(self, table: pa.Table, options: ProfileImport | None = None) -> ImportSummary:
        """Load an Arrow table, with the same checks as :meth:`import_file` (no ``format``)."""
        ...

    def schema(self) -> dict[str, str]:
        """Column name -> normalized type (VARCHAR, BIGINT, DOUBLE, DATE, TIMESTAMP, ...)."""
        ...

    def count(self) -> int:
        """How many profiles there are."""
        ...

    def count_where(self, condition: exp.Expr) -> int:
        """How many profiles match ``condition``."""
        ...

    def sample_where(self, condition: exp.Expr, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` matching profiles, lowest customer ids first."""
        ...

    def store_membership(self, segment_id: str, condition: exp.Expr) -> int:
        """Replace the segment's stored members with the profiles matching ``condition``."""
        ...

    def membership_size(self, segment_ids: Sequence[str]) -> int:
        """Distinct customers in the union of the segments' stored memberships."""
        ...

    def read_members(
        self, segment_ids: Sequence[str], columns: Sequence[str], *, batch_size: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the union of the segments' members: id column first, then ``columns``."""
        ...

    def duplicate_emails(
        self, segment_ids: Sequence[str], *, email_column: str, consent_column: str | None,
        pattern: str, max_length: int,
    ) -> pa.Table:
        """Normalised emails that several sendable members share, with the highest id of each
        (columns ``email`` and ``sort_id_max``)."""
        ...

    def drop_membership(self, segment_id: str) -> None:
        """Forget a segment's stored members."""
        ...

    def replace_suppressions(self, table: pa.Table) -> None:
        """Replace the store's copy of the suppression set (``connection_id``, ``email_hash``),
        which the rule field ``unsubscribed_in_constant_contact`` reads."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def quote(name: str) -> str:
    """An identifier quoted by sqlglot for DuckDB (never by hand)."""
    return exp.to_identifier(name, quoted=True).sql(dialect="duckdb")


def normalize_type(duckdb_type: str) -> str:
    """Collapse DuckDB's many numeric and temporal types into the few a rule cares about."""
    t = duckdb_type.upper()
    if t in {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
             "UINTEGER", "UBIGINT", "UHUGEINT"}:
        return "BIGINT"
    if t in {"FLOAT", "DOUBLE", "REAL"} or t.startswith("DECIMAL"):
        return "DOUBLE"
    if t == "TIMESTAMP WITH TIME ZONE":
        return "TIMESTAMPTZ"
    if t.startswith("TIMESTAMP"):
        return "TIMESTAMP"
    if t in {"VARCHAR", "DATE", "BOOLEAN"}:
        return t
    return t  # lists, structs, blobs: kept by name; rules refuse to compare them


def member_columns(id_name: str, columns: Sequence[str], available: Container[str]) -> list[str]:
    """The columns a member read returns, the id first and each of ``columns`` once; every
    column the profiles lack is named in one error (the same in every store)."""
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise DataError(
            N_("Unknown profile column(s): %(columns)s"),
            values={"columns": ', '.join(map(repr, unknown))},
            field="columns",
            columns=unknown,
        )
    return [id_name, *dict.fromkeys(c for c in columns if c != id_name)]


def table_options(options: ProfileImport | None) -> ProfileImport:
    """``options`` of an Arrow table's import (None: the defaults); a table has no format."""
    options = options or ProfileImport()
    if options.format is not None:
        raise ConfigurationError(
            N_("An Arrow table has no file format; import it without %(option)s"),
            values={"option": "format"}, field="format")
    return options
