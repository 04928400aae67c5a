"""Saving an export's configuration: the one place the API, the web app and the CLI build and
check it, so the same mistake gets the same error (naming the field) on all three.

Order: everything that needs no call to Constant Contact first (name, connection, mapping,
segments, schedule...), then the account: the mapped custom fields must exist there (read
only), then the list (which may be created), so a refused configuration never leaves a new
list behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from segment_export.access import require_manage, require_usable
from segment_export.config import Settings
from segment_export.db.models import Connection, Export, User
from segment_export.definitions import exports as service
from segment_export.definitions.connections import client_for
from segment_export.definitions.custom_fields import (
    check_mapping,
    mapped_names,
    read_account_fields,
)
from segment_export.definitions.lists import resolve_list
from segment_export.definitions.phones import DEFAULT_PHONE_REGION
from segment_export.errors import ConfigurationError, NotFoundError
from segment_export.languages import N_
from segment_export.metrics import Metrics


class ExportCreate(BaseModel):
    """What a person configures on an export (the list by id, or a name to create)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    connection_id: str
    list_id: str | None = None
    create_list_name: str | None = None
    mapping: dict[str, str] = Field(default_factory=dict)
    segment_ids: list[str] = Field(default_factory=list)
    consent_field: str | None = None
    mode: service.Mode = "add_update"
    schedule_kind: service.ScheduleKind = "manual"
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    max_contacts: int | None = None
    rejected_alert_threshold: float | None = None
    phone_region: str = DEFAULT_PHONE_REGION


class ExportUpdate(ExportCreate):
    """A full replacement of an export's configuration (what edits send)."""

    @classmethod
    def of(cls, export: Export) -> ExportUpdate:
        """The export's configuration as it is, to change a few settings of."""
        # Read field by field off the saved spec, so the two field lists cannot drift apart
        # (ExportSpec's list_name is not a field here and is ignored).
        return cls.model_validate(service.spec_of(export), from_attributes=True)


def _connection(session: Session, actor: User, connection_id: str) -> Connection:
    if not connection_id.strip():
        raise ConfigurationError(N_("Choose a connection"), field="connection_id")
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise NotFoundError(N_("No connection %(id)s"), values={"id": repr(connection_id)},
                            field="connection_id")
    # Nothing is asked of Constant Contact on behalf of someone who may not use the connection.
    require_usable(actor, connection)
    return connection


def save_export(
    session: Session,
    *,
    actor: User,
    data: ExportCreate,
    export: Export | None = None,
    settings: Settings,
    engine: Engine,
    profile_columns: Mapping[str, str] | None = None,
    metrics: Metrics | None = None,
) -> Export:
    """Create an export from ``data``, or replace the configuration of ``export``.

    Raises ConfigurationError (a subclass for what does not exist) naming the field. A list or
    a set of custom fields unchanged on the same connection is not asked for again: a run
    checks the custom fields anyway when it starts.
    """
    if export is not None:
        require_manage(session, actor, export)
    connection = _connection(session, actor, data.connection_id)
    same_account = export is not None and export.connection_id == connection.id
    list_id = (data.list_id or "").strip() or None
    create_name = (data.create_list_name or "").strip() or None
    if (list_id is None) == (create_name is None):
        raise ConfigurationError(
            N_("Choose the Constant Contact list: a list id, or the name of a list to create"),
            field="list_id")
    draft = service.ExportSpec(
        name=data.name, connection_id=connection.id, list_id=list_id or "",
        mapping=dict(data.mapping), segment_ids=list(data.segment_ids),
        consent_field=data.consent_field or None, mode=data.mode,
        schedule_kind=data.schedule_kind, cron=data.cron or None, timezone=data.timezone,
        enabled=data.enabled, max_contacts=data.max_contacts,
        rejected_alert_threshold=data.rejected_alert_threshold,
        phone_region=data.phone_region or DEFAULT_PHONE_REGION)
    mapping = service.check_spec(session, actor, draft, profile_columns,
                                 list_pending=create_name is not None)
    service.check_name_free(session, draft.name, export)

    account = connection.account_name or connection.display_name
    unchanged_fields = same_account and export is not None and (
        mapped_names(mapping) == mapped_names(export.mapping))
    if mapped_names(mapping) and not unchanged_fields:
        with client_for(connection, settings=settings, engine=engine, metrics=metrics) as client:
            check_mapping(mapping, read_account_fields(client), account=account)
    if export is not None and same_account and list_id and list_id.lower() == export.list_id:
        list_name = export.list_name  # unchanged: no need to ask the account again
    else:
        chosen = resolve_list(connection, settings=settings, engine=engine, list_id=list_id,
                              create_name=create_name, metrics=metrics)
        list_id, list_name = chosen.list_id, chosen.name
    spec = dataclasses.replace(draft, list_id=list_id, list_name=list_name, mapping=mapping)
    if export is None:
        return service.create_export(session, actor=actor, spec=spec,
                                     profile_columns=profile_columns)
    return service.update_export(session, actor=actor, export=export, spec=spec,
                                 profile_columns=profile_columns)
