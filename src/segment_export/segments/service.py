"""Segment services: create, edit, list, show, delete and preview, over the state store.

The caller owns the unit of work: these flush, and the API route, the page or the command
commits (or, on an error, rolls back)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SkipValidation
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.db.after_commit import after_commit
from segment_export.db.models import Segment, SegmentSize, User, new_id
from segment_export.errors import ConfigurationError, DataError, NotFoundError
from segment_export.languages import N_
from segment_export.profiles.store import ProfileStore
from segment_export.segments import unsubscribed
from segment_export.segments.compiler import compile_segment, to_sql
from segment_export.segments.dependents import (
    DependentExport,
    dependent_exports,
    require_may_change,
)
from segment_export.segments.refresh import RefreshResult, refresh_segment
from segment_export.segments.rules import Rule, parse_rule
from segment_export.users import Role, require_role

MAX_NAME = 200
MAX_PREVIEW_ROWS = 1000

RuleInput = Rule | Mapping[str, Any] | str


@dataclass(frozen=True)
class Preview:
    """A segment's live member count and a few sample profiles (lowest ids first)."""

    count: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    sql: str = ""


def _clean_name(name: str) -> str:
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise DataError(N_("A segment needs a name"), field="name")
    if len(cleaned) > MAX_NAME:
        raise DataError(N_("A segment name has at most %(most)s characters"),
                        values={"most": MAX_NAME}, field="name")
    if any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise DataError(N_("A segment name cannot hold control characters"), field="name")
    return cleaned


