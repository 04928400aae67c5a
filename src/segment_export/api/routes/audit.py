"""The audit log: every configuration change and every transfer of data out (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from segment_export import audit
from segment_export.api.deps import AdminUser, Db
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.types import Word

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=PROBLEM_RESPONSES)


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor_name: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]


@router.get("")
def events(db: Db, _admin: AdminUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
           target_id: Annotated[Word | None, Query()] = None) -> list[AuditEventPublic]:
    """The newest audit events first, optionally about one object (admins only)."""
    return [AuditEventPublic.model_validate(e)
            for e in audit.list_events(db, limit=limit, target_id=target_id)]
