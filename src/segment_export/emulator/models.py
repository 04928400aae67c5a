"""In-memory records of the emulated account (contacts, lists, custom fields); id/time helpers."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

PERMISSIONS: Final = frozenset(
    {"explicit", "implicit", "not_set", "pending_confirmation", "temp_hold", "unsubscribed"}
)
UNSUBSCRIBED: Final = "unsubscribed"
IMPLICIT: Final = "implicit"


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where the 32 hex digits go in the 36-character 8-4-4-4-12 form; the rest are dashes.
_DIGIT_POSITIONS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def new_ids(count: int) -> list[str]:
    """``count`` random version-4 UUID strings.

    Built in bulk with numpy: ``str(uuid.uuid4())`` per contact would cost more than the rest
    of a 40,000-contact import.
    """
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((count, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    chars = np.full((count, 36), ord("-"), dtype=np.uint8)
    chars[:, _DIGIT_POSITIONS] = _HEX_DIGITS[nibbles]
    text = chars.tobytes().decode("ascii")
    return [text[start : start + 36] for start in range(0, 36 * count, 36)]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bulk build of contacts.

    A 40,000-contact import allocates a few hundred thousand tracked objects; the collections
    they trigger rescan the whole heap and double the import's time. Nothing built here forms
    reference cycles, so collecting can wait until the end.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def new_id() -> str:
    """One random version-4 UUID string."""
    return new_ids(1)[0]


def iso(timestamp: float) -> str:
    """``timestamp`` as Constant Contact writes times: ISO-8601 UTC with a ``Z``."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Contact:
    """One contact, keyed by its lowercased email address.

    ``__slots__`` and a separate ``extra`` dict (only when a contact has more than a name) keep a
    million contacts in a few hundred megabytes.
    """

    __slots__ = (
        "address",
        "contact_id",
        "created_at",
        "deleted_at",
        "engagement",
        "extra",
        "first_name",
        "last_name",
        "opt_out_at",
        "permission",
        "tags",
        "updated_at",
    )

    def __init__(
        self,
        contact_id: str,
        address: str | None,
        permission: str,
        created_at: float,
        first_name: str | None = None,
        last_name: str | None = None,
        extra: dict[str, str | int] | None = None,
    ) -> None:
        self.contact_id = contact_id
        self.address = address
        self.permission = permission
        self.created_at = created_at
        self.updated_at = created_at
        self.first_name = first_name
        self.last_name = last_name
        self.extra = extra
        self.opt_out_at: float | None = created_at if permission == UNSUBSCRIBED else None
        self.deleted_at: float | None = None
        # Only seeds set these: the emulator has no tag or engagement endpoints.
        self.tags: frozenset[str] | None = None
        self.engagement: str | None = None

    @property
    def sms_number(self) -> str | None:
        """The SMS number (10 digits), if the contact has an SMS channel."""
        value = self.extra.get("sms_number") if self.extra else None
        return str(value) if value is not None else None

    def get(self, field: str) -> str | int | None:
        """The value of an import field (``first_name``, ``home_city``, ``cf:tier`` ...)."""
        if field == "first_name":
            return self.first_name
        if field == "last_name":
            return self.last_name
        return self.extra.get(field) if self.extra else None

    def update(self, fields: dict[str, str | int], now: float) -> None:
        """Set the fields given and leave every other one as it was (imports are partial); a
        deleted contact comes back (an import re-activates it)."""
        self.deleted_at = None
        for key, value in fields.items():
            if key == "first_name":
                self.first_name = str(value)
            elif key == "last_name":
                self.last_name = str(value)
            elif key != "email":
                if self.extra is None:
                    self.extra = {}
                self.extra[key] = value
        self.updated_at = now


class ContactList:
    """A contact list; its members are held here (not on the contact) so list queries are cheap."""

    __slots__ = (
        "created_at",
        "deleted_at",
        "deleting",
        "description",
        "favorite",
        "list_id",
        "members",
        "name",
        "updated_at",
    )

    def __init__(
        self,
        *,
        list_id: str,
        name: str,
        created_at: float,
        description: str | None = None,
        favorite: bool = False,
    ) -> None:
        self.list_id = list_id
        self.name = name
        self.description = description
        self.favorite = favorite
        self.created_at = created_at
        self.updated_at = created_at
        self.deleted_at: float | None = None
        self.deleting = False  # a delete activity is queued
        self.members: set[Contact] = set()

    def active_count(self) -> int:
        """Members that can be sent to (not unsubscribed)."""
        return sum(1 for c in self.members if c.permission != UNSUBSCRIBED)


def sms_key(number: str) -> str:
    """The import-plan key of an SMS-only row: never an email key, which always holds an @."""
    return f"sms:{number}"


class Choice:
    """One choice of a ``single_select`` or ``multi_select`` custom field."""

    __slots__ = ("choice_id", "display_order", "label")

    def __init__(self, *, choice_id: int, label: str, display_order: int) -> None:
        self.choice_id = choice_id
        self.label = label
        self.display_order = display_order


class CustomField:
    """An account custom field, used in imports as ``cf:<name>``; typed since 2025-09."""

    __slots__ = ("choices", "created_at", "custom_field_id", "label", "metadata", "name", "type")

    def __init__(
        self,
        *,
        name: str,
        custom_field_id: str | None = None,
        label: str | None = None,
        type: str = "string",
        choices: list[Choice] | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: float = 0.0,
    ) -> None:
        self.name = name
        self.custom_field_id = custom_field_id or new_id()
        self.label = label or name.replace("_", " ")
        self.type = type
        self.choices = choices or []
        self.metadata = metadata or {}
        self.created_at = created_at
