"""Checks of a contacts_json_import body: each row against Constant Contact's field rules,
and the salvage of a body cut at the 4 MB limit."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from segment_export.emulator.custom_fields import value_problem
from segment_export.emulator.models import CustomField, sms_key

# maxLength per key of the contract's JsonImportContact (FACTS.md §4.1).
_NAME_LIMIT: Final = 50
_STREET_LIMIT: Final = 255
STRING_LIMITS: Final[dict[str, int]] = {
    "email": 50,
    "first_name": _NAME_LIMIT,
    "last_name": _NAME_LIMIT,
    "job_title": _NAME_LIMIT,
    "company_name": _NAME_LIMIT,
    "phone": 50,
    "home_phone": 50,
    "work_phone": 50,
    "mobile_phone": 50,
    "other_phone": 50,
    "sms_number": 16,
    "sms_consent_date": 16,
    # The contract spells this one with a space (a listed defect); both spellings are accepted.
    "home country": 50,
}
for _prefix in ("", "home_", "work_", "other_"):
    STRING_LIMITS[f"{_prefix}street"] = _STREET_LIMIT
    STRING_LIMITS[f"{_prefix}street2"] = _STREET_LIMIT
    for _name in ("city", "state", "zip", "country"):
        STRING_LIMITS[f"{_prefix}{_name}"] = 50
CUSTOM_FIELD_LIMIT: Final = 255
MAX_ERROR_MESSAGES: Final = 1_000

# Constant Contact does not document its email rules. Support describes them as: no spaces,
# commas or brackets; one @; a full domain; + is fine (FACTS.md, "Changes since the spec
# builds"). "lenient" is that description; "strict" a conservative ASCII dot-atom (without
# the braces RFC 5322 allows: support says no brackets) with hostname labels and a letters-only
# top-level domain (config ``email_rule``). Strict accepts a subset of lenient.
_NOT_IN_EMAIL = r"\s,()\[\]<>{}@"
EMAIL_RULES: Final[dict[str, re.Pattern[str]]] = {
    "lenient": re.compile(
        rf"[^{_NOT_IN_EMAIL}]+@(?:[^{_NOT_IN_EMAIL}.]+\.)+[^{_NOT_IN_EMAIL}.]{{2,}}"
    ),
    "strict": re.compile(
        r"[A-Za-z0-9!#$%&'*+/=?^_`|~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`|~-]+)*"
        r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    ),
}
# The contract's two US formats of an import's sms_number (FACTS.md §4.1).
_SMS_NUMBER = re.compile(r"\d{10}|\d{3}-\d{3}-\d{4}")
SMS_PERMISSIONS: Final = frozenset({"explicit", "not_set"})
_ANNIVERSARY = re.compile(r"(\d{1,2})([/-])(\d{1,2})\2(\d{4})|(\d{4})([/-])(\d{1,2})\6(\d{1,2})")


@dataclass(slots=True)
class Rejection:
    """One refused row: what Constant Contact keeps to itself (the emulator shows it only on
    its control API, for tests)."""

    row: int
    """1-based position in ``import_data``."""
    email: str | None
    reason: str
    correctable: bool


@dataclass(slots=True)
class ImportPlan:
    """What an import will do once its activity completes, and what it rejected."""

    rows: dict[str, dict[str, Any]]
    """Valid rows by lowercased email (``sms:<digits>`` for SMS-only rows); the last row wins
    when a key repeats."""
    items_total: int
    error_count: int = 0
    correctable_count: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, number: int, email: object, reason: str, *, correctable: bool) -> None:
        """Count row ``number`` (1-based) as rejected and keep why (the first 1,000)."""
        if correctable:
            self.correctable_count += 1
        else:
            self.error_count += 1
        if len(self.rejections) < MAX_ERROR_MESSAGES:
            shown = email if isinstance(email, str) and email else None
            self.rejections.append(Rejection(number, shown, reason, correctable))

    @property
    def errors(self) -> list[str]:
        """Per-row reasons as ``Row <n> (<email>): <reason>`` (seeds and the control API)."""
        return [f"Row {r.row}{f' ({r.email})' if r.email else ''}: {r.reason}"
                for r in self.rejections]

    def activity_errors(self) -> list[str]:
        """What the activity's ``activity_errors`` says: free text naming no row, as Constant
        Contact's does (FACTS.md, "Changes since the spec builds"); the counts say how many.
        The wording is the emulator's ⚠."""
        messages = []
        if self.correctable_count:
            messages.append(
                f"{self.correctable_count} contact(s) were not imported because of correctable "
                "errors (an invalid email address or SMS number, a birthday or anniversary "
                "format error, or no email address or SMS number); correct them in Constant "
                "Contact."
            )
        if self.error_count:
            messages.append(
                f"{self.error_count} contact(s) were not imported because of errors (a value "
                "that is too long or of the wrong type, an unknown field, or too many custom "
                "fields)."
            )
        return messages


