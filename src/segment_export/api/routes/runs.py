"""Runs: history, live progress, cancel, the report and the rejected-rows CSV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker

from segment_export.api.deps import CurrentUser, Db, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.types import ObjectId, Word
from segment_export.db.models import Export, Run, User
from segment_export.definitions.exports import get_export
from segment_export.exports import runs as service
from segment_export.exports.engine import TERMINAL

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=PROBLEM_RESPONSES)
REJECTED_SAMPLE = 100


class Progress(BaseModel):
    to_send: int | None = Field(description="Contacts this run sends (known once diffed).")
    sent: int = Field(description="Contacts Constant Contact has confirmed so far.")
    fraction: float | None = Field(description="sent / to_send, when known.")


class RunPublic(BaseModel):
    id: str
    export_id: str
    export_name: str | None
    status: str
    finished: bool
    dry_run: bool
    full_resync: bool
    trigger: str
    requested_by: str | None
    attempt: int
    cancel_requested: bool
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, Any]
    stage_seconds: dict[str, Any]
    progress: Progress
    message: str | None
    error_kind: str | None


class Activity(BaseModel):
    seq: int
    kind: str
    activity_id: str | None
    state: str
    contacts: int
    counts: dict[str, Any]
    errors: list[Any]
    confirmed_at: datetime | None


class RejectedRowPublic(BaseModel):
    customer_id: str | None
    email: str | None
    reason: str
    detail: str | None


class RunReport(BaseModel):
    run: RunPublic
    activities: list[Activity]
    rejected_by_reason: dict[str, int]
    rejected_sample: list[RejectedRowPublic] = Field(
        description=f"The first {REJECTED_SAMPLE} rejected rows; the CSV has them all.")


def progress_of(run: Run) -> Progress:
    counts = run.counts
    to_send = counts.get("to_send") if isinstance(counts.get("to_send"), int) else None
    sent = int(counts.get("sent") or counts.get("sent_so_far") or 0)
    if run.status in {"succeeded", "succeeded_with_rejections"}:
        fraction: float | None = 1.0
    elif to_send is not None:
        fraction = 1.0 if to_send == 0 else min(1.0, sent / to_send)
    else:
        fraction = None
    return Progress(to_send=to_send, sent=sent, fraction=fraction)


def run_public(db: Session, run: Run, export: Export | None = None) -> RunPublic:
    export = export or db.get(Export, run.export_id)
    requester = db.get(User, run.requested_by_id) if run.requested_by_id else None
    return RunPublic(
        id=run.id, export_id=run.export_id, export_name=export.name if export else None,
        status=run.status, finished=run.status in TERMINAL, dry_run=run.dry_run,
        full_resync=run.full_resync, trigger=run.trigger,
        requested_by=requester.username if requester else None, attempt=run.attempt,
        cancel_requested=run.cancel_requested, queued_at=run.queued_at,
        started_at=run.started_at, finished_at=run.finished_at, counts=dict(run.counts),
        stage_seconds=dict(run.stage_seconds), progress=progress_of(run), message=run.message,
        error_kind=run.error_kind)


def run_report(db: Session, run: Run) -> RunReport:
    """Everything the run page shows: counts, activities and the rejected rows by reason."""
    details = service.run_details(db, run, sample=REJECTED_SAMPLE)
    return RunReport(
        run=run_public(db, run),
        activities=[Activity(seq=b.seq, kind=b.kind, activity_id=b.activity_id, state=b.state,
                             contacts=b.contacts, counts=dict(b.counts), errors=list(b.errors),
                             confirmed_at=b.confirmed_at) for b in details.batches],
        rejected_by_reason=details.rejected_by_reason,
        rejected_sample=[RejectedRowPublic(customer_id=r.customer_id, email=r.email,
                                           reason=r.reason, detail=r.detail)
                         for r in details.rejected_sample])


@router.get("")
def runs(db: Db, _user: CurrentUser, export_id: Annotated[Word | None, Query()] = None,
         limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RunPublic]:
    """Recent runs, newest first; of one export when ``export_id`` is given."""
    export = get_export(db, name_or_id=export_id) if export_id else None
    return [run_public(db, r) for r in service.list_runs(db, export=export, limit=limit)]


@router.get("/{run_id}")
def run(run_id: ObjectId, db: Db, _user: CurrentUser) -> RunPublic:
    """One run with its counts and live progress (poll it while ``finished`` is false)."""
    return run_public(db, service.get_run(db, run_id=run_id))


@router.post("/{run_id}/cancel")
def cancel(run_id: ObjectId, db: Db, user: CurrentUser) -> RunPublic:
    """Stop a queued or running run at its next batch boundary."""
    found = service.cancel_run(db, actor=user, run=service.get_run(db, run_id=run_id))
    db.commit()
    return run_public(db, found)


@router.get("/{run_id}/report")
def report(run_id: ObjectId, db: Db, _user: CurrentUser) -> RunReport:
    """The run report: counts that add up, activities, and rejected rows by reason."""
    return run_report(db, service.get_run(db, run_id=run_id))


@router.get("/{run_id}/rejected.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}},
                             "description": "customer_id, email, reason, detail"}})
def rejected_csv(run_id: ObjectId, db: Db, services: Services,
                 _user: CurrentUser) -> StreamingResponse:
    """Every rejected row with its reason, as CSV that is safe to open in a spreadsheet."""
    return rejected_csv_download(services.runtime.sessions, service.get_run(db, run_id=run_id))


def rejected_csv_download(sessions: sessionmaker[Session], run: Run) -> StreamingResponse:
    """A run's rejected rows as a CSV download (the API's and the run page's link)."""
    return StreamingResponse(
        rejected_chunks(sessions, run.id), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="rejected-{run.id}.csv"'})


def rejected_chunks(sessions: sessionmaker[Session], run_id: str) -> Iterator[str]:
    """CSV chunks read through a session of their own: the response outlives the request's."""
    with sessions() as session:
        found = session.get(Run, run_id)
        assert found is not None
        yield from service.rejected_rows_csv(session, run=found)
