"""How the emulator's records look on the wire: Constant Contact's resource shapes and the
contact export CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any, Final

from segment_export.emulator.models import UNSUBSCRIBED, Contact, ContactList, CustomField, iso

DEFAULT_ACCOUNT: Final[dict[str, Any]] = {
    "contact_email": "owner@sandbox.example",
    "contact_phone": "555-0100",
    "country_code": "US",
    "encoded_account_id": "sandbox0000001",
    "first_name": "Sandy",
    "last_name": "Box",
    "organization_name": "Sandbox account (segment-export emulator)",
    "organization_phone": "555-0100",
    "state_code": "MA",
    "time_zone_id": "US/Eastern",
    "website": "https://sandbox.example",
    "physical_address": {
        "address_line1": "1 Sandbox Way",
        "city": "Waltham",
        "state_code": "MA",
        "postal_code": "02451",
        "country_code": "US",
    },
}
_PHONE_KINDS: Final = {
    "phone": "other",
    "home_phone": "home",
    "work_phone": "work",
    "mobile_phone": "mobile",
    "other_phone": "other",
}
_ADDRESS_KINDS: Final = (("", "home"), ("home_", "home"), ("work_", "work"), ("other_", "other"))
_SCALARS: Final = ("job_title", "company_name", "birthday_month", "birthday_day", "anniversary")

EXPORT_COLUMNS: Final = (
    "contact_id",
    "email_address",
    "first_name",
    "last_name",
    "email_permission",
    "email_lists",
    "phone_number",
    "company_name",
    "job_title",
    "street",
    "city",
    "state",
    "zip",
    "country",
    "anniversary",
    "birthday_day",
    "birthday_month",
    "created_at",
    "updated_at",
)
# Only when an export's fields ask for them ⚠ (Constant Contact's SMS column names are
# unverified).
SMS_EXPORT_COLUMNS: Final = ("sms_number", "sms_permission", "sms_consent_date")


def account_json(account: Mapping[str, Any], extra_fields: set[str]) -> dict[str, Any]:
    """``GET /account/summary`` (``Customer``); ``physical_address`` only when asked for."""
    body = {k: v for k, v in account.items() if k not in ("physical_address", "company_logo")}
    for name in ("physical_address", "company_logo"):
        if name in extra_fields and name in account:
            body[name] = account[name]
    return body


def list_json(contact_list: ContactList, membership: str | None = None) -> dict[str, Any]:
    """A ``ContactList``; ``membership`` is ``all`` or ``active`` to add ``membership_count``."""
    body: dict[str, Any] = {
        "list_id": contact_list.list_id,
        "name": contact_list.name,
        "favorite": contact_list.favorite,
        "created_at": iso(contact_list.created_at),
        "updated_at": iso(contact_list.updated_at),
    }
    if contact_list.description is not None:
        body["description"] = contact_list.description
    if contact_list.deleted_at is not None:
        body["deleted_at"] = iso(contact_list.deleted_at)
    if membership == "all":
        body["membership_count"] = len(contact_list.members)
    elif membership == "active":
        body["membership_count"] = contact_list.active_count()
    return body


def _street_addresses(contact: Contact) -> list[dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for prefix, kind in _ADDRESS_KINDS:
        parts = {
            name: contact.get(prefix + name)
            for name in ("street", "street2", "city", "state", "zip", "country")
        }
        if not any(v is not None for v in parts.values()):
            continue
        address = by_kind.setdefault(kind, {"kind": kind})
        street = " ".join(str(parts[k]) for k in ("street", "street2") if parts[k] is not None)
        if street:
            address["street"] = street
        for name, target in (("city", "city"), ("state", "state"), ("zip", "postal_code"),
                             ("country", "country")):
            if parts[name] is not None:
                address[target] = parts[name]
    return list(by_kind.values())[:3]


def contact_json(
    contact: Contact,
    *,
    include: set[str],
    list_ids: list[str] | None = None,
    custom_fields: Mapping[str, CustomField] | None = None,
) -> dict[str, Any]:
    """A ``ContactResource``; sub-resources only when ``include`` names them."""
    body: dict[str, Any] = {"contact_id": contact.contact_id}
    if contact.address is not None:
        email: dict[str, Any] = {
            "address": contact.address,
            "permission_to_send": contact.permission,
            "created_at": iso(contact.created_at),
            "updated_at": iso(contact.updated_at),
            "opt_in_source": "Account",
            "confirm_status": "off",
        }
        if contact.deleted_at is not None:
            # "For deleted contacts (email_address contains opt_out_source and opt_out_date)"
            email["opt_out_source"] = "Account"
            email["opt_out_date"] = iso(contact.deleted_at)
        elif contact.permission == UNSUBSCRIBED and contact.opt_out_at is not None:
            email["opt_out_source"] = "Contact"
            email["opt_out_date"] = iso(contact.opt_out_at)
        body["email_address"] = email
    if contact.first_name is not None:
        body["first_name"] = contact.first_name
    if contact.last_name is not None:
        body["last_name"] = contact.last_name
    if contact.extra:
        for name in _SCALARS:
            if name in contact.extra:
                body[name] = contact.extra[name]
    body["create_source"] = "Account"
    body["update_source"] = "Account"
    body["created_at"] = iso(contact.created_at)
    body["updated_at"] = iso(contact.updated_at)
    if contact.deleted_at is not None:
        body["deleted_at"] = iso(contact.deleted_at)[:10]  # the contract's format: date
    extra = contact.extra or {}
    if contact.sms_number is not None:
        body["sms_channel"] = sms_channel_json(contact)
    if "custom_fields" in include:
        fields = custom_fields or {}
        body["custom_fields"] = [
            {"custom_field_id": fields[k[3:]].custom_field_id, "value": str(v)}
            for k, v in extra.items()
            if k.startswith("cf:") and k[3:] in fields
        ]
    if "phone_numbers" in include:
        body["phone_numbers"] = [
            {"phone_number": str(extra[k]), "kind": kind}
            for k, kind in _PHONE_KINDS.items()
            if k in extra
        ][:3]
    if "street_addresses" in include:
        body["street_addresses"] = _street_addresses(contact)
    if "list_memberships" in include:
        body["list_memberships"] = list_ids or []
    return body


def sms_channel_json(contact: Contact) -> dict[str, Any]:
    """The contact's ``sms_channel`` (``ContactResource``): a US number and its consent."""
    extra = contact.extra or {}
    consent: dict[str, Any] = {
        "sms_consent_permission": extra.get("sms_permission_to_send", "not_set"),
        "consent_type": "promotional_sms",
        "created_at": iso(contact.created_at),
        "updated_at": iso(contact.updated_at),
    }
    return {
        "sms_address": contact.sms_number,
        "dial_code": "1",
        "country_code": "US",
        "create_source": "Account",
        "update_source": "Account",
        "sms_channel_consents": [consent],
    }


