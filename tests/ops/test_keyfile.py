"""With the key in <data_dir>/secret.key: rotation while a run goes on, and backups with the key."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export.cli import cli
from segment_export.config import SECRET_KEY_FILE, Settings, load_settings
from segment_export.db import make_engine, make_session_factory
from segment_export.db.keyring import KeyFileSecretBox, read_key_file
from segment_export.db.models import AuditEvent, Connection, User
from segment_export.db.types import attach_secret_box
from segment_export.definitions.connections import check_connection
from segment_export.exports.runs import request_run, run_to_completion
from segment_export.ops.keys import encrypted_tables, fingerprint, undecryptable
from tests.ops.helpers import cli_env, expected, imports, prepare
from tests.world import World


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """No SEGMENT_EXPORT_SECRET_KEY: the key is generated into the data directory's key file."""
    return load_settings(data_dir=tmp_path / "data", log_level="DEBUG")


def _ciphertexts(world: World) -> list[bytes]:
    (spec,) = encrypted_tables()
    values = []
    with world.engine.connect() as conn:
        for row in conn.execute(select(spec.clause())).mappings():
            values += [bytes(row[c]) for c in spec.columns if row[c] is not None]
    return values


def _cli(world: World, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=cli_env(world.settings),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_the_key_file_is_used_and_both_tables_columns_are_found(world: World) -> None:
    key_file = world.settings.data_dir / SECRET_KEY_FILE
    assert key_file.stat().st_mode & 0o077 == 0
    (spec,) = encrypted_tables()
    assert spec.name == "connections"
    assert set(spec.columns) == {"client_id", "client_secret", "access_token", "refresh_token",
                                 "pkce_verifier"}


def test_rotation_while_a_run_refreshes_tokens_leaves_everything_usable(world: World) -> None:
    key_file = world.settings.data_dir / SECRET_KEY_FILE
    (old,) = read_key_file(key_file)
    # What make_engine should attach when the key lives in the file (see the ops report).
    attach_secret_box(world.engine.dialect, KeyFileSecretBox(key_file))
    export = prepare(world, 1000, batch=100)
    world.control.set_config(activity_seconds=0.1)
    with world.sessions.begin() as session:
        run_id = request_run(session, actor=world.admin, export=export).id
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(
        run=run_to_completion(run_id, deps=world.deps(), backoff=0.01)))
    worker.start()
    deadline = time.monotonic() + 30
    while len(imports(world)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    rotated = _cli(world, "secrets", "rotate", "--drop-old")
    # The running export must now refresh its token: read the rotated grant, write a new one.
    world.control.expire_tokens()
    worker.join()

    assert "re-encrypted" in rotated.output
    assert "Removed 1 old key" in rotated.output
    assert outcome["run"].status == "succeeded", outcome["run"].message
    assert world.members() == expected(1000)
    assert any(r.path.endswith("/token") for r in world.control.requests())
    (new,) = read_key_file(key_file)
    assert new != old
    secrets = _ciphertexts(world)
    assert len(secrets) >= 3  # client id, client secret, access and refresh tokens
    for token in secrets:
        Fernet(new).decrypt(token)
        with pytest.raises(InvalidToken):
            Fernet(old).decrypt(token)
    # A process started now (only the new key) uses the connection.
    fresh = make_engine(load_settings(data_dir=world.settings.data_dir))
    try:
        assert undecryptable(fresh, [new]) == []
        with make_session_factory(fresh)() as session:
            conn = session.get(Connection, world.connection.id)
            admin = session.get(User, world.admin.id)
            assert conn is not None
            assert admin is not None
            assert check_connection(session, actor=admin, connection=conn,
                                    settings=world.settings, engine=fresh).ok
            event = session.scalars(select(AuditEvent).where(
                AuditEvent.action == "secrets.rotated")).one()
            assert event.details["newest_key"] == fingerprint(new)
            assert event.details["dropped_keys"] == [fingerprint(old)]
            assert old.decode() not in str(event.details)
    finally:
        fresh.dispose()


def test_backup_needs_the_key_to_be_useful(world: World, tmp_path: Path) -> None:
    export = prepare(world, 30)
    world.run(export)
    world.store.close()
    _cli(world, "backup", str(tmp_path / "no-key.tar.gz"))
    _cli(world, "backup", str(tmp_path / "with-key.tar.gz"), "--include-key")
    kept_apart = (world.settings.data_dir / SECRET_KEY_FILE).read_bytes()
    world.engine.dispose()
    shutil.rmtree(world.settings.data_dir)

    # The manifest is verified with the configured key only, never with a key the archive
    # carries: without the key, even a backup made with --include-key is refused.
    for name in ("no-key.tar.gz", "with-key.tar.gz"):
        refused = CliRunner().invoke(cli, ["restore", str(tmp_path / name), "--yes"],
                                     env=cli_env(world.settings))
        assert refused.exit_code != 0
        assert "no configured secrets key" in str(refused.exception)
        assert not (world.settings.data_dir / "state.db").exists()
    # Another installation's key does not verify it either.
    world.settings.data_dir.mkdir(mode=0o700)
    (world.settings.data_dir / SECRET_KEY_FILE).write_bytes(Fernet.generate_key() + b"\n")
    refused = CliRunner().invoke(cli, ["restore", str(tmp_path / "with-key.tar.gz"), "--yes"],
                                 env=cli_env(world.settings))
    assert refused.exit_code != 0
    assert "does not match any configured secrets key" in str(refused.exception)
    assert not (world.settings.data_dir / "state.db").exists()

    # The key, kept apart from the backups, is put back first; then the backup restores.
    (world.settings.data_dir / SECRET_KEY_FILE).write_bytes(kept_apart)
    restored = _cli(world, "restore", str(tmp_path / "with-key.tar.gz"), "--yes")
    assert "1 exports" in restored.output
    assert "1 runs" in restored.output
    engine = make_engine(load_settings(data_dir=world.settings.data_dir))
    try:
        with Session(engine) as session:
            conn = session.get(Connection, world.connection.id)
            admin = session.get(User, world.admin.id)
            assert conn is not None
            assert admin is not None
            assert check_connection(session, actor=admin, connection=conn,
                                    settings=world.settings, engine=engine).ok
    finally:
        engine.dispose()
