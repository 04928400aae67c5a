"""Routes of the emulated V3 API (``/v3``): parse the request, call the backend, serialise."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segment_export.emulator.backend import CONTACT_STATUSES, Backend
from segment_export.emulator.errors import ApiError
from segment_export.emulator.paging import decode_cursor
from segment_export.emulator.requestlog import RequestRecord
from segment_export.emulator.wire import json_response, parse_json

RECORD_KEY = "segment_export.emulator.record"
CONTACT_INCLUDES = frozenset(
    {"custom_fields", "list_memberships", "phone_numbers", "street_addresses", "taggings", "notes"}
)


def backend_of(request: Request) -> Backend:
    """The backend behind this app."""
    backend: Backend = request.app.state.backend
    return backend


def record_of(request: Request) -> RequestRecord | None:
    """The request log record of this request (None for control calls)."""
    record: RequestRecord | None = request.scope.get(RECORD_KEY)
    return record


def _admit(request: Request, scope: str = "contact_data") -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    return backend_of(request).admit(token=bearer or None, scope=scope, record=record_of(request))


def _require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError.of(
            415, "api.unsupported.media.type", "Content-Type must be application/json."
        )


async def _json_body(request: Request) -> Any:
    _require_json(request)
    return parse_json(await request.body())


def _query(request: Request) -> tuple[dict[str, str], int]:
    """The query parameters and the paging offset (both from the cursor when there is one)."""
    params = dict(request.query_params)
    cursor = params.get("cursor")
    if cursor:
        return decode_cursor(cursor)
    return params, 0


def _invalid(name: str) -> ApiError:
    return ApiError.invalid(f"{name} does not have a valid value")


def _int(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name) from None
    if not low <= value <= high:
        raise _invalid(name)
    return value


def _bool(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name, "false").lower()
    if raw not in ("true", "false"):
        raise _invalid(name)
    return raw == "true"


def _moment(query: Mapping[str, str], name: str) -> float | None:
    """An ISO-8601 date-time parameter as epoch seconds (a time zone is required)."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(name) from None
    if moment.tzinfo is None:
        raise _invalid(name)
    return moment.timestamp()


def _choice(query: Mapping[str, str], name: str, allowed: Collection[str]) -> str | None:
    raw = query.get(name)
    if raw is not None and raw not in allowed:
        raise _invalid(name)
    return raw


def _csv(query: Mapping[str, str], name: str, allowed: Collection[str] | None = None) -> list[str]:
    values = [v.strip() for v in query.get(name, "").split(",") if v.strip()]
    if allowed is not None and any(v not in allowed for v in values):
        raise _invalid(name)
    return values


async def account_summary(request: Request) -> Response:
    """Get the account summary (needs the ``account_read`` scope)."""
    _admit(request, scope="account_read")
    extra = _csv(request.query_params, "extra_fields", {"physical_address", "company_logo"})
    return json_response(backend_of(request).account_summary(extra_fields=set(extra)))


async def get_custom_fields(request: Request) -> Response:
    """List the account's custom fields with their types, paged by cursor."""
    _admit(request)
    query, offset = _query(request)
    body = backend_of(request).get_custom_fields(
        query=query, offset=offset, limit=_int(query, "limit", default=50, low=1, high=100))
    return json_response(body)


async def create_custom_field(request: Request) -> Response:
    """Create a typed custom field (409 when its name is taken)."""
    _admit(request)
    body = await _json_body(request)
    return json_response(backend_of(request).create_custom_field(body=body), 201)


async def get_custom_field(request: Request) -> Response:
    """Get one custom field."""
    _admit(request)
    field_id = request.path_params["custom_field_id"]
    return json_response(backend_of(request).get_custom_field(custom_field_id=field_id))


async def delete_custom_field(request: Request) -> Response:
    """Delete a custom field and its values (204)."""
    _admit(request)
    backend_of(request).delete_custom_field(custom_field_id=request.path_params["custom_field_id"])
    return Response(status_code=204)


async def get_lists(request: Request) -> Response:
    """List contact lists, paged by cursor."""
    _admit(request)
    query, offset = _query(request)
    body = backend_of(request).get_lists(
        query=query,
        offset=offset,
        limit=_int(query, "limit", default=50, low=1, high=1000),
        include_count=_bool(query, "include_count"),
        membership=_choice(query, "include_membership_count", ("all", "active")),
        name=query.get("name"),
        status=_choice(query, "status", ("all", "active", "deleted")) or "active",
    )
    return json_response(body)


async def create_list(request: Request) -> Response:
    """Create a contact list (409 when the name is taken)."""
    _admit(request)
    body = await _json_body(request)
    return json_response(backend_of(request).create_list(body=body), 201)


async def get_list(request: Request) -> Response:
    """Get one contact list."""
    _admit(request)
    membership = _choice(request.query_params, "include_membership_count", ("all", "active"))
    body = backend_of(request).get_list(
        list_id=request.path_params["list_id"], membership=membership
    )
    return json_response(body)


async def update_list(request: Request) -> Response:
    """Rename or re-describe a contact list."""
    _admit(request)
    body = await _json_body(request)
    result = backend_of(request).update_list(list_id=request.path_params["list_id"], body=body)
    return json_response(result)


async def delete_list(request: Request) -> Response:
    """Delete a contact list: 202 and an activity."""
    client_id = _admit(request)
    body = backend_of(request).delete_list(
        list_id=request.path_params["list_id"], client_id=client_id
    )
    return json_response(body, 202, headers={"Location": body["_links"]["self"]["href"]})


