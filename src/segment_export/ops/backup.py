"""Backup and restore of the state database and the profile store, taken while the service runs.

A backup is one ``.tar.gz`` (owner-only) holding ``manifest.json``, the state database (a SQLite
copy made with SQLite's online backup API, or a ``pg_dump`` custom-format dump), the profile
store exported by DuckDB (``EXPORT DATABASE``, Parquet) and, only when asked, the key file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import sqlalchemy as sa
from sqlalchemy import Engine, make_url
from sqlalchemy.engine import URL

from segment_export import __version__, audit
from segment_export.config import Settings
from segment_export.db import make_engine, upgrade_database
from segment_export.db.engine import current_revision
from segment_export.db.models import (
    Connection,
    Export,
    ExportMember,
    ExportMemberBlock,
    RejectedRow,
    Run,
    User,
)
from segment_export.db.types import utcnow
from segment_export.errors import ConfigurationError, DataError
from segment_export.ops.keys import fingerprint, key_source, undecryptable, write_key_file

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
STATE_SQLITE = "state.sqlite"
STATE_PGDUMP = "state.pgdump"
PROFILES = "profiles"
KEYS = "secret.key"
# The rows a restore reports, so a person can check it brought back what they expect.
COUNTED = {"users": User, "connections": Connection, "exports": Export, "runs": Run,
           "export_members": ExportMember, "export_member_blocks": ExportMemberBlock,
           "rejected_rows": RejectedRow}
PROFILE_STORE_HELD = (
    "Another segment-export process (serve or worker) holds the profile store, and DuckDB lets "
    "one process open it at a time"
)


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
    PostgreSQL through ``pg_dump`` (one transaction), DuckDB by ``EXPORT DATABASE`` (one
    transaction). Inside the process that holds the profile store (the web app or a worker)
    that works as is; from another process, DuckDB's one-process lock means the profile store
    can only be read while no other process holds it.
    """
    from segment_export.profiles.engines import engine_of

    # Profiles kept in PostgreSQL or a lakehouse are backed up where they live, with that
    # system's own tools; only the embedded store belongs to this product's backup.
    profiles = profiles and engine_of(settings.profile_store) == "duckdb"
    target = destination / default_backup_name() if destination.is_dir() else destination
    if not target.name.endswith((".tar.gz", ".tgz")):
        raise ConfigurationError(f"A backup is written as .tar.gz, not {target.name!r}",
                                 field="destination")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".segment-export-backup-", dir=target.parent) as tmp:
        work = Path(tmp)  # mkdtemp makes it owner-only
        database = _backup_database(engine, work)
        profile_tables = _export_profiles(settings.profiles_path, work / PROFILES) if profiles \
            else None
        source = key_source(settings)
        if include_key:
            if not source.keys:
                raise ConfigurationError("There is no secrets key to include yet")
            write_key_file(work / KEYS, source.keys)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "product": "segment-export",
            "version": __version__,
            "created_at": utcnow().isoformat(),
            "database": {**database, "revision": current_revision(engine)},
            "profiles": None if profile_tables is None else {"tables": profile_tables},
            "key": {"included": include_key, "source": source.kind,
                    "fingerprints": [fingerprint(k) for k in source.keys]},
            "files": _checksums(work),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        partial = target.with_name(target.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for path in sorted(work.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(work)))
        os.replace(partial, target)
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
        dump = work / STATE_PGDUMP
        url, env, schema = _libpq(engine.url)
        command = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                   f"--file={dump}", f"--dbname={url}"]
        if schema:
            command.append(f"--schema={schema}")
        _run_tool(command, env)
        return {"dialect": "postgresql", "file": STATE_PGDUMP, "schema": schema}
    raise ConfigurationError(f"Backing up a {engine.dialect.name} state database is not supported")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(
            f"{name} is not installed; it is needed to back up or restore a PostgreSQL state "
            "database",
            hint=f"Install the PostgreSQL client tools ({name} of the server's major version or "
            "newer), or back up the database with your usual PostgreSQL tooling.")
    return found


