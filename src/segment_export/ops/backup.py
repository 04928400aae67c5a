"""Backup and restore of the state database and the profile store, taken while the service runs.

A backup is one ``.tar.gz`` (owner-only): a manifest (format and app versions, each file's size
and SHA-256) signed with a key derived from the secrets key, then data files only: the state
database (a SQLite copy made with SQLite's online backup API, or each PostgreSQL table as
``COPY ... (FORMAT binary)`` data), the profile store's tables as Parquet and, only when asked,
the key file. Restore executes nothing from the archive: the archive is checked against the
signed manifest first (ops/archive.py), the schemas come from this code (migrations, the profile
store's own DDL) and the archive only supplies rows.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy import Engine, make_url

from segment_export import __version__, audit
from segment_export.config import Settings
from segment_export.db import make_engine, upgrade_database
from segment_export.db.engine import alembic_config, current_revision, upgrade_in_transaction
from segment_export.db.models import (
    Base,
    Connection,
    Export,
    ExportMember,
    ExportMemberBlock,
    RejectedRow,
    Run,
    User,
)
from segment_export.db.types import utcnow
from segment_export.errors import ConfigurationError
from segment_export.languages import N_, text
from segment_export.ops.archive import (
    FORMAT,
    MANIFEST,
    PRODUCT,
    BackupRefused,
    extract_verified,
    member_entry,
    read_verified_manifest,
    sign,
    write_archive,
)
from segment_export.ops.keys import fingerprint, key_source, undecryptable, write_key_file
from segment_export.profiles.duckdb import DuckDBProfileStore
from segment_export.profiles.store import MEMBERS, META, PROFILES, quote

log = logging.getLogger(__name__)

STATE_SQLITE = "state.sqlite"
STATE_TABLES = "state"
PROFILES_DIR = "profiles"
KEYS = "secret.key"
# The profile store's tables a backup holds; anything else in the file is transient (staging).
PROFILE_TABLES = (PROFILES, MEMBERS, META)
# The rows a restore reports, so a person can check it brought back what they expect.
COUNTED = {"users": User, "connections": Connection, "exports": Export, "runs": Run,
           "export_members": ExportMember, "export_member_blocks": ExportMemberBlock,
           "rejected_rows": RejectedRow}
PROFILE_STORE_HELD = N_(
    "Another segment-export process (serve or worker) holds the profile store, and DuckDB lets "
    "one process open it at a time"
)
# Column types of the profiles table a restore casts to (as DuckDB names them); a column of any
# other type (STRUCT, MAP, ...) keeps the type its Parquet file gives it.
_SCALAR_TYPES = frozenset({
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "VARCHAR", "BLOB", "UUID", "DATE",
    "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS",
    "TIMESTAMP_NS", "INTERVAL"})
_DECIMAL = re.compile(r"DECIMAL\(([1-9][0-9]?),([0-9][0-9]?)\)")
_SQL_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where the backup went and what it holds."""

    path: Path
    manifest: dict[str, Any]
    bytes: int


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore brought back."""

    manifest: dict[str, Any]
    counts: dict[str, int]
    requeued_runs: int
    warnings: list[str] = field(default_factory=list)


def default_backup_name() -> str:
    """``segment-export-<UTC time>.tar.gz``."""
    return f"segment-export-{utcnow():%Y%m%dT%H%M%SZ}.tar.gz"


# -- backup --------------------------------------------------------------------------------------


def create_backup(*, settings: Settings, engine: Engine, destination: Path,
                  include_key: bool = False, profiles: bool = True) -> BackupResult:
    """Write a consistent backup of the state database and the profile store to ``destination``
    (a ``.tar.gz`` path, or a directory to put ``segment-export-<time>.tar.gz`` in).

    Safe while the service runs: SQLite is copied through its online backup API (one snapshot),
    PostgreSQL tables are copied in one repeatable-read transaction, DuckDB tables in one
    transaction. Inside the process that holds the profile store (the web app or a worker)
    that works as is; from another process, DuckDB's one-process lock means the profile store
    can only be read while no other process holds it. The manifest is signed with a key derived
    from the newest secrets key: only an installation holding that key can restore it.
    """
    from segment_export.profiles.engines import engine_of

    # Profiles kept in PostgreSQL or a lakehouse are backed up where they live, with that
    # system's own tools; only the embedded store belongs to this product's backup.
    profiles = profiles and engine_of(settings.profile_store) == "duckdb"
    target = destination / default_backup_name() if destination.is_dir() else destination
    if not target.name.endswith((".tar.gz", ".tgz")):
        raise ConfigurationError(N_("A backup is written as .tar.gz, not %(name)s"),
                                 values={"name": repr(target.name)},
                                 field="destination")
    source = key_source(settings)
    if not source.keys:
        raise ConfigurationError(N_("There is no secrets key to sign the backup with yet"),
                                 hint=N_("Start the service once (it generates the key), or set "
                                         "SEGMENT_EXPORT_SECRET_KEY."))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".segment-export-backup-", dir=target.parent) as tmp:
        work = Path(tmp)  # mkdtemp makes it owner-only
        database = _backup_database(engine, work)
        profile_tables = _export_profiles(settings.profiles_path, work) if profiles else None
        if include_key:
            write_key_file(work / KEYS, source.keys)
        files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "product": PRODUCT,
            "version": __version__,
            "created_at": utcnow().isoformat(),
            "database": {**database, "revision": current_revision(engine)},
            "profiles": None if profile_tables is None else {"tables": profile_tables},
            "key": {"included": include_key, "source": source.kind,
                    "fingerprints": [fingerprint(k) for k in source.keys],
                    "signed_with": fingerprint(source.keys[0])},
            "files": {name: member_entry(work / name) for name in files},
        }
        text = (json.dumps(manifest, indent=2) + "\n").encode()
        write_archive(target, work, text, sign(text, source.keys[0]))
    log.info("backup written to %s", target)
    return BackupResult(target, manifest, target.stat().st_size)


def _backup_database(engine: Engine, work: Path) -> dict[str, Any]:
    if engine.dialect.name == "sqlite":
        copy = work / STATE_SQLITE
        with engine.connect() as conn, closing(sqlite3.connect(copy)) as target:
            source = conn.connection.driver_connection
            assert isinstance(source, sqlite3.Connection)
            # pages=-1: the whole database in one step, i.e. one read snapshot of it.
            source.backup(target, pages=-1)
        with closing(sqlite3.connect(copy)) as target:
            # A single self-contained file: no -wal beside it to forget.
            target.execute("PRAGMA journal_mode=DELETE")
        return {"dialect": "sqlite", "file": STATE_SQLITE}
    if engine.dialect.name == "postgresql":
        return {"dialect": "postgresql", "tables": _copy_postgres_tables(engine, work)}
    raise ConfigurationError(N_("Backing up a %(name)s state database is not supported"),
                             values={"name": engine.dialect.name})


def _psycopg(engine: Engine) -> Any:
    """A raw psycopg (3) connection of ``engine``'s pool, and the connection to give back."""
    import psycopg

    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    if not isinstance(dbapi, psycopg.Connection):
        raw.close()
        raise ConfigurationError(N_("Backing up PostgreSQL needs the psycopg driver "
                                    "(postgresql+psycopg://...)"), field="database_url")
    return raw, dbapi


