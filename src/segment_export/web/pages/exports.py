"""Data > Exports: add destination, the list with *Your permissions*, run, duplicate, remove."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from segment_export import access
from segment_export.api.deps import CurrentUser, Db, EditorUser, Services
from segment_export.api.state import AppServices
from segment_export.api.types import ObjectId
from segment_export.constant_contact import ContactList
from segment_export.db.models import AuditEvent, Connection, Export, Run, User
from segment_export.definitions import configuration
from segment_export.definitions import exports as service
from segment_export.definitions.configuration import ExportCreate, ExportUpdate
from segment_export.definitions.connections import usable_connections
from segment_export.definitions.lists import account_lists
from segment_export.definitions.mapping import FIELDS
from segment_export.errors import ConfigurationError, DataError, NotFoundError, SegmentExportError
from segment_export.exports.run_all import SKIP_LABELS, run_all
from segment_export.exports.runs import RunRequest, list_runs, request_run
from segment_export.languages import N_, message_text, short_when, translations
from segment_export.segments.service import list_segments
from segment_export.web.charts import Series, bar_chart
from segment_export.web.render import language_of, number, redirect, render, translate

router = APIRouter(prefix="/data/exports", include_in_schema=False)
ATTRIBUTE_FIELDS = [name for name in FIELDS if name != "email"]
SCHEDULES = {"manual": N_("Manual (run on demand)"),
             "refresh": N_("With every system refresh"),
             "cron": N_("On its own schedule (cron)")}


@dataclass
class ExportForm:
    """The add/edit destination form, as typed."""

    name: str = ""
    connection_id: str = ""
    list_choice: Literal["pick", "id", "create"] = "pick"
    list_pick: str = ""
    list_id_typed: str = ""
    list_new_name: str = ""
    email_column: str = ""
    attributes: list[tuple[str, str]] = field(default_factory=list)
    segment_ids: list[str] = field(default_factory=list)
    consent_field: str = ""
    mode: str = "add_update"
    schedule_kind: str = "manual"
    cron: str = ""
    timezone: str = "UTC"
    enabled: bool = True
    max_contacts: str = ""
    alert_threshold: str = ""
    phone_region: str = "US"

    @classmethod
    def of(cls, export: Export) -> ExportForm:
        mapping = dict(export.mapping)
        return cls(
            name=export.name, connection_id=export.connection_id or "", list_choice="pick",
            list_pick=export.list_id, list_id_typed=export.list_id,
            email_column=mapping.pop("email", ""), attributes=list(mapping.items()),
            segment_ids=list(export.segment_ids), consent_field=export.consent_field or "",
            mode=export.mode, schedule_kind=export.schedule_kind, cron=export.cron or "",
            timezone=export.timezone, enabled=export.enabled,
            max_contacts=str(export.max_contacts or ""),
            alert_threshold=str(export.rejected_alert_threshold or ""),
            phone_region=export.phone_region or "US")

    def mapping(self) -> dict[str, str]:
        mapping = {"email": self.email_column}
        for name, column in self.attributes:
            if name.strip() or column.strip():
                if name.strip() in mapping:
                    raise ConfigurationError(N_("The field %(name)s is mapped twice"),
                                             values={"name": repr(name)}, field=name)
                mapping[name.strip()] = column.strip()
        return mapping


# One whole sentence per field, so that a translation need not fit a field name into another.
_NOT_A_NUMBER = {"contact limit": N_("The contact limit must be a number"),
                 "alert threshold": N_("The alert threshold must be a number")}


def _number(text: str, what: str, kind: type[int] | type[float]) -> Any:
    if not text.strip():
        return None
    try:
        return kind(text.strip())
    except ValueError:
        raise DataError(_NOT_A_NUMBER[what], field=what) from None


def _read_form(
    name: Annotated[str, Form(max_length=200)] = "",
    connection_id: Annotated[str, Form(max_length=200)] = "",
    list_choice: Annotated[Literal["pick", "id", "create"], Form()] = "pick",
    list_pick: Annotated[str, Form(max_length=200)] = "",
    list_id_typed: Annotated[str, Form(max_length=200)] = "",
    list_new_name: Annotated[str, Form(max_length=200)] = "",
    email_column: Annotated[str, Form(max_length=200)] = "",
    attr_field: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    attr_column: Annotated[list[str], Form()] = [],  # noqa: B006
    segment_ids: Annotated[list[str], Form()] = [],  # noqa: B006
    consent_field: Annotated[str, Form(max_length=200)] = "",
    mode: Annotated[Literal["add_update", "mirror"], Form()] = "add_update",
    schedule_kind: Annotated[Literal["manual", "refresh", "cron"], Form()] = "manual",
    cron: Annotated[str, Form(max_length=120)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    enabled: Annotated[bool, Form()] = False,
    max_contacts: Annotated[str, Form(max_length=20)] = "",
    alert_threshold: Annotated[str, Form(max_length=20)] = "",
    phone_region: Annotated[str, Form(max_length=2)] = "US",
) -> ExportForm:
    return ExportForm(
        name=name, connection_id=connection_id, list_choice=list_choice, list_pick=list_pick,
        list_id_typed=list_id_typed, list_new_name=list_new_name, email_column=email_column,
        attributes=list(zip(attr_field, attr_column, strict=False)), segment_ids=segment_ids,
        consent_field=consent_field, mode=mode, schedule_kind=schedule_kind, cron=cron,
        timezone=timezone or "UTC", enabled=enabled, max_contacts=max_contacts,
        alert_threshold=alert_threshold, phone_region=phone_region or "US")


ExportFormData = Annotated[ExportForm, Depends(_read_form)]


def _data(form: ExportForm, current: Export | None) -> ExportCreate:
    """The form as the configuration the service checks (the same for the API and CLI)."""
    typed = {"pick": form.list_pick, "id": form.list_id_typed}.get(form.list_choice, "").strip()
    if form.list_choice == "create" and not form.list_new_name.strip():
        raise ConfigurationError(N_("Give the new list a name"), field="list_new_name")
    kind = ExportCreate if current is None else ExportUpdate
    return kind(
        name=form.name, connection_id=form.connection_id,
        list_id=typed if form.list_choice != "create" else None,
        create_list_name=form.list_new_name if form.list_choice == "create" else None,
        mapping=form.mapping(), segment_ids=form.segment_ids,
        consent_field=form.consent_field or None,
        mode=form.mode, schedule_kind=form.schedule_kind,
        cron=form.cron or None, timezone=form.timezone, enabled=form.enabled,
        max_contacts=_number(form.max_contacts, "contact limit", int),
        rejected_alert_threshold=_number(form.alert_threshold, "alert threshold", float),
        phone_region=form.phone_region or "US")


def _save(db: Session, services: AppServices, user: User, form: ExportForm,
          export: Export | None) -> Export:
    return configuration.save_export(
        db, actor=user, data=_data(form, export), export=export, settings=services.settings,
        engine=services.runtime.engine, profile_columns=services.runtime.store.schema(),
        metrics=services.metrics)


def _form_page(request: Request, db: Session, services: AppServices, user: User,
               form: ExportForm, *, export: Export | None = None, status: int = 200,
               error: SegmentExportError | None = None) -> Response:
    options = sorted(usable_connections(db, actor=user), key=lambda c: c.display_name)
    chosen = next((c for c in options if c.id == form.connection_id), None)
    lists: list[ContactList] = []
    list_error = None
    if chosen is not None:
        try:
            lists = account_lists(chosen, settings=services.settings,
                                  engine=services.runtime.engine, metrics=services.metrics)
        except SegmentExportError as exc:
            # The error's message (not its hint) in the page's language, values as written.
            list_error = message_text(exc).in_language(language_of(request))
            db.rollback()
    segments = list_segments(db)
    limit = services.settings.max_contacts_per_export
    return render(request, "exports/form.html", status=status, form=form, export=export,
                  connections=options, chosen=chosen, lists=lists, list_error=list_error,
                  segments=segments, columns=services.runtime.store.schema(),
                  fields=ATTRIBUTE_FIELDS, schedules=SCHEDULES, error=error, limit=limit)


def _rows(db: Session, user: User, exports: list[Export]) -> list[dict[str, Any]]:
    rows = []
    for export in exports:
        connection = db.get(Connection, export.connection_id) if export.connection_id else None
        last = list_runs(db, export=export, limit=1)
        rows.append({"export": export, "connection": connection,
                     "last": last[0] if last else None,
                     "permissions": access.permissions(user, export, connection)})
    return rows


def runs_chart(runs: list[Run], *, language: str, chart_id: str = "runs-chart") -> Any:
    """Exported and rejected contacts of past runs, oldest first (words in ``language``)."""
    done = [r for r in reversed(runs) if not r.dry_run and r.finished_at is not None]
    if not done:
        return None
    t = translations(language).gettext
    return bar_chart(
        chart_id=chart_id, title=t(N_("Exported and rejected contacts per run")),
        labels=[short_when(r.queued_at, language) for r in done],
        series=[Series(t(N_("Exported")), [int(r.counts.get("sent", 0)) for r in done],
                       "series-a"),
                Series(t(N_("Rejected")), [int(r.counts.get("rejected_locally", 0))
                                    + int(r.counts.get("rejected_by_constant_contact", 0))
                                    for r in done], "series-b")])


def _run_all_summary(db: Session, user: User, event_id: int | None) -> dict[str, Any] | None:
    """What the caller's own Run all ``event_id`` did, as its audit event recorded it."""
    event = db.get(AuditEvent, event_id) if event_id is not None else None
    if event is None or event.action != "exports.run_all" or event.actor_id != user.id:
        return None
    return event.details


