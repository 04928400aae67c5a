"""The backup archive: a signed manifest first, then only the files it lists, read defensively.

Writing: ``manifest.json`` (each member's size and SHA-256, the format and app versions) and
``manifest.sig`` (an HMAC-SHA256 of the manifest's exact bytes, under a key derived by HKDF from
the installation's secrets key) come first, then the listed files.

Reading never trusts the archive before the signature is checked, and never lets it choose a
path: the archive is streamed member by member, the manifest's signature is verified before the
manifest is parsed, and each later member must be a regular file, under a safe name, listed in
the manifest, no bigger than the manifest says (and a cap), and match its checksum. Members are
written to paths this module makes up, streamed with a byte budget, so a lying header cannot fill
the disk or the memory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from segment_export.errors import DataError
from segment_export.languages import N_, text
from segment_export.ops.keys import fingerprint

FORMAT = 2
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PRODUCT = "segment-export"
# A manifest is a few kilobytes; one over this is not ours.
MAX_MANIFEST_BYTES = 1 << 20
# No member of a real backup comes near this; the free disk space is checked as well.
MAX_MEMBER_BYTES = 256 << 30
_HKDF_INFO = b"segment-export backup manifest v2"
# Every name a backup may hold (besides the manifest and its signature).
_MEMBER_NAME = re.compile(
    r"(?:state\.sqlite|secret\.key|state/[a-z][a-z0-9_]{0,62}\.pgcopy"
    r"|profiles/[a-z][a-z0-9_]{0,62}\.parquet)")
_CHUNK = 1 << 20


class BackupRefused(DataError):
    """The archive is not a backup this installation can trust; nothing was replaced."""

    def __init__(self, message: str, *, member: str | None = None, reason: str,
                 hint: str | None = None, values: Mapping[str, Any] | None = None) -> None:
        # ``message`` is a catalogue msgid (with its ``values``), read after the member's name.
        # Values as the English text wrote them (a nested Text would group numbers).
        said = text(message, **{name: str(value) for name, value in (values or {}).items()})
        if member is not None:
            super().__init__(N_("Refusing the backup: member %(member)s: %(why)s"),
                             values={"member": repr(member), "why": said}, hint=hint,
                             member=member, reason=reason)
        else:
            super().__init__(N_("Refusing the backup: %(why)s"), values={"why": said},
                             hint=hint, member=member, reason=reason)
        self.member = member
        self.reason = reason


# -- signing -------------------------------------------------------------------------------------


def signing_key(secret_key: bytes) -> bytes:
    """The manifest-signing key derived from one Fernet key (never the Fernet key itself)."""
    try:
        material = base64.urlsafe_b64decode(secret_key.strip())
    except ValueError:
        material = secret_key.strip()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)


def sign(manifest: bytes, secret_key: bytes) -> bytes:
    """The ``manifest.sig`` member for ``manifest`` under ``secret_key``."""
    mac = hmac.new(signing_key(secret_key), manifest, hashlib.sha256).hexdigest()
    return (json.dumps({"algorithm": "HMAC-SHA256", "kdf": "HKDF-SHA256",
                        "key": fingerprint(secret_key), "mac": mac}) + "\n").encode()


def verify(manifest: bytes, signature: bytes, keys: Iterable[bytes]) -> bytes:
    """The configured key that signed ``manifest``; refuses when none did."""
    try:
        mac = str(json.loads(signature)["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupRefused(N_("the signature is unreadable"), member=SIGNATURE,
                            reason="bad_signature") from exc
    for key in keys:
        expected = hmac.new(signing_key(key), manifest, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), mac.encode()):
            return key
    raise BackupRefused(
        N_("the manifest's signature does not match any configured secrets key: the backup was "
           "altered, or it was made with another key"), member=MANIFEST, reason="bad_signature",
        hint=N_("Configure the key the backup was taken with (SEGMENT_EXPORT_SECRET_KEY, or its "
                "secret.key in the data directory), then restore again."))


# -- writing -------------------------------------------------------------------------------------


def member_entry(path: Path) -> dict[str, Any]:
    """The manifest's record of one file: its size and SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def write_archive(target: Path, work: Path, manifest: bytes, signature: bytes) -> None:
    """Write the ``.tar.gz`` (owner-only, atomically): manifest, signature, then each file."""
    partial = target.with_name(target.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    files = json.loads(manifest)["files"]
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in ((MANIFEST, manifest), (SIGNATURE, signature)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, _bytes(data))
        for name in sorted(files):
            info = tar.gettarinfo(work / name, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (work / name).open("rb") as handle:
                tar.addfile(info, handle)
    os.replace(partial, target)


def _bytes(data: bytes) -> IO[bytes]:
    import io

    return io.BytesIO(data)


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedBackup:
    """A backup whose manifest is signed by a configured key and whose files all match it."""

    manifest: dict[str, Any]
    files: dict[str, Path]  # manifest name -> where this module put the verified copy
    key: bytes  # the configured key that signed it


def read_verified_manifest(archive: Path, keys: list[bytes]) -> tuple[dict[str, Any], bytes]:
    """Only the manifest, once its signature is checked (for confirmation prompts)."""
    with _open(archive) as tar:
        return _manifest(tar, archive, keys)


def extract_verified(archive: Path, keys: list[bytes], destination: Path, *,
                     max_member_bytes: int = MAX_MEMBER_BYTES) -> VerifiedBackup:
    """Check ``archive`` against its signed manifest and copy its files under ``destination``.

    Raises :class:`BackupRefused` naming the member and the reason at the first problem.
    """
    with _open(archive) as tar:
        manifest, key = _manifest(tar, archive, keys)
        expected = _expected_files(manifest, max_member_bytes)
        needed = sum(size for size, _digest in expected.values())
        free = shutil.disk_usage(destination).free
        if needed > free:
            raise BackupRefused(
                N_("its files need %(needed)s bytes and %(destination)s has %(free)s free"),
                values={"needed": f"{needed:,}", "destination": destination, "free": f"{free:,}"},
                reason="no_space", hint=N_("Free some disk space, then restore again."))
        found: dict[str, Path] = {}
        try:
            for member in _members(tar):
                name = _checked_name(member)
                if not member.isreg():
                    raise BackupRefused(N_("is a %(kind)s; a backup holds regular files only"),
                                        values={"kind": _kind(member)},
                                        member=name, reason="not_a_file")
                if name not in expected:
                    raise BackupRefused(N_("is not listed in the signed manifest"), member=name,
                                        reason="not_in_manifest")
                if name in found:
                    raise BackupRefused(N_("appears twice"), member=name, reason="duplicate")
                size, digest = expected[name]
                if member.size != size:
                    raise BackupRefused(N_("is %(size)s bytes where the manifest says %(size2)s"),
                                        values={"size": f"{member.size:,}",
                                                "size2": f"{size:,}"},
                                        member=name, reason="size_mismatch")
                found[name] = _copy(tar, member, name, destination / f"{len(found):03d}.member",
                                    size, digest)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise BackupRefused(N_("the archive is damaged or truncated (%(error)s)"),
                                values={"error": exc},
                                reason="damaged") from exc
        missing = sorted(set(expected) - set(found))
        if missing:
            raise BackupRefused(N_("is listed in the manifest but missing from the archive"),
                                member=missing[0], reason="missing")
    return VerifiedBackup(manifest, found, key)


def _open(archive: Path) -> tarfile.TarFile:
    try:
        # A stream ("r|gz"): members are read once, in order; nothing seeks back to a member
        # the manifest has not vouched for.
        return tarfile.open(archive, mode="r|gz")
    except (OSError, tarfile.TarError) as exc:
        raise BackupRefused(N_("%(archive)s is not a segment-export backup (%(error)s)"),
                            values={"archive": archive, "error": exc},
                            reason="not_a_backup") from exc


def _members(tar: tarfile.TarFile) -> Any:
    while True:
        member = tar.next()
        if member is None:
            return
        yield member


def _manifest(tar: tarfile.TarFile, archive: Path,
              keys: list[bytes]) -> tuple[dict[str, Any], bytes]:
    try:
        manifest = _small_member(tar, MANIFEST, archive)
        signature = _small_member(tar, SIGNATURE, archive)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupRefused(N_("%(archive)s is not a segment-export backup (%(error)s)"),
                            values={"archive": archive, "error": exc},
                            reason="not_a_backup") from exc
    if not keys:
        raise BackupRefused(N_("there is no configured secrets key to check the backup's "
                               "signature with"), member=SIGNATURE, reason="no_key",
                            hint=N_("Configure the key the backup was taken with first."))
    key = verify(manifest, signature, keys)
    try:
        parsed = json.loads(manifest)
    except ValueError as exc:
        raise BackupRefused(N_("is not JSON"), member=MANIFEST, reason="bad_manifest") from exc
    if not isinstance(parsed, dict) or parsed.get("product") != PRODUCT \
            or parsed.get("format") != FORMAT:
        raise BackupRefused(N_("is not a segment-export manifest of format %(format)s"),
                            values={"format": FORMAT},
                            member=MANIFEST, reason="bad_manifest")
    return parsed, key


def _small_member(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    member = tar.next()
    if member is None or member.name != name:
        found = None if member is None else member.name
        if name == SIGNATURE or found == MANIFEST:
            raise BackupRefused(
                N_("has no signature: it was made by an older version (backup format 1), whose "
                   "restore executed SQL from the archive"), member=MANIFEST, reason="unsigned",
                hint=N_("If you made this backup and kept it safe, restore it with the version "
                        "that made it (see its manifest.json), then take a new backup with this "
                        "version; otherwise take a new backup."))
        raise BackupRefused(N_("%(archive)s is not a segment-export backup of format "
                               "%(format)s: it starts with %(found)s, not %(name)s"),
                            values={"archive": archive, "format": FORMAT, "found": repr(found),
                                    "name": repr(name)}, member=found,
                            reason="not_a_backup")
    if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
        raise BackupRefused(N_("is not a small regular file"), member=name, reason="bad_manifest")
    handle = tar.extractfile(member)
    assert handle is not None
    data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) != member.size:
        raise BackupRefused(N_("is truncated"), member=name, reason="damaged")
    return data


def _expected_files(manifest: dict[str, Any], cap: int) -> dict[str, tuple[int, str]]:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupRefused(N_("lists no files"), member=MANIFEST, reason="bad_manifest")
    expected: dict[str, tuple[int, str]] = {}
    for name, entry in files.items():
        if not isinstance(name, str) or not _MEMBER_NAME.fullmatch(name):
            raise BackupRefused(N_("is not a name a backup holds"), member=str(name),
                                reason="unexpected_name")
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(size, int) or size < 0 or not isinstance(digest, str) \
                or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BackupRefused(N_("has no valid size and checksum in the manifest"), member=name,
                                reason="bad_manifest")
        if size > cap:
            raise BackupRefused(N_("is declared %(size)s bytes, over the %(cap)s-byte cap"),
                                values={"size": f"{size:,}", "cap": f"{cap:,}"},
                                member=name, reason="too_big")
        expected[name] = (size, digest)
    return expected


def _checked_name(member: tarfile.TarInfo) -> str:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts \
            or "\0" in name:
        raise BackupRefused(N_("points outside the archive (absolute path or ..)"), member=name,
                            reason="path_traversal")
    if name not in (MANIFEST, SIGNATURE) and not _MEMBER_NAME.fullmatch(name):
        raise BackupRefused(N_("is not a name a backup holds"), member=name,
                            reason="unexpected_name")
    return name


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.isdir():
        return "directory"
    if member.isdev() or member.isfifo():
        return "device or pipe"
    return "special member"


def _copy(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str, path: Path, size: int,
          digest: str) -> Path:
    source = tar.extractfile(member)
    assert source is not None
    sha = hashlib.sha256()
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while written <= size:
            block = source.read(min(_CHUNK, size + 1 - written))
            if not block:
                break
            written += len(block)
            if written > size:
                raise BackupRefused(N_("holds more than the %(size)s bytes the manifest says"),
                                    values={"size": f"{size:,}"},
                                    member=name, reason="size_mismatch")
            sha.update(block)
            out.write(block)
    if written != size or not hmac.compare_digest(sha.hexdigest(), digest):
        raise BackupRefused(N_("does not match its checksum in the manifest: the backup is "
                               "damaged or was altered"), member=name, reason="checksum_mismatch")
    return path
