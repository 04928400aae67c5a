"""Data > Segments: the rule builder with a live member count, preview and size history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from segment_export.api.deps import Db, EditorUser, Services
from segment_export.api.types import ObjectId, plain
from segment_export.db.models import Segment, User
from segment_export.errors import ConfigurationError, DataError, SegmentExportError
from segment_export.languages import N_, short_when
from segment_export.profiles import ProfileStore
from segment_export.segments import service
from segment_export.segments.dependents import segment_permissions
from segment_export.web.charts import line_chart
from segment_export.web.render import language_of, number, redirect, render, translate
from segment_export.web.rule_form import OPERATORS, ConditionRow, rows_from_rule, rule_from_rows

router = APIRouter(prefix="/data/segments", include_in_schema=False)
Kind = Literal["builder", "json", "expression"]


@dataclass
class SegmentForm:
    """What the segment form holds, as typed (re-shown unchanged when saving fails)."""

    name: str = ""
    description: str = ""
    active: bool = True
    kind: Kind = "builder"
    match: str = "all"
    rows: list[ConditionRow] = field(default_factory=lambda: [ConditionRow("", "eq", "")])
    rule_json: str = ""
    expression: str = ""

    def definition(self, schema: dict[str, str]) -> tuple[Any, str | None]:
        """(rule, expression) for the services, from whichever editor was used."""
        if self.kind == "expression":
            return None, self.expression
        if self.kind == "json":
            try:
                return json.loads(self.rule_json or "null"), None
            except json.JSONDecodeError as exc:
                raise DataError(N_("The rule is not valid JSON: %(error)s"),
                                values={"error": str(exc)}, field="rule") from exc
        return rule_from_rows(self.match, self.rows, schema), None

    @classmethod
    def of(cls, segment: Segment) -> SegmentForm:
        form = cls(name=segment.name, description=segment.description or "",
                   active=segment.active)
        if segment.expression is not None:
            form.kind, form.expression = "expression", segment.expression
            return form
        flat = rows_from_rule(segment.rule)
        if flat is None:
            form.kind, form.rule_json = "json", json.dumps(segment.rule, indent=2)
        else:
            form.match, form.rows = flat
        form.rule_json = json.dumps(segment.rule, indent=2)
        return form


def _read_form(
    name: Annotated[str, Form(max_length=200)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
    active: Annotated[bool, Form()] = False,
    kind: Annotated[Kind, Form()] = "builder",
    match: Annotated[Literal["all", "any"], Form()] = "all",
    cond_field: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    cond_op: Annotated[list[str], Form()] = [],  # noqa: B006
    cond_value: Annotated[list[str], Form()] = [],  # noqa: B006
    rule_json: Annotated[str, Form(max_length=200_000)] = "",
    expression: Annotated[str, Form(max_length=20_000)] = "",
) -> SegmentForm:
    rows = [ConditionRow(f, o, v)
            for f, o, v in zip(cond_field, cond_op, cond_value, strict=False)]
    return SegmentForm(name=name, description=description, active=active, kind=kind,
                       match=match, rows=rows or [ConditionRow("", "eq", "")],
                       rule_json=rule_json, expression=expression)


SegmentFormData = Annotated[SegmentForm, Depends(_read_form)]


def _senders(db: Db, segment: Segment | None, user: User | None) -> dict[str, Any]:
    """The exports the segment feeds and whether ``user`` may change it (for the templates)."""
    if segment is None or user is None:
        return {"dependents": [], "may_change": True}
    dependents = service.dependent_exports(db, segment=segment, actor=user)
    return {"dependents": dependents,
            "may_change": "edit" in segment_permissions(user, dependents)}


def _page(request: Request, services: Services, *, form: SegmentForm,
          segment: Segment | None = None, history: Any = None, status: int = 200,
          error: SegmentExportError | None = None, senders: dict[str, Any] | None = None,
          **preview: Any) -> Response:
    return render(request, "segments/form.html", status=status, form=form, segment=segment,
                  schema=services.runtime.store.schema(), operators=OPERATORS, error=error,
                  history_chart=history, **(senders or {"dependents": [], "may_change": True}),
                  **preview)


def _history_chart(request: Request, db: Db, segment: Segment) -> Any:
    points = service.size_history(db, segment_id=segment.id, limit=60)
    return line_chart(chart_id="size-history",
                      title=translate(request, N_("Size of %(name)s over time"),
                                      name=segment.name),
                      labels=[short_when(p.refreshed_at, language_of(request)) for p in points],
                      values=[p.size for p in points])


def _sample_columns(names: list[str], form: SegmentForm) -> list[str]:
    """The columns worth showing in a narrow sample: who it is, and what the rule looks at."""
    wanted = [*names[:1], *(n for n in ("email",) if n in names),
              *(row.field for row in form.rows if row.field in names)]
    return list(dict.fromkeys(wanted))[:4]


@router.get("")
def segments(request: Request, db: Db, services: Services, _user: EditorUser) -> Response:
    """Every segment with its size and last refresh."""
    return render(request, "segments/list.html", segments=service.list_segments(db),
                  has_profiles=bool(services.runtime.store.schema()))


def _definition(form: SegmentForm, store: ProfileStore) -> dict[str, Any]:
    """The form as the segment service's input (a new segment's or an edit's)."""
    rule, expression = form.definition(store.schema())
    return {"name": form.name, "rule": rule, "expression": expression,
            "description": form.description, "active": form.active}


