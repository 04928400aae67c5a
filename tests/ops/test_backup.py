"""Backup -> wipe -> restore brings back the same exports, runs, lists and a working connection."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from segment_export.config import Settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.db.models import Base, Connection, User
from segment_export.definitions.connections import check_connection
from segment_export.errors import ConfigurationError, DataError
from segment_export.exports.runs import request_run, run_to_completion
from segment_export.ops.archive import MANIFEST, SIGNATURE, sign
from segment_export.ops.backup import create_backup, read_manifest, restore_backup
from segment_export.profiles import DuckDBProfileStore
from tests.ops.helpers import expected, imports, prepare, snapshot
from tests.services import POSTGRES_URL, port_open, require
from tests.world import World


def _lose_everything(world: World) -> None:
    world.store.close()
    world.engine.dispose()
    shutil.rmtree(world.settings.data_dir)


def _reopen(world: World) -> World:
    engine = make_engine(world.settings)
    return dataclasses.replace(world, engine=engine, sessions=make_session_factory(engine),
                               store=DuckDBProfileStore(world.settings.profiles_path))


def test_backup_wipe_restore_gives_the_same_exports_runs_and_lists(
    world: World, tmp_path: Path
) -> None:
    export = prepare(world, 300, bad=5)
    run = world.run(export)
    assert run.status == "succeeded_with_rejections", run.message
    before = snapshot(world.engine)
    (tmp_path / "backups").mkdir()

    backup = create_backup(settings=world.settings, engine=world.engine,
                           destination=tmp_path / "backups")
    assert backup.path.parent == tmp_path / "backups"
    assert backup.path.stat().st_mode & 0o077 == 0  # personal data: owner-only
    assert backup.manifest["profiles"] is not None
    assert not backup.manifest["key"]["included"]
    _lose_everything(world)

    result = restore_backup(settings=world.settings, archive=backup.path)
    restored = _reopen(world)
    try:
        assert snapshot(restored.engine) == before
        assert result.counts["exports"] == 1
        assert result.counts["runs"] == 1
        assert result.counts["rejected_rows"] == 5
        assert result.requeued_runs == 0
        assert restored.store.count() == 300
        assert restored.store.membership_size(export.segment_ids) == 300
        # The connection works, and what was delivered is known: the next run sends nothing.
        with restored.sessions() as session:
            conn = session.get(Connection, world.connection.id)
            admin = session.get(User, world.admin.id)
            assert conn is not None
            assert admin is not None
            assert check_connection(session, actor=admin, connection=conn,
                                    settings=restored.settings, engine=restored.engine).ok
        again = restored.run(export)
        assert again.status == "succeeded_with_rejections", again.message
        assert again.counts["sent"] == 0
        assert again.counts["unchanged"] == 295
        assert world.members() == expected(300, bad=5)
    finally:
        restored.store.close()
        restored.engine.dispose()


def test_backup_taken_mid_run_restores_and_the_run_resumes(world: World, tmp_path: Path) -> None:
    export = prepare(world, 1000, batch=100)
    world.control.set_config(activity_seconds=0.1)
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(
        run=run_to_completion(run_id, deps=world.deps(), backoff=0.01)))
    worker.start()
    deadline = time.monotonic() + 30
    while len(imports(world)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Taken by the process that holds the profile store, as the running service would.
    backup = create_backup(settings=world.settings, engine=world.engine,
                           destination=tmp_path / "mid.tar.gz")
    worker.join()
    assert outcome["run"].status == "succeeded"
    _lose_everything(world)

    result = restore_backup(settings=world.settings, archive=backup.path)
    assert result.requeued_runs == 1
    restored = _reopen(world)
    try:
        resumed = run_to_completion(run_id, deps=restored.deps(), backoff=0.01)
        assert resumed.status == "succeeded", resumed.message
        c = resumed.counts
        assert c["in_segment"] == c["sent"] + c["unchanged"] + c["rejected_locally"] + c[
            "no_consent"] == 1000
        assert world.members() == expected(1000)
    finally:
        restored.store.close()
        restored.engine.dispose()


def test_a_damaged_backup_is_refused_before_anything_is_replaced(
    world: World, tmp_path: Path
) -> None:
    export = prepare(world, 20)
    world.run(export)
    backup = create_backup(settings=world.settings, engine=world.engine,
                           destination=tmp_path / "good.tar.gz")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(backup.path) as tar:
        names = tar.getnames()  # the signed manifest first, as a backup writes it
        tar.extractall(unpacked, filter="data")
    with (unpacked / "state.sqlite").open("r+b") as handle:
        handle.seek(-16, 2)
        handle.write(b"\xff" * 16)  # same size: only the checksum can tell
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(damaged, "w:gz") as tar:
        for name in names:
            tar.add(unpacked / name, arcname=name, recursive=False)
    before = snapshot(world.engine)
    with pytest.raises(DataError, match="damaged"):
        restore_backup(settings=world.settings, archive=damaged)
    assert snapshot(world.engine) == before
    with pytest.raises(DataError, match="not a segment-export backup"):
        read_manifest(world.settings.profiles_path, settings=world.settings)


def test_profile_store_held_by_another_process_is_explained(world: World, tmp_path: Path) -> None:
    prepare(world, 10)
    world.store.close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('holding', flush=True); time.sleep(60)", str(world.settings.profiles_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ConfigurationError, match="one process") as caught:
            create_backup(settings=world.settings, engine=world.engine,
                          destination=tmp_path / "b.tar.gz")
        assert "--no-profiles" in caught.value.hint
        assert not (tmp_path / "b.tar.gz").exists()
        state_only = create_backup(settings=world.settings, engine=world.engine,
                                   destination=tmp_path / "b.tar.gz", profiles=False)
        assert state_only.manifest["profiles"] is None
    finally:
        holder.kill()
        holder.communicate()


def test_profiles_kept_in_another_engine_are_left_to_it(world: World, tmp_path: Path) -> None:
    prepare(world, 10)
    # The URL names a server that is never contacted: a backup does not open such a store.
    elsewhere = world.settings.model_copy(
        update={"profile_store": "postgresql://reader@127.0.0.1:1/lake"})
    backup = create_backup(settings=elsewhere, engine=world.engine,
                           destination=tmp_path / "b.tar.gz")
    assert backup.manifest["profiles"] is None
    with tarfile.open(backup.path) as archive:
        assert not [n for n in archive.getnames() if "profiles" in n]


@pytest.mark.postgres
def test_postgresql_state_database_round_trip(settings: Settings, tmp_path: Path) -> None:
    """A whole PostgreSQL database (as in production), through pg_dump and pg_restore."""
    with _postgres_installation(settings) as (pg, engine):
        with Session(engine) as session, session.begin():
            user = User(username="ops-admin", role="admin")
            session.add(user)
            session.flush()
            session.add(Connection(display_name="Shop", client_id="client-123",
                                   client_secret="shh-secret-456", api_key_hash="h" * 64,
                                   refresh_token="refresh-789", created_by_id=user.id))
        before = snapshot(engine)
        backup = create_backup(settings=pg, engine=engine, destination=tmp_path / "pg.tar.gz",
                               profiles=False)
        assert backup.manifest["database"]["dialect"] == "postgresql"
        with engine.begin() as conn:  # the disaster
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()

        result = restore_backup(settings=pg, archive=backup.path)
        assert result.counts["connections"] == 1
        assert result.warnings == []
        assert snapshot(engine) == before


@contextmanager
def _postgres_installation(settings: Settings) -> Iterator[tuple[Settings, sa.Engine]]:
    """Settings and a migrated engine on a PostgreSQL database of its own, dropped after."""
    require(port_open("127.0.0.1", 5432), "PostgreSQL at 127.0.0.1:5432")
    name = f"se_restore_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    pg = settings.model_copy(update={"database_url": url})
    engine = make_engine(pg)
    try:
        upgrade_database(engine)
        yield pg, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _with_broken_table_file(archive: Path, target: Path, table: str, key: bytes) -> Path:
    """The archive with ``table``'s COPY data broken after its header, listed and signed as if
    it were right (what only a key holder can make, or a disk that flipped bits before the
    backup was signed): every check before the COPY passes, the COPY itself fails."""
    name = f"state/{table}.pgcopy"
    with tarfile.open(archive) as tar:
        members = [(i, tar.extractfile(i).read() if i.isreg() else b"")  # type: ignore[union-attr]
                   for i in tar.getmembers()]
    contents = {i.name: d for i, d in members}
    broken = contents[name][:19] + b"\x00\x05" + b"\xff" * 64  # the header, then nonsense
    manifest = json.loads(contents[MANIFEST])
    manifest["files"][name] = {"size": len(broken), "sha256": hashlib.sha256(broken).hexdigest()}
    text = (json.dumps(manifest, indent=2) + "\n").encode()
    replaced = {name: broken, MANIFEST: text, SIGNATURE: sign(text, key)}
    with tarfile.open(target, "w:gz") as tar:
        for info, data in members:
            data = replaced.get(info.name, data)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


@pytest.mark.postgres
def test_a_postgresql_restore_failing_midway_leaves_the_database_as_it_was(
        settings: Settings, tmp_path: Path) -> None:
    """Dropping, migrating and every COPY are one transaction: before, the tables were dropped
    and recreated in a first commit, so a COPY failing later left an empty database."""
    with _postgres_installation(settings) as (pg, engine):
        with Session(engine) as session, session.begin():
            session.add(User(username="ops-admin", role="admin"))
        backup = create_backup(settings=pg, engine=engine, destination=tmp_path / "pg.tar.gz",
                               profiles=False)
        with Session(engine) as session, session.begin():
            session.add(User(username="joined-after-the-backup", role="viewer"))
        before = snapshot(engine)
        with engine.connect() as conn:
            users_before = sorted(conn.execute(sa.text("SELECT username FROM users")).scalars())
        # The last table restored: every other COPY has gone through when it fails.
        last = Base.metadata.sorted_tables[-1].name
        assert pg.secret_key is not None
        key = pg.secret_key.get_secret_value().split(",")[0].encode()
        broken = _with_broken_table_file(backup.path, tmp_path / "broken.tar.gz", last, key)
        engine.dispose()

        with pytest.raises(Exception, match=r"(?i)copy|binary|format|data"):
            restore_backup(settings=pg, archive=broken)

        assert snapshot(engine) == before
        with engine.connect() as conn:
            assert sorted(conn.execute(sa.text("SELECT username FROM users")).scalars()) == (
                users_before)
        # And the good backup still restores.
        restore_backup(settings=pg, archive=backup.path)
        with engine.connect() as conn:
            assert list(conn.execute(sa.text("SELECT username FROM users")).scalars()) == [
                "ops-admin"]
