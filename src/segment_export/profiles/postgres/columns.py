"""Column types between DuckDB (staging), PostgreSQL (the table) and Arrow (the export)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
from psycopg import sql
from sqlglot import exp

from segment_export.profiles.store import normalize_type, quote

# PostgreSQL base type (pg_type.typname) -> the DuckDB type holding the same values, so that
# schema() names types exactly as the embedded store does.
_DUCKDB_NAMES = {
    "int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "oid": "BIGINT",
    "float4": "FLOAT", "float8": "DOUBLE", "numeric": "DECIMAL", "bool": "BOOLEAN",
    "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR", "name": "VARCHAR",
    "date": "DATE", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "time": "TIME", "timetz": "TIME WITH TIME ZONE", "uuid": "UUID", "json": "JSON",
    "jsonb": "JSON", "bytea": "BLOB", "interval": "INTERVAL",
}
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name"})
# Read as they are; any other type is read as its text form (uuid, json, intervals, enums ...).
_ARROW: dict[str, pa.DataType] = {
    "bool": pa.bool_(), "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
    "oid": pa.int64(), "float4": pa.float32(), "float8": pa.float64(), "text": pa.string(),
    "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(), "date": pa.date32(),
    "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"), "bytea": pa.binary(),
}


@dataclass(frozen=True)
class PgColumn:
    """A column of the profile table as the catalog describes it."""

    name: str
    typname: str  # the base type (a domain reads as the type it restricts)
    element: str | None  # the element type of an array
    typmod: int
    declared: str  # format_type(): bigint, numeric(10,2), text[] ...

    @property
    def normalized(self) -> str:
        if self.element is not None:
            return f"{_DUCKDB_NAMES.get(self.element, self.element.upper())}[]"
        return normalize_type(_DUCKDB_NAMES.get(self.typname, self.typname.upper()))

    @property
    def is_text(self) -> bool:
        return self.element is None and self.typname in TEXT_TYPES

    @property
    def _decimal(self) -> tuple[int, int] | None:
        if self.typname != "numeric" or self.typmod < 4:
            return None
        precision, scale = ((self.typmod - 4) >> 16) & 0xFFFF, (self.typmod - 4) & 0xFFFF
        return (precision, scale) if 0 < precision <= 38 and scale <= precision else None

    @property
    def readable(self) -> bool:
        """Whether Arrow takes the column as it is (else it is read as text)."""
        if self.element is not None:
            return self.element in _ARROW
        return self.typname in _ARROW or self.typname == "numeric"

    @property
    def arrow_type(self) -> pa.DataType:
        if self.element is not None and self.readable:
            return pa.list_(_ARROW[self.element])
        if self.typname == "numeric":
            decimal = self._decimal
            return pa.decimal128(*decimal) if decimal else pa.float64()
        return _ARROW.get(self.typname, pa.string()) if self.readable else pa.string()

    def to_arrow(self, values: Sequence[Any]) -> pa.Array:
        kind = self.arrow_type
        if self.typname == "numeric" and kind == pa.float64():
            values = [None if v is None else float(v) for v in values]
        return pa.array(values, type=kind)


def column_select(column: PgColumn) -> exp.Expr:
    """The column as read for Arrow: as it is, or as text when Arrow has no fitting type."""
    ref = exp.column(column.name, quoted=True)
    if column.readable:
        return ref
    return exp.cast(ref, exp.DataType.build("TEXT")).as_(
        exp.to_identifier(column.name, quoted=True))


def arrow_batch(columns: Sequence[PgColumn], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """Rows from a cursor as one Arrow record batch with the columns' types."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.RecordBatch.from_arrays(
        [column.to_arrow(v) for column, v in zip(columns, values, strict=True)],
        names=[c.name for c in columns],
    )


# -- DuckDB staging -> PostgreSQL ---------------------------------------------------------------