@router.get("/new")
def new_segment(request: Request, services: Services, _user: EditorUser) -> Response:
    """An empty rule builder."""
    return _page(request, services, form=SegmentForm())


@router.post("/new")
def create_segment(request: Request, db: Db, services: Services, user: EditorUser,
                   form: SegmentFormData) -> Response:
    """Save a new segment; it is evaluated at once."""
    store = services.runtime.store
    try:
        segment = service.create_segment(
            db, store, spec=service.SegmentSpec(**_definition(form, store)), actor=user)
        db.commit()
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return _page(request, services, form=form, status=422, error=exc)
    return redirect(f"/data/segments/{segment.id}",
                    notice=translate(request, N_("Saved the segment '%(name)s' (%(count)s "
                                                 "members)."), name=segment.name,
                                     count=number(segment.size or 0, request)))


@router.post("/preview")
def preview(request: Request, db: Db, services: Services, user: EditorUser,
            form: SegmentFormData) -> Response:
    """The live member count and a sample for the rule as it stands in the form.

    The page's script asks for just the fragment (X-Fragment); without scripts the whole
    form comes back with the preview filled in.
    """
    store = services.runtime.store
    context: dict[str, Any] = {"result": None, "rows": [], "columns": [],
                               "preview_error": None}
    try:
        rule, expression = form.definition(store.schema())
        result = service.preview_segment(db, store, rule=rule, expression=expression, limit=5,
                                         actor=user)
    except (ConfigurationError, DataError) as exc:
        context["preview_error"] = exc
    else:
        rows = [plain(r) for r in result.rows]
        context.update(result=result, rows=rows,
                       columns=_sample_columns(list(rows[0]) if rows else [], form))
    if request.headers.get("x-fragment"):
        return render(request, "segments/_preview.html", **context)
    return _page(request, services, form=form, **context)


@router.get("/{segment_id}")
def segment(request: Request, segment_id: ObjectId, db: Db, services: Services,
            user: EditorUser) -> Response:
    """A segment: its rule in the builder, the live count, its size over time and the
    exports it feeds (a change would change what they send)."""
    found = service.get_segment(db, name_or_id=segment_id)
    return _page(request, services, form=SegmentForm.of(found), segment=found,
                 history=_history_chart(request, db, found), senders=_senders(db, found, user))


@router.post("/{segment_id}")
def save_segment(request: Request, segment_id: ObjectId, db: Db, services: Services,
                 user: EditorUser, form: SegmentFormData) -> Response:
    """Save changes; a new definition is evaluated at once."""
    found = service.get_segment(db, name_or_id=segment_id)
    store = services.runtime.store
    try:
        updated = service.update_segment(
            db, store, name_or_id=found.id,
            changes=service.SegmentChanges(**_definition(form, store)), actor=user)
        db.commit()
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return _page(request, services, form=form, segment=found, status=422, error=exc,
                     history=_history_chart(request, db, found),
                     senders=_senders(db, found, user))
    return redirect(f"/data/segments/{updated.id}", notice=translate(
        request, N_("Saved the segment '%(name)s'."), name=updated.name))


@router.get("/{segment_id}/delete")
def confirm_delete(request: Request, segment_id: ObjectId, db: Db,
                   user: EditorUser) -> Response:
    """Ask before deleting a segment, or say which exports stop it."""
    found = service.get_segment(db, name_or_id=segment_id)
    return render(request, "segments/delete.html", segment=found,
                  **_senders(db, found, user))


@router.post("/{segment_id}/delete")
def delete(request: Request, segment_id: ObjectId, db: Db, services: Services,
           user: EditorUser) -> Response:
    """Delete a segment (refused while an export sends it)."""
    found = service.get_segment(db, name_or_id=segment_id)
    service.delete_segment(db, services.runtime.store, name_or_id=found.id, actor=user)
    db.commit()
    return redirect("/data/segments", notice=translate(
        request, N_("Deleted the segment '%(name)s'."), name=found.name))
