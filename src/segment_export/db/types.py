"""Column types the models share: aware UTC datetimes and secrets encrypted at rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import DateTime, Dialect, LargeBinary
from sqlalchemy.types import TypeDecorator

from segment_export.errors import ConfigurationError
from segment_export.languages import N_


class SecretBox:
    """Encrypts with the newest key and decrypts with any key, so keys can be rotated live."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError(N_("No encryption key configured"))
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken as exc:
            raise ConfigurationError(
                N_("A stored secret cannot be decrypted with the configured key(s)"),
                hint=N_("Set SEGMENT_EXPORT_SECRET_KEY to the key that encrypted it "
                        "(keep old keys after the new one while rotating)."),
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` under the newest key."""
        return self._fernet.rotate(token)


def attach_secret_box(dialect: Dialect, box: SecretBox) -> None:
    """Give an engine's dialect the box its EncryptedString columns use.

    The key travels with the engine rather than through a module global, so tests can hold
    several engines with different keys side by side.
    """
    dialect.segment_export_secret_box = box  # type: ignore[attr-defined]


def _box(dialect: Dialect) -> SecretBox:
    box = getattr(dialect, "segment_export_secret_box", None)
    if box is None:
        raise ConfigurationError("This engine was made without an encryption key (use make_engine)")
    return box  # type: ignore[no-any-return]


class EncryptedString(TypeDecorator[str]):
    """A string stored as Fernet ciphertext; plaintext never reaches the database."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        return None if value is None else _box(dialect).encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else _box(dialect).decrypt(bytes(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)
