"""``POST /contacts`` and ``PUT /contacts/{contact_id}``: a ``ContactPostRequest`` or
``ContactPutRequest`` body checked and turned into an import-shaped row, so one contact is stored
by the same rules as an imported one."""

from __future__ import annotations

from typing import Any

from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.errors import ApiError
from segment_export.emulator.imports import EMAIL_RULES, plan_import
from segment_export.emulator.models import IMPLICIT, PERMISSIONS, Contact, ContactList
from segment_export.emulator.store import Store

_SCALARS = ("first_name", "last_name", "job_title", "company_name", "birthday_month",
            "birthday_day", "anniversary")
_SMS_PERMISSIONS = frozenset({"explicit", "not_set", "pending_confirmation", "unsubscribed"})


def _sms_number(channel: Any) -> tuple[str, str]:
    """The 10-digit number and SMS permission of a ``ContactSmsChannel``."""
    if not isinstance(channel, dict):
        raise ApiError.invalid("sms_channel must be an object.")
    full = channel.get("full_sms_address")
    if not isinstance(full, str) or not full.isdigit() or not (
        len(full) == 10 or (len(full) == 11 and full.startswith("1"))
    ):
        raise ApiError.invalid("sms_channel.full_sms_address must be a US number with its "
                               "dial code (17815551212).")
    consents = channel.get("sms_channel_consents")
    if not isinstance(consents, list) or not consents or not isinstance(consents[0], dict):
        raise ApiError.invalid("sms_channel.sms_channel_consents is required.")
    permission = consents[0].get("sms_consent_permission")
    if permission not in _SMS_PERMISSIONS:
        raise ApiError.invalid("sms_consent_permission must be one of "
                               f"{', '.join(sorted(_SMS_PERMISSIONS))}.")
    return full[-10:], str(permission)


def contact_post_row(
    body: Any, *, store: Store, config: EmulatorConfig
) -> tuple[dict[str, Any], str, list[ContactList]]:
    """The import-shaped row, email permission and lists of a ``POST /contacts`` body, or the
    400 it earns. The emulator keys contacts by email or SMS number, so a contact with only a
    name (which the contract allows) is refused ⚠."""
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    if body.get("create_source") not in ("Contact", "Account"):
        raise ApiError.invalid("create_source is required: Contact or Account.")
    row: dict[str, Any] = {k: body[k] for k in _SCALARS if body.get(k) is not None}
    permission = IMPLICIT
    email = body.get("email_address")
    if email is not None:
        if not isinstance(email, dict) or not isinstance(email.get("address"), str):
            raise ApiError.invalid("email_address.address is required.")
        if len(email["address"]) > 80:
            raise ApiError.invalid("email_address.address is longer than 80 characters.")
        permission = email.get("permission_to_send") or IMPLICIT  # ⚠ default unverified
        if permission not in PERMISSIONS:
            raise ApiError.invalid("email_address.permission_to_send is not valid.")
        row["email"] = email["address"]
    if body.get("sms_channel") is not None:
        row["sms_number"], sms_permission = _sms_number(body["sms_channel"])
    else:
        sms_permission = None
    if "email" not in row and "sms_number" not in row:
        raise ApiError.invalid("email_address or sms_channel is required (the emulator keys "
                               "contacts by them).")
    fields = body.get("custom_fields") or []
    if not isinstance(fields, list) or len(fields) > config.max_custom_fields_per_contact:
        raise ApiError.invalid("custom_fields must be an array of at most "
                               f"{config.max_custom_fields_per_contact}.")
    for item in fields:
        if not isinstance(item, dict):
            raise ApiError.invalid("custom_fields holds {custom_field_id, value} objects.")
        field = store.custom_field_by_id(str(item.get("custom_field_id")))
        row[f"cf:{field.name}"] = item.get("value")
    memberships = body.get("list_memberships") or []
    lists = store.target_lists(memberships, name="list_memberships",
                               maximum=config.max_list_ids, unknown_status=400) \
        if memberships else []
    # The "email" limit of an import is 50; a contact's address may have 80.
    checked = {**row, "email": "x@example.com"} if "email" in row else dict(row)
    plan = plan_import([checked], custom_fields=store.custom_fields,
                       max_custom_fields=config.max_custom_fields_per_contact,
                       strict_custom_fields=True, email_rule=config.email_rule)
    if plan.rejections:
        raise ApiError.invalid(plan.rejections[0].reason)
    (valid,) = plan.rows.values()
    if "email" in row:
        address = row["email"].strip()
        if EMAIL_RULES[config.email_rule].fullmatch(address) is None:
            raise ApiError.invalid("email_address.address is not a valid email address.")
        valid["email"] = address
    if sms_permission is not None:
        valid["sms_permission_to_send"] = sms_permission
    return valid, permission, lists


def contact_put_fields(
    body: Any, *, contact: Contact, store: Store, config: EmulatorConfig
) -> tuple[dict[str, Any], str | None, list[ContactList] | None]:
    """The checked fields of a ``PUT /contacts/{contact_id}`` body (a ``ContactPutRequest``)
    for ``contact``: the import-shaped row (its ``email`` is the address the contact will
    have), the ``permission_to_send`` asked for (None: kept) and the lists it names (None:
    its memberships are kept), or the 400 it earns.

    Checked by the rules of ``POST /contacts``. The emulator keys contacts by email, so a body
    that leaves the contact without one is refused ⚠, and so is ``sms_channel`` (not
    emulated ⚠); an ``email_address`` left out keeps the contact's address ⚠ (the contract
    nulls omitted top-level properties but not sub-resources, and is silent on this one).
    """
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    if body.get("update_source") not in ("Contact", "Account"):
        raise ApiError.invalid("update_source is required: Contact or Account.")
    if body.get("sms_channel") is not None:
        raise ApiError.invalid("sms_channel is not emulated by PUT /contacts/{contact_id}.")
    email = body.get("email_address")
    if email is None:
        if contact.address is None:
            raise ApiError.invalid("email_address is required (the emulator keys contacts "
                                   "by it).")
        email = {"address": contact.address}
    permission = email.get("permission_to_send") if isinstance(email, dict) else None
    post = {**body, "create_source": body["update_source"], "email_address": email}
    row, _, lists = contact_post_row(post, store=store, config=config)
    memberships = lists if body.get("list_memberships") is not None else None
    return row, permission, memberships