def _valid_anniversary(value: str) -> bool:
    match = _ANNIVERSARY.fullmatch(value)
    if match is None:
        return False
    if match.group(1) is not None:
        month, day = int(match.group(1)), int(match.group(3))
    else:
        month, day = int(match.group(7)), int(match.group(8))
    return 1 <= month <= 12 and 1 <= day <= 31


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _check_row(
    row: dict[str, Any], custom_fields: Mapping[str, CustomField], max_custom_fields: int,
    strict_custom_fields: bool = False,
) -> tuple[str, bool] | None:
    """The first problem of one row as (reason, correctable), or None when it is valid.

    A ``cf:`` key the account has no field for is dropped from the row, as Constant Contact
    silently ignores it (phpfui/ConstantContact#8), unless ``strict_custom_fields``.
    """
    custom = 0
    for key, value in list(row.items()):
        limit = STRING_LIMITS.get(key)
        if limit is not None:
            if not isinstance(value, str):
                return f"{key} must be a string", False
            if len(value) > limit:
                if key == "email":
                    return f"email address longer than {limit} characters", True
                return f"{key} longer than {limit} characters", False
        elif key.startswith("cf:"):
            custom += 1
            field = custom_fields.get(key[3:])
            if field is None:
                if strict_custom_fields:
                    return f"custom field '{key}' does not exist in the account", False
                del row[key]
                continue
            problem = value_problem(field, value)
            if problem is not None:
                shown = repr(value if not isinstance(value, str) or len(value) <= 40
                             else value[:40] + "…")
                return f"{key} ({field.type}) {shown} {problem}", False
        elif key == "anniversary":
            if not isinstance(value, str) or not _valid_anniversary(value):
                return "anniversary is not in a supported date format", True
        elif key not in ("birthday_month", "birthday_day"):
            return f"unknown field '{key}'", False
    if custom > max_custom_fields:
        return f"more than {max_custom_fields} custom fields", False
    if "birthday_month" in row or "birthday_day" in row:
        month, day = _as_int(row.get("birthday_month")), _as_int(row.get("birthday_day"))
        if month is None or day is None or not 1 <= month <= 12 or not 1 <= day <= 31:
            return "birthday_month and birthday_day must both be given as 1-12 and 1-31", True
        row["birthday_month"], row["birthday_day"] = month, day
    return None


def _check_sms(row: dict[str, Any], sms_permission: str | None) -> tuple[str, bool] | None:
    """Problems of a row's SMS fields; a valid number is stored as its 10 digits."""
    number = row.get("sms_number")
    consent = row.get("sms_consent_date")
    if number is not None:
        if _SMS_NUMBER.fullmatch(number) is None:
            return "sms_number is not a US number (1231231234 or 123-123-1234)", True
        row["sms_number"] = number.replace("-", "")
        if sms_permission == "explicit" and consent is None:
            return "sms_consent_date is required when sms_permission_to_send is explicit", False
    if consent is not None and not _valid_anniversary(consent):
        return "sms_consent_date is not in a supported date format", True
    return None


