"""``EmulatorControl``: a small typed client of the control endpoints, for tests, the demo and
the benchmark (also against an emulator running in another process)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.errors import (
    ControlError,
    ControlNotFoundError,
    EmulatorUnreachableError,
)
from segment_export.emulator.faults import FaultKind, When
from segment_export.emulator.schemas import SeedApp, SeedList


@dataclass(frozen=True, slots=True)
class SeedResult:
    """Ids of what a seed call created or found."""

    lists: dict[str, str]
    """List name -> list id (every list of the account)."""
    contacts: dict[str, str]
    """Lowercased email -> contact id (the contacts of this call)."""
    custom_fields: dict[str, str]
    """Custom field name -> id."""
    tags: dict[str, str] = field(default_factory=dict)
    """Tag name -> id (seeded tags, for ``tag_ids`` sources)."""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """One entry of the emulator's request log."""

    seq: int
    time: float
    method: str
    path: str
    query: str
    status: int
    request_bytes: int
    truncated: bool
    imported_bytes: int | None
    client_id: str | None
    fault: str | None
    duration: float


class EmulatorControl:
    """Drive an emulator through ``/_emulator``: reset, seed, faults, limits, read-outs."""

    def __init__(self, base_url: str, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.base_url}/_emulator", timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EmulatorUnreachableError(
                f"The emulator at {self.base_url} did not answer: {exc}", status=0) from exc
        if response.status_code == 404:
            raise ControlNotFoundError(_message(response), status=404)
        if response.status_code >= 400:
            raise ControlError(
                f"Emulator control call {method} {path} failed: {_message(response)}",
                status=response.status_code)
        return response.json()

    def health(self) -> bool:
        """Whether the emulator answers."""
        try:
            return bool(self._call("GET", "/health").get("ok"))
        except EmulatorUnreachableError:
            return False

    def reset(self) -> None:
        """Forget everything: apps, tokens, lists, contacts, activities, faults, request log."""
        self._call("POST", "/reset")

    def seed(
        self,
        *,
        apps: Sequence[SeedApp | Mapping[str, Any]] = (),
        account: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        custom_fields: Sequence[str | Mapping[str, Any]] = (),
        lists: Sequence[SeedList | Mapping[str, Any] | str] = (),
        contacts: Sequence[Mapping[str, Any]] = (),
    ) -> SeedResult:
        """Add to the account (nothing is removed; call ``reset`` first for a clean slate).

        ``apps``: ``{client_id, client_secret (None = public PKCE client), redirect_uris,
        refresh_token_type: 'rotating'|'long_lived', name}``. ``lists``: names, or
        ``{name, list_id?, description?, favorite?}``. ``contacts``: import-shaped rows
        (``email``, ``first_name``, ``cf:tier`` ...) plus optional ``permission_to_send``
        (e.g. ``unsubscribed``), ``lists`` (names or ids the contact is a member of), ``tags``
        (names from ``tags`` or their ids) and ``engagement_level``; SMS-only rows carry an
        ``sms_number`` instead of an ``email``. ``custom_fields``: names (``string`` fields),
        or ``{name, type, choices: [labels], metadata}`` for typed ones.
        """
        body = {
            "apps": [_plain(a) for a in apps],
            "account": dict(account or {}),
            "tags": list(tags),
            "custom_fields": [c if isinstance(c, str) else dict(c) for c in custom_fields],
            "lists": [{"name": x} if isinstance(x, str) else _plain(x) for x in lists],
            "contacts": [dict(c) for c in contacts],
        }
        data = self._call("POST", "/seed", json=body)
        return SeedResult(
            lists=data["lists"], contacts=data["contacts"], custom_fields=data["custom_fields"],
            tags=data["tags"],
        )

    def inject_fault(
        self,
        *,
        kind: FaultKind,
        count: int = 1,
        status: int = 503,
        delay: float = 0.0,
        path_prefix: str = "/v3",
        when: When = "before",
        method: str | None = None,
    ) -> None:
        """The next ``count`` requests under ``path_prefix`` meet a fault.

        ``status``: answer ``status`` (429 throttled body, 500, 503...). ``slow``: wait
        ``delay`` seconds. ``drop``: close the connection without a response. ``when='after'``
        processes the request first (an import is accepted, a token rotated) and then fails,
        delays or loses the response; ``when='during'`` (drops only) cuts the connection
        mid-upload, after the first part of the body arrived, processing nothing.
        """
        self._call(
            "POST",
            "/faults",
            json={"kind": kind, "count": count, "status": status, "delay": delay,
                  "path_prefix": path_prefix, "when": when, "method": method},
        )

    def clear_faults(self) -> None:
        """Drop every waiting request and activity fault."""
        self._call("DELETE", "/faults")

    def expire_tokens(self) -> int:
        """Expire every access token now (refresh tokens keep working); returns how many."""
        return int(self._call("POST", "/expire_tokens")["expired"])

    def reset_quota(self) -> None:
        """Start a new day of the daily quota now, as 00:00 UTC does (usage counts restart)."""
        self._call("POST", "/quota/reset")

    def fail_activity(self, count: int = 1, *, kind: str = "contacts_json_import") -> None:
        """The next ``count`` activities of ``kind`` (or ``any``) end ``failed``; they apply
        nothing."""
        self._activity_fault("failed", count, kind)

    def time_out_activity(self, count: int = 1, *, kind: str = "contacts_json_import") -> None:
        """The next ``count`` activities of ``kind`` end ``timed_out``, applying nothing."""
        self._activity_fault("timed_out", count, kind)

    def _activity_fault(
        self, outcome: Literal["failed", "timed_out"], count: int, kind: str
    ) -> None:
        self._call("POST", "/activity_faults",
                   json={"outcome": outcome, "count": count, "kind": kind})

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change limits or speeds at runtime (names as in ``EmulatorConfig``)."""
        return EmulatorConfig.model_validate(self._call("PATCH", "/config", json=changes))

    def config(self) -> EmulatorConfig:
        """The limits and speeds in force."""
        return EmulatorConfig.model_validate(self._call("GET", "/config"))

    def approve_url(self, authorize_url: str, *, allow: bool = True) -> str:
        """Answer the consent page of ``authorize_url``; returns the redirect URL (with
        ``code`` and ``state``, or ``error=access_denied``)."""
        data = self._call("POST", "/approve", json={"authorize_url": authorize_url,
                                                    "allow": allow})
        return str(data["redirect_url"])

    def state(self) -> dict[str, Any]:
        """Account summary, lists with member counts, usage, truncations, waiting faults."""
        result: dict[str, Any] = self._call("GET", "/state")
        return result

    def list_members(self, list_id: str) -> set[str]:
        """Lowercased emails of the members of ``list_id``."""
        return set(self._call("GET", f"/lists/{list_id}/members"))

    def unsubscribe(self, emails: Sequence[str]) -> list[str]:
        """These people unsubscribe, as from an email's link: each contact becomes
        ``unsubscribed`` and leaves every list. Returns the (lowercased) emails found."""
        return list(self._call("POST", "/contacts/unsubscribe",
                               json={"emails": list(emails)})["unsubscribed"])

    def opt_back_in(self, emails: Sequence[str]) -> list[str]:
        """These unsubscribed people opt back in themselves (as through a sign-up form): each
        becomes ``explicit`` and joins no list. Returns the emails that were unsubscribed."""
        return list(self._call("POST", "/contacts/opt_in",
                               json={"emails": list(emails)})["opted_in"])

    def add_by_hand(self, list_id: str, emails: Sequence[str]) -> list[str]:
        """A user adds these addresses to ``list_id`` in Constant Contact's UI: missing contacts
        are created, unsubscribed ones are not added. Returns the emails added."""
        return list(self._call("POST", f"/lists/{list_id}/members",
                               json={"emails": list(emails)})["added"])

    def contacts(self) -> list[dict[str, Any]]:
        """Every contact: id, email, permission_to_send, list_ids and fields."""
        result: list[dict[str, Any]] = self._call("GET", "/contacts")
        return result

    def rejections(self, activity_id: str) -> list[dict[str, Any]]:
        """The rows an import activity refused: ``{row (1-based), email, reason,
        correctable}``. Constant Contact's ``activity_errors`` are free text naming no row;
        this is what a test can check instead."""
        result: list[dict[str, Any]] = self._call("GET", f"/activities/{activity_id}/rejections")
        return result

    def requests(self, since: int = 0) -> list[RequestInfo]:
        """The request log (API and OAuth calls), after sequence number ``since``."""
        return [RequestInfo(**r) for r in self._call("GET", "/requests",
                                                     params={"since": since})]

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._call("DELETE", "/requests")


def _plain(item: Any) -> dict[str, Any]:
    if hasattr(item, "model_dump"):
        dumped: dict[str, Any] = item.model_dump()
        return dumped
    return dict(item)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, list):
        return "; ".join(str(e.get("error_message", e)) for e in body)
    return str(body)
