"""Export destinations: segments to a Constant Contact list, with *your permissions*."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.orm import Session

from segment_export.api.deps import CurrentUser, Db, EditorUser, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.routes.runs import RunPublic, run_public
from segment_export.api.state import AppServices
from segment_export.api.types import BIGINT_MAX, Cron, Name, ObjectId, TimeZone, Word
from segment_export.db.models import Connection, Export, Segment, User
from segment_export.errors import NotFoundError
from segment_export.exports import service
from segment_export.exports.connections import require_usable
from segment_export.exports.lists import resolve_list
from segment_export.exports.mapping import FIELDS
from segment_export.exports.runs import list_runs, request_run

router = APIRouter(prefix="/api/exports", tags=["exports"], responses=PROBLEM_RESPONSES)


class ExportIn(BaseModel):
    """What is configured on an export (create and full replace)."""

    name: Name
    connection_id: Word
    list_id: Word | None = Field(
        default=None, description="A list of the account (UUID, in the list's URL).")
    create_list_name: Name | None = Field(
        default=None, description="Instead of list_id: create (or reuse) a list of this name.")
    mapping: Annotated[dict[Word, Word], Field(max_length=100)] = Field(
        description="Constant Contact field -> profile column; 'email' is required.")
    segment_ids: Annotated[list[Word], Field(min_length=1, max_length=50)]
    consent_field: Word | None = Field(
        default=None, description="Only profiles where this column is true are sent.")
    mode: Literal["add_update", "mirror"] = "add_update"
    schedule_kind: Literal["manual", "refresh", "cron"] = "manual"
    cron: Cron | None = None
    timezone: TimeZone = "UTC"
    enabled: bool = True
    max_contacts: Annotated[int, Field(gt=0, le=BIGINT_MAX)] | None = None
    rejected_alert_threshold: Annotated[float, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _one_list(self) -> ExportIn:
        if (self.list_id is None) == (self.create_list_name is None):
            raise ValueError("give either list_id or create_list_name")
        return self


class SegmentRef(BaseModel):
    id: str
    name: str
    size: int | None


class ExportPublic(BaseModel):
    id: str
    name: str
    connection_id: str | None
    connection_name: str | None
    list_id: str
    list_name: str | None
    mapping: dict[str, str]
    segments: list[SegmentRef]
    consent_field: str | None
    mode: str
    schedule_kind: str
    cron: str | None
    timezone: str
    enabled: bool
    max_contacts: int | None
    rejected_alert_threshold: float | None
    next_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    permissions: list[str] = Field(
        description="What the caller may do with it: view, edit, run, remove.")
    last_run: RunPublic | None


class RunRequest(BaseModel):
    dry_run: bool = Field(default=False, description="Report what would change; send nothing.")
    full_resync: bool = Field(default=False, description="Send every member again.")


class DuplicateRequest(BaseModel):
    name: Name


class FieldPublic(BaseModel):
    name: str
    max_length: int
    kind: str


def export_public(db: Session, export: Export, user: User) -> ExportPublic:
    connection = db.get(Connection, export.connection_id) if export.connection_id else None
    segments = [db.get(Segment, sid) for sid in export.segment_ids]
    last = list_runs(db, export=export, limit=1)
    return ExportPublic(
        id=export.id, name=export.name, connection_id=export.connection_id,
        connection_name=connection.display_name if connection else None,
        list_id=export.list_id, list_name=export.list_name, mapping=dict(export.mapping),
        segments=[SegmentRef(id=s.id, name=s.name, size=s.size) for s in segments if s],
        consent_field=export.consent_field, mode=export.mode, schedule_kind=export.schedule_kind,
        cron=export.cron, timezone=export.timezone, enabled=export.enabled,
        max_contacts=export.max_contacts,
        rejected_alert_threshold=export.rejected_alert_threshold,
        next_run_at=export.next_run_at, created_at=export.created_at,
        updated_at=export.updated_at,
        permissions=service.permissions(user, export, connection),
        last_run=run_public(db, last[0], export) if last else None)


def spec_from(db: Session, services: AppServices, user: User, body: ExportIn,
              current: Export | None = None) -> service.ExportSpec:
    """The export spec of a request, with the list checked (or created) in the account.

    The caller must be allowed to use the connection before anything is asked of Constant
    Contact on its behalf.
    """
    connection = db.get(Connection, body.connection_id)
    if connection is None:
        raise NotFoundError(f"No connection {body.connection_id!r}", field="connection_id")
    require_usable(user, connection)
    list_id, list_name = body.list_id, None
    if current is not None and body.list_id and body.list_id.lower() == current.list_id and (
            current.connection_id == connection.id):
        list_name = current.list_name  # unchanged: no need to ask the account again
    else:
        chosen = resolve_list(connection, settings=services.settings,
                              engine=services.runtime.engine, list_id=body.list_id,
                              create_name=body.create_list_name)
        list_id, list_name = chosen.list_id, chosen.name
    assert list_id is not None
    return service.ExportSpec(
        name=body.name, connection_id=connection.id, list_id=list_id, list_name=list_name,
        mapping=dict(body.mapping), segment_ids=list(body.segment_ids),
        consent_field=body.consent_field, mode=body.mode, schedule_kind=body.schedule_kind,
        cron=body.cron, timezone=body.timezone, enabled=body.enabled,
        max_contacts=body.max_contacts, rejected_alert_threshold=body.rejected_alert_threshold)


@router.get("")
def exports(db: Db, user: CurrentUser) -> list[ExportPublic]:
    """Every export with its status, schedule, last run and the caller's permissions."""
    return [export_public(db, e, user) for e in service.list_exports(db)]


