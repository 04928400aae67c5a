"""Crafted backup archives are refused, naming the member and the reason, and nothing in them is
ever executed: SQL in a schema file, a tampered Parquet file or manifest, path traversal,
links, a huge member, another installation's key, and old unsigned backups."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from pydantic import SecretStr

from segment_export.cli import cli
from segment_export.ops.archive import MANIFEST, SIGNATURE, BackupRefused, sign
from segment_export.ops.backup import create_backup, restore_backup
from tests.ops.helpers import cli_env, prepare
from tests.world import World

Edit = Callable[[str, bytes], bytes]


@pytest.fixture
def backup(world: World, tmp_path: Path) -> Path:
    prepare(world, 20)
    return create_backup(settings=world.settings, engine=world.engine,
                         destination=tmp_path / "good.tar.gz").path


def _members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive) as tar:
        out = []
        for info in tar.getmembers():
            handle = tar.extractfile(info)
            out.append((info, handle.read() if handle else b""))
        return out


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _key(world: World) -> bytes:
    assert world.settings.secret_key is not None
    return world.settings.secret_key.get_secret_value().split(",")[0].encode()


def _resigned(world: World, members: list[tuple[tarfile.TarInfo, bytes]],
              change: Callable[[dict], None]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members with the manifest changed and signed again with the installation's key (what
    only someone holding the key can do): the checks after the signature still hold."""
    manifest = json.loads({i.name: d for i, d in members}[MANIFEST])
    change(manifest)
    text = (json.dumps(manifest, indent=2) + "\n").encode()
    out = []
    for info, data in members:
        if info.name == MANIFEST:
            data = text
        elif info.name == SIGNATURE:
            data = sign(text, _key(world))
        out.append((info, data))
    return out


def _state(world: World) -> bytes:
    return (world.settings.data_dir / "state.db").read_bytes()


def _refused(world: World, archive: Path, **kwargs: object) -> BackupRefused:
    world.store.close()
    before = _state(world)
    with pytest.raises(BackupRefused) as caught:
        restore_backup(settings=world.settings, archive=archive, **kwargs)  # type: ignore[arg-type]
    assert _state(world) == before  # nothing replaced
    assert not list(world.settings.data_dir.glob("*.restoring"))
    return caught.value


def test_a_good_backup_still_round_trips(world: World, backup: Path) -> None:
    world.store.close()
    result = restore_backup(settings=world.settings, archive=backup)
    assert result.counts["exports"] == 1
    names = [i.name for i, _ in _members(backup)]
    assert names[:2] == [MANIFEST, SIGNATURE]
    assert not [n for n in names if n.endswith(".sql")]


def test_an_old_backup_whose_schema_sql_would_write_files_is_refused_unexecuted(
    world: World, tmp_path: Path
) -> None:
    """Format 1 ran the archive's schema.sql through IMPORT DATABASE."""
    pwned = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    schema = (f"CREATE TABLE x AS SELECT 1 AS a; COPY (SELECT 'owned') TO '{pwned}';\n"  # noqa: S608 - the attack under test
              f"COPY (SELECT content FROM read_text('/etc/passwd')) TO '{pwned}.2';\n").encode()
    manifest = json.dumps({"format": 1, "product": "segment-export", "version": "0.1.0",
                           "files": {"profiles/schema.sql": hashlib.sha256(schema).hexdigest()}})
    archive = _write(tmp_path / "old.tar.gz", [
        _file(MANIFEST, manifest.encode()), _file("profiles/load.sql", b""),
        _file("profiles/schema.sql", schema)])
    refused = _refused(world, archive)
    assert refused.reason == "unsigned"
    assert "older version" in str(refused)
    assert "take a new backup" in str(refused)
    # The CLI says the same and exits non-zero.
    result = CliRunner().invoke(cli, ["restore", str(archive), "--yes"],
                                env=cli_env(world.settings))
    assert result.exit_code == 1
    assert "no signature" in result.output + str(result.exception)
    assert not pwned.exists()
    assert not Path(f"{pwned}.2").exists()


def test_a_schema_sql_slipped_into_a_signed_backup_is_refused(
    world: World, backup: Path, tmp_path: Path
) -> None:
    pwned = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    members = _members(backup)
    members.insert(2, _file("profiles/schema.sql", f"COPY (SELECT 1) TO '{pwned}';".encode()))
    refused = _refused(world, _write(tmp_path / "sql.tar.gz", members))
    assert (refused.member, refused.reason) == ("profiles/schema.sql", "unexpected_name")
    # Even listed in a manifest signed with the right key, such a name is not a backup's.
    signed = _resigned(world, members, lambda m: m["files"].update(
        {"profiles/schema.sql": {"size": 30, "sha256": "0" * 64}}))
    refused = _refused(world, _write(tmp_path / "sql-signed.tar.gz", signed))
    assert refused.reason == "unexpected_name"
    assert not pwned.exists()


def test_sql_in_the_manifest_column_types_never_becomes_a_statement(
    world: World, backup: Path, tmp_path: Path
) -> None:
    pwned = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"

    def poison(manifest: dict) -> None:
        columns = manifest["profiles"]["tables"]["profiles"]["columns"]
        columns[1][1] = f"VARCHAR); COPY (SELECT 1) TO '{pwned}'; --"

    archive = _write(tmp_path / "types.tar.gz", _resigned(world, _members(backup), poison))
    world.store.close()
    restore_backup(settings=world.settings, archive=archive)  # the type is not on the allow-list
    assert not pwned.exists()
    assert world.store.count() == 20


