"""Run details: live progress, counts, activities, rejected rows, CSV, past runs chart."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from segment_export.access import permissions
from segment_export.api.deps import CurrentUser, Db, Services
from segment_export.api.routes.runs import rejected_csv_download, run_report
from segment_export.api.types import ObjectId
from segment_export.db.models import Connection, Export
from segment_export.exports import runs as service
from segment_export.exports.engine import TERMINAL
from segment_export.exports.runs import COUNT_LABELS
from segment_export.exports.validate import REASONS
from segment_export.languages import N_
from segment_export.web.pages.exports import runs_chart
from segment_export.web.render import language_of, redirect, render, translate

router = APIRouter(prefix="/runs", include_in_schema=False)

@router.get("/{run_id}")
def run_page(request: Request, run_id: ObjectId, db: Db, user: CurrentUser) -> Response:
    """One run: progress while it works, then its report."""
    run = service.get_run(db, run_id=run_id)
    export = db.get(Export, run.export_id)
    assert export is not None  # runs cascade with their export
    connection = db.get(Connection, export.connection_id) if export.connection_id else None
    report = run_report(db, run)
    history = service.list_runs(db, export=export, limit=30)
    return render(request, "runs/detail.html", run=run, export=export, report=report,
                  count_labels=[(k, label) for k, label in COUNT_LABELS if k in run.counts],
                  reasons=REASONS, finished=run.status in TERMINAL,
                  can_run="run" in permissions(user, export, connection),
                  chart=runs_chart(history, language=language_of(request)))


@router.post("/{run_id}/cancel")
def cancel(request: Request, run_id: ObjectId, db: Db, user: CurrentUser) -> Response:
    """Stop the run at its next batch boundary."""
    run = service.cancel_run(db, actor=user, run=service.get_run(db, run_id=run_id))
    db.commit()
    return redirect(f"/runs/{run.id}", notice=translate(
        request, N_("Cancellation requested: the run stops after its current batch; confirmed "
                    "batches stay delivered.")))


@router.get("/{run_id}/rejected.csv")
def rejected_csv(run_id: ObjectId, db: Db, services: Services,
                 _user: CurrentUser) -> StreamingResponse:
    """Download every rejected row with its reason (formula-safe CSV)."""
    return rejected_csv_download(services.runtime.sessions, service.get_run(db, run_id=run_id))