def _columns_pg(cur: Any, table: str) -> list[str]:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND table_name = %s ORDER BY ordinal_position", [table])
    return [str(name) for (name,) in cur.fetchall()]


def _copy_postgres_tables(engine: Engine, work: Path) -> dict[str, Any]:
    """Each table of the state store as binary COPY data, all from one snapshot."""
    import psycopg
    from psycopg import sql

    (work / STATE_TABLES).mkdir()
    raw, dbapi = _psycopg(engine)
    tables: dict[str, Any] = {}
    try:
        dbapi.rollback()
        dbapi.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        dbapi.read_only = True
        with dbapi.cursor() as cur:
            for table in Base.metadata.sorted_tables:
                columns = _columns_pg(cur, table.name)
                if not columns:
                    raise ConfigurationError(N_("The state database has no table %(name)s"),
                                             values={"name": table.name},
                                             hint=N_("Run `segment-export db upgrade` first."))
                name = f"{STATE_TABLES}/{table.name}.pgcopy"
                statement = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(
                    sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
                with (work / name).open("wb") as out, cur.copy(statement) as copy:
                    for block in copy:
                        out.write(block)
                tables[table.name] = {"file": name, "columns": columns}
        dbapi.rollback()
    finally:
        dbapi.rollback()
        dbapi.isolation_level = None
        dbapi.read_only = None
        raw.close()
    return tables


def _export_profiles(path: Path, work: Path) -> dict[str, Any] | None:
    """The profile store's own tables as Parquet files, with their columns and row counts."""
    if not path.exists():
        return None
    (work / PROFILES_DIR).mkdir()
    tables: dict[str, Any] = {}
    with _duckdb(path) as conn:
        conn.execute("BEGIN TRANSACTION")  # one snapshot, even while imports write
        try:
            for table in PROFILE_TABLES:
                columns = conn.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = "
                    "'main' AND table_name = ? ORDER BY column_index", [table]).fetchall()
                if not columns:
                    continue
                name = f"{PROFILES_DIR}/{table}.parquet"
                conn.execute(f"COPY (SELECT * FROM {quote(table)}) TO "  # noqa: S608 - a constant table, our own path
                             f"'{_sql_path(work / name)}' (FORMAT parquet)")
                rows = conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()  # noqa: S608
                tables[table] = {"file": name, "rows": int(rows[0]) if rows else 0,
                                 "columns": [[str(c), str(t)] for c, t in columns]}
        finally:
            conn.execute("COMMIT")
    return tables


