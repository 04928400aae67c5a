"""Bodies of the control endpoints (``/_emulator/...``), shared by the routes and the client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from segment_export.emulator.activities import ActivityKind
from segment_export.emulator.faults import FAULT_STATUSES, FaultKind, When
from segment_export.emulator.oauth import ROTATING, RefreshTokenType


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedApp(_Body):
    """A registered application; ``client_secret=None`` makes a public (PKCE-only) client."""

    client_id: str = Field(min_length=1)
    client_secret: str | None = None
    redirect_uris: list[str] = Field(default_factory=list)
    refresh_token_type: RefreshTokenType = ROTATING
    name: str = "Sandbox app"
    partner: bool = Field(default=False, description="A technology partner (partner token URL).")


class SeedList(_Body):
    """A contact list; reused when one with the same id or name exists."""

    name: str = Field(min_length=1, max_length=255)
    list_id: str | None = None
    description: str | None = None
    favorite: bool = False


class SeedCustomField(_Body):
    """A typed custom field; a plain string in ``custom_fields`` seeds a ``string`` field."""

    name: str = Field(min_length=1, max_length=50, description="Also its label, '_' as blanks.")
    type: str = "string"
    choices: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SeedRequest(_Body):
    """What ``POST /_emulator/seed`` adds to the account (nothing is removed)."""

    apps: list[SeedApp] = Field(default_factory=list)
    account: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, description="Tag names (ids are made up).")
    custom_fields: list[str | SeedCustomField] = Field(default_factory=list)
    lists: list[SeedList] = Field(default_factory=list)
    contacts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Import-shaped rows (email and/or sms_number, first_name, cf:...), plus "
        "optional permission_to_send, lists (names or ids the contact is a member of), tags "
        "(seeded tag names or ids) and engagement_level (any text).",
    )


class FaultRequest(_Body):
    """``POST /_emulator/faults``: the next ``count`` matching requests meet this fault."""

    kind: FaultKind
    count: int = Field(default=1, ge=1)
    status: int = 503
    delay: float = Field(default=0.0, ge=0)
    path_prefix: str = "/v3"
    when: When = "before"
    method: str | None = None

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: int) -> int:
        if value not in FAULT_STATUSES:
            raise ValueError(f"status must be one of {sorted(FAULT_STATUSES)}")
        return value

    @model_validator(mode="after")
    def _during_is_a_drop(self) -> FaultRequest:
        # Only a lost connection can happen mid-upload; an answer needs the whole request.
        if self.when == "during" and self.kind != "drop":
            raise ValueError("when='during' is only for kind='drop'")
        return self


class ActivityFaultRequest(_Body):
    """``POST /_emulator/activity_faults``: the next ``count`` activities of ``kind`` end badly."""

    outcome: Literal["failed", "timed_out"]
    count: int = Field(default=1, ge=1)
    kind: ActivityKind | Literal["any"] = ActivityKind.IMPORT


class ApproveRequest(_Body):
    """``POST /_emulator/approve``: answer the consent page of ``authorize_url``."""

    authorize_url: str
    allow: bool = True


class EmailsRequest(_Body):
    """``POST /_emulator/contacts/unsubscribe`` and ``POST /_emulator/lists/{id}/members``."""

    emails: list[str] = Field(min_length=1)
