"""Constrained field types the API schemas share: lengths the state store can hold, and no
control characters (PostgreSQL refuses NUL; none belongs in a name anyway)."""

from __future__ import annotations

import math
import unicodedata
from datetime import date, datetime, time
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Path
from pydantic import AfterValidator, StringConstraints

_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
_NO_NUL = r"^[^\x00]*$"


def _one_line(value: str) -> str:
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("control characters are not allowed")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") \
            from exc
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=_CONTROL), AfterValidator(_one_line)]
"""A display name: one line, 1-200 characters."""
Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                                        pattern=_CONTROL), AfterValidator(_one_line)]
"""An identifier-like value (ids, column and field names)."""
LongText = Annotated[str, StringConstraints(max_length=20_000, pattern=_NO_NUL),
                     AfterValidator(_no_nul)]
"""Free text over several lines (descriptions, expressions)."""
TimeZone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_CONTROL),
                     AfterValidator(_zone)]
Cron = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120,
                                        pattern=_CONTROL), AfterValidator(_one_line)]
ObjectId = Annotated[str, Path(min_length=1, max_length=200, pattern=_CONTROL,
                               description="The object's id (or its exact name).")]
"""A path parameter naming an object."""
BIGINT_MAX = 2**63 - 1


def plain(value: Any) -> Any:
    """A profile value as JSON can carry it (NaN and infinities become null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)