@contextmanager
def _duckdb(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    # In the process that holds the store this joins its open database (DuckDB shares one
    # instance per file within a process); from another process it needs the file free.
    try:
        conn = duckdb.connect(str(path))
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise ConfigurationError(
            N_("%(held)s: %(error)s"),
            values={"held": text(PROFILE_STORE_HELD), "error": str(exc).splitlines()[0]},
            hint=N_("Stop serve/worker for the moment the profiles are copied, or add "
                    "--no-profiles and back up only the state database."), path=str(path)) from exc
    try:
        yield conn
    finally:
        conn.close()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


# -- restore -------------------------------------------------------------------------------------


def read_manifest(archive: Path, *, settings: Settings) -> dict[str, Any]:
    """The manifest of a backup archive, once its signature is checked with the configured
    key(s) (BackupRefused otherwise)."""
    manifest, _key = read_verified_manifest(archive, key_source(settings).keys)
    return manifest


def restore_backup(*, settings: Settings, archive: Path, force: bool = False,
                   max_member_bytes: int | None = None) -> RestoreResult:
    """Replace the state database and the profile store with those of ``archive``.

    The service must be stopped (serve and every worker). Before anything is replaced the
    archive is verified against its signed manifest (ops/archive.py), the state database is
    rebuilt beside the live one from this code's migrations with the backup's rows, and, for
    SQLite, its stored secrets are checked against the configured key(s): a restore that would
    leave every connection unusable is refused unless ``force``. Runs that were running when
    the backup was taken are queued again; they resume after their last confirmed batch.
    """
    warnings: list[str] = []
    configured = key_source(settings).keys
    with tempfile.TemporaryDirectory(prefix=".segment-export-restore-",
                                     dir=settings.ensure_data_dir()) as tmp:
        work = Path(tmp)
        verified = extract_verified(archive, configured, work, **(
            {} if max_member_bytes is None else {"max_member_bytes": max_member_bytes}))
        manifest, files = verified.manifest, verified.files
        keys = _restore_keys(settings, manifest, files.get(KEYS))
        database = manifest.get("database") or {}
        revision = _known_revision(database.get("revision"))
        target_url = make_url(settings.resolved_database_url)
        if target_url.get_backend_name() != database.get("dialect"):
            raise ConfigurationError(
                N_("The backup holds a %(database)s state database but "
                   "SEGMENT_EXPORT_DATABASE_URL points to %(target_url)s"),
                values={"database": database.get('dialect'),
                        "target_url": target_url.get_backend_name()},
                hint=N_("Restore into the same kind of database the backup was taken from."))
        profiles = manifest.get("profiles")
        if profiles is not None:
            _check_profile_store_free(settings.profiles_path)
        if database["dialect"] == "sqlite":
            target = Path(target_url.database or "")
            staged = target.with_name(target.name + ".restoring")
            _build_sqlite(_file(files, STATE_SQLITE), staged, revision)
            undecrypted = _secrets_problem(staged, keys)
            if undecrypted and not force:
                staged.unlink(missing_ok=True)
                raise ConfigurationError(
                    _SECRETS_PROBLEM, values={"count": undecrypted},
                    hint=N_("Configure the key the backup was taken with (set "
                            "SEGMENT_EXPORT_SECRET_KEY, or restore a backup made with "
                            "--include-key), or add --force and re-authorize every connection "
                            "afterwards."))
            if undecrypted:  # the restore command's report (operator output, English)
                warnings.append(_SECRETS_PROBLEM % {"count": undecrypted})
            staged_profiles = _stage_profiles(files, profiles, settings.profiles_path)
            _swap_sqlite(staged, target)
        else:
            staged_profiles = _stage_profiles(files, profiles, settings.profiles_path)
            _restore_postgres(files, database, target_url, revision)
        if staged_profiles is not None:
            settings.profiles_path.with_name(settings.profiles_path.name + ".wal").unlink(
                missing_ok=True)
            os.replace(staged_profiles, settings.profiles_path)
        if manifest["key"]["included"] and settings.secret_key is None:
            write_key_file(settings.data_dir / KEYS, keys)
    fresh = settings.model_copy()
    fresh.__dict__.pop("encryption_keys", None)  # a cached key list: read the restored file anew
    engine = make_engine(fresh)
    try:
        upgrade_database(engine)
        requeued = _requeue_interrupted(engine, manifest)
        counts = _counts(engine)
        if database["dialect"] != "sqlite":
            left = undecryptable(engine, keys)
            if left:
                warnings.append(f"{len(left)} stored secret(s) cannot be decrypted with the "
                                "configured key(s); re-authorize those connections.")
    finally:
        engine.dispose()
    return RestoreResult(manifest, counts, requeued, warnings)


def _file(files: dict[str, Path], name: str) -> Path:
    if name not in files:
        raise BackupRefused(N_("is missing from the backup"), member=name, reason="missing")
    return files[name]


def _known_revision(revision: object) -> str:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    known = {r.revision for r in scripts.walk_revisions()}
    if not isinstance(revision, str) or revision not in known:
        raise BackupRefused(
            N_("names state database revision %(revision)s, which this version does not know"),
            values={"revision": repr(revision)},
            member=MANIFEST, reason="unknown_revision",
            hint=N_("Restore it with the segment-export version that made it, or a newer one."))
    return revision


def _restore_keys(settings: Settings, manifest: dict[str, Any], saved_file: Path | None
                  ) -> list[bytes]:
    """The keys the restored installation will have: configured ones, plus the backup's (only
    read once the manifest's signature proved the archive came from a holder of a key)."""
    current = key_source(settings)
    if not manifest["key"]["included"]:
        return current.keys
    from segment_export.db.keyring import read_key_file

    if saved_file is None:
        raise BackupRefused(N_("is missing from the backup"), member=KEYS, reason="missing")
    saved = read_key_file(saved_file)
    if current.kind == "environment":
        return current.keys + [k for k in saved if k not in current.keys]
    # The backup's keys first: they encrypt what is being restored.
    return saved + [k for k in current.keys if k not in saved]


_SECRETS_PROBLEM = N_("%(count)s stored secret(s) in the backup cannot be decrypted with the "
                      "configured key(s)")


def _secrets_problem(state: Path, keys: list[bytes]) -> int:
    """How many stored secrets of the backup no configured key decrypts."""
    engine = sa.create_engine(f"sqlite:///{state}")
    try:
        return len(undecryptable(engine, keys))
    finally:
        engine.dispose()


def _check_profile_store_free(path: Path) -> None:
    if not path.exists():
        return
    try:
        duckdb.connect(str(path)).close()
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise ConfigurationError(N_("%(held)s; stop it before restoring"),
                                 values={"held": text(PROFILE_STORE_HELD)},
                                 path=str(path)) from exc


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _build_sqlite(copy: Path, staged: Path, revision: str) -> None:
    """A new SQLite file with this code's schema at ``revision``, filled with the backup's rows.

    The backup file is attached read-only with ``trusted_schema=OFF``; it may hold only plain
    tables with this schema's columns (no views, triggers, virtual or generated columns), and
    rows are copied with ``INSERT INTO main.t (cols) SELECT cols FROM backup.t``: no statement
    of the backup's schema is ever run.
    """
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.unlink(missing_ok=True)
    schema = sa.create_engine(f"sqlite:///{staged}")
    try:
        upgrade_database(schema, revision)
    finally:
        schema.dispose()
    refuse = _refuser(STATE_SQLITE)
    try:
        with closing(sqlite3.connect(staged)) as conn:
            conn.execute("PRAGMA trusted_schema=OFF")
            conn.execute("PRAGMA foreign_keys=OFF")
            try:
                conn.execute("ATTACH DATABASE ? AS backup", [copy.as_uri() + "?mode=ro"])
                odd = conn.execute("SELECT type, name FROM backup.sqlite_schema "
                                   "WHERE type NOT IN ('table', 'index')").fetchall()
            except sqlite3.DatabaseError as exc:
                raise refuse(N_("is not a readable SQLite database (%(error)s)"), "damaged",
                             values={"error": exc}) from exc
            if odd:
                raise refuse(N_("holds a %(kind)s %(name)s; a state database holds tables only"),
                             "unexpected_schema",
                             values={"kind": odd[0][0], "name": repr(odd[0][1])})
            ours = _sqlite_tables(conn, "main")
            theirs = _sqlite_tables(conn, "backup")
            if set(theirs) != set(ours):
                extra = sorted(set(theirs) - set(ours)) or sorted(set(ours) - set(theirs))
                raise refuse(N_("does not have the tables of revision %(revision)s (differs at "
                                "%(table)s)"), "unexpected_schema",
                             values={"revision": revision, "table": repr(extra[0])})
            for table, kind in theirs.items():
                if kind != "table":
                    raise refuse(N_("holds %(table)s as a %(kind)s, not a table"),
                                 "unexpected_schema", values={"table": repr(table), "kind": kind})
            (version,) = conn.execute("SELECT version_num FROM backup.alembic_version").fetchone() \
                or (None,)
            if version != revision:
                raise refuse(N_("is at revision %(version)s, not the manifest's %(revision)s"),
                             "unexpected_schema",
                             values={"version": repr(version), "revision": repr(revision)})
            for table in ours:
                if table == "alembic_version":
                    continue  # written by the migrations above
                columns = _sqlite_columns(conn, "main", table)
                found = _sqlite_columns(conn, "backup", table)
                if sorted(found) != sorted(columns) or any(found.values()):
                    raise refuse(N_("table %(table)s does not have this schema's columns"),
                                 "unexpected_schema", values={"table": repr(table)})
                names = ", ".join(_ident(c) for c in columns)
                conn.execute(f"INSERT INTO main.{_ident(table)} ({names}) "  # noqa: S608 - names from our schema
                             f"SELECT {names} FROM backup.{_ident(table)}")
            conn.commit()
            if conn.execute("PRAGMA main.foreign_key_check").fetchone() is not None:
                raise refuse(N_("has rows that refer to missing rows"), "inconsistent")
            conn.execute("DETACH DATABASE backup")
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def _refuser(member: str) -> Any:
    def refuse(message: str, reason: str,
               values: dict[str, Any] | None = None) -> BackupRefused:
        return BackupRefused(message, member=member, reason=reason, values=values)

    return refuse


def _sqlite_tables(conn: sqlite3.Connection, schema: str) -> dict[str, str]:
    rows = conn.execute(f"PRAGMA {schema}.table_list").fetchall()
    return {str(name): str(kind) for _s, name, kind, *_rest in rows
            if not str(name).startswith("sqlite_")}


def _sqlite_columns(conn: sqlite3.Connection, schema: str, table: str) -> dict[str, int]:
    """Column -> its ``hidden`` flag (non-zero: generated or a virtual table's hidden column)."""
    rows = conn.execute(f"PRAGMA {schema}.table_xinfo({_ident(table)})").fetchall()
    return {str(row[1]): int(row[6]) for row in rows}


def _swap_sqlite(staged: Path, target: Path) -> None:
    # The old database's WAL must not be replayed onto the restored file.
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(staged, target)


def _restore_postgres(files: dict[str, Path], database: dict[str, Any], url: sa.URL,
                      revision: str) -> None:
    """Drop this schema's tables, recreate them from the migrations at ``revision``, and load
    each table's rows with ``COPY ... FROM STDIN (FORMAT binary)``: data, never statements."""

    tables = database.get("tables")
    if not isinstance(tables, dict):
        raise BackupRefused(N_("lists no state tables"), member=MANIFEST, reason="bad_manifest")
    known = {t.name for t in Base.metadata.sorted_tables}
    for name, spec in tables.items():
        if name not in known or not isinstance(spec, dict) \
                or spec.get("file") != f"{STATE_TABLES}/{name}.pgcopy":
            raise BackupRefused(N_("lists a state table %(name)s this version does not have"),
                                values={"name": repr(name)},
                                member=MANIFEST, reason="unexpected_schema")
        _file(files, spec["file"])
    engine = sa.create_engine(url)
    try:
        # One transaction from the first DROP to the last COPY (PostgreSQL's DDL is
        # transactional): a restore that fails anywhere leaves the database as it was.
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {_ident(table.name)} CASCADE"))
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
            upgrade_in_transaction(conn, revision)
            dbapi = conn.connection.driver_connection
            with dbapi.cursor() as cur:  # type: ignore[union-attr]
                for table in Base.metadata.sorted_tables:
                    _copy_table_in(cur, table, tables, files, revision)
    finally:
        engine.dispose()


def _copy_table_in(cur: Any, table: sa.Table, tables: dict[str, Any],
                   files: dict[str, Path], revision: str) -> None:
    from psycopg import sql

    columns = _columns_pg(cur, table.name)
    if not columns:
        return  # not yet at this revision
    spec = tables.get(table.name)
    if spec is None or spec.get("columns") != columns:
        raise BackupRefused(
            N_("does not have the columns of %(name)s at revision %(revision)s"),
            values={"name": table.name, "revision": revision},
            member=f"{STATE_TABLES}/{table.name}.pgcopy", reason="unexpected_schema")
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with files[spec["file"]].open("rb") as data, cur.copy(statement) as copy:
        for block in iter(lambda d=data: d.read(1 << 20), b""):  # type: ignore[misc]
            copy.write(block)
    for column in table.primary_key.columns:
        if column.autoincrement is True:
            cur.execute(sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), "
                "coalesce(max({}), 0) + 1, false) FROM {}").format(
                    sql.Identifier(column.name), sql.Identifier(table.name)),
                [table.name, column.name])


