"""A secret box that follows the key file, so a running process picks up a rotated key."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from segment_export.db.types import SecretBox
from segment_export.errors import ConfigurationError
from segment_export.languages import N_


def read_key_file(path: Path) -> list[bytes]:
    """The keys in a key file, newest first (one per line)."""
    keys = [k.strip() for k in path.read_bytes().split(b"\n") if k.strip()]
    if not keys:
        raise ConfigurationError(N_("The key file %(path)s is empty"),
                                 values={"path": path}, path=str(path))
    return keys


class KeyFileSecretBox(SecretBox):
    """Like SecretBox, but re-reads ``<data_dir>/secret.key`` whenever the file changes.

    `secrets rotate` writes a new key first in the file and re-encrypts every secret under it
    while the service runs; a process holding only the keys it read at start could then no
    longer decrypt them. A stat per use is cheap next to a decryption.
    """

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._reload_lock = threading.Lock()
        super().__init__(read_key_file(self._path))
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _follow(self) -> None:
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return
        with self._reload_lock:
            if self._stat() == self._stamp:
                return
            keys = read_key_file(self._path)
            self._fernet = MultiFernet([Fernet(k) for k in keys])
            self._stamp = stamp

    def encrypt(self, plaintext: str) -> bytes:
        self._follow()
        return super().encrypt(plaintext)

    def decrypt(self, token: bytes) -> str:
        self._follow()
        return super().decrypt(token)

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` under the newest key in the file."""
        self._follow()
        return super().rotate(token)
