"""Settings > Schedule (the system refresh) and Settings > Audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.responses import Response

from segment_export import audit
from segment_export.api.deps import AdminUser, CurrentUser, Db, Services
from segment_export.errors import ConfigurationError, DataError
from segment_export.languages import N_, when
from segment_export.scheduling.schedules import (
    get_refresh_schedule,
    set_refresh_schedule,
    system_refresh,
)
from segment_export.users import Role
from segment_export.web.render import language_of, number, redirect, render, translate

router = APIRouter(prefix="/settings", include_in_schema=False)


@router.get("/schedule")
def schedule(request: Request, db: Db, user: CurrentUser) -> Response:
    """When segments refresh and the exports scheduled with the refresh run."""
    return render(request, "settings/schedule.html", schedule=get_refresh_schedule(db),
                  can_edit=user.role == Role.ADMIN, error=None)


@router.post("/schedule")
def save_schedule(request: Request, db: Db, admin: AdminUser,
                  cron: Annotated[str, Form(max_length=120)] = "",
                  timezone: Annotated[str, Form(max_length=64)] = "UTC") -> Response:
    """Set the refresh schedule (an empty cron expression clears it)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        try:
            ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(N_("Unknown time zone %(zone)s"),
                                     values={"zone": repr(timezone)}, field="timezone") from exc
        result = set_refresh_schedule(db, actor=admin, cron=cron.strip() or None,
                                      timezone=timezone or "UTC")
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return render(request, "settings/schedule.html", status=422, can_edit=True, error=exc,
                      schedule=get_refresh_schedule(db), form={"cron": cron,
                                                               "timezone": timezone})
    db.commit()
    return redirect("/settings/schedule",
                    notice=translate(request, N_("Next refresh: %(moment)s."),
                                     moment=when(result.next_run_at, language_of(request)))
                    if result.next_run_at else translate(request,
                                                         N_("The refresh schedule is cleared.")))


@router.post("/schedule/refresh")
def refresh_now(request: Request, services: Services, _admin: AdminUser) -> Response:
    """Refresh every segment now and queue the exports scheduled with the refresh."""
    run_ids = system_refresh(services.runtime, enqueue=services.queue.enqueue_run)
    return redirect("/settings/schedule",
                    notice=translate(request, N_("Segments refreshed; export runs started: "
                                                 "%(count)s."),
                                     count=number(len(run_ids), request)))


@router.get("/audit")
def audit_log(request: Request, db: Db, _admin: AdminUser,
              target: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """Who changed what and every transfer of data out, newest first."""
    events = audit.list_events(db, limit=300, target_id=target or None)
    return render(request, "settings/audit.html", events=events, target=target)
