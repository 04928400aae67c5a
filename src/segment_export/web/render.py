"""Rendering pages: the Jinja environment, the context every page gets, notices and redirects."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from segment_export import __version__
from segment_export.api.auth import CSRF_FIELD, Caller
from segment_export.users import Role

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
NOTICE_COOKIE = "se_notice"

STATUS_LABELS = {
    "queued": "Queued", "running": "Running", "paused": "Paused (daily quota)",
    "succeeded": "Succeeded",
    "succeeded_with_rejections": "Succeeded with rejections", "failed": "Failed",
    "cancelled": "Cancelled", "skipped": "Skipped", "pending": "Not authorized yet",
    "connected": "Connected", "reauthorization_needed": "Needs re-authorization",
}
STATUS_TONES = {
    "succeeded": "ok", "connected": "ok", "succeeded_with_rejections": "warn", "skipped": "warn",
    "pending": "warn", "queued": "info", "running": "info", "paused": "warn", "failed": "bad",
    "cancelled": "muted",
    "reauthorization_needed": "bad",
}


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ("—" if value is None else str(value))


def make_templates() -> Jinja2Templates:
    """The page templates, autoescaped, with the filters pages share."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.filters["when"] = _when
    env.filters["number"] = _number
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    env.globals["STATUS_TONES"] = STATUS_TONES
    env.globals["version"] = __version__
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    return templates


def caller_of(request: Request) -> Caller | None:
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller


def nav_for(caller: Caller | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The navigation a role sees: only sections it may open."""
    if caller is None:
        return []
    role = caller.user.role
    data = [("Exports", "/data/exports")]
    if role in (Role.ADMIN, Role.CONTRIBUTOR):
        data.insert(0, ("Segments", "/data/segments"))
    sections = [("Data", data)]
    if role == Role.ADMIN:
        sections.append(("Admin", [("Connections", "/admin/connections"),
                                   ("Users", "/admin/users")]))
    settings = [("Schedule", "/settings/schedule")]
    if role == Role.ADMIN:
        settings.append(("Audit log", "/settings/audit"))
    sections.append(("Settings", settings))
    return sections


def render(request: Request, template: str, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A page with the shared context: caller, CSRF token, navigation and any notice."""
    caller = caller_of(request)
    notice = request.cookies.get(NOTICE_COOKIE)
    response = request.app.state.templates.TemplateResponse(
        request, template,
        {"caller": caller, "user": caller.user if caller else None,
         "csrf_token": caller.csrf_token if caller else "", "nav": nav_for(caller),
         "path": request.url.path, "notice": unquote(notice)[:300] if notice else None,
         **context},
        status_code=status)
    if notice:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"  # pages hold personal data
    assert isinstance(response, HTMLResponse)
    return response


def redirect(url: str, *, notice: str | None = None) -> Response:
    """See-other to ``url``, carrying a one-time notice for the next page."""
    response = RedirectResponse(url, status_code=303)
    if notice:
        response.set_cookie(NOTICE_COOKIE, quote(notice[:300]), max_age=60, httponly=True,
                            samesite="lax", path="/")
    return response


def safe_next(target: str | None) -> str:
    """A local path to return to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
