"""Bulk calls: checking an import, membership or export request when it arrives, and applying
it to the store when its activity completes (never before)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segment_export.emulator.activities import Activity, ActivityKind
from segment_export.emulator.config import EmulatorConfig
from segment_export.emulator.errors import ApiError
from segment_export.emulator.imports import (
    SMS_PERMISSIONS,
    ImportPlan,
    plan_import,
    salvage_object,
)
from segment_export.emulator.models import IMPLICIT, UNSUBSCRIBED, Contact, ContactList, gc_paused
from segment_export.emulator.store import Store, id_list
from segment_export.emulator.views import EXPORT_COLUMNS, SMS_EXPORT_COLUMNS, export_csv
from segment_export.emulator.wire import parse_json

_UNSUPPORTED_SOURCES = ("segment_id",)
# Sources each endpoint takes: the contract's, plus the remove sources added 2024-06
# (FACTS.md, "Changes since the spec builds"). Only list_ids and all_active_contacts take
# exclude (the contract's prose).
_ADD_SOURCES = frozenset({"contact_ids", "list_ids", "all_active_contacts", "tag_ids",
                          "engagement_level"})
_REMOVE_SOURCES = _ADD_SOURCES | {"new_subscriber"}
_EXCLUDE_SOURCES = frozenset({"list_ids", "all_active_contacts"})


@dataclass(slots=True)
class ImportJob:
    """A checked ``contacts_json_import``."""

    plan: ImportPlan
    lists: list[ContactList]
    sms_permission: str | None = None


@dataclass(slots=True)
class MembershipJob:
    """A checked ``add_list_memberships`` / ``remove_list_memberships``."""

    selector: str
    """``contact_ids``, ``list_ids``, ``all_active_contacts``, ``tag_ids``,
    ``engagement_level`` or (removals) ``new_subscriber``."""
    picked: list[str] | list[ContactList] | str | None
    targets: list[ContactList]
    exclude: frozenset[str]
    remove: bool


@dataclass(slots=True)
class ExportJob:
    """A checked ``contact_exports``."""

    contact_ids: list[str]
    lists: list[ContactList]
    status: str | None
    columns: list[str]
    exclude: frozenset[str]


def read_import_body(body: bytes, *, limit: int) -> tuple[Any, bool]:
    """The import body parsed, and whether it was cut at ``limit`` bytes.

    Past the limit Constant Contact "only imports the first 4 MB and drops the remaining
    data": only the contacts wholly before the cut survive, and nothing says so.
    """
    if len(body) > limit:
        return salvage_object(body[:limit]), True
    return parse_json(body), False


def check_import(data: Any, *, store: Store, config: EmulatorConfig) -> ImportJob:
    """Check a ``ContactsJsonImport`` body and validate its rows (rejected rows do not fail it)."""
    if not isinstance(data, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    rows = data.get("import_data")
    if not isinstance(rows, list) or not rows:
        raise ApiError.invalid("import_data must be a non-empty array of contacts.")
    lists = store.target_lists(data.get("list_ids"), name="list_ids",
                               maximum=config.max_list_ids, unknown_status=400)
    if len(rows) > config.max_contacts_per_import:
        raise ApiError.invalid(
            f"import_data has {len(rows):,} contacts; at most "
            f"{config.max_contacts_per_import:,} are allowed per import."
        )
    sms_permission = data.get("sms_permission_to_send")
    if sms_permission is not None and sms_permission not in SMS_PERMISSIONS:
        raise ApiError.invalid("sms_permission_to_send must be explicit or not_set.")
    plan = plan_import(rows, custom_fields=store.custom_fields,
                       max_custom_fields=config.max_custom_fields_per_contact,
                       strict_custom_fields=config.strict_custom_fields,
                       email_rule=config.email_rule, sms_permission=sms_permission,
                       flagged_emails=config.flagged_emails)
    return ImportJob(plan=plan, lists=lists, sms_permission=sms_permission)


def apply_import(activity: Activity, store: Store) -> None:
    """Upsert the valid rows and add them to the lists, except unsubscribed contacts."""
    job: ImportJob = activity.payload
    plan = job.plan
    lists = [lst for lst in job.lists if lst.deleted_at is None]
    now = activity.due_at
    with gc_paused():
        # New contacts get implicit permission; existing ones keep theirs (FACTS.md §4.1).
        contacts = store.upsert_rows(plan.rows, now=now, permission=IMPLICIT)
        _apply_sms_consent(plan.rows.values(), contacts, job.sms_permission)
        subscribed = [c for c in contacts if c.permission != UNSUBSCRIBED]
        for lst in lists:
            lst.members.update(subscribed)
    cannot_add = len(contacts) - len(subscribed)
    activity.status = {
        "items_total_count": plan.items_total,
        "person_count": len(plan.rows),
        "error_count": plan.error_count,
        "correctable_count": plan.correctable_count,
        "cannot_add_to_list_count": cannot_add,
    }
    activity.rejections = plan.rejections
    activity.finish(errors=plan.activity_errors())


def _apply_sms_consent(rows: Any, contacts: list[Contact], permission: str | None) -> None:
    """The SMS permission of the contacts whose row has an ``sms_number``: ``explicit`` (with
    the row's consent date) or ``not_set``. Like email, an unsubscribed SMS channel is never
    re-subscribed by an import, and ``not_set`` does not take back an ``explicit`` ⚠."""
    wanted = permission or "not_set"
    for row, contact in zip(rows, contacts, strict=True):
        if "sms_number" not in row or contact.extra is None:
            continue
        current = contact.extra.get("sms_permission_to_send")
        if current == UNSUBSCRIBED or (current == "explicit" and wanted == "not_set"):
            continue
        contact.extra["sms_permission_to_send"] = wanted


def check_memberships(
    body: Any, *, remove: bool, store: Store, config: EmulatorConfig
) -> MembershipJob:
    """Check a ``ListActivityAddContacts`` / ``ListActivityRemoveContacts`` body."""
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    unknown_status = 404 if remove else 400  # the contract lists 404 for remove only
    targets = store.target_lists(body.get("list_ids"), name="list_ids",
                                 maximum=config.max_list_ids, unknown_status=unknown_status)
    source = body.get("source")
    if not isinstance(source, dict):
        raise ApiError.invalid("source is required.")
    allowed = _REMOVE_SOURCES if remove else _ADD_SOURCES
    given = [k for k, v in source.items() if v not in (None, False, [], "")]
    if len(given) != 1:
        raise ApiError.invalid(f"source must have exactly one of {', '.join(sorted(allowed))}.")
    selector = given[0]
    value = source[selector]
    picked: list[str] | list[ContactList] | str | None = None
    if selector == "contact_ids":
        picked = id_list(value, name="source.contact_ids", maximum=config.max_contact_ids)
    elif selector == "list_ids":
        picked = store.target_lists(value, name="source.list_ids",
                                    maximum=config.max_list_ids, unknown_status=unknown_status)
    elif selector in ("all_active_contacts", "new_subscriber") and selector in allowed:
        if value is not True:
            raise ApiError.invalid(f"source.{selector} must be true.")
    elif selector == "tag_ids":
        picked = id_list(value, name="source.tag_ids", maximum=config.max_list_ids)
    elif selector == "engagement_level":
        if not isinstance(value, str):
            raise ApiError.invalid("source.engagement_level must be a string.")
        picked = value
    elif selector in _UNSUPPORTED_SOURCES:
        raise ApiError.invalid(f"source.{selector} is not supported by the emulator.")
    else:
        raise ApiError.invalid(f"source.{selector} is not a known source.")
    exclude_body = body.get("exclude") or {}
    if not isinstance(exclude_body, dict):
        raise ApiError.invalid("exclude must be an object.")
    exclude = id_list(exclude_body.get("contact_ids"), name="exclude.contact_ids",
                      maximum=config.max_contact_ids, required=False)
    if exclude and selector not in _EXCLUDE_SOURCES:
        raise ApiError.invalid("exclude applies only to list_ids or all_active_contacts.")
    return MembershipJob(selector=selector, picked=picked, targets=targets,
                         exclude=frozenset(exclude), remove=remove)


def apply_memberships(activity: Activity, store: Store) -> None:
    """Add to or remove from the target lists; a removal never unsubscribes anyone."""
    job: MembershipJob = activity.payload
    targets = [lst for lst in job.targets if lst.deleted_at is None]
    found, missing = store.source_contacts(job.selector, job.picked, now=activity.due_at)
    contacts = [c for c in found if c.contact_id not in job.exclude]
    errors = [f"contact_id {contact_id} was not found." for contact_id in missing]
    done = 0
    for contact in contacts:
        if contact.deleted_at is not None and not job.remove:
            errors.append(f"Contact {contact.contact_id} is deleted and cannot be added to a "
                          "list.")  # ⚠ wording; an import re-activates a deleted contact
            continue
        if job.remove:
            for lst in targets:
                lst.members.discard(contact)
        elif contact.permission == UNSUBSCRIBED:
            errors.append(f"Contact {contact.contact_id} is unsubscribed and cannot be added "
                          "to a list.")
            continue
        else:
            for lst in targets:
                lst.members.add(contact)
        done += 1
    activity.status = {
        "items_total_count": len(contacts) + len(missing),
        "items_completed_count": done,
        "list_count": len(targets),
    }
    activity.finish(errors=errors)


def check_export(body: Any, *, store: Store, config: EmulatorConfig) -> ExportJob:
    """Check a ``ContactsExport`` body."""
    if not isinstance(body, dict):
        raise ApiError.invalid("The body must be a JSON object.")
    for name in ("tag_ids", "segment_id", "new_subscriber"):
        if body.get(name) not in (None, False, []):
            raise ApiError.invalid(f"{name} is not supported by the emulator.")
    if body.get("contact_ids") and body.get("list_ids"):
        raise ApiError.invalid("contact_ids and list_ids cannot be combined.")
    contact_ids = id_list(body.get("contact_ids"), name="contact_ids",
                          maximum=config.max_contact_ids, required=False)
    lists = (
        store.target_lists(body["list_ids"], name="list_ids", maximum=config.max_list_ids,
                           unknown_status=404)
        if body.get("list_ids") else []
    )
    status = body.get("status")
    if status not in (None, "all", "active", "unsubscribed", "removed"):
        raise ApiError.invalid("status must be one of active, unsubscribed, removed.")
    default = [*EXPORT_COLUMNS, *(f"cf:{name}" for name in store.custom_fields)]
    known = [*default, *SMS_EXPORT_COLUMNS]
    fields = body.get("fields")
    if fields is None:
        fields = default
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ApiError.invalid("fields must be an array of column names.")
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ApiError.invalid(f"Unknown export fields: {', '.join(unknown)}.")
    exclude_body = body.get("exclude") or {}
    exclude = id_list(exclude_body.get("contact_ids") if isinstance(exclude_body, dict) else None,
                      name="exclude.contact_ids", maximum=50, required=False)
    # Every export file has contact_id and email_address first (see EMULATOR_COVERAGE.md).
    columns = ["contact_id", "email_address",
               *(f for f in dict.fromkeys(fields) if f not in ("contact_id", "email_address"))]
    return ExportJob(contact_ids=contact_ids, lists=lists, status=status, columns=columns,
                     exclude=frozenset(exclude))


def apply_export(activity: Activity, store: Store) -> None:
    """Write the export file from the contacts as they are now."""
    job: ExportJob = activity.payload
    missing: list[str] = []
    contacts: list[Contact]
    if job.contact_ids:
        contacts, missing = store.source_contacts("contact_ids", job.contact_ids)
    elif job.lists:
        live = [lst for lst in job.lists if lst.deleted_at is None]
        contacts, _ = store.source_contacts("list_ids", live)
    else:
        contacts = store.contacts
    if job.status is None and not job.lists:  # deleted contacts are on no list
        contacts = [c for c in contacts if c.deleted_at is None]
    if job.status == "active":
        contacts = [c for c in contacts if c.permission != UNSUBSCRIBED and c.deleted_at is None]
    elif job.status == "unsubscribed":
        contacts = [c for c in contacts if c.permission == UNSUBSCRIBED and c.deleted_at is None]
    elif job.status == "removed":
        contacts = [c for c in contacts if c.deleted_at is not None]
    if job.exclude:
        contacts = [c for c in contacts if c.contact_id not in job.exclude]
    lists_of = store.lists_by_contact() if "email_lists" in job.columns else {}
    with gc_paused():
        result = export_csv(contacts, columns=job.columns, lists_of=lists_of)
    activity.status = {"items_total_count": len(contacts), "items_completed_count": len(contacts)}
    activity.finish(errors=[f"contact_id {i} was not found." for i in missing], result=result)


def apply_list_delete(activity: Activity, store: Store) -> None:
    """Delete the list: its memberships go, its contacts stay."""
    lst: ContactList = activity.payload
    lst.deleted_at = lst.updated_at = activity.due_at
    lst.members.clear()
    activity.finish()


APPLY: dict[ActivityKind, Callable[[Activity, Store], None]] = {
    ActivityKind.IMPORT: apply_import,
    ActivityKind.ADD_MEMBERSHIPS: apply_memberships,
    ActivityKind.REMOVE_MEMBERSHIPS: apply_memberships,
    ActivityKind.EXPORT: apply_export,
    ActivityKind.LIST_DELETE: apply_list_delete,
}
"""What completing an activity of each kind does."""
