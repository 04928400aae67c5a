"""Profiles in a lakehouse, read through Apache Spark (PySpark): the same segments, Spark SQL."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlglot import exp

from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles.imports import ImportMode, ProfileImport
from segment_export.profiles.spark.dialect import spark_sql
from segment_export.profiles.spark.load import Load, import_into_parquet
from segment_export.profiles.spark.session import (
    LOCAL_MASTER,
    PARQUET,
    local_session,
    parse_setting,
    spark_running,
)
from segment_export.profiles.store import (
    ImportSummary,
    member_columns,
    normalize_type,
    table_options,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType

    from segment_export.config import Settings

__all__ = ["SparkProfileStore"]

_ID_TYPES = ("VARCHAR", "BIGINT")
_MEMBER = "customer_id"
_CURRENT = "CURRENT"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")
SPOOL_MAX_AGE_SECONDS = 24 * 3600
_IMPORTED_IDS = "imported-id-columns.json"  # source -> id column of its last import
_JOIN_KEY = "__segment_export_member"  # named so no profile column clashes in the join
# The stores of this process holding a Spark session: the last one closed may stop Spark.
_OPEN: weakref.WeakSet[SparkProfileStore] = weakref.WeakSet()
# Analysis errors that mean "there is no profile table (yet)", not "the table is broken".
_ABSENT = frozenset({"PATH_NOT_FOUND", "TABLE_OR_VIEW_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA"})


class SparkProfileStore:
    """Profiles in a lakehouse table or Parquet directory, queried with Spark SQL.

    A catalog table is read-only here: the lakehouse's own pipelines write it, so imports are
    refused. A Parquet directory can also be imported into (replaced or upserted as a whole,
    with the embedded store's checks). Segment members are kept as Parquet under ``work_dir``
    (one directory per segment, swapped atomically), where Spark joins them to the profiles;
    ``members_dir`` puts them elsewhere, on storage that several workers share.

    The id column is, in this order: the one named in the setting (``?id_column=``), the one
    of the last import through this store, else ``customer_id``.
    """

    dialect = "spark"

    def __init__(
        self,
        source: str,
        *,
        work_dir: Path,
        id_column: str | None = None,
        members_dir: Path | None = None,
        session: SparkSession | None = None,
        master: str = LOCAL_MASTER,
        driver_memory: str = "1g",
    ) -> None:
        self.source = source
        self.work_dir = Path(work_dir)
        self._id_setting = id_column
        self.members_dir = Path(members_dir) if members_dir else self.work_dir / "members"
        self._import_lock = threading.Lock()
        self._given = session
        self._master = master
        self._driver_memory = driver_memory
        self._spark: SparkSession | None = None
        self._owned = False
        self._lock = threading.Lock()

    @classmethod
    def from_setting(cls, setting: str, *, settings: Settings) -> SparkProfileStore:
        """The store a ``spark:...`` profile_store setting names; members under the data dir."""
        source, options = parse_setting(setting)
        work_dir = settings.ensure_data_dir() / "spark"
        return cls(
            source,
            work_dir=work_dir,
            id_column=options.get("id_column"),
            members_dir=Path(options["members"]) if "members" in options else None,
            master=options.get("master", LOCAL_MASTER),
            driver_memory=options.get("driver_memory", "1g"),
        )

    def __enter__(self) -> SparkProfileStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        """The Parquet directory or table name (``spark:`` plus what the setting named)."""
        return f"spark:{self.source}"

    # -- session ------------------------------------------------------------------------------

    def _session(self) -> SparkSession:
        with self._lock:
            if self._spark is None:
                base = self._given
                if base is None:
                    self._owned = not spark_running()
                    base = local_session(self.work_dir, master=self._master,
                                         driver_memory=self._driver_memory)
                # A session of our own over the shared context: its SQL settings (time zone,
                # timestamp format) never change what other users of the context see.
                spark = base.newSession()
                spark.conf.set("spark.sql.session.timeZone", "UTC")
                # Micros, not the legacy INT96, so Arrow reads timestamps back with their zone.
                spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
                # A bad segment condition surfaces as a DataError; Spark would also log the whole
                # JVM stack at ERROR.
                for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
                self._forget_old_spools()
                self._spark = spark
                _OPEN.add(self)
            return self._spark

    def _forget_old_spools(self) -> None:
        # A process killed in the middle of an export leaves its spooled members behind; no
        # run reads for a day, so older spools belong to nobody (other processes included).
        cutoff = time.time() - SPOOL_MAX_AGE_SECONDS
        for spool in (self.work_dir / "reads").glob("*"):
            with suppress(OSError):
                if spool.stat().st_mtime < cutoff:
                    shutil.rmtree(spool, ignore_errors=True)

    def close(self) -> None:
        """Stop Spark if this store started it and no other store of the process still uses
        it; the next call starts it again."""
        with self._lock:
            _OPEN.discard(self)
            if self._spark is not None and self._owned and not _OPEN:
                self._spark.stop()
            self._spark = None
            self._owned = False

    # -- profiles -----------------------------------------------------------------------------

    def _profiles(self) -> DataFrame | None:
        """The profile table, or None when it does not exist (yet)."""
        from pyspark.errors import AnalysisException

        spark = self._session()
        try:
            if self.source.startswith(PARQUET):
                return spark.read.parquet(self.source[len(PARQUET):])
            return spark.table(self.source)
        except AnalysisException as exc:
            if exc.getCondition() in _ABSENT:
                return None
            raise ConfigurationError(
                N_("The Spark profile table %(source)s cannot be read: %(error)s"),
                values={"source": repr(self.source), "error": _first_line(exc)},
                hint=N_("Check SEGMENT_EXPORT_PROFILE_STORE (spark:<table> or "
                        "spark:parquet:<directory>)."),
            ) from exc

    def _resolve_id(self, frame: DataFrame) -> str | None:
        wanted, names = self._id_name(), frame.columns
        if wanted in names:
            return wanted
        folded = [n for n in names if n.casefold() == wanted.casefold()]
        return folded[0] if len(folded) == 1 else None

    def _id_name(self) -> str:
        if self._id_setting is not None:
            return self._id_setting
        return self._imported_ids().get(self.source, "customer_id")

    def _imported_ids(self) -> dict[str, str]:
        try:
            recorded = json.loads((self.work_dir / _IMPORTED_IDS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in recorded.items()}

    def _remember_id(self, id_name: str) -> None:
        recorded = self._imported_ids() | {self.source: id_name}
        self.work_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.work_dir / f".{_IMPORTED_IDS}.{uuid.uuid4().hex}"
        scratch.write_text(json.dumps(recorded, indent=1), encoding="utf-8")
        os.replace(scratch, self.work_dir / _IMPORTED_IDS)

    def _require(self) -> tuple[DataFrame, str]:
        frame = self._profiles()
        if frame is None:
            raise ConfigurationError(
                N_("No profiles at %(location)s"),
                values={"location": self.location},
                hint=N_("Write the profiles to that table or directory in the lakehouse, or fix "
                        "SEGMENT_EXPORT_PROFILE_STORE."),
            )
        id_name = self._resolve_id(frame)
        if id_name is None:
            shown = ", ".join(repr(n) for n in frame.columns[:12])
            raise ConfigurationError(
                N_("The profiles at %(location)s have no %(id_name)s column for the customer id "
                   "(their columns: %(shown)s)"),
                values={"location": self.location, "id_name": repr(self._id_name()),
                        "shown": shown},
                hint=N_("Name the id column in the setting: spark:<table>?id_column=NAME."),
            )
        id_type = _type_name(frame.schema[id_name].dataType)
        if id_type not in _ID_TYPES:
            raise ConfigurationError(
                N_("The customer id column %(id_name)s at %(location)s holds %(id_type)s "
                   "values; ids must be text or whole numbers"),
                values={"id_name": repr(id_name), "location": self.location, "id_type": id_type},
            )
        return frame, id_name

    def frame(self) -> DataFrame:
        """The profile table as a Spark DataFrame (to look at a segment in a notebook, say)."""
        frame, _ = self._require()
        return frame

    @property
    def id_column(self) -> str | None:
        """The configured id column as the table spells it; None when there is no table."""
        frame = self._profiles()
        return None if frame is None else self._resolve_id(frame)

    def schema(self) -> dict[str, str]:
        """Column -> normalized type (Spark's TIMESTAMP is TIMESTAMPTZ, TIMESTAMP_NTZ is
        TIMESTAMP); empty when there is no table."""
        frame = self._profiles()
        if frame is None:
            return {}
        return _schema(frame)

    def count(self) -> int:
        """How many profiles there are (0 when there is no table)."""
        frame = self._profiles()
        return 0 if frame is None else frame.count()

    def import_file(self, path: Path, options: ProfileImport | None = None) -> ImportSummary:
        """Load a CSV, Parquet or JSON Lines file into the Parquet directory (see the class)."""
        options = options or ProfileImport()
        return self._import(lambda staging: staging.import_file(path, options),
                            id_column=options.id_column, mode=options.mode)

    def import_table(self, table: pa.Table, options: ProfileImport | None = None) -> ImportSummary:
        """Load an Arrow table into the Parquet directory, with the same checks as a file."""
        options = table_options(options)
        return self._import(lambda staging: staging.import_table(table, options),
                            id_column=options.id_column, mode=options.mode)

    def _import(self, load: Load, *, id_column: str, mode: ImportMode) -> ImportSummary:
        if not self.source.startswith(PARQUET):
            raise ConfigurationError(
                N_("The profiles at %(location)s are managed in the lakehouse; segment-export "
                   "reads that table but does not import into it"),
                values={"location": self.location},
                hint=N_("Write the file to the table with the lakehouse's own tools, or point "
                        "SEGMENT_EXPORT_PROFILE_STORE at a Parquet directory "
                        "(spark:parquet:<dir>)."),
            )
        if self._id_setting is not None and id_column.casefold() != self._id_setting.casefold():
            raise ConfigurationError(
                N_("The setting names %(id_setting)s as the customer id column of %(location)s; "
                   "import with --id-column %(id_setting2)s"),
                values={"id_setting": repr(self._id_setting), "location": self.location,
                        "id_setting2": self._id_setting},
            )
        directory = Path(self.source[len(PARQUET):])
        with self._import_lock:
            frame = self._profiles() if mode == "upsert" else None
            current = None if frame is None else self._resolve_id(frame)
            summary = import_into_parquet(directory, scratch=self.work_dir / "imports",
                                          load=load, mode=mode, current_id=current)
            if self._id_setting is None:
                self._remember_id(summary.id_column)
        return summary

    # -- conditions ---------------------------------------------------------------------------

    def _matching(self, frame: DataFrame, condition: exp.Expr) -> DataFrame:
        with _condition_errors():
            return frame.where(spark_sql(condition, frame))

    def count_where(self, condition: exp.Expr) -> int:
        """How many profiles match ``condition``."""
        frame, _ = self._require()
        with _condition_errors():
            return self._matching(frame, condition).count()

    def sample_where(self, condition: exp.Expr, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` (≤ 1000) matching profiles, lowest customer ids first."""
        limit = max(0, min(int(limit), 1000))
        frame, id_name = self._require()
        with _condition_errors():
            rows = self._matching(frame, condition).orderBy(_col(id_name)).limit(limit)
            # Through Arrow: Row objects would turn zoned timestamps into the host's local time.
            sampled: list[dict[str, Any]] = rows.toArrow().to_pylist()
        return sampled

    # -- membership ---------------------------------------------------------------------------

    def _segment_dir(self, segment_id: str) -> Path:
        # Segment ids are UUIDs; anything else is hashed rather than trusted as a path.
        safe = _SAFE_NAME.fullmatch(segment_id) is not None
        name = segment_id if safe else uuid.uuid5(uuid.NAMESPACE_URL, segment_id).hex
        return self.members_dir / f"segment={name}"

    def _current(self, segment_id: str) -> Path | None:
        folder = self._segment_dir(segment_id)
        try:
            version = (folder / _CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return folder / version

    def store_membership(self, segment_id: str, condition: exp.Expr) -> int:
        """Replace the segment's members with the matching customer ids.

        The new members are written beside the old ones and then named current in one rename,
        so a concurrent export reads either the old or the new membership, never a mix.
        """
        from pyspark.sql import Observation
        from pyspark.sql import functions as F

        frame, id_name = self._require()
        folder = self._segment_dir(segment_id)
        version = f"v-{uuid.uuid4().hex}"
        target = folder / version
        member, times = F.col(_MEMBER), F.col("n")
        # One Spark job writes the distinct ids and, on the way, counts what the checks need.
        checks = Observation("membership")
        with _condition_errors():
            ids = (
                self._matching(frame, condition)
                .groupBy(_col(id_name).cast("string").alias(_MEMBER))
                .agg(F.count(F.lit(1)).alias("n"))
                .observe(checks, F.count(F.lit(1)).alias("distinct"),
                         F.coalesce(F.sum(times), F.lit(0)).alias("matched"),
                         F.coalesce(F.sum(F.when(member.isNull() | (F.trim(member) == ""), times)),
                                    F.lit(0)).alias("missing"))
            )
        try:
            with _condition_errors():
                ids.select(member).write.parquet(str(target))
            counts = checks.get
            distinct, matched, missing = (int(counts[k]) for k in ("distinct", "matched",
                                                                    "missing"))
            if missing:
                raise DataError(
                    N_("%(missing)s matching profile(s) at %(location)s have no customer id in "
                       "column %(id_name)s"),
                    values={"missing": missing, "location": self.location,
                            "id_name": repr(id_name)},
                    column=id_name,
                )
            if matched != distinct:
                raise DataError(
                    N_("Customer ids at %(location)s must be unique, but %(matched)s matching "
                       "profile(s) repeat an id in column %(id_name)s"),
                    values={"location": self.location, "matched": matched - distinct,
                            "id_name": repr(id_name)},
                    hint=N_("Fix the profile table in the lakehouse, or point id_column at a "
                            "unique column."),
                    column=id_name,
                )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        previous = self._current(segment_id)
        pointer = folder / f".{version}.tmp"
        pointer.write_text(version, encoding="utf-8")
        os.replace(pointer, folder / _CURRENT)
        # The membership before the previous one is no longer read by anyone; the previous one
        # may still be, by an export that started just before the swap.
        for old in folder.glob("v-*"):
            if old.name not in (version, previous.name if previous else None):
                shutil.rmtree(old, ignore_errors=True)
        return distinct

    def drop_membership(self, segment_id: str) -> None:
        """Forget a segment's members (the segment was deleted)."""
        shutil.rmtree(self._segment_dir(segment_id), ignore_errors=True)

    def replace_suppressions(self, table: pa.Table) -> None:
        """Not supported yet: segments over Spark cannot test unsubscribes."""
        raise ConfigurationError(
            N_("The rule field unsubscribed_in_constant_contact needs a DuckDB or PostgreSQL "
               "profile store; the Spark store cannot evaluate it yet"),
            hint=N_("Runs still hold every unsubscribed contact back; only the segment rule is "
                    "unavailable. Remove the condition from the segment."))

    def _members(self, frame: DataFrame, id_name: str, segment_ids: Sequence[str]) -> DataFrame:
        """The current profiles held by any of the segments, each once."""
        spark = self._session()
        paths = [str(p) for p in (self._current(s) for s in dict.fromkeys(segment_ids)) if p]
        if not paths:
            ids = spark.createDataFrame([], f"{_MEMBER} STRING")
        else:
            ids = spark.read.schema(f"{_MEMBER} STRING").parquet(*paths)
        # Matched back to the current profiles, so profiles removed from the table since the
        # last refresh are not exported; a semi join keeps each profile once.
        ids = ids.select(ids[_MEMBER].alias(_JOIN_KEY))
        return frame.join(ids, _col(id_name).cast("string") == ids[_JOIN_KEY], "left_semi")

    def membership_size(self, segment_ids: Sequence[str]) -> int:
        """Distinct current profiles in the union of the segments' memberships."""
        if not segment_ids:
            return 0
        frame, id_name = self._require()
        return self._members(frame, id_name, segment_ids).count()

    def duplicate_emails(
        self, segment_ids: Sequence[str], *, email_column: str, consent_column: str | None,
        pattern: str, max_length: int,
    ) -> pa.Table:
        """Normalised emails that several sendable members share, with the highest id of each.

        Computed in Spark: the export never loads a million emails to find the few that repeat.
        An email is sendable when it is non-empty, at most ``max_length`` characters and matches
        ``pattern`` (as a Java regular expression: the RE2 patterns the export uses mean the
        same there), and the consent column (if any) is true.
        """
        from pyspark.sql import functions as F

        empty = pa.table({"email": pa.array([], pa.string()), "sort_id_max": pa.array([])})
        if not segment_ids:
            return empty
        frame, id_name = self._require()
        types = _schema(frame)
        for column in (email_column, consent_column):
            if column is not None and column not in types:
                raise DataError(N_("Unknown profile column %(column)s"),
                                values={"column": repr(column)}, field="columns")
        members = self._members(frame, id_name, segment_ids)
        if consent_column is not None:
            consent = _col(consent_column)
            if types[consent_column] == "BOOLEAN":
                members = members.where(consent.eqNullSafe(F.lit(True)))
            else:
                members = members.where(F.lower(consent.cast("string")).isin(
                    "true", "yes", "1", "y"))
        # RE2's \s (DuckDB trims with it) has no vertical tab; Java's has: spell it out.
        # Matched before lower-casing (see DuckDBProfileStore.duplicate_emails).
        trimmed = F.regexp_replace(_col(email_column).cast("string"),
                                   r"^[\t\n\f\r ]+|[\t\n\f\r ]+$", "")
        sendable = members.select(F.lower(trimmed).alias("email"), trimmed.alias("trimmed"),
                                  _col(id_name).alias("sort_id")).where(
            (F.col("email") != F.lit(""))
            & (F.length("email") <= F.lit(max_length))
            & F.col("trimmed").rlike(pattern)
        )
        duplicates = (
            sendable.groupBy("email")
            .agg(F.max("sort_id").alias("sort_id_max"), F.count(F.lit(1)).alias("n"))
            .where(F.col("n") > 1)
            .select("email", "sort_id_max")
        )
        table: pa.Table = duplicates.toArrow()
        return table

    def read_members(
        self, segment_ids: Sequence[str], columns: Sequence[str], *, batch_size: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the union of the segments' members as Arrow batches, ordered by customer id.

        Spark sorts the members and writes them as Parquet under ``work_dir`` (its sort gives
        part files in id order); the batches are then read from disk one at a time, so neither
        the JVM nor Python ever holds the whole membership. The files go when the stream ends.
        """
        if batch_size < 1:
            raise DataError("batch_size must be at least 1", field="batch_size")
        frame, id_name = self._require()
        wanted = member_columns(id_name, columns, frame.columns)
        if not segment_ids:
            return
        members = self._members(frame, id_name, segment_ids)
        spool = self.work_dir / "reads" / uuid.uuid4().hex
        try:
            members.select(*[_col(c) for c in wanted]).orderBy(_col(id_name)).write.parquet(
                str(spool))
            # part-00000-..., part-00001-...: the sort's ranges, in order.
            parts = sorted(spool.glob("part-*.parquet"), key=lambda p: int(p.name.split("-")[1]))
            yield from _rebatch(_read_parts(parts, wanted, batch_size), batch_size)
        finally:
            shutil.rmtree(spool, ignore_errors=True)


def _read_parts(parts: list[Path], columns: list[str], batch_size: int
                ) -> Iterator[pa.RecordBatch]:
    for part in parts:
        parquet = pq.ParquetFile(part)
        try:
            for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                # Spark's schema metadata means nothing to the export; drop it.
                yield batch.replace_schema_metadata(None)
        finally:
            parquet.close()


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``size`` rows (the last one smaller), across file boundaries, as
    the embedded store gives them."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= size:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, size).combine_chunks().to_batches()[0]
            rest = table.slice(size)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _col(name: str) -> Column:
    """A column by its exact name: quoted by sqlglot, so dots and backticks are not syntax."""
    from pyspark.sql import functions as F

    return F.col(exp.to_identifier(name, quoted=True).sql(dialect="spark"))


def _schema(frame: DataFrame) -> dict[str, str]:
    return {f.name: _type_name(f.dataType) for f in frame.schema.fields}


def _type_name(dtype: DataType) -> str:
    """Spark's type as the normalized names of :func:`normalize_type` (DuckDB's vocabulary)."""
    return normalize_type(_duckdb_name(dtype))


def _duckdb_name(dtype: DataType) -> str:
    from pyspark.sql import types as T

    if isinstance(dtype, T.StringType | T.VarcharType | T.CharType):
        return "VARCHAR"
    if isinstance(dtype, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return "BIGINT"
    if isinstance(dtype, T.FloatType | T.DoubleType):
        return "DOUBLE"
    if isinstance(dtype, T.DecimalType):
        return f"DECIMAL({dtype.precision},{dtype.scale})"
    if isinstance(dtype, T.TimestampNTZType):
        return "TIMESTAMP"
    if isinstance(dtype, T.TimestampType):
        # Spark's TIMESTAMP is an instant (shown in the session's zone): DuckDB's TIMESTAMPTZ.
        return "TIMESTAMP WITH TIME ZONE"
    if isinstance(dtype, T.DateType):
        return "DATE"
    if isinstance(dtype, T.BooleanType):
        return "BOOLEAN"
    if isinstance(dtype, T.BinaryType):
        return "BLOB"
    if isinstance(dtype, T.ArrayType):
        return f"{_duckdb_name(dtype.elementType)}[]"
    if isinstance(dtype, T.MapType):
        return f"MAP({_duckdb_name(dtype.keyType)}, {_duckdb_name(dtype.valueType)})"
    if isinstance(dtype, T.StructType):
        fields = ", ".join(f"{exp.to_identifier(f.name).sql(dialect='duckdb')} "
                           f"{_duckdb_name(f.dataType)}" for f in dtype.fields)
        return f"STRUCT({fields})"
    return dtype.simpleString().upper()


@contextmanager
def _condition_errors() -> Iterator[None]:
    """Spark's errors about a segment condition -> DataError (as DuckDB's are)."""
    from pyspark.errors import (
        AnalysisException,
        ArithmeticException,
        DateTimeException,
        IllegalArgumentException,
        NumberFormatException,
    )

    try:
        yield
    except (AnalysisException, ArithmeticException, DateTimeException,
            IllegalArgumentException, NumberFormatException) as exc:
        raise DataError(
            N_("The segment condition cannot be evaluated: %(error)s"),
            values={"error": _first_line(exc)[:300]}
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