def _allowed_type(text: object) -> str | None:
    """``text`` as a DuckDB type this module writes itself, or None when not on the allow-list."""
    if not isinstance(text, str):
        return None
    base, lists = text, 0
    while base.endswith("[]"):
        base, lists = base[:-2], lists + 1
    if base in _SCALAR_TYPES:
        rendered = next(t for t in _SCALAR_TYPES if t == base)
    elif (decimal := _DECIMAL.fullmatch(base)) is not None \
            and int(decimal.group(2)) <= int(decimal.group(1)) <= 38:
        rendered = f"DECIMAL({int(decimal.group(1))},{int(decimal.group(2))})"
    else:
        return None
    return rendered + "[]" * lists


def _stage_profiles(files: dict[str, Path], spec: Any, target: Path) -> Path | None:
    """A new profile store beside ``target``: the code's DDL, the verified Parquet rows."""
    if spec is None:
        return None
    tables = spec.get("tables") if isinstance(spec, dict) else None
    if not isinstance(tables, dict):
        raise BackupRefused(N_("lists no profile tables"), member=MANIFEST, reason="bad_manifest")
    staged = target.with_name(target.name + ".restoring")
    for path in (staged, staged.with_name(staged.name + ".wal")):
        path.unlink(missing_ok=True)
    store = DuckDBProfileStore(staged)
    try:
        _ = store.id_column  # creates the store's own tables with its own DDL
    finally:
        store.close()
    import pyarrow.parquet as pq

    try:
        config: dict[str, str | bool | int | float | list[str]] = {
            "autoload_known_extensions": False, "autoinstall_known_extensions": False}
        with closing(duckdb.connect(str(staged), config=config)) as conn:
            for table, entry in tables.items():
                if table not in PROFILE_TABLES or not isinstance(entry, dict) \
                        or entry.get("file") != f"{PROFILES_DIR}/{table}.parquet":
                    raise BackupRefused(N_("lists a profile table %(table)s the store does not "
                                           "have"),
                                        values={"table": repr(table)}, member=MANIFEST,
                                        reason="unexpected_schema")
                member = entry["file"]
                path = _file(files, member)
                columns = entry.get("columns")
                if not isinstance(columns, list) or not all(
                        isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
                        for c in columns):
                    raise BackupRefused(N_("describes no columns"), member=member,
                                        reason="bad_manifest")
                names = [c[0] for c in columns]
                try:
                    in_file = pq.read_schema(path).names
                except Exception as exc:  # pyarrow raises several kinds for a bad file
                    raise BackupRefused(N_("is not a readable Parquet file (%(error)s)"),
                                        values={"error": exc}, member=member,
                                        reason="damaged") from exc
                if in_file != names:
                    raise BackupRefused(N_("does not hold the columns the manifest lists"),
                                        member=member, reason="unexpected_schema")
                if table == PROFILES:
                    select = ", ".join(
                        f"CAST({quote(name)} AS {kind}) AS {quote(name)}"
                        if (kind := _allowed_type(dtype)) else quote(name)
                        for name, dtype in columns)
                    conn.execute(f"CREATE TABLE {quote(PROFILES)} AS SELECT {select} "  # noqa: S608 - quoted names, allow-listed types
                                 "FROM read_parquet(?)", [str(path)])
                else:
                    ours = [str(n) for (n,) in conn.execute(
                        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                        "AND table_name = ? ORDER BY column_index", [table]).fetchall()]
                    if ours != names:
                        raise BackupRefused(N_("does not have the columns of %(table)s"),
                                            values={"table": table},
                                            member=member, reason="unexpected_schema")
                    listed = ", ".join(quote(n) for n in names)
                    conn.execute(f"INSERT INTO {quote(table)} ({listed}) "  # noqa: S608 - as above
                                 f"SELECT {listed} FROM read_parquet(?)", [str(path)])
                counted = conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()  # noqa: S608
                if counted is None or counted[0] != entry.get("rows"):
                    raise BackupRefused(N_("holds %(counted)s rows where the manifest says "
                                           "%(entry)s"),
                                        values={"counted": counted[0] if counted else 0,
                                                "entry": entry.get('rows')}, member=member,
                                        reason="inconsistent")
            conn.execute("CHECKPOINT")
    except duckdb.Error as exc:
        staged.unlink(missing_ok=True)
        raise BackupRefused(N_("could not be loaded (%(error)s)"),
                            values={"error": str(exc).splitlines()[0]},
                            member=PROFILES_DIR, reason="damaged") from exc
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def _requeue_interrupted(engine: Engine, manifest: dict[str, Any]) -> int:
    with engine.begin() as conn:
        done = conn.execute(
            sa.update(Run).where(Run.status == "running").values(
                status="queued", worker_id=None, heartbeat_at=None,
                message="Restored from a backup taken while it ran; it resumes after its last "
                "confirmed batch."))
        requeued = int(done.rowcount)
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        audit.record(session, actor=None, action="backup.restored", target_type="system",
                     backup_created_at=manifest["created_at"], version=manifest["version"],
                     requeued_runs=requeued)
    return requeued


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: int(conn.execute(sa.select(sa.func.count()).select_from(model)).scalar()
                          or 0) for name, model in COUNTED.items()}
