"""Typed views of the Constant Contact V3 responses the product reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ActivityState = Literal[
    "initialized", "processing", "completed", "cancelled", "failed", "timed_out"
]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "cancelled", "failed", "timed_out"})


class _Model(BaseModel):
    # Constant Contact adds fields over time; keep them (extra="allow") rather than fail or drop.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Link(_Model):
    """One hypermedia link; ``href`` is usually a path such as ``/v3/contacts?cursor=...``."""

    href: str


class Links(_Model):
    """The ``_links`` object: ``next`` for paging, ``self`` and ``results`` on activities."""

    next: Link | None = None
    self_: Link | None = Field(default=None, alias="self")
    results: Link | None = None


class AccountSummary(_Model):
    """``GET /account/summary``: who the connection reaches."""

    encoded_account_id: str | None = None
    organization_name: str | None = None
    contact_email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    country_code: str | None = None
    time_zone_id: str | None = None


class ContactList(_Model):
    """A contact list; ``membership_count`` only when asked for."""

    list_id: str
    name: str
    description: str | None = None
    favorite: bool | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    membership_count: int | None = None


class CustomFieldChoice(_Model):
    """One choice of a ``single_select`` or ``multi_select`` custom field."""

    choice_id: int | str | None = None
    choice_label: str
    display_order: int | None = None


class CustomFieldMetadata(_Model):
    """How a custom field's values are shaped (numbers and currencies) or shown (selects)."""

    display_type: str | None = None
    allow_negative: bool | None = None
    decimal_places: int | None = None
    currency_code: str | None = None
    integer: bool | None = None
    display_format: str | None = None


class CustomField(_Model):
    """An account custom field; imports address it as ``cf:<name>``.

    Typed since 2025-09: ``string``, ``text_area``, ``number``, ``currency``, ``boolean``,
    ``date``, ``datetime``, ``single_select`` or ``multi_select`` (those two with ``choices``).
    """

    custom_field_id: str
    name: str
    label: str | None = None
    type: str | None = None
    metadata: CustomFieldMetadata | None = None
    choices: list[CustomFieldChoice] = Field(default_factory=list)


class EmailAddress(_Model):
    """A contact's email and its permission state (``unsubscribed`` must never be overridden)."""

    address: str
    permission_to_send: str | None = None
    opt_in_source: str | None = None
    opt_out_source: str | None = None
    opt_out_date: datetime | None = None


class Contact(_Model):
    """A contact as ``GET /contacts`` returns it (sub-resources only when included)."""

    contact_id: str
    email_address: EmailAddress | None = None
    first_name: str | None = None
    last_name: str | None = None
    list_memberships: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None

    @property
    def email(self) -> str | None:
        """The contact's email address, if it has one."""
        return self.email_address.address if self.email_address else None


class ActivityStatus(_Model):
    """The counts an activity reports; which ones appear depends on the activity type."""

    items_total_count: int | None = None
    items_completed_count: int | None = None
    person_count: int | None = None
    error_count: int | None = None
    correctable_count: int | None = None
    cannot_add_to_list_count: int | None = None
    list_count: int | None = None


class Activity(_Model):
    """An asynchronous bulk job: an import, a list-membership change or a contact export."""

    activity_id: str
    state: ActivityState
    created_at: datetime | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    percent_done: int | None = None
    activity_errors: list[str] = Field(default_factory=list)
    status: ActivityStatus = Field(default_factory=ActivityStatus)
    links: Links = Field(default_factory=Links, alias="_links")

    @property
    def is_terminal(self) -> bool:
        """True once the activity can no longer change state."""
        return self.state in TERMINAL_STATES

    @property
    def results_href(self) -> str | None:
        """Where a completed contact export's file is (``_links.results.href``)."""
        return self.links.results.href if self.links.results else None


__all__ = [
    "TERMINAL_STATES",
    "AccountSummary",
    "Activity",
    "ActivityState",
    "ActivityStatus",
    "Contact",
    "ContactList",
    "EmailAddress",
    "Link",
    "Links",
]
