"""The emulated account's data: details, custom fields, lists and contacts with their indexes.

Not thread-safe on its own: the backend's lock guards it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segment_export.emulator.custom_fields import make_field
from segment_export.emulator.errors import ApiError
from segment_export.emulator.imports import plan_import
from segment_export.emulator.models import (
    PERMISSIONS,
    UNSUBSCRIBED,
    Contact,
    ContactList,
    CustomField,
    gc_paused,
    new_id,
    new_ids,
    sms_key,
)
from segment_export.emulator.schemas import SeedCustomField, SeedRequest
from segment_export.emulator.views import DEFAULT_ACCOUNT

_CORE_FIELDS = frozenset({"email", "first_name", "last_name"})
# "contacts that subscribed within the last 30 days" (ContactsExport.new_subscriber).
NEW_SUBSCRIBER_SECONDS = 30 * 86_400.0


def id_list(value: object, *, name: str, maximum: int, required: bool = True) -> list[str]:
    """``value`` as a list of ids (duplicates dropped), or the 400 Constant Contact answers."""
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError.invalid(f"{name} must be an array of id strings.")
    if required and not value:
        raise ApiError.invalid(f"{name} must name at least one id.")
    if len(value) > maximum:
        raise ApiError.invalid(f"{name} has {len(value)} ids; at most {maximum} are allowed.")
    return list(dict.fromkeys(value))


class Store:
    """Everything the account holds. Contacts are keyed by lowercased email."""

    def __init__(self) -> None:
        self.account: dict[str, Any] = dict(DEFAULT_ACCOUNT)
        self.custom_fields: dict[str, CustomField] = {}
        self.lists: dict[str, ContactList] = {}
        self.contacts: list[Contact] = []  # creation order: what cursors page through
        self.by_email: dict[str, Contact] = {}
        self.by_id: dict[str, Contact] = {}
        self.by_sms: dict[str, Contact] = {}  # 10-digit SMS number -> contact
        self.tags: dict[str, str] = {}  # tag name -> tag id (seeded only)

    # -- lists -------------------------------------------------------------------------------

    def list_named(self, name: str) -> ContactList | None:
        """The live list called ``name`` (case-insensitive), if any."""
        folded = name.casefold()
        for lst in self.lists.values():
            if lst.deleted_at is None and lst.name.casefold() == folded:
                return lst
        return None

    def get_list(self, list_id: str, *, deleted_ok: bool = False) -> ContactList:
        """A list by id, or 404."""
        lst = self.lists.get(list_id)
        if lst is None or (lst.deleted_at is not None and not deleted_ok):
            raise ApiError.not_found("contact_lists", f"List {list_id} was not found.")
        return lst

    def live_lists(self) -> list[ContactList]:
        """Lists not deleted."""
        return [lst for lst in self.lists.values() if lst.deleted_at is None]

    def target_lists(
        self, value: object, *, name: str, maximum: int, unknown_status: int
    ) -> list[ContactList]:
        """The live lists a request names in ``value``; unknown ids answer ``unknown_status``."""
        lists = []
        for list_id in id_list(value, name=name, maximum=maximum):
            lst = self.lists.get(list_id)
            if lst is None or lst.deleted_at is not None:
                key = ("contact_lists.api.not_found" if unknown_status == 404
                       else "contacts.api.validation.error")
                raise ApiError.of(unknown_status, key, f"{name}: list {list_id} was not found.")
            lists.append(lst)
        return lists

    def lists_by_contact(self) -> dict[Contact, list[str]]:
        """Each member's live list ids (memberships are held by the lists)."""
        lists_of: dict[Contact, list[str]] = {}
        for lst in self.live_lists():
            for contact in lst.members:
                lists_of.setdefault(contact, []).append(lst.list_id)
        return lists_of

    # -- custom fields -----------------------------------------------------------------------

    def add_custom_field(self, field: CustomField) -> CustomField:
        """Add ``field``; 409 when a field of that name exists."""
        if field.name in self.custom_fields:
            raise ApiError.of(409, "contacts.api.conflict",
                              f"A custom field named {field.name!r} exists.")
        self.custom_fields[field.name] = field
        return field

    def custom_field_by_id(self, custom_field_id: str) -> CustomField:
        """A custom field by id, or 404."""
        for field in self.custom_fields.values():
            if field.custom_field_id == custom_field_id:
                return field
        raise ApiError.not_found("custom_fields", f"Custom field {custom_field_id} was not found.")

    def remove_custom_field(self, field: CustomField) -> None:
        """Delete ``field`` and every contact's value of it."""
        del self.custom_fields[field.name]
        key = f"cf:{field.name}"
        for contact in self.contacts:
            if contact.extra and key in contact.extra:
                del contact.extra[key]

    # -- contacts ----------------------------------------------------------------------------

    def upsert_rows(
        self, rows: Mapping[str, dict[str, Any]], *, now: float, permission: str
    ) -> list[Contact]:
        """Store validated rows keyed by lowercased email: update the contacts that exist (only
        the fields sent; their permission untouched), create the rest with ``permission``.
        Returns the contacts in the rows' order.

        One tight loop over locals: it runs for every contact of every import.
        """
        by_email, by_id, contacts = self.by_email, self.by_id, self.contacts
        ids = iter(new_ids(sum(1 for key in rows if key not in by_email)))
        out: list[Contact] = []
        for key, row in rows.items():
            contact = by_email.get(key)
            if contact is None and "sms_number" in row:
                contact = self._sms_match(key, row)
            if contact is None:
                address = row.get("email")
                first, last = row.get("first_name"), row.get("last_name")
                extra = None
                if len(row) > (address is not None) + (first is not None) + (last is not None):
                    extra = {k: v for k, v in row.items() if k not in _CORE_FIELDS}
                # Sharing one string for address and key when equal saves ~70 MB a million.
                contact = Contact(next(ids), key if address == key else address, permission,
                                  now, first, last, extra)
                contacts.append(contact)
                if address is not None:
                    by_email[key] = contact
                by_id[contact.contact_id] = contact
            else:
                contact.update(row, now)
            number = contact.sms_number
            if number is not None:
                self.by_sms[number] = contact
            out.append(contact)
        return out

    def _sms_match(self, key: str, row: Mapping[str, Any]) -> Contact | None:
        """The contact an SMS row names by its number: an SMS-only row updates the contact
        with that number; a row with an email gives the number's email-less contact that email
        (contacts are identified by an email address or an SMS number, or both)."""
        found = self.by_sms.get(str(row["sms_number"]))
        if found is None:
            return None
        if key.startswith("sms:"):
            return found
        if found.address is None:
            found.address = row["email"]
            self.by_email[key] = found
            return found
        return None  # the number belongs to a contact with another email ⚠: a new contact

    def find_contacts(
        self,
        *,
        email: str | None,
        lists: list[ContactList],
        statuses: set[str],
        offset: int,
        limit: int,
        count: bool,
        optout_after: float | None = None,
        optout_before: float | None = None,
        updated_after: float | None = None,
        updated_before: float | None = None,
    ) -> tuple[list[Contact], int | None, int]:
        """One page of contacts in creation order from position ``offset``: the page, where
        the next page starts (None at the end) and, when ``count``, how many match in all.

        ``statuses``: ``all`` (deleted contacts too), ``deleted``, ``active`` (= not
        unsubscribed) or ``permission_to_send`` values; empty means every contact not deleted
        (the contract's default). ``lists``: members of any of them. ``optout_after`` and
        ``optout_before`` (epoch seconds, both inclusive ⚠): contacts whose opt-out date lies
        between them; a contact that never opted out does not match either. ``updated_after``
        and ``updated_before`` (epoch seconds, both inclusive ⚠): contacts whose ``updated_at``
        lies between them.
        """
        wanted = statuses - {"all", "active", "deleted"}

        def matches(contact: Contact) -> bool:
            if contact.deleted_at is not None:
                if not statuses & {"all", "deleted"}:
                    return False
            elif statuses and "all" not in statuses:
                active = "active" in statuses and contact.permission != UNSUBSCRIBED
                if not active and contact.permission not in wanted:
                    return False
            if optout_after is not None or optout_before is not None:
                moment = contact.opt_out_at
                if moment is None or (optout_after is not None and moment < optout_after) or (
                        optout_before is not None and moment > optout_before):
                    return False
            if (updated_after is not None and contact.updated_at < updated_after) or (
                    updated_before is not None and contact.updated_at > updated_before):
                return False
            return not lists or any(contact in lst.members for lst in lists)

        if email is not None:
            found = self.by_email.get(email.strip().lower())
            page = [found] if found is not None and matches(found) and offset == 0 else []
            return page, None, len(page)
        page = []
        position = offset
        contacts = self.contacts
        while position < len(contacts):
            contact = contacts[position]
            if matches(contact):
                if len(page) == limit:
                    break
                page.append(contact)
            position += 1
        next_offset = position if position < len(contacts) else None
        total = sum(1 for c in contacts if matches(c)) if count else 0
        return page, next_offset, total

    def source_contacts(self, selector: str, picked: Any, *, now: float = 0.0,
                        ) -> tuple[list[Contact], list[str]]:
        """The contacts an activity's source names, and the contact ids that do not exist.

        ``new_subscriber``: contacts created in the last 30 days and still subscribed ⚠;
        ``engagement_level`` and ``tag_ids``: what seeds gave the contacts. Deleted contacts
        are in no source but ``contact_ids``.
        """
        if selector == "contact_ids":
            found, missing = [], []
            for contact_id in picked:
                contact = self.by_id.get(contact_id)
                if contact is None:
                    missing.append(contact_id)
                else:
                    found.append(contact)
            return found, missing
        if selector == "list_ids":
            members: dict[Contact, None] = {}
            for lst in picked:
                members.update(dict.fromkeys(lst.members))
            return list(members), []
        live = (c for c in self.contacts if c.deleted_at is None)
        if selector == "tag_ids":
            wanted = frozenset(picked)
            return [c for c in live if c.tags and c.tags & wanted], []
        if selector == "engagement_level":
            level = str(picked).casefold()
            return [c for c in live if c.engagement is not None
                    and c.engagement.casefold() == level], []
        if selector == "new_subscriber":
            since = now - NEW_SUBSCRIBER_SECONDS
            return [c for c in live if c.permission != UNSUBSCRIBED and c.created_at >= since], []
        return [c for c in live if c.permission != UNSUBSCRIBED], []

    # -- seeding -----------------------------------------------------------------------------

    def seed(self, request: SeedRequest, *, now: float, max_custom_fields: int) -> dict[str, Any]:
        """Add account details, custom fields, lists and contacts; returns their ids."""
        self.account.update(request.account)
        for tag in request.tags:
            self.tags.setdefault(tag, new_id())
        for wanted in request.custom_fields:
            if isinstance(wanted, str):
                self.custom_fields.setdefault(wanted, CustomField(name=wanted, created_at=now))
            elif wanted.name not in self.custom_fields:
                self.add_custom_field(_seeded_field(wanted, now))
        for item in request.lists:
            existing = self.lists.get(item.list_id or "") or self.list_named(item.name)
            if existing is None:
                existing = ContactList(
                    list_id=item.list_id or new_id(), name=item.name, created_at=now
                )
                self.lists[existing.list_id] = existing
            existing.name = item.name
            existing.description = item.description
            existing.favorite = item.favorite
        return {
            "tags": dict(self.tags),
            "custom_fields": {n: f.custom_field_id for n, f in self.custom_fields.items()},
            "lists": {lst.name: lst.list_id for lst in self.lists.values()},
            "contacts": self._seed_contacts(request.contacts, now, max_custom_fields),
        }

    def _seed_contacts(
        self, rows: list[dict[str, Any]], now: float, max_custom_fields: int
    ) -> dict[str, str]:
        extras: list[tuple[str, list[ContactList], frozenset[str] | None, str | None]] = []
        fields: list[dict[str, Any]] = []
        for row in rows:
            row = dict(row)
            tags = row.pop("tags", None)
            tag_ids = None
            if tags is not None:
                if not isinstance(tags, list) or not all(t in self.tags or t in
                                                         self.tags.values() for t in tags):
                    raise ApiError.invalid(f"Seeded contact names unknown tags {tags!r}.")
                tag_ids = frozenset(str(self.tags.get(t, t)) for t in tags)
            engagement = row.pop("engagement_level", None)
            permission = row.pop("permission_to_send", "implicit")
            if permission not in PERMISSIONS:
                raise ApiError.invalid(f"permission_to_send {permission!r} is not one of "
                                       f"{sorted(PERMISSIONS)}")
            lists = []
            for name in row.pop("lists", []):
                found = self.lists.get(name) or self.list_named(name)
                if found is None:
                    raise ApiError.invalid(f"Seeded contact names an unknown list {name!r}.")
                lists.append(found)
            extras.append((permission, lists, tag_ids, engagement))
            fields.append(row)
        with gc_paused():
            # A seed naming a field the account lacks is a mistake in the test: say so.
            plan = plan_import(fields, custom_fields=self.custom_fields,
                               max_custom_fields=max_custom_fields, strict_custom_fields=True)
        if plan.errors:
            raise ApiError.invalid("Invalid seeded contacts: " + "; ".join(plan.errors[:5]))
        stored = dict(zip(plan.rows, self.upsert_rows(plan.rows, now=now, permission="implicit"),
                          strict=True))
        ids: dict[str, str] = {}
        # plan.rows keeps the last of repeated emails; walk the rows to pair each with its extras
        for row, (permission, lists, tag_ids, engagement) in zip(fields, extras, strict=True):
            key = row["email"].lower() if "email" in row else sms_key(row["sms_number"])
            if plan.rows.get(key) is not row:
                continue
            contact = stored[key]
            if contact.permission != permission:  # a seed may change what an import may not
                contact.permission = permission
                contact.opt_out_at = now if permission == UNSUBSCRIBED else None
            if tag_ids is not None:
                contact.tags = tag_ids
            if engagement is not None:
                contact.engagement = str(engagement)
            for lst in lists:
                lst.members.add(contact)
            ids[key] = contact.contact_id
        return ids


def _seeded_field(item: SeedCustomField, now: float) -> CustomField:
    body = {"label": item.name.replace("_", " "), "type": item.type, "metadata": item.metadata,
            "choices": [{"choice_label": c} for c in item.choices]}
    field = make_field(body, now=now)
    field.name = item.name  # exactly as asked, even where the label would not give it back
    return field
