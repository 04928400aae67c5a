"""The system refresh schedule (segments, then exports "with every refresh")."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from segment_export.api.deps import AdminUser, CurrentUser, Db, Services
from segment_export.api.errors import PROBLEM_RESPONSES
from segment_export.api.types import Cron, TimeZone
from segment_export.scheduling.schedules import (
    RefreshSchedule,
    get_refresh_schedule,
    set_refresh_schedule,
    system_refresh,
)

router = APIRouter(prefix="/api/schedule", tags=["schedule"], responses=PROBLEM_RESPONSES)


class SchedulePublic(BaseModel):
    cron: str | None = Field(description="When the system refresh runs; null: on demand only.")
    timezone: str
    next_run_at: datetime | None


class ScheduleUpdate(BaseModel):
    cron: Cron | None = Field(description="A cron expression such as '0 5 * * *'; null clears.")
    timezone: TimeZone = "UTC"


class RefreshStarted(BaseModel):
    run_ids: list[str] = Field(description="Runs queued for exports scheduled with the refresh.")


def _public(schedule: RefreshSchedule) -> SchedulePublic:
    return SchedulePublic(cron=schedule.cron, timezone=schedule.timezone,
                          next_run_at=schedule.next_run_at)


@router.get("")
def schedule(db: Db, _user: CurrentUser) -> SchedulePublic:
    """The system refresh schedule."""
    return _public(get_refresh_schedule(db))


@router.put("")
def set_schedule(body: ScheduleUpdate, db: Db, admin: AdminUser) -> SchedulePublic:
    """Set or clear the system refresh schedule (admins only)."""
    result = set_refresh_schedule(db, actor=admin, cron=body.cron, timezone=body.timezone)
    db.commit()
    return _public(result)


@router.post("/refresh")
def refresh_now(services: Services, _admin: AdminUser) -> RefreshStarted:
    """Refresh every segment now, then queue the exports scheduled with the refresh."""
    return RefreshStarted(run_ids=system_refresh(services.runtime,
                                                 enqueue=services.queue.enqueue_run))
