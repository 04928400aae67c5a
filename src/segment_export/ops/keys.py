"""Rotating the key that encrypts secrets at rest: a new key first, re-encrypt online, drop old."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Engine

from segment_export.config import SECRET_KEY_FILE, Settings
from segment_export.db.keyring import read_key_file
from segment_export.db.models import Base
from segment_export.db.types import EncryptedString
from segment_export.errors import ConfigurationError
from segment_export.languages import N_

log = logging.getLogger(__name__)

# Rows changed by another writer between our read and our write are tried again this often.
MAX_PASSES = 5


@dataclass(frozen=True, slots=True)
class EncryptedTable:
    """A table with EncryptedString columns, read as raw ciphertext (never decrypted here)."""

    name: str
    key: str
    columns: tuple[str, ...]

    def clause(self) -> sa.TableClause:
        return sa.table(self.name, sa.column(self.key),
                        *(sa.column(c, sa.LargeBinary) for c in self.columns))


def encrypted_tables() -> list[EncryptedTable]:
    """Every table of the state store holding secrets, found from the models' column types."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = tuple(c.name for c in table.columns if isinstance(c.type, EncryptedString))
        if columns:
            (key,) = table.primary_key.columns
            found.append(EncryptedTable(table.name, key.name, columns))
    return found


def fingerprint(key: bytes) -> str:
    """A short name for a key that reveals nothing about it (shown in logs, backups, audit)."""
    return hashlib.sha256(key.strip()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where this installation's keys come from, and the keys (newest first) found there."""

    kind: Literal["environment", "file"]
    keys: list[bytes]
    path: Path | None = None


def key_source(settings: Settings) -> KeySource:
    """The configured keys, read without generating a key file as a side effect."""
    if settings.secret_key is not None:
        return KeySource("environment", [
            k.strip().encode() for k in settings.secret_key.get_secret_value().split(",")])
    path = settings.data_dir / SECRET_KEY_FILE
    return KeySource("file", read_key_file(path) if path.exists() else [], path)


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Replace the key file atomically (owner-only), so no reader ever sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"".join(k + b"\n" for k in keys))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored secret the given keys cannot decrypt."""

    table: str
    row: str
    column: str


def undecryptable(engine: Engine, keys: list[bytes]) -> list[Unreadable]:
    """Every stored secret that none of ``keys`` decrypts."""
    fernets = [Fernet(k) for k in keys]
    found: list[Unreadable] = []
    with engine.connect() as conn:
        for spec in encrypted_tables():
            t = spec.clause()
            for row in conn.execute(sa.select(t)).mappings():
                for column in spec.columns:
                    value = row[column]
                    if value is not None and not _readable(fernets, bytes(value)):
                        found.append(Unreadable(spec.name, str(row[spec.key]), column))
    return found


def _readable(fernets: list[Fernet], token: bytes) -> bool:
    for fernet in fernets:
        try:
            fernet.decrypt(token)
        except InvalidToken:
            continue
        return True
    return False


@dataclass(slots=True)
class Reencrypted:
    """What a re-encryption pass did."""

    values: int = 0  # secrets rewritten under the newest key
    current: int = 0  # secrets already under the newest key
    raced: int = 0  # rewrites lost to a concurrent writer (re-read and done again)
    unreadable: list[Unreadable] = field(default_factory=list)


def reencrypt(engine: Engine, keys: list[bytes], *, batch_size: int = 100) -> Reencrypted:
    """Re-encrypt every stored secret under ``keys[0]``, in short transactions, while live.

    Each row is written only if its ciphertext is still what was read (compare-and-swap), so a
    token refresh running meanwhile is never overwritten: that row is read again. Values no key
    opens are reported, not touched.
    """
    if not keys:
        raise ConfigurationError(N_("No encryption key configured"))
    newest = Fernet(keys[0])
    box = MultiFernet([Fernet(k) for k in keys])
    result = Reencrypted()
    for spec in encrypted_tables():
        t = spec.clause()
        key_col = t.c[spec.key]
        todo: list[Any] | None = None  # None: every row, in key order
        for _ in range(MAX_PASSES):
            retry = _reencrypt_pass(engine, spec, t, key_col, newest, box, batch_size, todo,
                                    result)
            if not retry:
                break
            result.raced += len(retry)
            todo = retry
    return result


def _reencrypt_pass(engine: Engine, spec: EncryptedTable, t: sa.TableClause,
                    key_col: sa.ColumnClause[Any], newest: Fernet, box: MultiFernet,
                    batch_size: int, only: list[Any] | None, result: Reencrypted) -> list[Any]:
    retry: list[Any] = []
    last: Any = None
    while True:
        query = sa.select(t).order_by(key_col).limit(batch_size)
        if only is not None:
            chunk, only = only[:batch_size], only[batch_size:]
            if not chunk:
                return retry
            query = query.where(key_col.in_(chunk))
        elif last is not None:
            query = query.where(key_col > last)
        with engine.begin() as conn:
            rows = list(conn.execute(query).mappings())
            if not rows and only is None:
                return retry
            for row in rows:
                last = row[spec.key]
                changes: dict[str, bytes] = {}
                for column in spec.columns:
                    value = row[column]
                    if value is None:
                        continue
                    token = bytes(value)
                    if _readable([newest], token):
                        result.current += 1
                        continue
                    try:
                        changes[column] = box.rotate(token)
                    except InvalidToken:
                        result.unreadable.append(Unreadable(spec.name, str(last), column))
                if not changes:
                    continue
                same = [t.c[c] == row[c] for c in changes]
                done = conn.execute(sa.update(t).where(key_col == last, *same).values(changes))
                if done.rowcount == 1:
                    result.values += len(changes)
                else:
                    retry.append(last)


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of `secrets rotate`."""

    source: Literal["environment", "file"]
    newest: str  # fingerprint of the key everything is now encrypted with
    generated: bool
    reencrypted: Reencrypted
    dropped: list[str]  # fingerprints of keys removed from the key file
    instructions: str | None = None  # what the operator must still do (environment keys)