@router.get("")
def exports(request: Request, db: Db, user: CurrentUser,
            summary: Annotated[int | None, Query(alias="run_all")] = None) -> Response:
    """Every export: status, schedule, last run and what you may do with it (and, after Run
    all, what it did)."""
    can_add = user.role != "viewer" and bool(usable_connections(db, actor=user))
    rows = _rows(db, user, service.list_exports(db))
    return render(request, "exports/list.html", rows=rows, schedules=SCHEDULES,
                  can_add=can_add, can_run_all=any("run" in r["permissions"] for r in rows),
                  run_all=_run_all_summary(db, user, summary), skip_labels=SKIP_LABELS)


@router.post("/run-all")
def run_all_exports(request: Request, db: Db, services: Services,
                    user: EditorUser) -> Response:
    """Refresh the segments, then queue a run of every enabled export you may run."""
    result = run_all(db, actor=user, store=services.runtime.store,
                     enqueue=services.queue.enqueue_run)
    queued, skipped = len(result.queued), len(result.skipped)
    return redirect(f"/data/exports?run_all={result.audit_event_id}",
                    notice=translate(request, N_("Run all: %(queued)s, %(skipped)s."),
                                     queued=translate(request, N_("%(count)s run queued")
                                                      if queued == 1 else
                                                      N_("%(count)s runs queued"),
                                                      count=number(queued, request)),
                                     skipped=translate(request, N_("%(count)s export skipped")
                                                       if skipped == 1 else
                                                       N_("%(count)s exports skipped"),
                                                       count=number(skipped, request))))