def plan_import(
    rows: list[Any], *, custom_fields: Mapping[str, CustomField], max_custom_fields: int = 25,
    strict_custom_fields: bool = False, email_rule: str = "lenient",
    sms_permission: str | None = None, flagged_emails: Collection[str] = (),
) -> ImportPlan:
    """Validate every row of ``import_data``; the valid ones are kept by lowercased email.

    Correctable (Constant Contact's own definition): a bad email address or SMS number, neither
    of them, a bad birthday or anniversary. Everything else (too long, unknown field, a custom
    field value of the wrong type, too many custom fields; an unknown custom field when
    ``strict_custom_fields``) counts as a non-correctable error.
    """
    plan = ImportPlan(rows={}, items_total=len(rows))
    valid = plan.rows
    limits = STRING_LIMITS
    email_pattern = EMAIL_RULES[email_rule].fullmatch
    flagged = {address.lower() for address in flagged_emails}
    for number, row in enumerate(rows, 1):
        if type(row) is not dict:
            plan.reject(number, None, "not a JSON object", correctable=False)
            continue
        email = row.get("email")
        # Fast path for the usual row (plain string fields within their limits); anything
        # else gets the full check.
        problem = None
        for key, value in row.items():
            limit = limits.get(key)
            if limit is None or type(value) is not str or len(value) > limit:
                problem = _check_row(row, custom_fields, max_custom_fields,
                                     strict_custom_fields)
                break
        if problem is None and ("sms_number" in row or "sms_consent_date" in row):
            problem = _check_sms(row, sms_permission)
        if problem is not None:
            plan.reject(number, email, problem[0], correctable=problem[1])
            continue
        if "home country" in row:
            row["home_country"] = row.pop("home country")
        if email is None:
            # SMS-only contacts (2025-05): keyed by their number.
            if "sms_number" not in row:
                plan.reject(number, None, "no email address or SMS number", correctable=True)
                continue
            key = sms_key(row["sms_number"])
        else:
            address = email.strip()
            if email_pattern(address) is None or (flagged and address.lower() in flagged):
                plan.reject(number, email, "invalid email address", correctable=True)
                continue
            if address is not email:
                row["email"] = address
            key = address.lower()
        if key in valid:
            del valid[key]  # a repeated email: the last row wins, in its own position
        valid[key] = row
    return plan


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def salvage_object(prefix: bytes) -> dict[str, Any]:
    """Parse the JSON object at the start of ``prefix`` (a body cut short) as far as it goes.

    Only whole values are kept; inside an ``import_data`` array, every contact that ends before
    the cut is kept and the rest is silently dropped — what Constant Contact documents for a body
    over 4 MB ("only imports the first 4 MB and drops the remaining data").
    """
    text = prefix.decode("utf-8", errors="ignore")  # the cut may split a multi-byte character
    decoder = json.JSONDecoder()
    result: dict[str, Any] = {}
    index = _skip_space(text, 0)
    if not text.startswith("{", index):
        return result
    index += 1
    try:
        while True:
            index = _skip_space(text, index)
            if text[index] == "}":
                return result
            key, index = decoder.raw_decode(text, index)
            index = _skip_space(text, index)
            if text[index] != ":":
                return result
            index = _skip_space(text, index + 1)
            if key == "import_data" and text[index] == "[":
                items: list[Any] = []
                result[key] = items
                index = _skip_space(text, index + 1)
                while text[index] != "]":
                    item, index = decoder.raw_decode(text, index)
                    items.append(item)
                    index = _skip_space(text, index)
                    if text[index] == ",":
                        index = _skip_space(text, index + 1)
                index += 1
            else:
                value, index = decoder.raw_decode(text, index)
                result[key] = value
            index = _skip_space(text, index)
            if text[index] == ",":
                index += 1
    except (IndexError, ValueError):
        return result  # the cut: whatever was whole before it is kept
