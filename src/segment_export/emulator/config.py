"""The emulator's limits and speeds: Constant Contact's documented values, all tunable."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DAY = 86_400.0


class EmulatorConfig(BaseModel):
    """Limits the emulator enforces and how fast it works; change them at runtime with
    ``EmulatorControl.set_config``. Defaults are the values Constant Contact documents."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_second: float = Field(
        default=4.0, gt=0, description="API requests per API key in any sliding second."
    )
    daily_quota: int = Field(default=10_000, gt=0, description="API requests per key per UTC day.")
    max_contacts_per_import: int = Field(default=40_000, gt=0)
    max_body_bytes: int = Field(
        default=4_000_000, gt=0, description="An import body is cut here; the rest is dropped."
    )
    max_queued_activities: int = Field(default=1_000, gt=0)
    max_list_ids: int = Field(default=50, gt=0, description="list_ids per import or activity.")
    max_contact_ids: int = Field(default=500, gt=0, description="contact_ids per activity.")
    max_lists: int = Field(default=1_000, gt=0, description="Lists per account.")
    max_custom_fields_per_contact: int = Field(default=25, gt=0)
    max_custom_fields: int = Field(default=100, gt=0, description="Custom fields per account.")
    strict_custom_fields: bool = Field(
        default=False,
        description="Reject an import row naming a custom field the account lacks; Constant "
        "Contact silently ignores such a cf: key (the default here too).",
    )
    email_rule: Literal["lenient", "strict"] = Field(
        default="lenient",
        description="Which import emails are valid: 'lenient' is Constant Contact support's "
        "description (no spaces, commas or brackets; one @; a full domain; + is fine), what "
        "Constant Contact does; 'strict' a conservative ASCII dot-atom.",
    )
    flagged_emails: tuple[str, ...] = Field(
        default=(),
        description="Addresses Constant Contact has flagged for 48 hours (more than 5 sign-up "
        "attempts in 24 h): an import refuses them as invalid, a correctable error, though "
        "their syntax is fine. Compared lower-cased.",
    )
    activity_seconds: float = Field(
        default=0.0, ge=0, description="From initialized to completed; 0 = at once."
    )
    activity_retention_seconds: float = Field(default=10 * DAY, gt=0)
    access_token_seconds: float = Field(default=DAY, gt=0)
    refresh_token_seconds: float = Field(
        default=180 * DAY, gt=0, description="A refresh token unused this long expires."
    )
    code_seconds: float = Field(default=300.0, gt=0, description="Life of an authorization code.")
    token_requests_per_second: float = Field(
        default=1.0, gt=0, description="Token endpoint requests per client in any sliding second."
    )
    auto_approve: bool = Field(
        default=False, description="The authorize endpoint redirects at once, without a page."
    )
    enforce_scopes: bool = Field(
        default=True, description="403 when the token lacks the scope the contract names."
    )
    request_log_limit: int = Field(
        default=100_000, gt=0, description="Request log entries kept (oldest dropped first)."
    )

    def with_changes(self, **changes: Any) -> EmulatorConfig:
        """A validated copy with ``changes`` applied (unknown names are refused)."""
        return EmulatorConfig.model_validate({**self.model_dump(), **changes})