def _cell(
    contact: Contact, column: str, lists_of: Mapping[Contact, list[str]]
) -> str | int | None:
    if column == "contact_id":
        return contact.contact_id
    if column == "email_address":
        return contact.address
    if column == "email_permission":
        return contact.permission if contact.address is not None else None
    if column == "sms_permission":
        return contact.get("sms_permission_to_send") if contact.sms_number else None
    if column == "email_lists":
        return ";".join(lists_of.get(contact, ()))
    if column == "created_at":
        return iso(contact.created_at)
    if column == "updated_at":
        return iso(contact.updated_at)
    if column == "phone_number":
        return next((contact.get(k) for k in _PHONE_KINDS if contact.get(k) is not None), None)
    if column in ("street", "city", "state", "zip", "country"):
        value = contact.get(column)
        return value if value is not None else contact.get(f"home_{column}")
    return contact.get(column)


def export_csv(
    contacts: Iterable[Contact],
    *,
    columns: list[str],
    lists_of: Mapping[Contact, list[str]],
) -> bytes:
    """The contact export file: a header row, then one row per contact."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    if columns == ["contact_id", "email_address"]:
        writer.writerows((c.contact_id, c.address) for c in contacts)  # the common, hot case
    else:
        writer.writerows([_cell(c, col, lists_of) for col in columns] for c in contacts)
    return out.getvalue().encode()
