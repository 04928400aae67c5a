"""Refresh: evaluate segments, store their membership, and record size and time."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlglot import exp

from segment_export.db.models import Segment, SegmentSize
from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_
from segment_export.profiles.store import ProfileStore
from segment_export.segments import unsubscribed
from segment_export.segments.compiler import compile_segment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshResult:
    """The outcome for one segment; ``error`` is set (and size None) when it could not run."""

    segment_id: str
    name: str
    size: int | None
    refreshed_at: datetime
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the membership was stored."""
        return self.error is None


def segment_condition(
    segment: Segment, *, schema: Mapping[str, str], now: datetime | None = None
) -> exp.Expr:
    """The checked condition of a stored segment, with relative dates anchored at ``now``."""
    if segment.rule is not None:
        return compile_segment(schema=schema, rule=segment.rule, now=now)
    if segment.expression is not None:
        return compile_segment(schema=schema, expression=segment.expression, now=now)
    raise DataError(N_("Segment %(name)s has neither a rule nor an expression"),
                    values={"name": repr(segment.name)},
                    field="rule")


def refresh_segment(
    session: Session,
    store: ProfileStore,
    *,
    segment: Segment,
    now: datetime | None = None,
    schema: Mapping[str, str] | None = None,
    suppressions_published: bool = False,
) -> RefreshResult:
    """Store one segment's membership now, set its size and time, and append to its history.

    A segment whose rule no longer fits the profiles (a column was dropped by a re-import)
    keeps its previous membership and reports the error instead. A rule testing
    ``unsubscribed_in_constant_contact`` first copies the suppression set to the store
    (unless ``suppressions_published``: the caller just did).
    """
    now = now or datetime.now(UTC)
    schema = store.schema() if schema is None else schema
    started = time.perf_counter()
    try:
        condition = segment_condition(segment, schema=schema, now=now)
        if not suppressions_published:
            unsubscribed.publish_for(session, store, [segment.rule])
        size = store.store_membership(segment.id, condition)
    except DataError as exc:
        log.warning("Segment %r was not refreshed: %s", segment.name, exc.message)
        return RefreshResult(segment.id, segment.name, None, now,
                             time.perf_counter() - started, exc.message)
    segment.size = size
    segment.refreshed_at = now
    session.add(SegmentSize(segment_id=segment.id, refreshed_at=now, size=size))
    session.flush()
    seconds = time.perf_counter() - started
    log.info("Segment %r refreshed: %d members in %.3f s", segment.name, size, seconds)
    return RefreshResult(segment.id, segment.name, size, now, seconds)


def refresh_segments(
    session: Session, store: ProfileStore, *, now: datetime | None = None
) -> list[RefreshResult]:
    """Refresh every active segment (by name order); one failing segment does not stop the rest."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise DataError("now must be an aware datetime", field="now")
    schema = store.schema()
    if not schema:
        raise ConfigurationError(
            N_("No profiles have been imported yet, so no segment can be refreshed"),
            hint=N_("Run `segment-export profiles import FILE` (or `profiles generate`) first."),
        )
    segments = session.scalars(
        select(Segment).where(Segment.active.is_(True)).order_by(Segment.name)
    ).all()
    try:
        published = unsubscribed.publish_for(session, store, [s.rule for s in segments])
    except DataError as exc:
        # Every other segment still refreshes; those testing the field report the error.
        log.warning("suppression set not copied to the profile store: %s", exc.message)
        published = False
    results = []
    for segment in segments:
        results.append(refresh_segment(session, store, segment=segment, now=now, schema=schema,
                                       suppressions_published=published))
        # Each segment's refresh is kept on its own: the memberships are already in the
        # profile store, and a later segment's failure must not undo an earlier one's size.
        session.commit()
    return results
