"""Opaque cursors for ``_links.next.href``: the query behind a page and where the next starts."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote

import orjson

from segment_export.emulator.errors import ApiError


def encode_cursor(query: Mapping[str, str], offset: int) -> str:
    """A cursor that resumes ``query`` at ``offset``."""
    payload = {k: v for k, v in query.items() if k != "cursor"}
    payload["__offset"] = str(offset)
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def next_link(path: str, query: Mapping[str, str], offset: int) -> dict[str, dict[str, str]]:
    """``{"next": {"href": "/v3/...?cursor=..."}}`` as Constant Contact pages."""
    return {"next": {"href": f"{path}?cursor={quote(encode_cursor(query, offset))}"}}


def decode_cursor(cursor: str) -> tuple[dict[str, str], int]:
    """The query and offset inside ``cursor``; a 400 when it is not one of ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded))
        offset = int(payload.pop("__offset"))
    except (ValueError, KeyError, TypeError) as exc:  # binascii and JSON errors are ValueErrors
        raise ApiError.invalid("The cursor is not valid.", "api.invalid.cursor") from exc
    if not isinstance(payload, dict) or offset < 0:
        raise ApiError.invalid("The cursor is not valid.", "api.invalid.cursor")
    return {str(k): str(v) for k, v in payload.items()}, offset