_FROM_DUCKDB = {
    "BOOLEAN": "boolean", "TINYINT": "smallint", "UTINYINT": "smallint", "SMALLINT": "smallint",
    "USMALLINT": "integer", "INTEGER": "integer", "UINTEGER": "bigint", "BIGINT": "bigint",
    "FLOAT": "real", "DOUBLE": "double precision", "VARCHAR": "text", "DATE": "date",
    "TIMESTAMP": "timestamp without time zone", "TIMESTAMP_S": "timestamp without time zone",
    "TIMESTAMP_MS": "timestamp without time zone", "TIMESTAMP_NS": "timestamp without time zone",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "TIME": "time without time zone",
    "BLOB": "bytea", "UUID": "uuid", "INTERVAL": "interval",
}
_WIDE_INTEGERS = frozenset({"UBIGINT", "HUGEINT", "UHUGEINT"})
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
_NESTED = ("STRUCT", "MAP", "UNION")


@dataclass(frozen=True)
class Transfer:
    """How one staged DuckDB column reaches a PostgreSQL column."""

    name: str
    declared: str  # PostgreSQL type, spelled as format_type() spells it
    source: str  # the DuckDB expression that reads it
    convert: Callable[[Any], Any] | None = None
    byte_order: bool = False

    def definition(self) -> sql.Composable:
        # A text customer id sorts byte by byte, as in DuckDB, so its primary key index
        # serves the export's ORDER BY.
        collate = sql.SQL(' COLLATE "C"') if self.byte_order else sql.SQL("")
        return sql.SQL("{} {}{}").format(sql.Identifier(self.name), sql.SQL(self.declared),
                                         collate)


def transfer_plan(columns: Sequence[tuple[str, str]], *, id_column: str) -> list[Transfer]:
    """The PostgreSQL column for each staged (name, DuckDB type)."""
    return [_transfer(name, dtype, is_id=name == id_column) for name, dtype in columns]


def _transfer(name: str, dtype: str, *, is_id: bool) -> Transfer:
    ref = quote(name)
    if dtype in _FROM_DUCKDB:
        declared = _FROM_DUCKDB[dtype]
        return Transfer(name, declared, ref, byte_order=is_id and declared == "text")
    if dtype in _WIDE_INTEGERS:
        return Transfer(name, "numeric", ref, Decimal)
    if match := _DECIMAL.fullmatch(dtype):
        return Transfer(name, f"numeric({match.group(1)},{match.group(2)})", ref)
    if dtype.endswith("[]") and dtype[:-2] in _FROM_DUCKDB:
        return Transfer(name, f"{_FROM_DUCKDB[dtype[:-2]]}[]", ref)
    if dtype == "JSON":
        return Transfer(name, "jsonb", f"CAST({ref} AS VARCHAR)", json.loads)
    if dtype.startswith(_NESTED) or dtype.endswith("]"):
        return Transfer(name, "jsonb", f"CAST(to_json({ref}) AS VARCHAR)", json.loads)
    # Enums, bit strings and the like keep their text.
    return Transfer(name, "text", f"CAST({ref} AS VARCHAR)")


_INTEGERS = ("smallint", "integer", "bigint")
_TEXTS = ("text", "character varying", "character")
_NUMBERS = (*_INTEGERS, "real", "double precision")
_MOMENTS = ("date", "timestamp without time zone", "timestamp with time zone")


def common_type(old: str, new: str) -> str:
    """The type a column needs to hold both its values and an upsert's (DuckDB's UNION rule)."""
    if old == new or (new == "text" and old.startswith(_TEXTS)):
        return old
    numeric = (old.startswith("numeric") or old in _NUMBERS,
               new.startswith("numeric") or new in _NUMBERS)
    if old in _INTEGERS and new in _INTEGERS:
        return max(old, new, key=_INTEGERS.index)
    if all(numeric):
        return "double precision" if {old, new} & {"real", "double precision"} else "numeric"
    if old in _MOMENTS and new in _MOMENTS:
        return max(old, new, key=_MOMENTS.index)
    return "text"
