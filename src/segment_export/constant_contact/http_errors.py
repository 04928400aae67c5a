"""The one place where an HTTP outcome from Constant Contact becomes a product error."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import orjson

from segment_export.constant_contact.ratelimit import next_utc_midnight
from segment_export.errors import (
    ConfigurationError,
    FatalError,
    NotFoundError,
    QuotaExhaustedError,
    ReauthorizationNeededError,
    RetriableError,
    SegmentExportError,
)


class UnauthorizedError(ReauthorizationNeededError):
    """The API answered 401: the access token was refused.

    The client answers this once with a forced token refresh and a retry; only a second 401 (or a
    failed refresh) reaches the caller.
    """


def parse_error_list(response: httpx.Response) -> list[dict[str, str]]:
    """Constant Contact's error body as ``[{error_key, error_message}]``.

    Most errors are an array; 401 and 429 are a single object; OAuth errors use ``error`` and
    ``error_description``. Anything else (an HTML gateway page) becomes one ``unparsed`` entry.
    """
    try:
        body: Any = orjson.loads(response.content) if response.content else []
    except orjson.JSONDecodeError:
        text = response.text[:500]
        return [{"error_key": "unparsed", "error_message": text}] if text else []
    items = body if isinstance(body, list) else [body]
    errors: list[dict[str, str]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        key = item.get("error_key", item.get("error"))
        message = item.get("error_message", item.get("error_description", ""))
        if key is not None or message:
            errors.append({"error_key": str(key or ""), "error_message": str(message or "")})
    return errors


def map_http_error(
    outcome: httpx.Response | httpx.TransportError, *, now: datetime
) -> SegmentExportError | None:
    """The error an outcome means, or ``None`` for a success (2xx).

    OAuth ``invalid_grant`` -> ReauthorizationNeededError; ``invalid_client`` -> ConfigurationError;
    429 ``quota_exceeded`` -> QuotaExhaustedError (resets at the next 00:00 UTC); any other 429,
    408, 5xx, timeouts and connection failures -> RetriableError; 401 -> UnauthorizedError;
    403 -> ConfigurationError (missing scope, privilege or deactivated app); 404 -> NotFoundError;
    other 4xx -> FatalError. Each error carries the status, the request and Constant Contact's
    parsed error list in ``context``.
    """
    if isinstance(outcome, httpx.TransportError):
        request = _request_of(outcome)
        kind = "timed out" if isinstance(outcome, httpx.TimeoutException) else "failed"
        return RetriableError(
            f"Request to Constant Contact {kind}: {type(outcome).__name__}",
            reason=type(outcome).__name__,
            **request,
        )
    status = outcome.status_code
    if status < 400:
        return None
    errors = parse_error_list(outcome)
    context: dict[str, Any] = {
        "status": status,
        "method": outcome.request.method,
        "path": outcome.request.url.path,
        "errors": errors,
    }
    keys = {e["error_key"] for e in errors}
    detail = (
        "; ".join(e["error_message"] or e["error_key"] for e in errors) or outcome.reason_phrase
    )
    # OAuth errors from the token endpoint: a dead refresh token means a person must act.
    if "invalid_grant" in keys:
        return ReauthorizationNeededError(
            f"Constant Contact no longer accepts the stored grant: {detail}",
            reason="invalid_grant",
            **context,
        )
    if "invalid_client" in keys:
        return ConfigurationError(
            f"Constant Contact refused the client credentials: {detail}",
            hint="Check the connection's client id and client secret (the API key and its secret).",
            **context,
        )
    if status == 429:
        if "quota_exceeded" in keys:
            resets_at = next_utc_midnight(now)
            return QuotaExhaustedError(
                "Constant Contact's daily request quota for this API key is used up",
                resets_at=resets_at,
                reason="quota_exceeded",
                **context,
            )
        reason = "throttled" if "throttled" in keys or not keys else sorted(keys)[0]
        return RetriableError(
            f"Constant Contact throttled the request: {detail}", reason=reason, **context
        )
    if status == 408 or status >= 500:
        return RetriableError(
            f"Constant Contact answered {status}: {detail}", reason=f"http_{status}", **context
        )
    if status == 401:
        return UnauthorizedError("Constant Contact refused the access token", **context)
    if status == 403:
        return ConfigurationError(
            f"Constant Contact refused the request (403): {detail}",
            hint="The connection lacks the contact_data scope or the signed-in user lacks contact "
            "privileges, or the application is deactivated; re-authorize with an account admin.",
            **context,
        )
    if status == 404:
        return NotFoundError(f"Not found at Constant Contact: {detail}", **context)
    return FatalError(f"Constant Contact rejected the request ({status}): {detail}", **context)


def _request_of(exc: httpx.TransportError) -> dict[str, Any]:
    try:
        request = exc.request
    except RuntimeError:  # an error raised outside a request has none
        return {}
    return {"method": request.method, "path": request.url.path}


__all__ = ["UnauthorizedError", "map_http_error", "parse_error_list"]
