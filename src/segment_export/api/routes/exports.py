"""Export destinations: segments to a Constant Contact list, with *your permissions*."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from segment_export import access
from segment_export.api.deps import CurrentUser, Db, EditorUser, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.routes.runs import RunPublic, run_public
from segment_export.api.types import BIGINT_MAX, Cron, Name, ObjectId, TimeZone, Word
from segment_export.db.models import Connection, Export, Segment, User
from segment_export.definitions import exports as service
from segment_export.definitions.configuration import ExportCreate, ExportUpdate, save_export
from segment_export.definitions.mapping import FIELDS
from segment_export.exports import runs
from segment_export.exports.run_all import SkipReason, run_all
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
    phone_region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] = Field(
        default="US", description="Where a mapped sms_number without a country code is "
        "(ISO 3166 alpha-2); numbers must be US ones to be sent (docs/sms.md).")

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
    phone_region: str
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


class RunRequest(runs.RunRequest):
    # The service's RunRequest as the request body, under its name; a body's unknown fields are
    # ignored, as they always were here (a caller's typo still is an error in Python).
    model_config = ConfigDict(extra="ignore")


class DuplicateRequest(BaseModel):
    name: Name


class QueuedRunPublic(BaseModel):
    export_id: str
    export_name: str
    run_id: str


class SkippedExportPublic(BaseModel):
    export_id: str
    export_name: str
    reason: SkipReason
    message: str
    run_id: str | None = Field(description="The export's active run (reason already_running).")


class RefreshedSegmentPublic(BaseModel):
    segment_id: str
    name: str
    size: int | None
    error: str | None = Field(description="Why it could not be refreshed (its exports skipped).")


class RunAllPublic(BaseModel):
    queued: list[QueuedRunPublic]
    skipped: list[SkippedExportPublic]
    refreshed: list[RefreshedSegmentPublic] = Field(
        description="The segments refreshed (once each) before any run was queued.")


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
        consent_field=export.consent_field, phone_region=export.phone_region or "US",
        mode=export.mode, schedule_kind=export.schedule_kind,
        cron=export.cron, timezone=export.timezone, enabled=export.enabled,
        max_contacts=export.max_contacts,
        rejected_alert_threshold=export.rejected_alert_threshold,
        next_run_at=export.next_run_at, created_at=export.created_at,
        updated_at=export.updated_at,
        permissions=access.permissions(user, export, connection),
        last_run=run_public(db, last[0], export) if last else None)


def _data(body: ExportIn, kind: type[ExportCreate] = ExportCreate) -> ExportCreate:
    """The request as the configuration the service checks (the same for web and CLI)."""
    return kind.model_validate(body.model_dump())


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
    export = save_export(db, actor=user, data=_data(body), settings=services.settings,
                         engine=services.runtime.engine,
                         profile_columns=services.runtime.store.schema(),
                         metrics=services.metrics)
    db.commit()
    return export_public(db, export, user)


@router.post("/run-all", status_code=status.HTTP_202_ACCEPTED)
def start_all(db: Db, services: Services, user: EditorUser) -> RunAllPublic:
    """Refresh the segments, then queue a run of every enabled export you may run."""
    result = run_all(db, actor=user, store=services.runtime.store,
                     enqueue=services.queue.enqueue_run)
    return RunAllPublic(
        queued=[QueuedRunPublic(export_id=q.export_id, export_name=q.export_name,
                                run_id=q.run_id) for q in result.queued],
        skipped=[SkippedExportPublic(export_id=s.export_id, export_name=s.export_name,
                                     reason=s.reason, message=s.message, run_id=s.run_id)
                 for s in result.skipped],
        refreshed=[RefreshedSegmentPublic(segment_id=r.segment_id, name=r.name, size=r.size,
                                          error=r.error) for r in result.refreshed])


@router.get("/{export_id}")
def export(export_id: ObjectId, db: Db, user: CurrentUser) -> ExportPublic:
    """One export."""
    return export_public(db, service.get_export(db, name_or_id=export_id), user)


@router.put("/{export_id}")
def edit_export(export_id: ObjectId, body: ExportIn, db: Db, services: Services,
                user: EditorUser) -> ExportPublic:
    """Change everything about an export."""
    current = service.get_export(db, name_or_id=export_id)
    updated = save_export(db, actor=user, data=_data(body, ExportUpdate), export=current,
                          settings=services.settings, engine=services.runtime.engine,
                          profile_columns=services.runtime.store.schema(),
                          metrics=services.metrics)
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
    run = request_run(db, actor=user, export=export, request=body)
    db.commit()
    services.queue.enqueue_run(run.id)
    db.refresh(run)  # a worker may have picked it up already
    return run_public(db, run, export)