@router.get("/new")
def new_export(request: Request, db: Db, services: Services, user: EditorUser,
               connection: str | None = None) -> Response:
    """Add destination: connection, list, data matching, segments, mode, schedule."""
    form = ExportForm(connection_id=connection or "")
    if not form.connection_id:
        options = usable_connections(db, actor=user)
        if len(options) == 1:
            form.connection_id = options[0].id
    return _form_page(request, db, services, user, form)


@router.post("/new")
def create_export(request: Request, db: Db, services: Services, user: EditorUser,
                  form: ExportFormData) -> Response:
    """Save the destination (saving does not run it)."""
    try:
        export = _save(db, services, user, form, None)
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return _form_page(request, db, services, user, form, status=422, error=exc)
    db.commit()
    return redirect(f"/data/exports/{export.id}",
                    notice=translate(request, N_("Saved the export '%(name)s'. It runs %(when)s."),
                                     name=export.name, when=_when(request, export)))


def _when(request: Request, export: Export) -> str:
    if export.schedule_kind == "cron":
        return translate(request, N_("on cron %(cron)s (%(zone)s)"), cron=export.cron,
                         zone=export.timezone)
    return translate(request, {"manual": N_("when you start it"),
                               "refresh": N_("with every system refresh")}[export.schedule_kind])