def _run_tool(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603 - fixed tool, no shell
    if done.returncode != 0:
        tool = Path(command[0]).name
        raise ConfigurationError(f"{tool} failed: {done.stderr.strip()[-2000:]}")


def _libpq(url: URL) -> tuple[str, dict[str, str], str | None]:
    """A libpq URI for the PostgreSQL tools, the password kept out of the command line, and the
    schema a ``search_path`` option confines the state store to (None: the whole database)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    options = url.query.get("options")
    schema = None
    for part in ([options] if isinstance(options, str) else list(options or ())):
        text = unquote(part)
        for word in text.replace("-c ", "-c").split():
            if word.startswith("-csearch_path="):
                schema = word.split("=", 1)[1].split(",")[0].strip('"')
    plain = url.set(drivername="postgresql", password=None, query={})
    return plain.render_as_string(hide_password=False), env, schema


def _export_profiles(path: Path, directory: Path) -> list[str] | None:
    if not path.exists():
        return None
    with _duckdb(path) as conn:
        # EXPORT DATABASE runs in one transaction: a snapshot, even while imports write.
        conn.execute(f"EXPORT DATABASE '{_sql_path(directory)}' (FORMAT parquet)")
        tables = conn.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                              "ORDER BY table_name").fetchall()
    return [str(name) for (name,) in tables]


@contextmanager
def _duckdb(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    # In the process that holds the store this joins its open database (DuckDB shares one
    # instance per file within a process); from another process it needs the file free.
    try:
        conn = duckdb.connect(str(path))
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise ConfigurationError(
            f"{PROFILE_STORE_HELD}: {str(exc).splitlines()[0]}",
            hint="Stop serve/worker for the moment the profiles are copied, or add "
            "--no-profiles and back up only the state database.", path=str(path)) from exc
    try:
        yield conn
    finally:
        conn.close()


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _checksums(work: Path) -> dict[str, str]:
    return {str(p.relative_to(work)): _sha256(p) for p in sorted(work.rglob("*")) if p.is_file()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- restore -------------------------------------------------------------------------------------


def read_manifest(archive: Path) -> dict[str, Any]:
    """The manifest of a backup archive."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError) as exc:
        raise DataError(f"{archive} is not a segment-export backup: {exc}") from exc
    if manifest.get("product") != "segment-export" or manifest.get("format") != FORMAT:
        raise DataError(f"{archive} is not a segment-export backup of format {FORMAT}")
    return manifest


def restore_backup(*, settings: Settings, archive: Path, force: bool = False) -> RestoreResult:
    """Replace the state database and the profile store with those of ``archive``.

    The service must be stopped (serve and every worker). Before anything is replaced the
    archive's checksums are verified and, for SQLite, its stored secrets are checked against the
    configured key(s): a restore that would leave every connection unusable is refused unless
    ``force``. Runs that were running when the backup was taken are queued again; they resume
    after their last confirmed batch.
    """
    manifest = read_manifest(archive)
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".segment-export-restore-",
                                     dir=settings.ensure_data_dir()) as tmp:
        work = Path(tmp)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(work, filter="data")
        for name, digest in manifest["files"].items():
            if not (work / name).is_file() or _sha256(work / name) != digest:
                raise DataError(f"The backup is damaged: {name} does not match its checksum")
        keys = _restore_keys(settings, manifest, work)
        database = manifest["database"]
        target_url = make_url(settings.resolved_database_url)
        if target_url.get_backend_name() != database["dialect"]:
            raise ConfigurationError(
                f"The backup holds a {database['dialect']} state database but "
                f"SEGMENT_EXPORT_DATABASE_URL points to {target_url.get_backend_name()}",
                hint="Restore into the same kind of database the backup was taken from.")
        if database["dialect"] == "sqlite":
            problem = _secrets_problem(work / STATE_SQLITE, keys)
            if problem and not force:
                raise ConfigurationError(
                    problem, hint="Configure the key the backup was taken with (set "
                    "SEGMENT_EXPORT_SECRET_KEY, or restore a backup made with --include-key), "
                    "or add --force and re-authorize every connection afterwards.")
            if problem:
                warnings.append(problem)
        if manifest["profiles"] is not None:
            _check_profile_store_free(settings.profiles_path)
        if database["dialect"] == "sqlite":
            _restore_sqlite(work / STATE_SQLITE, Path(target_url.database or ""))
        else:
            _restore_postgres(work / STATE_PGDUMP, target_url)
        if manifest["profiles"] is not None:
            _restore_profiles(work / PROFILES, settings.profiles_path)
        if manifest["key"]["included"] and settings.secret_key is None:
            path = settings.data_dir / KEYS
            write_key_file(path, keys)
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


def _restore_keys(settings: Settings, manifest: dict[str, Any], work: Path) -> list[bytes]:
    """The keys the restored installation will have: configured ones, plus the backup's."""
    current = key_source(settings)
    if not manifest["key"]["included"]:
        return current.keys
    from segment_export.ops.keyring import read_key_file

    saved = read_key_file(work / KEYS)
    if current.kind == "environment":
        return current.keys + [k for k in saved if k not in current.keys]
    # The backup's keys first: they encrypt what is being restored.
    return saved + [k for k in current.keys if k not in saved]


def _secrets_problem(state: Path, keys: list[bytes]) -> str | None:
    engine = sa.create_engine(f"sqlite:///{state}")
    try:
        left = undecryptable(engine, keys)
    finally:
        engine.dispose()
    if not left:
        return None
    return (f"{len(left)} stored secret(s) in the backup cannot be decrypted with the configured "
            "key(s)")


def _check_profile_store_free(path: Path) -> None:
    if not path.exists():
        return
    try:
        duckdb.connect(str(path)).close()
    except (duckdb.IOException, duckdb.ConnectionException) as exc:
        raise ConfigurationError(f"{PROFILE_STORE_HELD}; stop it before restoring",
                                 path=str(path)) from exc


def _restore_sqlite(copy: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(target.name + ".restoring")
    staged.unlink(missing_ok=True)
    with closing(sqlite3.connect(copy)) as source, closing(sqlite3.connect(staged)) as dest:
        source.backup(dest, pages=-1)
    # The old database's WAL must not be replayed onto the restored file.
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    os.replace(staged, target)


def _restore_postgres(dump: Path, url: URL) -> None:
    uri, env, _schema = _libpq(url)
    _run_tool([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
               "--single-transaction", "--exit-on-error", f"--dbname={uri}", str(dump)], env)


def _restore_profiles(exported: Path, target: Path) -> None:
    staged = target.with_name(target.name + ".restoring")
    staged.unlink(missing_ok=True)
    staged.with_name(staged.name + ".wal").unlink(missing_ok=True)
    with closing(duckdb.connect(str(staged))) as conn:
        conn.execute(f"IMPORT DATABASE '{_sql_path(exported)}'")
        conn.execute("CHECKPOINT")
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    os.replace(staged, target)


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
