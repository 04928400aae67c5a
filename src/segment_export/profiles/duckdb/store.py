"""The embedded DuckDB profile store (``Settings.profiles_path``)."""

# ruff: noqa: S608 -- statements here are built from constant table names, generated staging
# names and identifiers quoted by sqlglot; every value travels as a query parameter.

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from sqlglot import exp

from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles import importer
from segment_export.profiles.duckdb.settings import MEMORY_LIMIT_MB, Lease, SharedSettings
from segment_export.profiles.imports import ImportMode, ProfileImport
from segment_export.profiles.store import (
    MEMBERS,
    META,
    PROFILES,
    SUPPRESSIONS,
    ImportSummary,
    member_columns,
    normalize_type,
    quote,
    table_options,
)
from segment_export.storage import is_storage_full, storage_full_error

_T = TypeVar("_T")

_ID_TYPES = ("VARCHAR", "BIGINT")
_ROW = "__segment_export_row"  # file order of a staged row; named so no real column clashes
# Members read_members fetches with one query: a few times this many rows' columns are what the
# read holds in DuckDB (about 10 MB at 100,000).
_WINDOW_ROWS = 100_000
# The export's reads run in less, on one thread, when nothing else uses the store (see
# SharedSettings): the duplicate-email query peaks 60-70 MB lower and fits in 64 MB on one thread
# (two threads each build a share of its hash tables and need more); the windows of
# read_members need little (_LEAN_WINDOW_MB for each 8 columns), and a low limit keeps
# DuckDB from caching the table blocks they read (up to the whole limit in a large store).
_LEAN_QUERY_MB = 64
_LEAN_WINDOW_MB = 32