def rotate_keys(*, settings: Settings, engine: Engine, new_key: bool = True,
                drop_old: bool = False, batch_size: int = 100) -> Rotation:
    """Rotate the secrets key without stopping the service.

    With the key file: a new key is written first in it (old keys stay after it and still
    decrypt), every secret is re-encrypted under it, and with ``drop_old`` the old keys are
    removed once nothing needs them. Processes pick the new file up as they use it (see
    KeyFileSecretBox). With SEGMENT_EXPORT_SECRET_KEY the operator changes the variable; this
    re-encrypts under its first key and says when the old ones may go.
    """
    source = key_source(settings)
    generated = False
    keys = list(source.keys)
    if source.kind == "file":
        assert source.path is not None
        if not keys:
            raise ConfigurationError(N_("There is no key file at %(path)s yet"),
                                     values={"path": source.path},
                                     hint=N_("Nothing is encrypted yet: there is nothing to "
                                             "rotate."))
        if new_key:
            keys = [Fernet.generate_key(), *keys]
            write_key_file(source.path, keys)
            generated = True
            log.info("wrote a new secrets key (%s) first in %s", fingerprint(keys[0]), source.path)
    elif len(keys) < 2 and not drop_old:
        raise ConfigurationError(
            N_("SEGMENT_EXPORT_SECRET_KEY holds one key: there is nothing to rotate to"),
            hint=N_("Put a new key (`segment-export secrets generate-key`) first in "
                    "SEGMENT_EXPORT_SECRET_KEY, keep the old one after it (comma-separated), "
                    "restart every process, then run `segment-export secrets rotate` again."))
    result = reencrypt(engine, keys, batch_size=batch_size)
    if result.unreadable:
        raise ConfigurationError(
            N_("%(count)s stored secret(s) cannot be decrypted with any configured key; nothing "
               "else is affected"),
            values={"count": len(result.unreadable)},
            hint=N_("Add the key they were encrypted with after the newest one, or re-authorize "
                    "those connections."), unreadable=[_as_dict(u) for u in result.unreadable])
    dropped: list[str] = []
    instructions = None
    if drop_old and len(keys) > 1:
        left = undecryptable(engine, keys[:1])
        if left:
            raise ConfigurationError(
                N_("%(count)s secret(s) still need an old key; old keys were kept"),
                values={"count": len(left)},
                hint=N_("Run `segment-export secrets rotate --no-new-key --drop-old` again."))
        if source.kind == "file":
            assert source.path is not None
            write_key_file(source.path, keys[:1])
            # A write under an old key that slipped in before the file changed is caught here,
            # while this process still holds the old keys in memory.
            late = reencrypt(engine, keys, batch_size=batch_size)
            result.values += late.values
            dropped = [fingerprint(k) for k in keys[1:]]
        else:
            instructions = (
                "Every secret now decrypts with the first key alone: set "
                "SEGMENT_EXPORT_SECRET_KEY to just that key (fingerprint "
                f"{fingerprint(keys[0])}) and restart each process.")
    elif source.kind == "environment" and not drop_old:
        instructions = (
            "When every process runs with the new SEGMENT_EXPORT_SECRET_KEY, remove the old "
            "key(s) from it (`segment-export secrets rotate --drop-old` checks that first).")
    return Rotation(source.kind, fingerprint(keys[0]), generated, result, dropped, instructions)


def _as_dict(item: Unreadable) -> dict[str, str]:
    return {"table": item.table, "row": item.row, "column": item.column}