@router.get("/{export_id}")
def export_page(request: Request, export_id: ObjectId, db: Db, user: CurrentUser) -> Response:
    """An export: its settings, actions and run history with a chart."""
    export = service.get_export(db, name_or_id=export_id)
    connection = db.get(Connection, export.connection_id) if export.connection_id else None
    runs = list_runs(db, export=export, limit=30)
    return render(request, "exports/detail.html", export=export, connection=connection,
                  permissions=access.permissions(user, export, connection), runs=runs,
                  chart=runs_chart(runs, language=language_of(request)), schedules=SCHEDULES,
                  segments=[s for s in list_segments(db) if s.id in export.segment_ids],
                  show_connection=connection is not None and access.can_use(user, connection))


@router.get("/{export_id}/edit")
def edit_export(request: Request, export_id: ObjectId, db: Db, services: Services,
                user: EditorUser) -> Response:
    """The destination form, filled in."""
    export = service.get_export(db, name_or_id=export_id)
    access.require_manage(db, user, export)
    return _form_page(request, db, services, user, ExportForm.of(export), export=export)


@router.post("/{export_id}/edit")
def save_export(request: Request, export_id: ObjectId, db: Db, services: Services,
                user: EditorUser, form: ExportFormData) -> Response:
    """Save changes to an export."""
    export = service.get_export(db, name_or_id=export_id)
    access.require_manage(db, user, export)
    try:
        _save(db, services, user, form, export)
    except (ConfigurationError, DataError) as exc:
        if isinstance(exc, NotFoundError) and exc.context.get("export"):
            raise
        db.rollback()
        return _form_page(request, db, services, user, form, export=export, status=422,
                          error=exc)
    db.commit()
    return redirect(f"/data/exports/{export.id}", notice=translate(
        request, N_("Saved the export '%(name)s'."), name=export.name))


@router.post("/{export_id}/run")
def run_export(request: Request, export_id: ObjectId, db: Db, services: Services,
               user: CurrentUser, dry_run: Annotated[bool, Form()] = False,
               full_resync: Annotated[bool, Form()] = False) -> Response:
    """Run now (or dry-run): the run page shows its progress."""
    export = service.get_export(db, name_or_id=export_id)
    run = request_run(db, actor=user, export=export,
                      request=RunRequest(dry_run=dry_run, full_resync=full_resync))
    db.commit()
    services.queue.enqueue_run(run.id)
    return redirect(f"/runs/{run.id}",
                    notice=translate(request, N_("Dry run started: nothing is sent.")
                                     if dry_run else N_("Run started.")))


@router.post("/{export_id}/duplicate")
def duplicate(request: Request, export_id: ObjectId, db: Db, user: EditorUser) -> Response:
    """Copy the export (disabled) and open the copy to review it."""
    export = service.get_export(db, name_or_id=export_id)
    name, n = f"{export.name} (copy)", 2
    while db.query(Export.id).filter(Export.name == name).first() is not None:
        name, n = f"{export.name} (copy {n})", n + 1
    copy = service.duplicate_export(db, actor=user, export=export, name=name)
    db.commit()
    return redirect(f"/data/exports/{copy.id}/edit",
                    notice=translate(request, N_("Created '%(name)s', disabled until you "
                                                 "review and enable it."), name=copy.name))


@router.get("/{export_id}/remove")
def confirm_remove(request: Request, export_id: ObjectId, db: Db, user: EditorUser) -> Response:
    """Ask before removing an export."""
    export = service.get_export(db, name_or_id=export_id)
    access.require_manage(db, user, export)
    return render(request, "confirm.html", title=N_("Remove export"), subject=export.name,
                  message=N_("The export stops for good and what was stored for it (runs, "
                             "reports, delivery state) is purged. The Constant Contact list "
                             "itself is not touched."), action=f"/data/exports/{export.id}/remove",
                  button=N_("Remove export"), back=f"/data/exports/{export.id}")


@router.post("/{export_id}/remove")
def remove(request: Request, export_id: ObjectId, db: Db, user: EditorUser) -> Response:
    """Remove the export destination."""
    export = service.get_export(db, name_or_id=export_id)
    name = export.name
    service.remove_export(db, actor=user, export=export)
    db.commit()
    return redirect("/data/exports", notice=translate(request, N_("Removed the export "
                                                                  "'%(name)s'."), name=name))
