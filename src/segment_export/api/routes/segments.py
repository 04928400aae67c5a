"""Segments (admins and contributors): rules, live preview, size history; profile columns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from segment_export.api.deps import Db, EditorUser, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.types import LongText, Name, ObjectId, Word, plain
from segment_export.db.models import Segment, User
from segment_export.errors import DataError
from segment_export.segments import service
from segment_export.segments.dependents import (
    DependentExport,
    exports_by_segment,
    segment_permissions,
)
from segment_export.segments.rules import parse_rule

router = APIRouter(prefix="/api", tags=["segments"], responses=PROBLEM_RESPONSES)

RULE_DOC = ('The rule tree, e.g. {"all": [{"field": "country", "op": "eq", "value": "DE"}, '
            '{"field": "lifetime_value", "op": "gt", "value": 100}]}')




def _valid_rule(rule: dict[str, Any]) -> dict[str, Any]:
    # The rule model (shape, operators, value bounds) is checked with the rest of the body, so
    # a bad rule is a 422 naming body.rule; what depends on the profiles is checked later.
    try:
        parse_rule(rule)
    except DataError as exc:
        raise PydanticCustomError("invalid_rule", "{reason}",
                                  {"reason": exc.message}) from None
    return rule


RuleBody = Annotated[dict[str, Any], AfterValidator(_valid_rule)]


class SegmentCreate(BaseModel):
    name: Name
    rule: RuleBody | None = Field(default=None, description=RULE_DOC)
    expression: LongText | None = Field(
        default=None, description="Instead of a rule: a restricted SQL condition.")
    description: LongText | None = None
    active: bool = True


class SegmentUpdate(BaseModel):
    name: Name | None = None
    rule: RuleBody | None = Field(default=None, description=RULE_DOC)
    expression: LongText | None = None
    description: LongText | None = None
    active: bool | None = None


class SegmentExport(BaseModel):
    """An export that sends the segment (its connection is not shown)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    mode: str = Field(description="add_update, or mirror (also removes who leaves).")
    enabled: bool
    permissions: list[str] = Field(
        description="What the caller may do with the export: view, edit, run, remove.")


class SegmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    rule: dict[str, Any] | None
    expression: str | None
    active: bool
    size: int | None
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    exports: list[SegmentExport] = Field(
        description="The exports that send this segment: changing the segment changes what "
                    "they send.")
    permissions: list[str] = Field(
        description="What the caller may do with the segment: view, edit, delete. Changing a "
                    "segment needs the right to edit every export that sends it.")


class PreviewRequest(BaseModel):
    rule: RuleBody | None = Field(default=None, description=RULE_DOC)
    expression: LongText | None = None
    segment_id: Word | None = Field(default=None, description="Preview a saved segment instead.")
    limit: Annotated[int, Field(ge=0, le=100)] = 10


class PreviewPublic(BaseModel):
    count: int = Field(description="Profiles the rule matches right now.")
    rows: list[dict[str, Any]]
    sql: str


class SizePoint(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    refreshed_at: datetime
    size: int


class ProfileColumn(BaseModel):
    name: str
    type: str


def _public(segment: Segment, user: User, dependents: list[DependentExport]) -> SegmentPublic:
    fields = {name: getattr(segment, name) for name in SegmentPublic.model_fields
              if name not in ("exports", "permissions")}
    return SegmentPublic(
        **fields, exports=[SegmentExport.model_validate(d) for d in dependents],
        permissions=segment_permissions(user, dependents))


def _one(db: Session, segment: Segment, user: User) -> SegmentPublic:
    return _public(segment, user, service.dependent_exports(db, segment=segment, actor=user))


@router.get("/segments")
def segments(db: Db, user: EditorUser) -> list[SegmentPublic]:
    """Every segment with its last size and the exports that send it."""
    senders = exports_by_segment(db, user)
    return [_public(s, user, senders.get(s.id, [])) for s in service.list_segments(db)]


@router.post("/segments", status_code=status.HTTP_201_CREATED)
def add_segment(body: SegmentCreate, db: Db, services: Services,
                user: EditorUser) -> SegmentPublic:
    """Create a segment from a rule or an expression; an active one is evaluated at once."""
    # The request body has exactly the service's fields, with the API's bounds on top.
    created = service.create_segment(db, services.runtime.store,
                                     spec=service.SegmentSpec(**body.model_dump()), actor=user)
    db.commit()
    return _one(db, created, user)


@router.post("/segments/preview")
def preview(body: PreviewRequest, db: Db, services: Services, user: EditorUser) -> PreviewPublic:
    """The live member count and a sample of an unsaved rule (or of a saved segment)."""
    result = service.preview_segment(db, services.runtime.store, rule=body.rule,
                                     expression=body.expression, name_or_id=body.segment_id,
                                     limit=body.limit, actor=user)
    return PreviewPublic(count=result.count, rows=[plain(r) for r in result.rows],
                         sql=result.sql)


@router.get("/segments/{segment_id}")
def segment(segment_id: ObjectId, db: Db, user: EditorUser) -> SegmentPublic:
    """One segment, with the exports that send it and what the caller may do with it."""
    return _one(db, service.get_segment(db, name_or_id=segment_id), user)


@router.patch("/segments/{segment_id}")
def edit_segment(segment_id: ObjectId, body: SegmentUpdate, db: Db, services: Services,
                 user: EditorUser) -> SegmentPublic:
    """Change a segment (needs the right to edit every export that sends it)."""
    updated = service.update_segment(db, services.runtime.store, name_or_id=segment_id,
                                     changes=service.SegmentChanges(**body.model_dump()),
                                     actor=user)
    db.commit()
    return _one(db, updated, user)


@router.delete("/segments/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_segment(segment_id: ObjectId, db: Db, services: Services, user: EditorUser) -> None:
    """Delete a segment (refused while an export sends it, 403 for those who may not edit one)."""
    service.delete_segment(db, services.runtime.store, name_or_id=segment_id, actor=user)
    db.commit()


@router.get("/segments/{segment_id}/history")
def history(segment_id: ObjectId, db: Db, _user: EditorUser,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[SizePoint]:
    """The segment's size at each refresh, oldest first."""
    found = service.get_segment(db, name_or_id=segment_id)
    return [SizePoint.model_validate(p)
            for p in service.size_history(db, segment_id=found.id, limit=limit)]


@router.get("/profiles/columns")
def columns(services: Services, _user: EditorUser) -> list[ProfileColumn]:
    """The profile columns rules and mappings can use, with their types."""
    return [ProfileColumn(name=n, type=t) for n, t in services.runtime.store.schema().items()]
