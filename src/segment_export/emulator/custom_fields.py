"""The account's typed custom fields (Constant Contact since 2025-09): what a field definition
may hold, and which import values each type accepts.

Constant Contact documents the types but not the text it accepts for each in an import; the
value rules here (marked ⚠ in EMULATOR_COVERAGE.md) are the emulator's reading.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Final

from segment_export.emulator.errors import ApiError
from segment_export.emulator.models import Choice, CustomField, iso, new_id

TYPES: Final = frozenset({"string", "text_area", "number", "currency", "boolean", "date",
                          "datetime", "single_select", "multi_select"})
SELECT_TYPES: Final = frozenset({"single_select", "multi_select"})
VALUE_LIMIT: Final = 255  # the contract's maxLength of a cf: value, whatever the type
LABEL_LIMIT: Final = 50
MAX_CHOICES: Final = 100
_NUMBER = re.compile(r"-?(\d+)(?:\.(\d+))?")
# The date formats the contract lists for an import's anniversary and sms_consent_date.
_DATE = re.compile(r"(\d{1,2})([/-])(\d{1,2})\2(\d{4})|(\d{4})([/-])(\d{1,2})\6(\d{1,2})")
_METADATA_KEYS: Final = frozenset({"display_type", "allow_negative", "decimal_places",
                                   "currency_code", "integer", "display_format"})


def name_of(label: str) -> str:
    """The field's ``name``: "constructed from the label by replacing blanks with underscores"."""
    return re.sub(r"\s", "_", label.strip())


def make_field(body: Any, *, now: float) -> CustomField:
    """A field from a ``CustomFieldRequest`` body (or a seed), or the 400 Constant Contact
    answers for it."""
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    label, kind = body.get("label"), body.get("type")
    if not isinstance(label, str) or not label.strip():
        raise ApiError.invalid("label is required.")
    if len(label) > LABEL_LIMIT:
        raise ApiError.invalid(f"label is longer than {LABEL_LIMIT} characters.")
    if kind not in TYPES:
        raise ApiError.invalid(f"type must be one of {', '.join(sorted(TYPES))}.")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or set(metadata) - _METADATA_KEYS:
        raise ApiError.invalid("metadata holds unknown properties.")
    for key in ("allow_negative", "integer"):
        if key in metadata and not isinstance(metadata[key], bool):
            raise ApiError.invalid(f"metadata.{key} must be true or false.")
    places = metadata.get("decimal_places")
    if places is not None and (type(places) is not int or not 0 <= places <= 4):
        raise ApiError.invalid("metadata.decimal_places must be 0-4.")
    raw_choices = body.get("choices") or []
    if kind in SELECT_TYPES:
        if not isinstance(raw_choices, list) or not raw_choices:
            raise ApiError.invalid(f"A {kind} field needs choices.")
        if len(raw_choices) > MAX_CHOICES:
            raise ApiError.invalid(f"At most {MAX_CHOICES} choices.")
    elif raw_choices:
        raise ApiError.invalid("Only single_select and multi_select fields have choices.")
    choices: list[Choice] = []
    for order, item in enumerate(raw_choices, 1):
        text = item.get("choice_label") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > VALUE_LIMIT:
            raise ApiError.invalid("Every choice needs a choice_label of 1-255 characters.")
        if any(c.label == text for c in choices):
            raise ApiError.invalid(f"The choice {text!r} is given twice.")
        position = item.get("display_order", order)
        choices.append(Choice(choice_id=order, label=text,
                              display_order=position if type(position) is int else order))
    return CustomField(name=name_of(label), label=label, type=kind, choices=choices,
                       metadata=dict(metadata), created_at=now, custom_field_id=new_id())


def field_json(field: CustomField) -> dict[str, Any]:
    """A ``CustomField`` resource."""
    body: dict[str, Any] = {
        "custom_field_id": field.custom_field_id,
        "label": field.label,
        "name": field.name,
        "type": field.type,
        "created_at": iso(field.created_at),
        "updated_at": iso(field.created_at),
    }
    if field.metadata:
        body["metadata"] = dict(field.metadata)
    if field.choices:
        body["choices"] = [
            {"custom_field_id": field.custom_field_id, "choice_id": c.choice_id,
             "choice_label": c.label, "display_order": c.display_order,
             "created_at": iso(field.created_at), "updated_at": iso(field.created_at)}
            for c in field.choices
        ]
    return body


def _number_problem(field: CustomField, value: str) -> str | None:
    match = _NUMBER.fullmatch(value)
    if match is None:
        return "is not a number"
    metadata = field.metadata
    decimals = len(match.group(2) or "")
    if field.type == "currency":
        limit = 0 if metadata.get("integer") else metadata.get("decimal_places", 2)
    else:
        limit = 0 if metadata.get("integer") else metadata.get("decimal_places")
    if limit is not None and decimals > limit:
        return f"has more than {limit} decimal places"
    # Constant Contact: for number, allow_negative "by default ... is false".
    if field.type == "number" and value.startswith("-") and not metadata.get("allow_negative"):
        return "is negative (the field does not allow negative numbers)"
    return None


def _date_problem(value: str) -> str | None:
    match = _DATE.fullmatch(value)
    if match is None:
        return "is not a date (MM/DD/YYYY, YYYY-MM-DD and the like)"
    if match.group(1) is not None:
        month, day, year = int(match.group(1)), int(match.group(3)), int(match.group(4))
    else:
        year, month, day = int(match.group(5)), int(match.group(7)), int(match.group(8))
    try:
        date(year, month, day)
    except ValueError:
        return "is not a calendar date"
    return None


def _datetime_problem(value: str) -> str | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return "is not an ISO 8601 date and time"
    if moment.tzinfo is None:
        return "has no time zone offset"
    return None


def value_problem(field: CustomField, value: object) -> str | None:
    """Why ``value`` does not fit ``field`` (None when it does). Values are strings of at most
    255 characters whatever the type, as the contract's ``cf:`` property says."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > VALUE_LIMIT:
        return f"longer than {VALUE_LIMIT} characters"
    kind = field.type
    if kind in ("string", "text_area"):
        return None
    if kind in ("number", "currency"):
        return _number_problem(field, value)
    if kind == "boolean":
        return None if value.lower() in ("true", "false") else "is not true or false"
    if kind == "date":
        return _date_problem(value)
    if kind == "datetime":
        return _datetime_problem(value)
    labels = {c.label for c in field.choices}
    if kind == "single_select":
        return None if value in labels else "is not one of the field's choices"
    unknown = [part for part in (p.strip() for p in value.split(",")) if part not in labels]
    return f"names choices the field does not have: {', '.join(unknown)}" if unknown else None