class DuckDBProfileStore:
    """Profiles in an embedded DuckDB file (``Settings.profiles_path``).

    One store object may be shared by the threads of a process: each call works on its own
    cursor. DuckDB lets only one process open the file for writing at a time.
    """

    dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._root: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        # Membership writes one at a time: two refreshes of a segment deleting its rows at
        # once conflict in DuckDB ("Conflict on tuple deletion"), and one fails.
        self._membership_writes = threading.Lock()
        self._settings = SharedSettings()

    def __enter__(self) -> DuckDBProfileStore:
        return self

    @property
    def location(self) -> str:
        return str(self.path)

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise ConfigurationError(
                N_("The profile store %(path)s cannot be opened: %(error)s"),
                values={"path": self.path, "error": str(exc).split(chr(10))[0]},
                hint=N_("Another segment-export process holds it; stop that process or wait for "
                        "it."),
                path=str(self.path),
            ) from exc
        # Dates in rules are compared in UTC unless a rule says otherwise; never the host's zone.
        conn.execute("SET GLOBAL TimeZone = 'UTC'")
        # DuckDB keeps what a query used in its buffer pool (80 % of RAM by default); an export
        # shares the machine, so the store stays small and spills to disk beyond this.
        conn.execute(f"SET memory_limit = '{MEMORY_LIMIT_MB}MB'")
        # DuckDB's allocator keeps what a finished query freed until later allocations purge
        # it; a background thread hands it back within about a second, so the memory of the
        # export's first queries is not still held while it sends (about -10 MB of peak RSS
        # at a million members).
        conn.execute("SET allocator_background_threads = true")
        self._settings.reset(conn)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {META} (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MEMBERS} "
            "(segment_id VARCHAR NOT NULL, customer_id VARCHAR NOT NULL)"
        )
        return conn

    @contextmanager
    def _cursor(self, lean_mb: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the store's connection. ``lean_mb``: this is one of the export's reads,
        which may run on one thread within that many MB (see :class:`SharedSettings`)."""
        with self._lease(lean_mb) as (cur, _lease):
            yield cur

    @contextmanager
    def _lease(
        self, lean_mb: int | None
    ) -> Iterator[tuple[duckdb.DuckDBPyConnection, Lease]]:
        with self._lock:
            if self._root is None:
                self._root = self._open()
            cur = self._root.cursor()
            lease = self._settings.acquire(cur, lean_mb)
        try:
            yield cur, lease
        finally:
            try:
                with self._lock:
                    self._settings.release(cur if self._root is not None else None, lease)
            finally:
                cur.close()

    def close(self) -> None:
        """Close the database file; the store reopens it on the next call."""
        with self._lock:
            if self._root is not None:
                self._root.close()
                self._root = None

    # -- schema ------------------------------------------------------------------------------

    @staticmethod
    def _has_profiles(cur: duckdb.DuckDBPyConnection) -> bool:
        row = cur.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
            [PROFILES],
        ).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _table_columns(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        rows = cur.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        return {str(name): str(dtype) for name, dtype in rows}

    @property
    def id_column(self) -> str | None:
        """The column holding the customer id, remembered from the last import."""
        with self._cursor() as cur:
            return self._meta(cur, "id_column")

    @staticmethod
    def _meta(cur: duckdb.DuckDBPyConnection, key: str) -> str | None:
        row = cur.execute(f"SELECT value FROM {META} WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def schema(self) -> dict[str, str]:
        """Column -> normalized type; empty before the first import."""
        with self._cursor() as cur:
            return {
                name: normalize_type(dtype)
                for name, dtype in self._table_columns(cur, PROFILES).items()
            }

    def _require(self, cur: duckdb.DuckDBPyConnection) -> str:
        id_column = self._meta(cur, "id_column")
        if id_column is None or not self._has_profiles(cur):
            raise ConfigurationError(
                N_("No profiles have been imported yet"),
                hint=N_("Run `segment-export profiles import FILE` (or `profiles generate`) "
                        "first."),
            )
        return id_column

    # -- import ------------------------------------------------------------------------------

    def import_file(self, path: Path, options: ProfileImport | None = None) -> ImportSummary:
        """Load a CSV, Parquet or JSON Lines file; see :class:`ProfileStore`.

        Replace refuses a file whose customer ids repeat (a broken unification should not
        silently lose rows); upsert keeps the last row of each id.
        """
        options = options or ProfileImport()
        path = Path(path)
        fmt = importer.detect_format(path, options.format)
        importer.check_file(path, fmt)

        def on_error(cur: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> DataError:
            if fmt == "csv" and "sniffing" in str(exc):
                return self._diagnose_csv(cur, path, exc)
            return importer.translate_error(exc, path, fmt)

        def after_load(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
            if fmt == "csv":
                self._check_single_column_csv(cur, path, staging)

        return self._import(
            importer.reader_sql(fmt),
            [str(path)],
            label=path.name,
            row_label="line" if fmt != "parquet" else "row",
            first_row=2 if fmt == "csv" else 1,
            on_error=on_error,
            after_load=after_load,
            options=options,
        )

    def import_table(self, table: pa.Table, options: ProfileImport | None = None) -> ImportSummary:
        """Load an Arrow table (the generator's output), with the same checks as a file."""
        options = table_options(options)
        view = f"_arrow_{uuid.uuid4().hex}"

        def on_error(_cur: duckdb.DuckDBPyConnection, exc: duckdb.Error) -> DataError:
            return DataError(N_("The table cannot be imported: %(error)s"),
                             values={"error": str(exc).splitlines()[0][:200]})

        return self._import(
            view,
            [],
            label="the table",
            row_label="row",
            first_row=1,
            on_error=on_error,
            after_load=None,
            options=options,
            register=(view, table),
        )

    def _diagnose_csv(
        self, cur: duckdb.DuckDBPyConnection, path: Path, exc: duckdb.Error
    ) -> DataError:
        # The sniffer fails on ragged rows without saying where; a strict read names the line.
        located = importer.locate_invalid_utf8(path)
        if located is not None:
            return located
        header = importer.csv_header(path)
        if header is not None:
            sql, params = importer.strict_csv_sql(*header)
            try:
                cur.execute(f"SELECT count(*) FROM {sql}", [str(path), *params]).fetchone()
            except duckdb.Error as strict_exc:
                return importer.translate_error(strict_exc, path, "csv")
        return importer.translate_error(exc, path, "csv")

    def _check_single_column_csv(
        self, cur: duckdb.DuckDBPyConnection, path: Path, staging: str
    ) -> None:
        # A ragged file can make the sniffer settle on "one column named 'a,b,c'".
        columns = self._table_columns(cur, staging)
        if len(columns) != 1:
            return
        header = importer.csv_header(path)
        if header is None or len(header[1]) < 2:
            return
        sql, params = importer.strict_csv_sql(*header)
        try:
            cur.execute(f"SELECT count(*) FROM {sql}", [str(path), *params]).fetchone()
        except duckdb.Error as exc:
            raise importer.translate_error(exc, path, "csv") from exc

    def _import(
        self,
        source: str,
        params: list[object],
        *,
        label: str,
        row_label: str,
        first_row: int,
        on_error: Callable[[duckdb.DuckDBPyConnection, duckdb.Error], DataError],
        after_load: Callable[[duckdb.DuckDBPyConnection, str], None] | None,
        options: ProfileImport,
        register: tuple[str, pa.Table] | None = None,
    ) -> ImportSummary:
        id_column, mode, email_column = options.id_column, options.mode, options.email_column
        if mode not in ("replace", "upsert"):
            raise DataError(N_("Unknown import mode %(mode)s; use replace or upsert"),
                            values={"mode": repr(mode)}, field="mode")
        staging = f"_import_{uuid.uuid4().hex}"
        with self._cursor() as cur:
            if register is not None:
                cur.register(*register)
            try:
                try:
                    # Row order is kept (DuckDB preserves insertion order), so rowid = file order.
                    cur.execute(f"CREATE TABLE {staging} AS SELECT * FROM {source}", params)
                except duckdb.Error as exc:
                    if is_storage_full(exc):  # the disk, not the data: say so
                        raise storage_full_error(exc, data_dir=str(self.path.parent)) from exc
                    raise on_error(cur, exc) from exc
                if after_load is not None:
                    after_load(cur, staging)
                return self._validate_and_swap(
                    cur, staging, label=label, row_label=row_label, first_row=first_row,
                    id_column=id_column, mode=mode, email_column=email_column,
                )
            except duckdb.Error as exc:
                if is_storage_full(exc):
                    raise storage_full_error(exc, data_dir=str(self.path.parent)) from exc
                raise
            finally:
                cur.execute(f"DROP TABLE IF EXISTS {staging}")
                if register is not None:
                    cur.unregister(register[0])

    def _validate_and_swap(
        self,
        cur: duckdb.DuckDBPyConnection,
        staging: str,
        *,
        label: str,
        row_label: str,
        first_row: int,
        id_column: str,
        mode: ImportMode,
        email_column: str | None,
    ) -> ImportSummary:
        columns = self._table_columns(cur, staging)
        names = list(columns)
        rows = _scalar(cur.execute(f"SELECT count(*) FROM {staging}"))
        if rows == 0:
            raise DataError(N_("%(label)s has a header but no rows; nothing to import"),
                            values={"label": label}, rows=0)
        id_name = _resolve_column(id_column, names, label=label, what="customer id",
                                  option="--id-column")
        if email_column:
            _resolve_column(email_column, names, label=label, what="email address",
                            option="--email-column")
        id_type = normalize_type(columns[id_name])
        if id_type not in _ID_TYPES:
            raise DataError(
                N_("%(label)s: the customer id column %(id_name)s holds %(id_type)s values; ids "
                   "must be text or whole numbers"),
                values={"label": label, "id_name": repr(id_name), "id_type": columns[id_name]},
                column=id_name,
            )
        qid = quote(id_name)
        missing = cur.execute(
            f"SELECT min(rowid), count(*) FROM {staging} "
            f"WHERE {qid} IS NULL OR trim(CAST({qid} AS VARCHAR)) = ''"
        ).fetchone()
        if missing and missing[1]:
            raise DataError(
                N_("%(label)s, %(row_label)s %(first_row)s: no customer id in column "
                   "%(id_name)s (%(missing)s row(s) without one)"),
                values={"label": label, "row_label": row_label,
                        "first_row": int(missing[0]) + first_row, "id_name": repr(id_name),
                        "missing": missing[1]},
                column=id_name,
                row=int(missing[0]) + first_row,
            )
        dupes = cur.execute(
            f"SELECT CAST({qid} AS VARCHAR), count(*), list(rowid ORDER BY rowid)[1:3] "
            f"FROM {staging} GROUP BY {qid} HAVING count(*) > 1 ORDER BY min(rowid) LIMIT 3"
        ).fetchall()
        superseded = 0
        if dupes:
            superseded = _scalar(
                cur.execute(f"SELECT count(*) - count(DISTINCT {qid}) FROM {staging}")
            )
            if mode == "replace":
                shown = "; ".join(
                    f"{cid!r} {n} times ({row_label}s "
                    f"{', '.join(str(r + first_row) for r in at)})"
                    for cid, n, at in dupes
                )
                raise DataError(
                    N_("%(label)s: customer ids must be unique, but %(superseded)s row(s) "
                       "repeat an earlier id: %(shown)s"),
                    values={"label": label, "superseded": superseded, "shown": shown},
                    hint=N_("Fix the file, or import it with --mode upsert (the last row of each "
                            "id wins)."),
                    column=id_name,
                )
        self._swap(cur, staging, id_name=id_name, mode=mode, deduplicate=bool(dupes))
        total = _scalar(cur.execute(f"SELECT count(*) FROM {PROFILES}"))
        return ImportSummary(
            rows=rows,
            columns=names,
            id_column=id_name,
            mode=mode,
            total=total,
            superseded=superseded,
            schema={n: normalize_type(t) for n, t in self._table_columns(cur, PROFILES).items()},
        )

    def _swap(
        self, cur: duckdb.DuckDBPyConnection, staging: str, *, id_name: str, mode: ImportMode,
        deduplicate: bool,
    ) -> None:
        qid = quote(id_name)
        current = self._meta(cur, "id_column") if self._has_profiles(cur) else None
        if mode == "upsert" and current is not None and current != id_name:
            raise DataError(
                N_("The profiles are keyed by %(current)s, not %(id_name)s; upsert with "
                   "--id-column %(current2)s, or replace the profiles"),
                values={"current": repr(current), "id_name": repr(id_name), "current2": current},
                column=id_name,
            )
        incoming = staging
        if deduplicate:
            incoming = (
                f"(SELECT * EXCLUDE ({_ROW}) FROM (SELECT *, rowid AS {_ROW} FROM {staging}) "
                f"QUALIFY row_number() OVER (PARTITION BY {qid} ORDER BY {_ROW} DESC) = 1)"
            )
        merged = f"_merged_{uuid.uuid4().hex}"
        if mode == "upsert" and current is not None:
            # Rebuild rather than UPDATE in place: the file may add columns or widen types,
            # and UNION BY NAME settles both; the swap below keeps it atomic for readers.
            cur.execute(
                f"CREATE TABLE {merged} AS SELECT * FROM {PROFILES} "
                f"WHERE CAST({qid} AS VARCHAR) NOT IN "
                f"(SELECT CAST({qid} AS VARCHAR) FROM {staging}) "
                f"UNION ALL BY NAME SELECT * FROM {incoming}"
            )
            source = merged
        elif deduplicate:
            cur.execute(f"CREATE TABLE {merged} AS SELECT * FROM {incoming}")
            source = merged
        else:
            source = staging
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute(f"DROP TABLE IF EXISTS {PROFILES}")
            cur.execute(f"ALTER TABLE {source} RENAME TO {PROFILES}")
            cur.execute(f"INSERT OR REPLACE INTO {META} VALUES ('id_column', ?)", [id_name])
            cur.execute("COMMIT")
        except duckdb.Error:
            cur.execute("ROLLBACK")
            raise
        finally:
            if source != merged:
                cur.execute(f"DROP TABLE IF EXISTS {merged}")

    # -- queries -----------------------------------------------------------------------------

    def count(self) -> int:
        """How many profiles there are (0 before the first import)."""
        with self._cursor() as cur:
            if not self._has_profiles(cur):
                return 0
            return _scalar(cur.execute(f"SELECT count(*) FROM {PROFILES}"))

    def _where(self, condition: exp.Expr) -> str:
        return condition.sql(dialect=self.dialect)

    def _run(self, cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object] = ()) -> Any:
        try:
            return cur.execute(sql, list(params))
        except (duckdb.ConversionException, duckdb.BinderException, duckdb.OutOfRangeException,
                duckdb.InvalidInputException, duckdb.ParserException) as exc:
            raise DataError(
                N_("The segment condition cannot be evaluated: %(error)s"),
                values={"error": str(exc).splitlines()[0][:300]}
            ) from exc

    def count_where(self, condition: exp.Expr) -> int:
        """How many profiles match ``condition``."""
        query = exp.select(exp.Count(this=exp.Star())).from_(PROFILES).where(condition)
        with self._cursor() as cur:
            self._require(cur)
            return _scalar(self._run(cur, query.sql(dialect=self.dialect)))

    def sample_where(self, condition: exp.Expr, limit: int = 10) -> list[dict[str, Any]]:
        """Up to ``limit`` (≤ 1000) matching profiles, lowest customer ids first."""
        limit = max(0, min(int(limit), 1000))
        with self._cursor() as cur:
            id_name = self._require(cur)
            query = (
                exp.select("*").from_(PROFILES).where(condition)
                .order_by(exp.column(id_name, quoted=True)).limit(limit)
            )
            result = self._run(cur, query.sql(dialect=self.dialect))
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def store_membership(self, segment_id: str, condition: exp.Expr) -> int:
        """Replace the segment's members with the matching customer ids, in one transaction."""
        with self._membership_writes, self._cursor() as cur:
            id_name = self._require(cur)
            select = (
                exp.select(
                    exp.Placeholder(),
                    exp.cast(exp.column(id_name, quoted=True), exp.DataType.build("VARCHAR")),
                )
                .from_(PROFILES)
                .where(condition)
            )
            insert = exp.insert(select, MEMBERS).sql(dialect=self.dialect)
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f"DELETE FROM {MEMBERS} WHERE segment_id = ?", [segment_id])
                size = _scalar(self._run(cur, insert, [segment_id]))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return size

    def drop_membership(self, segment_id: str) -> None:
        """Forget a segment's members (the segment was deleted)."""
        with self._membership_writes, self._cursor() as cur:
            cur.execute(f"DELETE FROM {MEMBERS} WHERE segment_id = ?", [segment_id])

    def replace_suppressions(self, table: pa.Table) -> None:
        """Replace the copy of the suppression set segment rules read, in one transaction."""
        with self._cursor() as cur:
            cur.register("suppressions_view", table.select(["connection_id", "email_hash"]))
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f"CREATE OR REPLACE TABLE {SUPPRESSIONS} AS "
                            "SELECT connection_id::VARCHAR AS connection_id, "
                            "email_hash::VARCHAR AS email_hash FROM suppressions_view")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.unregister("suppressions_view")

    def _members_query(
        self, id_name: str, id_type: str, segment_ids: Sequence[str], select: list[exp.Expr]
    ) -> exp.Select:
        # Members are matched back to the current profiles, so profiles removed by a
        # re-import since the last refresh are not exported.
        stored = exp.column("customer_id")
        in_segments = exp.column("segment_id").isin(*[exp.Placeholder() for _ in segment_ids])
        column = exp.column(id_name, quoted=True)
        if normalize_type(id_type) != "BIGINT":
            ids = exp.select(stored).from_(MEMBERS).where(in_segments)
            key = exp.cast(column, exp.DataType.build("VARCHAR"))
            return exp.select(*select).from_(PROFILES).where(key.isin(query=ids))
        # Whole-number ids: the stored ids (CAST(id AS VARCHAR), written by store_membership)
        # are cast back to the id's type on the member side, so the profiles' ids are compared
        # as numbers instead of 10 M of them being turned into text for the join (3-5x faster
        # in a 10 M store). Only a stored id that is exactly the text of the number it casts
        # to matches, so the members are exactly those of the text comparison.
        typed = exp.TryCast(this=stored, to=exp.DataType.build(id_type, dialect="duckdb"))
        ids = exp.select(typed).from_(MEMBERS).where(exp.and_(in_segments, exp.EQ(
            this=exp.cast(typed.copy(), exp.DataType.build("VARCHAR")), expression=stored)))
        return exp.select(*select).from_(PROFILES).where(column.isin(query=ids))

    def membership_size(self, segment_ids: Sequence[str]) -> int:
        """Distinct current profiles in the union of the segments' memberships."""
        if not segment_ids:
            return 0

        def count(cur: duckdb.DuckDBPyConnection) -> int:
            id_name = self._require(cur)
            id_type = self._table_columns(cur, PROFILES)[id_name]
            query = self._members_query(id_name, id_type, segment_ids,
                                        [exp.Count(this=exp.Star())])
            return _scalar(cur.execute(query.sql(dialect=self.dialect), list(segment_ids)))

        return self._lean_query(_LEAN_QUERY_MB, count)

    def _lean_query(self, lean_mb: int, run: Callable[[duckdb.DuckDBPyConnection], _T]) -> _T:
        """``run`` on a lean cursor (one of the export's reads, see :class:`SharedSettings`); again
        with the store's settings if it does not fit (a larger segment than the limit is for)."""
        try:
            with self._cursor(lean_mb) as cur:
                return run(cur)
        except duckdb.OutOfMemoryException:
            with self._cursor() as cur:
                return run(cur)

    def duplicate_emails(
        self, segment_ids: Sequence[str], *, email_column: str, consent_column: str | None,
        pattern: str, max_length: int,
    ) -> pa.Table:
        """Normalised emails that several sendable members share, with the highest id of each.

        Computed where the profiles are: the export never loads a million emails to find the
        few that repeat. An email is sendable when it is non-empty, at most ``max_length``
        characters and matches ``pattern`` (RE2), and the consent column (if any) is true.
        """
        empty = pa.table({"email": pa.array([], pa.string()), "sort_id_max": pa.array([])})
        if not segment_ids:
            return empty

        def duplicates(cur: duckdb.DuckDBPyConnection) -> pa.Table:
            id_name = self._require(cur)
            types = self._table_columns(cur, PROFILES)
            for column in (email_column, consent_column):
                if column is not None and column not in types:
                    raise DataError(N_("Unknown profile column %(column)s"),
                                    values={"column": repr(column)}, field="columns")
            # The pattern is matched before lower-casing, as the export's own check does: a
            # non-ASCII letter that lower() folds into ASCII (U+212A KELVIN SIGN into k) must not
            # make an address that is refused supersede a genuine one.
            trimmed = exp.RegexpReplace(
                this=exp.cast(exp.column(email_column, quoted=True), "VARCHAR"),
                expression=exp.Literal.string(r"^\s+|\s+$"),
                replacement=exp.Literal.string(""),
                modifiers=exp.Literal.string("g"),
            )
            inner = self._members_query(id_name, types[id_name], segment_ids, [
                exp.Lower(this=trimmed).as_("email"), trimmed.as_("trimmed"),
                exp.column(id_name, quoted=True).as_("sort_id")])
            if consent_column is not None:
                consent = exp.column(consent_column, quoted=True)
                if normalize_type(types[consent_column]) == "BOOLEAN":
                    inner = inner.where(exp.Is(this=consent, expression=exp.true()))
                else:
                    inner = inner.where(exp.Lower(this=exp.cast(consent, "VARCHAR")).isin(
                        *[exp.Literal.string(v) for v in ("true", "yes", "1", "y")]))
            e = exp.column("email")
            # One CASE rather than three conditions joined by AND: DuckDB pushes the separate
            # empty and length tests below the membership join into the scan of every profile,
            # trimming and lower-casing all of them first (10 M in a 10 M store: 4-9 s instead
            # of about 1). With the pattern inside, the test stays above the join.
            sendable = exp.Case(ifs=[exp.If(
                this=exp.RegexpLike(this=exp.column("trimmed"),
                                    expression=exp.Literal.string(pattern)),
                true=exp.and_(
                    exp.NEQ(this=e, expression=exp.Literal.string("")),
                    exp.LTE(this=exp.Length(this=e), expression=exp.Literal.number(max_length)),
                ))], default=exp.false())
            query = (
                exp.select(e, exp.Max(this=exp.column("sort_id")).as_("sort_id_max"))
                .from_(inner.subquery("sendable"))
                .where(sendable)
                .group_by(e)
                .having(exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)))
            )
            table: pa.Table = cur.sql(query.sql(dialect=self.dialect),
                                      params=list(segment_ids)).to_arrow_table()
            return table

        return self._lean_query(_LEAN_QUERY_MB, duplicates)

    def read_members(
        self, segment_ids: Sequence[str], columns: Sequence[str], *, batch_size: int = 100_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream the union of the segments' members as Arrow batches, ordered by customer id.

        Each customer appears once, however many of the segments hold it; the id column comes
        first, then ``columns`` in the order asked. The order is stable, so a run can resume.

        Read in windows: first the members' ids alone, sorted (8 bytes a member for whole-number
        ids), then the asked columns of up to ``_WINDOW_ROWS`` members at a time, in one read
        transaction so every window sees the same profiles. One ordered query over every
        column kept the whole sorted segment in DuckDB (about 100 MB at a million members)
        until its last batch was read, i.e. for the whole of an export's sending.
        """
        if batch_size < 1:
            raise DataError("batch_size must be at least 1", field="batch_size")
        with self._lease(None) as (cur, lease):
            id_name = self._require(cur)
            available = self._table_columns(cur, PROFILES)
            wanted = member_columns(id_name, columns, available)
            if not segment_ids:
                return
            key = exp.column(id_name, quoted=True)
            ids_query = self._members_query(
                id_name, available[id_name], segment_ids, [key]).order_by(key)
            # Whole batches per window, so only the last batch of the read is short.
            window_rows = batch_size * max(1, -(-_WINDOW_ROWS // batch_size))
            view = f"_window_{uuid.uuid4().hex}"
            window_query = (
                exp.select(*[exp.column(c, quoted=True) for c in wanted]).from_(PROFILES)
                .where(exp.and_(
                    # The range lets DuckDB skip the row groups outside the window (profiles
                    # mostly arrive in id order); the join picks the members in it.
                    exp.Between(this=key.copy(), low=exp.Placeholder(), high=exp.Placeholder()),
                    key.copy().isin(query=exp.select("id").from_(view)),
                ))
                .order_by(key.copy())
                .sql(dialect=self.dialect)
            )
            with self._lock:
                self._settings.need(cur, lease, _LEAN_QUERY_MB)
            cur.execute("BEGIN TRANSACTION")
            reader: pa.RecordBatchReader | None = None
            try:
                try:
                    ids = cur.sql(ids_query.sql(dialect=self.dialect),
                                  params=list(segment_ids)).to_arrow_table().column(0)
                except duckdb.OutOfMemoryException:
                    # Too many members for the lean limit: again with the store's settings.
                    cur.execute("ROLLBACK")
                    with self._lock:
                        self._settings.need(cur, lease, None)
                    cur.execute("BEGIN TRANSACTION")
                    ids = cur.sql(ids_query.sql(dialect=self.dialect),
                                  params=list(segment_ids)).to_arrow_table().column(0)
                # The windows need little; a low limit also keeps DuckDB from caching every
                # table block they read (in a 10 M store, 100 MB of them at the 128 MB limit).
                # What a window needs grows with its columns (all 15 of the generated
                # profiles: more than 16 MB, less than 32), and a window that ran out of
                # memory would end the read's transaction: 32 MB for each 8 columns.
                window_mb = min(MEMORY_LIMIT_MB, _LEAN_WINDOW_MB * -(-len(wanted) // 8))
                with self._lock:
                    self._settings.need(cur, lease, window_mb)
                for start in range(0, len(ids), window_rows):
                    window = ids.slice(start, window_rows)
                    cur.register(view, pa.table({"id": window}))
                    reader = cur.sql(window_query, params=[window[0].as_py(),
                                                           window[-1].as_py()]
                                     ).to_arrow_reader(batch_size)
                    yield from reader
                    reader.close()
                    reader = None
            finally:
                try:
                    if reader is not None:
                        reader.close()
                    cur.execute("COMMIT")
                    cur.unregister(view)
                except duckdb.ConnectionException:
                    pass  # the store was closed before the read ended: nothing left to end


def _scalar(result: Any) -> int:
    row = result.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _resolve_column(name: str, names: list[str], *, label: str, what: str, option: str) -> str:
    if name in names:
        return name
    folded = [n for n in names if n.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    shown = ", ".join(repr(n) for n in names[:12]) + (" …" if len(names) > 12 else "")
    raise DataError(
        N_("%(label)s has no %(name)s column for the %(what)s (its columns: %(shown)s); name "
           "the right column with %(option)s"),
        values={"label": label, "name": repr(name), "what": what, "shown": shown, "option": option},
        column=name,
    )