def _definition(
    session: Session, store: ProfileStore, *, rule: RuleInput | None, expression: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """Check a definition against the profiles and return what is stored (rule JSON or text)."""
    if (rule is None) == (expression is None):
        raise DataError(N_("Give a segment either a rule or an expression (exactly one)"),
                        field="rule")
    schema = store.schema()
    if not schema:
        raise ConfigurationError(
            N_("No profiles have been imported yet, so the segment's fields cannot be checked"),
            hint=N_("Run `segment-export profiles import FILE` (or `profiles generate`) first."),
        )
    if rule is not None:
        parsed = parse_rule(rule)
        condition = compile_segment(schema=schema, rule=parsed)
        stored: tuple[dict[str, Any] | None, str | None] = (parsed.to_json(), None)
    else:
        assert expression is not None
        condition = compile_segment(schema=schema, expression=expression)
        stored = (None, expression.strip())
    # Running it once catches what only the engine can see (a text compared with a number).
    if stored[0] is not None:
        unsubscribed.publish_for(session, store, [stored[0]])
    store.count_where(condition)
    return stored


def _name_taken(session: Session, name: str, *, other_than: str | None = None) -> None:
    query = select(Segment.id).where(Segment.name == name)
    found = session.scalar(query)
    if found is not None and found != other_than:
        raise DataError(N_("A segment named %(name)s already exists"),
                        values={"name": repr(name)}, field="name")


def _flush(session: Session, name: str) -> None:
    """Write the change so far (the caller commits); a name taken meanwhile is the same error
    as one taken before (and leaves the caller's unit of work rolled back)."""
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise DataError(N_("A segment named %(name)s already exists"),
                        values={"name": repr(name)}, field="name") from exc


class SegmentSpec(BaseModel):
    """A new segment as a person defines it (API, page and CLI alike): a rule or an
    expression, checked by ``create_segment`` against the profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str
    # Parsed by the service, so that a bad rule is the same DataError on every surface.
    rule: SkipValidation[RuleInput | None] = None
    expression: str | None = None
    description: str | None = None
    active: bool = True


class SegmentChanges(BaseModel):
    """What an edit of a segment changes; None leaves a setting as it is (``description=""``
    clears the description)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str | None = None
    rule: SkipValidation[RuleInput | None] = None
    expression: str | None = None
    description: str | None = None
    active: bool | None = None


def create_segment(session: Session, store: ProfileStore, *, spec: SegmentSpec,
                   now: datetime | None = None, actor: User | None = None) -> Segment:
    """Create a segment from a rule or an expression, checked against the profiles.

    An active segment is evaluated at once, so an export never reads a segment that has no
    membership yet.
    """
    if actor is not None:
        require_role(actor, Role.ADMIN, Role.CONTRIBUTOR)
    name, description, active = _clean_name(spec.name), spec.description, spec.active
    _name_taken(session, name)
    stored_rule, stored_expression = _definition(session, store, rule=spec.rule,
                                                 expression=spec.expression)
    segment = Segment(
        id=new_id(),
        name=name,
        description=(description or "").strip() or None,
        rule=stored_rule,
        expression=stored_expression,
        active=active,
    )
    session.add(segment)
    audit.record(session, actor=actor, action="segment.create", target_type="segment",
                 target_id=segment.id, name=name, active=active)
    _flush(session, name)
    if active:
        refresh_segment(session, store, segment=segment, now=now)
    return segment


def update_segment(session: Session, store: ProfileStore, *, name_or_id: str,
                   changes: SegmentChanges, now: datetime | None = None,
                   actor: User | None = None) -> Segment:
    """Change a segment; a new rule or expression replaces the old one (either form).

    When the definition changes, or the segment
    is switched on, its membership is recomputed at once so exports never send an outdated
    definition. Any change of a segment that feeds exports needs the right to change every
    one of them (``actor`` None: the system itself).
    """
    segment = get_segment(session, name_or_id=name_or_id)
    if actor is not None:
        require_may_change(session, actor=actor, segment=segment)
    name, rule, expression = changes.name, changes.rule, changes.expression
    description, active = changes.description, changes.active
    if rule is not None and expression is not None:
        raise DataError(N_("Give either a rule or an expression, not both"), field="rule")
    if name is not None:
        cleaned = _clean_name(name)
        _name_taken(session, cleaned, other_than=segment.id)
        segment.name = cleaned
    if description is not None:
        segment.description = description.strip() or None
    changed = False
    if rule is not None or expression is not None:
        segment.rule, segment.expression = _definition(session, store, rule=rule,
                                                       expression=expression)
        changed = True
    if active is not None:
        changed = changed or (active and not segment.active)
        segment.active = active
    audit.record(session, actor=actor, action="segment.update", target_type="segment",
                 target_id=segment.id, name=segment.name,
                 changed=sorted(k for k, v in {"name": name, "rule": rule,
                                               "expression": expression,
                                               "description": description,
                                               "active": active}.items() if v is not None))
    _flush(session, segment.name)
    if changed and segment.active:
        refresh_segment(session, store, segment=segment, now=now)
    return segment


def delete_segment(
    session: Session, store: ProfileStore, *, name_or_id: str, actor: User | None = None
) -> None:
    """Delete a segment, its size history and its stored membership.

    The stored members go once the caller commits (the profile store is outside the state
    store's transaction). Refused while an export still sends the segment: removing it would
    silently shrink (or, in mirror mode, empty) that export's list. Someone who may not change
    one of those exports is refused first (PermissionDeniedError), as for an edit.
    """
    segment = get_segment(session, name_or_id=name_or_id)
    if actor is not None:
        require_may_change(session, actor=actor, segment=segment)
    users = [d.name for d in dependent_exports(session, segment=segment)]
    if users:
        raise ConfigurationError(
            N_("Segment %(name)s is used by export(s) %(exports)s"),
            values={"name": repr(segment.name), "exports": ", ".join(map(repr, users))},
            hint=N_("Remove the segment from those exports first."),
            exports=users,
        )
    segment_id = segment.id
    after_commit(session, lambda: store.drop_membership(segment_id))
    audit.record(session, actor=actor, action="segment.delete", target_type="segment",
                 target_id=segment.id, name=segment.name)
    session.delete(segment)
    session.flush()


def list_segments(session: Session, *, active: bool | None = None) -> list[Segment]:
    """Every segment by name; only active (or inactive) ones when ``active`` is given."""
    query = select(Segment).order_by(Segment.name)
    if active is not None:
        query = query.where(Segment.active.is_(active))
    return list(session.scalars(query).all())


def get_segment(session: Session, *, name_or_id: str) -> Segment:
    """A segment by id or by exact name; NotFoundError otherwise."""
    segment = session.get(Segment, name_or_id)
    if segment is None:
        segment = session.scalar(select(Segment).where(Segment.name == name_or_id.strip()))
    if segment is None:
        raise NotFoundError(N_("No segment named %(name)s"), values={"name": repr(name_or_id)},
                            segment=name_or_id)
    return segment


def preview_segment(
    session: Session,
    store: ProfileStore,
    *,
    rule: RuleInput | None = None,
    expression: str | None = None,
    name_or_id: str | None = None,
    limit: int = 10,
    now: datetime | None = None,
    actor: User | None = None,
) -> Preview:
    """Count and sample the members of an unsaved rule/expression, or of a saved segment
    (admins and contributors: the sample shows profiles' personal data)."""
    if actor is not None:
        require_role(actor, Role.ADMIN, Role.CONTRIBUTOR)
    if name_or_id is not None:
        if rule is not None or expression is not None:
            raise DataError(N_("Preview either a saved segment or a rule/expression"), field="rule")
        segment = get_segment(session, name_or_id=name_or_id)
        rule, expression = segment.rule, segment.expression
    schema = store.schema()
    if not schema:
        raise ConfigurationError(
            N_("No profiles have been imported yet"),
            hint=N_("Run `segment-export profiles import FILE` (or `profiles generate`) first."),
        )
    condition = compile_segment(schema=schema, rule=rule, expression=expression, now=now)
    if rule is not None:
        unsubscribed.publish_for(session, store, [rule])
    limit = max(0, min(limit, MAX_PREVIEW_ROWS))
    return Preview(
        count=store.count_where(condition),
        rows=store.sample_where(condition, limit) if limit else [],
        sql=to_sql(condition, store.dialect),
    )


def size_history(
    session: Session, *, segment_id: str, limit: int | None = None
) -> list[SegmentSize]:
    """A segment's sizes over time, oldest first (the last ``limit`` points when given)."""
    query = (
        select(SegmentSize)
        .where(SegmentSize.segment_id == segment_id)
        .order_by(SegmentSize.refreshed_at.desc(), SegmentSize.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.scalars(query).all()))


__all__ = [
    "DependentExport",
    "Preview",
    "RefreshResult",
    "create_segment",
    "delete_segment",
    "dependent_exports",
    "get_segment",
    "list_segments",
    "preview_segment",
    "require_may_change",
    "size_history",
    "update_segment",
]
