"""Which Constant Contact import fields an export may fill, and their limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from segment_export.errors import ConfigurationError
from segment_export.languages import N_


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One key of a `contacts_json_import` contact, with Constant Contact's maximum length."""

    name: str
    max_length: int
    kind: str = "text"  # text | birthday | anniversary | sms_number | sms_consent | sms_date


_NAME_FIELDS = ("first_name", "last_name", "job_title", "company_name")
_PHONES = ("phone", "home_phone", "work_phone", "mobile_phone", "other_phone")
_ADDRESS_PARTS = {"street": 255, "street2": 255, "city": 50, "state": 50, "zip": 50, "country": 50}

FIELDS: dict[str, FieldSpec] = {
    "email": FieldSpec("email", 50),
    **{name: FieldSpec(name, 50) for name in _NAME_FIELDS},
    **{name: FieldSpec(name, 50) for name in _PHONES},
    **{part: FieldSpec(part, limit) for part, limit in _ADDRESS_PARTS.items()},
    **{
        f"{kind}_{part}": FieldSpec(f"{kind}_{part}", limit)
        for kind in ("home", "work", "other")
        for part, limit in _ADDRESS_PARTS.items()
    },
    # A date column becomes birthday_month + birthday_day; the year is never sent.
    "birthday": FieldSpec("birthday", 10, "birthday"),
    "anniversary": FieldSpec("anniversary", 10, "anniversary"),
    # SMS (docs/sms.md): the number is parsed to E.164 and sent as Constant Contact's 10 US
    # digits; the consent column (true/false) picks explicit or not_set, and explicit needs the
    # consent date. Only sms_number is a key of the import row as mapped; the consent is the
    # body's sms_permission_to_send.
    "sms_number": FieldSpec("sms_number", 16, "sms_number"),
    "sms_consent": FieldSpec("sms_consent", 0, "sms_consent"),
    "sms_consent_date": FieldSpec("sms_consent_date", 10, "sms_date"),
}
SMS_FIELDS = ("sms_number", "sms_consent", "sms_consent_date")
CUSTOM_FIELD_PREFIX = "cf:"
CUSTOM_FIELD_MAX_LENGTH = 255
MAX_CUSTOM_FIELDS = 25
_CUSTOM_NAME = re.compile(r"^[A-Za-z0-9_]{1,50}$")


def field_spec(name: str) -> FieldSpec:
    """The spec of a mappable field, or a ConfigurationError naming it."""
    if name in FIELDS:
        return FIELDS[name]
    if name.startswith(CUSTOM_FIELD_PREFIX):
        custom = name[len(CUSTOM_FIELD_PREFIX) :]
        if not _CUSTOM_NAME.match(custom):
            raise ConfigurationError(
                N_("Custom field %(name)s: the name after 'cf:' must be 1-50 letters, digits "
                   "or underscores (Constant Contact's field name, not its label)"),
                values={"name": repr(name)},
                field=name,
            )
        return FieldSpec(name, CUSTOM_FIELD_MAX_LENGTH)
    raise ConfigurationError(
        N_("Constant Contact does not accept a field named %(name)s"),
        values={"name": repr(name)},
        hint="Map to one of: " + ", ".join(sorted(FIELDS)) + ", or cf:<custom field name>.",
        field=name,
    )


def validate_mapping(
    mapping: Mapping[str, str], *, profile_columns: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Check a Constant Contact field -> profile column mapping; return it normalised.

    The email field is required; every field must be one Constant Contact accepts; at most 25
    custom fields; every column must exist in the profile store when its schema is given.
    """
    clean = {str(k).strip(): str(v).strip() for k, v in mapping.items()}
    if not clean.get("email"):
        raise ConfigurationError(
            N_("The mapping needs the profile column that holds the email address"),
            hint=N_("Map the 'email' field, e.g. --map email=email_address."),
            field="email",
        )
    customs = [name for name in clean if name.startswith(CUSTOM_FIELD_PREFIX)]
    if len(customs) > MAX_CUSTOM_FIELDS:
        raise ConfigurationError(
            N_("%(count)s custom fields mapped; Constant Contact takes at most "
               "%(most)s per contact"),
            values={"count": len(customs), "most": MAX_CUSTOM_FIELDS},
            field="mapping",
        )
    if clean.get("sms_consent") and not clean.get("sms_number"):
        raise ConfigurationError(
            N_("SMS consent is mapped but the phone number is not"),
            hint=N_("Map the 'sms_number' field to the column holding the mobile number."),
            field="sms_consent")
    # Constant Contact takes an explicit SMS consent only with its date: one without the other
    # could never send a consent, so both are mapped or neither.
    if bool(clean.get("sms_consent")) != bool(clean.get("sms_consent_date")):
        missing = "sms_consent_date" if clean.get("sms_consent") else "sms_consent"
        raise ConfigurationError(
            N_("Map the SMS consent and the SMS consent date together: Constant Contact takes "
               "an explicit consent only with the date it was given"),
            hint=N_("Map 'sms_consent' to a true/false column and 'sms_consent_date' to a date "
                    "column."),
            field=missing)
    for name, column in clean.items():
        field_spec(name)
        if not column:
            raise ConfigurationError(N_("Field %(name)s is mapped to an empty column"),
                                     values={"name": repr(name)}, field=name)
        if profile_columns is not None and column not in profile_columns:
            raise ConfigurationError(
                N_("Field %(name)s is mapped to column %(column)s, which the profiles do not "
                   "have"),
                values={"name": repr(name), "column": repr(column)},
                hint="Columns: " + ", ".join(sorted(profile_columns)),
                field=name,
            )
    return clean