def test_a_tampered_parquet_file_fails_its_checksum(
    world: World, backup: Path, tmp_path: Path
) -> None:
    members = []
    for info, data in _members(backup):
        if info.name == "profiles/profiles.parquet":
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        members.append((info, data))
    refused = _refused(world, _write(tmp_path / "parquet.tar.gz", members))
    assert (refused.member, refused.reason) == ("profiles/profiles.parquet", "checksum_mismatch")


def test_a_tampered_manifest_fails_its_signature(
    world: World, backup: Path, tmp_path: Path
) -> None:
    members = []
    for info, data in _members(backup):
        if info.name == MANIFEST:
            manifest = json.loads(data)
            manifest["database"]["revision"] = "0001"
            data = (json.dumps(manifest, indent=2) + "\n").encode()
        members.append((info, data))
    refused = _refused(world, _write(tmp_path / "manifest.tar.gz", members))
    assert (refused.member, refused.reason) == (MANIFEST, "bad_signature")


def test_a_backup_signed_with_another_key_is_refused(
    world: World, backup: Path, tmp_path: Path
) -> None:
    elsewhere = world.settings.model_copy(
        update={"secret_key": SecretStr(Fernet.generate_key().decode())})
    world.store.close()
    with pytest.raises(BackupRefused, match="does not match any configured secrets key"):
        restore_backup(settings=elsewhere, archive=backup)
    # A rotated key list that still holds the signing key (after the newest) accepts it.
    assert world.settings.secret_key is not None
    rotated = world.settings.model_copy(update={"secret_key": SecretStr(
        f"{Fernet.generate_key().decode()},{world.settings.secret_key.get_secret_value()}")})
    assert restore_backup(settings=rotated, archive=backup).counts["exports"] == 1


@pytest.mark.parametrize("name", ["../evil", "../../etc/cron.d/evil", "/tmp/evil",
                                  "profiles/../../evil"])
def test_path_traversal_in_member_names_is_refused(
    world: World, backup: Path, tmp_path: Path, name: str
) -> None:
    members = _members(backup)
    members.insert(2, _file(name, b"owned"))
    refused = _refused(world, _write(tmp_path / "traversal.tar.gz", members))
    assert (refused.member, refused.reason) == (name, "path_traversal")
    assert not (tmp_path / "evil").exists()
    assert not (world.settings.data_dir.parent / "evil").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_refused(
    world: World, backup: Path, tmp_path: Path, kind: bytes
) -> None:
    members = [(i, d) for i, d in _members(backup) if i.name != "state.sqlite"]
    link = tarfile.TarInfo("state.sqlite")
    link.type = kind
    link.linkname = "/etc/passwd"
    members.insert(2, (link, b""))
    refused = _refused(world, _write(tmp_path / "link.tar.gz", members))
    assert (refused.member, refused.reason) == ("state.sqlite", "not_a_file")


def test_a_member_over_the_cap_is_refused_before_it_is_read(
    world: World, backup: Path, tmp_path: Path
) -> None:
    refused = _refused(world, backup, max_member_bytes=1000)
    assert refused.reason == "too_big"
    # Declared huge in a validly signed manifest: over the default cap (or the free space).
    signed = _resigned(world, _members(backup), lambda m: m["files"]["state.sqlite"].update(
        size=1 << 50))
    refused = _refused(world, _write(tmp_path / "declared.tar.gz", signed))
    assert (refused.member, refused.reason) == ("state.sqlite", "too_big")


def test_a_member_bigger_than_its_manifest_entry_is_refused_unread(
    world: World, backup: Path, tmp_path: Path
) -> None:
    """A tar header claiming 50 GB (no data follows: nothing that big is ever written)."""
    path = tmp_path / "huge.tar.gz"
    with tarfile.open(str(path), "w|gz") as tar:
        for info, data in _members(backup)[:2]:
            tar.addfile(info, io.BytesIO(data))
        huge = tarfile.TarInfo("state.sqlite")
        huge.size = 50 << 30
        assert tar.fileobj is not None
        tar.fileobj.write(huge.tobuf())
        tar.fileobj.write(b"\0" * 4096)
    refused = _refused(world, path)
    assert (refused.member, refused.reason) == ("state.sqlite", "size_mismatch")
    assert path.stat().st_size < 1 << 20


def test_a_sqlite_state_file_with_a_trigger_is_refused(
    world: World, backup: Path, tmp_path: Path
) -> None:
    """Signed with the right key (a bug or an insider), the state file still only gives rows."""
    import sqlite3
    from contextlib import closing

    members = _members(backup)
    state = tmp_path / "state.sqlite"
    state.write_bytes({i.name: d for i, d in members}["state.sqlite"])
    with closing(sqlite3.connect(state)) as conn:
        conn.execute("CREATE TRIGGER t AFTER INSERT ON runs BEGIN DELETE FROM users; END")
        conn.commit()
    data = state.read_bytes()
    replaced = [(i, data if i.name == "state.sqlite" else d) for i, d in members]
    signed = _resigned(world, replaced, lambda m: m["files"]["state.sqlite"].update(
        size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    refused = _refused(world, _write(tmp_path / "trigger.tar.gz", signed))
    assert (refused.member, refused.reason) == ("state.sqlite", "unexpected_schema")
    assert "trigger" in str(refused)
