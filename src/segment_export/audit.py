"""The audit log: who changed which configuration, and every transfer of data out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export.db.models import AuditEvent, User


def record(
    session: Session,
    *,
    actor: User | None,
    action: str,
    target_type: str | None = None,
    target_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit event to the session's transaction (it commits with the change it records).

    ``details`` must never carry secrets: callers pass names, counts and destinations only.
    """
    event = AuditEvent(
        actor_id=actor.id if actor else None,
        actor_name=actor.username if actor else "system",
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details,
    )
    session.add(event)
    return event


def list_events(
    session: Session, *, limit: int = 100, target_id: str | None = None
) -> list[AuditEvent]:
    """The newest events first, optionally about one object."""
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if target_id is not None:
        stmt = stmt.where(AuditEvent.target_id == target_id)
    return list(session.scalars(stmt))
