"""Control endpoints (``/_emulator``), not part of Constant Contact's API: reset, seed, faults,
runtime limits, a new quota day, consent without a browser, what people do in the account
(unsubscribe, add contacts to a list by hand), and read-outs of state and the request log.

Never rate-limited and never written to the request log.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from segment_export.emulator.errors import ApiError
from segment_export.emulator.faults import Fault
from segment_export.emulator.routes import backend_of
from segment_export.emulator.schemas import (
    ActivityFaultRequest,
    ApproveRequest,
    EmailsRequest,
    FaultRequest,
    SeedRequest,
)
from segment_export.emulator.wire import json_response, parse_json

CONTROL_PREFIX = "/_emulator"
ModelT = TypeVar("ModelT", bound=BaseModel)


async def _body(request: Request, model: type[ModelT]) -> ModelT:
    raw = await request.body()
    try:
        return model.model_validate(parse_json(raw) if raw else {})
    except ValidationError as exc:
        errors = [
            {"error_key": "control.validation.error",
             "error_message": f"{'.'.join(map(str, e['loc']))}: {e['msg']}"}
            for e in exc.errors()
        ]
        raise ApiError(400, errors) from None


async def reset(request: Request) -> Response:
    """Forget everything (apps, tokens, lists, contacts, activities, faults, request log)."""
    backend_of(request).reset()
    return json_response({"reset": True})


async def seed(request: Request) -> Response:
    """Add apps, account details, custom fields, lists and contacts."""
    body = await _body(request, SeedRequest)
    return json_response(backend_of(request).seed(body))


async def add_fault(request: Request) -> Response:
    """Make the next N matching requests fail, stall or lose their connection."""
    body = await _body(request, FaultRequest)
    fault = Fault(
        kind=body.kind,
        remaining=body.count,
        status=body.status,
        delay=body.delay,
        path_prefix=body.path_prefix,
        when=body.when,
        method=body.method,
    )
    backend_of(request).add_fault(fault)
    return json_response(fault.to_json(), 201)


async def clear_faults(request: Request) -> Response:
    """Drop every waiting request and activity fault."""
    backend_of(request).clear_faults()
    return json_response({"cleared": True})


async def add_activity_fault(request: Request) -> Response:
    """Make the next N activities of a kind end ``failed`` or ``timed_out`` (applying nothing)."""
    body = await _body(request, ActivityFaultRequest)
    backend_of(request).add_activity_outcome(
        outcome=body.outcome, count=body.count, kind=str(body.kind)
    )
    return json_response(body.model_dump(mode="json"), 201)


async def expire_tokens(request: Request) -> Response:
    """Expire every access token now (refresh tokens keep working)."""
    return json_response({"expired": backend_of(request).expire_tokens()})


async def new_quota_day(request: Request) -> Response:
    """Start a new day of the daily quota now (what 00:00 UTC does)."""
    backend_of(request).new_quota_day()
    return json_response({"reset": True})


async def get_config(request: Request) -> Response:
    """The limits and speeds in force."""
    return json_response(backend_of(request).config.model_dump())


async def set_config(request: Request) -> Response:
    """Change limits and speeds at runtime."""
    changes: Any = parse_json(await request.body())
    if not isinstance(changes, dict):
        raise ApiError.invalid("The body must be an object of settings.")
    try:
        config = backend_of(request).set_config(**changes)
    except ValidationError as exc:
        raise ApiError.invalid(str(exc), "control.validation.error") from None
    return json_response(config.model_dump())


async def approve(request: Request) -> Response:
    """Answer an authorize URL's consent page without a browser; returns the redirect URL."""
    body = await _body(request, ApproveRequest)
    location = backend_of(request).approve_url(body.authorize_url, allow=body.allow)
    return json_response({"redirect_url": location})


async def state(request: Request) -> Response:
    """A summary of the emulated account, limits, usage and waiting faults."""
    return json_response(backend_of(request).state())


async def list_members(request: Request) -> Response:
    """The email addresses of one list's members."""
    return json_response(backend_of(request).list_members(request.path_params["list_id"]))


async def unsubscribe(request: Request) -> Response:
    """People unsubscribe (as from an email's link): opted out, off every list."""
    body = await _body(request, EmailsRequest)
    return json_response({"unsubscribed": backend_of(request).unsubscribe(body.emails)})


async def opt_back_in(request: Request) -> Response:
    """Unsubscribed people opt back in themselves (a sign-up form): explicit, on no list."""
    body = await _body(request, EmailsRequest)
    return json_response({"opted_in": backend_of(request).opt_back_in(body.emails)})


async def add_by_hand(request: Request) -> Response:
    """A user adds contacts to a list by hand (unsubscribed ones are not added)."""
    body = await _body(request, EmailsRequest)
    return json_response(backend_of(request).add_by_hand(request.path_params["list_id"],
                                                         body.emails))


async def contacts(request: Request) -> Response:
    """Every contact with fields, permission and list ids."""
    return json_response(backend_of(request).contacts_snapshot())


async def rejections(request: Request) -> Response:
    """The rows an import activity refused and why (Constant Contact's own activity_errors
    name no rows)."""
    return json_response(backend_of(request).rejections(request.path_params["activity_id"]))


async def requests(request: Request) -> Response:
    """The request log (``?since=N`` for records after sequence number N)."""
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        raise ApiError.invalid("since must be an integer.") from None
    return json_response(backend_of(request).requests(since))


async def clear_requests(request: Request) -> Response:
    """Empty the request log."""
    backend_of(request).clear_requests()
    return json_response({"cleared": True})


async def health(request: Request) -> Response:
    """Liveness probe."""
    return json_response({"ok": True})


CONTROL_ROUTES = [
    Route("/health", health, methods=["GET"]),
    Route("/reset", reset, methods=["POST"]),
    Route("/seed", seed, methods=["POST"]),
    Route("/faults", add_fault, methods=["POST"]),
    Route("/faults", clear_faults, methods=["DELETE"]),
    Route("/activity_faults", add_activity_fault, methods=["POST"]),
    Route("/expire_tokens", expire_tokens, methods=["POST"]),
    Route("/quota/reset", new_quota_day, methods=["POST"]),
    Route("/config", get_config, methods=["GET"]),
    Route("/config", set_config, methods=["PATCH"]),
    Route("/approve", approve, methods=["POST"]),
    Route("/state", state, methods=["GET"]),
    Route("/lists/{list_id}/members", list_members, methods=["GET"]),
    Route("/lists/{list_id}/members", add_by_hand, methods=["POST"]),
    Route("/contacts/unsubscribe", unsubscribe, methods=["POST"]),
    Route("/contacts/opt_in", opt_back_in, methods=["POST"]),
    Route("/contacts", contacts, methods=["GET"]),
    Route("/activities/{activity_id}/rejections", rejections, methods=["GET"]),
    Route("/requests", requests, methods=["GET"]),
    Route("/requests", clear_requests, methods=["DELETE"]),
]