@router.get("/fields")
def fields(_user: CurrentUser) -> list[FieldPublic]:
    """The Constant Contact fields a mapping may fill (plus cf:<custom field>)."""
    return [FieldPublic(name=f.name, max_length=f.max_length, kind=f.kind)
            for f in FIELDS.values()]


@router.post("", status_code=status.HTTP_201_CREATED)
def add_export(body: ExportIn, db: Db, services: Services, user: EditorUser) -> ExportPublic:
    """Save an export destination (saving does not run it)."""
    export = service.create_export(db, actor=user, spec=spec_from(db, services, user, body),
                                   profile_columns=services.runtime.store.schema())
    db.commit()
    return export_public(db, export, user)


@router.get("/{export_id}")
def export(export_id: ObjectId, db: Db, user: CurrentUser) -> ExportPublic:
    """One export."""
    return export_public(db, service.get_export(db, name_or_id=export_id), user)


@router.put("/{export_id}")
def edit_export(export_id: ObjectId, body: ExportIn, db: Db, services: Services,
                user: EditorUser) -> ExportPublic:
    """Change everything about an export."""
    current = service.get_export(db, name_or_id=export_id)
    service.require_manage(db, user, current)
    updated = service.update_export(db, actor=user, export=current,
                                    spec=spec_from(db, services, user, body, current),
                                    profile_columns=services.runtime.store.schema())
    db.commit()
    return export_public(db, updated, user)


@router.delete("/{export_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_export(export_id: ObjectId, db: Db, user: EditorUser) -> None:
    """Stop an export for good and purge what was stored for it (the list is untouched)."""
    service.remove_export(db, actor=user, export=service.get_export(db, name_or_id=export_id))
    db.commit()


@router.post("/{export_id}/duplicate", status_code=status.HTTP_201_CREATED)
def duplicate(export_id: ObjectId, body: DuplicateRequest, db: Db,
              user: EditorUser) -> ExportPublic:
    """Copy an export under a new name; the copy starts disabled."""
    copy = service.duplicate_export(db, actor=user,
                                    export=service.get_export(db, name_or_id=export_id),
                                    name=body.name)
    db.commit()
    return export_public(db, copy, user)


@router.post("/{export_id}/runs", status_code=status.HTTP_202_ACCEPTED)
def start_run(export_id: ObjectId, body: RunRequest, db: Db, services: Services,
              user: CurrentUser) -> RunPublic:
    """Run an export now (or dry-run it); a worker picks the run up."""
    export = service.get_export(db, name_or_id=export_id)
    run = request_run(db, actor=user, export=export, dry_run=body.dry_run,
                      full_resync=body.full_resync)
    db.commit()
    services.queue.enqueue_run(run.id)
    db.refresh(run)  # a worker may have picked it up already
    return run_public(db, run, export)
