"""Picking the Constant Contact list an export fills: checked in the account, or created."""

from __future__ import annotations

from sqlalchemy import Engine

from segment_export.config import Settings
from segment_export.constant_contact import ConstantContactClient, ContactList
from segment_export.db.models import Connection
from segment_export.definitions.connections import client_for
from segment_export.definitions.exports import UUID_PATTERN
from segment_export.errors import ConfigurationError, NotFoundError, SegmentExportError
from segment_export.languages import N_
from segment_export.metrics import Metrics


def account_lists(connection: Connection, *, settings: Settings, engine: Engine,
                  metrics: Metrics | None = None) -> list[ContactList]:
    """The account's lists with their member counts, for the list picker."""
    with client_for(connection, settings=settings, engine=engine, metrics=metrics) as client:
        return client.list_contact_lists(include_membership_count="all")


def resolve_list(
    connection: Connection,
    *,
    settings: Settings,
    engine: Engine,
    list_id: str | None = None,
    create_name: str | None = None,
    metrics: Metrics | None = None,
) -> ContactList:
    """The list an export will fill: ``list_id`` must exist in the connection's account;
    ``create_name`` makes a new list (or reuses the one of that exact name)."""
    if (list_id is None) == (create_name is None):
        raise ConfigurationError(N_("Give either a list id or the name of a list to create"),
                                 field="list_id")
    with client_for(connection, settings=settings, engine=engine, metrics=metrics) as client:
        if list_id is not None:
            if not UUID_PATTERN.match(list_id):
                raise ConfigurationError(
                    N_("The list id %(id)s is not a Constant Contact list id (a UUID; it is "
                       "in the list's URL in Constant Contact)"),
                    values={"id": repr(list_id)}, field="list_id")
            try:
                return client.get_contact_list(list_id)
            except NotFoundError as exc:
                raise ConfigurationError(
                    N_("The list %(id)s does not exist in the account %(account)s"),
                    values={"id": list_id,
                            "account": repr(connection.account_name or connection.display_name)},
                    hint=N_("Pick a list from the account, or create one by name."),
                    field="list_id") from exc
        assert create_name is not None
        existing = client.list_contact_lists(name=create_name.strip())
        if existing:
            return existing[0]
        return client.create_contact_list(create_name.strip())


_PICK_ANOTHER_LIST = N_("Pick another list for the export (or create one), then run it again.")


def deleted_list_error(client: ConstantContactClient, *, list_id: str,
                       list_name: str | None) -> ConfigurationError | None:
    """The error to give when the export's list was deleted in Constant Contact (None: it is
    there, or asking failed and the caller's own error stands).

    Constant Contact answers a deleted list's GET with its ``deleted_at`` (as the emulator
    does) or, once it is purged, 404; both mean nothing more can reach it.
    """
    try:
        found = client.get_contact_list(list_id)
    except NotFoundError:
        deleted = None
    except SegmentExportError:
        return None
    else:
        if found.deleted_at is None:
            return None
        deleted = found.deleted_at
    shown = repr(list_name) if list_name else list_id
    if deleted is None:
        return ConfigurationError(
            N_("The export's list %(list)s no longer exists in Constant Contact: nothing can "
               "be sent to it"),
            values={"list": shown},
            hint=_PICK_ANOTHER_LIST,
            field="list_id", list_id=list_id)
    return ConfigurationError(
        N_("The export's list %(list)s was deleted in Constant Contact on %(deleted)s: nothing "
           "can be sent to it"),
        values={"list": shown, "deleted": deleted.isoformat(timespec="seconds")},
        hint=_PICK_ANOTHER_LIST,
        field="list_id", list_id=list_id)
