"""Bytes in and out: JSON parsing with Constant Contact's 400, and fast JSON responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from segment_export.emulator.errors import ApiError


def parse_json(body: bytes) -> Any:
    """``body`` parsed, or the 400 Constant Contact answers to malformed JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError.invalid(f"The JSON is malformed: {exc}", "api.malformed.json") from exc


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised with orjson (Starlette's own uses the slower json module)."""
    return Response(
        orjson.dumps(content), status_code=status, headers=headers, media_type="application/json"
    )