async def get_contacts(request: Request) -> Response:
    """List contacts (filters email, lists, status, optout_after/before, updated_after/before),
    paged by cursor."""
    _admit(request)
    query, offset = _query(request)
    list_ids = _csv(query, "lists")
    if len(list_ids) > 25:
        raise ApiError.invalid("lists accepts at most 25 list ids.")
    body = backend_of(request).get_contacts(
        query=query,
        offset=offset,
        limit=_int(query, "limit", default=50, low=1, high=500),
        email=query.get("email"),
        list_ids=list_ids,
        statuses=set(_csv(query, "status", CONTACT_STATUSES)),
        include=set(_csv(query, "include", CONTACT_INCLUDES)),
        include_count=_bool(query, "include_count"),
        optout_after=_moment(query, "optout_after"),
        optout_before=_moment(query, "optout_before"),
        updated_after=_moment(query, "updated_after"),
        updated_before=_moment(query, "updated_before"),
    )
    return json_response(body)


async def get_contact(request: Request) -> Response:
    """Get one contact."""
    _admit(request)
    include = set(_csv(request.query_params, "include", CONTACT_INCLUDES))
    body = backend_of(request).get_contact(
        contact_id=request.path_params["contact_id"], include=include
    )
    return json_response(body)


async def create_contact(request: Request) -> Response:
    """Create one contact (409 when its email or SMS number exists, deleted or not)."""
    _admit(request)
    body = await _json_body(request)
    return json_response(backend_of(request).create_contact(body=body), 201)


async def update_contact(request: Request) -> Response:
    """Update a contact (a full replace; an address edit keeps the id; 409 when the address is
    another contact's)."""
    _admit(request)
    body = await _json_body(request)
    result = backend_of(request).update_contact(contact_id=request.path_params["contact_id"],
                                                body=body)
    return json_response(result)


async def delete_contact(request: Request) -> Response:
    """Delete a contact (204); it persists as deleted and an import re-activates it."""
    _admit(request)
    backend_of(request).delete_contact(contact_id=request.path_params["contact_id"])
    return Response(status_code=204)


async def contacts_json_import(request: Request) -> Response:
    """Import contacts from JSON (asynchronous: 201 and an activity)."""
    client_id = _admit(request)
    _require_json(request)
    body = backend_of(request).accept_import(
        body=await request.body(), client_id=client_id, record=record_of(request)
    )
    return json_response(body, 201)


async def add_list_memberships(request: Request) -> Response:
    """Add contacts to lists (asynchronous)."""
    client_id = _admit(request)
    body = await _json_body(request)
    result = backend_of(request).accept_memberships(body=body, remove=False, client_id=client_id)
    return json_response(result, 201)


async def remove_list_memberships(request: Request) -> Response:
    """Remove contacts from lists (asynchronous; never unsubscribes)."""
    client_id = _admit(request)
    body = await _json_body(request)
    result = backend_of(request).accept_memberships(body=body, remove=True, client_id=client_id)
    return json_response(result, 201)


async def contact_exports(request: Request) -> Response:
    """Export contacts to a CSV file (asynchronous)."""
    client_id = _admit(request)
    body = await _json_body(request)
    return json_response(backend_of(request).accept_export(body=body, client_id=client_id), 201)


async def get_export(request: Request) -> Response:
    """Download a completed contact export as CSV."""
    _admit(request)
    content = backend_of(request).export_file(file_export_id=request.path_params["export_id"])
    return Response(content, media_type="text/csv")


async def get_activity(request: Request) -> Response:
    """Get one activity's state and counts."""
    _admit(request)
    body = backend_of(request).get_activity(activity_id=request.path_params["activity_id"])
    return json_response(body)


async def get_activities(request: Request) -> Response:
    """List the account's recent activities, newest first."""
    _admit(request)
    query, offset = _query(request)
    body = backend_of(request).get_activities(
        query=query,
        offset=offset,
        limit=_int(query, "limit", default=50, low=1, high=500),
        state=_choice(query, "state", ("processing", "completed", "cancelled", "failed",
                                       "timed_out", "initialized")),
    )
    return json_response(body)


API_ROUTES = [
    Route("/account/summary", account_summary, methods=["GET"]),
    Route("/contact_custom_fields", get_custom_fields, methods=["GET"]),
    Route("/contact_custom_fields", create_custom_field, methods=["POST"]),
    Route("/contact_custom_fields/{custom_field_id}", get_custom_field, methods=["GET"]),
    Route("/contact_custom_fields/{custom_field_id}", delete_custom_field, methods=["DELETE"]),
    Route("/contact_lists", get_lists, methods=["GET"]),
    Route("/contact_lists", create_list, methods=["POST"]),
    Route("/contact_lists/{list_id}", get_list, methods=["GET"]),
    Route("/contact_lists/{list_id}", update_list, methods=["PUT"]),
    Route("/contact_lists/{list_id}", delete_list, methods=["DELETE"]),
    Route("/contacts", get_contacts, methods=["GET"]),
    Route("/contacts", create_contact, methods=["POST"]),
    Route("/contacts/{contact_id}", get_contact, methods=["GET"]),
    Route("/contacts/{contact_id}", update_contact, methods=["PUT"]),
    Route("/contacts/{contact_id}", delete_contact, methods=["DELETE"]),
    Route("/activities/contacts_json_import", contacts_json_import, methods=["POST"]),
    Route("/activities/add_list_memberships", add_list_memberships, methods=["POST"]),
    Route("/activities/remove_list_memberships", remove_list_memberships, methods=["POST"]),
    Route("/activities/contact_exports", contact_exports, methods=["POST"]),
    Route("/contact_exports/{export_id}", get_export, methods=["GET"]),
    Route("/activities/{activity_id}", get_activity, methods=["GET"]),
    Route("/activities", get_activities, methods=["GET"]),
]
