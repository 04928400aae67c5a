"""Rendering pages: the Jinja environment, the context every page gets, notices and redirects."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from segment_export import __version__, languages
from segment_export.api.auth import CSRF_FIELD, Caller
from segment_export.languages import LANGUAGES, N_
from segment_export.users import Role

TEMPLATES_DIR = Path(__file__).with_name("templates")
STATIC_DIR = Path(__file__).with_name("static")
NOTICE_COOKIE = "se_notice"

STATUS_LABELS = {
    "queued": N_("Queued"), "running": N_("Running"), "paused": N_("Paused (daily quota)"),
    "succeeded": N_("Succeeded"),
    "succeeded_with_rejections": N_("Succeeded with rejections"), "failed": N_("Failed"),
    "cancelled": N_("Cancelled"), "skipped": N_("Skipped"), "pending": N_("Not authorized yet"),
    "connected": N_("Connected"), "reauthorization_needed": N_("Needs re-authorization"),
}
ROLE_LABELS = {"admin": N_("admin"), "contributor": N_("contributor"), "viewer": N_("viewer")}
TRIGGER_LABELS = {"manual": N_("manual"), "schedule": N_("schedule"), "refresh": N_("refresh"),
                  "run_all": N_("run all")}
PERMISSION_LABELS = {"view": N_("view"), "edit": N_("edit"), "run": N_("run"),
                     "remove": N_("remove")}
STATUS_TONES = {
    "succeeded": "ok", "connected": "ok", "succeeded_with_rejections": "warn", "skipped": "warn",
    "pending": "warn", "queued": "info", "running": "info", "paused": "warn", "failed": "bad",
    "cancelled": "muted",
    "reauthorization_needed": "bad",
}


@pass_context
def _when(context: Context, moment: datetime | None) -> str:
    return languages.when(moment, context.get("lang", languages.DEFAULT))


@pass_context
def _number(context: Context, value: object) -> str:
    return languages.number(value, context.get("lang", languages.DEFAULT))


@pass_context
def _run_message(context: Context, run: Any) -> str:
    """A run's message in the page language (its stored Text, else its English text)."""
    return languages.shown(run.message, run.message_text,
                           context.get("lang", languages.DEFAULT))


@pass_context
def _decimal2(context: Context, value: float) -> str:
    return languages.number(round(value, 2), context.get("lang", languages.DEFAULT))


def language_of(request: Request) -> str:
    """The page language: the signed-in user's setting, else the browser's, else English."""
    caller = caller_of(request)
    return languages.choose(caller.user.language if caller else None,
                            languages.from_accept_language(request.headers.get("accept-language")))


def translate(request: Request, message: str, /, **variables: Any) -> str:
    """``message`` (a catalogue msgid) in the page language, ``%(name)s`` filled in: for
    notices and errors that pages build in Python."""
    language = language_of(request)
    text = languages.translations(language).gettext(message)
    return text % languages.filled(variables, language) if variables else text


def number(value: object, request: Request) -> str:
    """A count as the page language groups it (for notices built in Python)."""
    return languages.number(value, language_of(request))


def page_gettext(language: str) -> dict[str, Any]:
    """``gettext``/``ngettext``/``_`` for one page, as Jinja's "newstyle" gettext: the result is
    autoescaped and ``%(name)s`` placeholders are filled (and escaped) from keyword arguments.

    Passed in each page's context rather than installed on the shared environment, so that two
    requests in different languages at once cannot see each other's catalogue."""
    catalogue = languages.translations(language)
    known = languages.msgids(language)

    @pass_context
    def gettext(context: Context, message: str, **variables: Any) -> str:
        if not message:  # gettext("") is the catalogue's header
            return message
        if message not in known:
            # Not ours (an error's text, a name): shown as text, escaped like any value.
            return message
        text: str = catalogue.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - our own catalogue, as Jinja does; values escape
        # Without values nothing is formatted: ``_(error.message)`` may hold a bare ``%``
        # (a trans block without values writes ``%`` as ``%%``).
        # A value that is a Text (a message inside the message) is shown in this language.
        return text % languages.filled(variables, language) if variables \
            else text.replace("%%", "%")

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int,
                 **variables: Any) -> str:
        variables.setdefault("num", n)
        text: str = catalogue.ngettext(singular, plural, n)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - our own catalogue, as Jinja does; values escape
        return text % variables

    return {"gettext": gettext, "ngettext": ngettext, "_": gettext}


def make_templates() -> Jinja2Templates:
    """The page templates, autoescaped, with the filters pages share."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.add_extension("jinja2.ext.i18n")
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = _when
    env.filters["number"] = _number
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    env.globals["STATUS_TONES"] = STATUS_TONES
    env.globals["version"] = __version__
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    env.globals["LANGUAGES"] = LANGUAGES
    env.globals["N_"] = N_  # marks a template's string for the catalogue; _() shows it
    env.globals["ROLE_LABELS"] = ROLE_LABELS
    env.globals["TRIGGER_LABELS"] = TRIGGER_LABELS
    env.globals["PERMISSION_LABELS"] = PERMISSION_LABELS
    env.filters["decimal2"] = _decimal2
    env.filters["run_message"] = _run_message
    return templates


def caller_of(request: Request) -> Caller | None:
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller


def nav_for(caller: Caller | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """The navigation a role sees: only sections it may open."""
    if caller is None:
        return []
    role = caller.user.role
    # Labels are catalogue msgids; base.html translates them.
    data = [(N_("Exports"), "/data/exports")]
    if role in (Role.ADMIN, Role.CONTRIBUTOR):
        data.insert(0, (N_("Segments"), "/data/segments"))
    sections = [(N_("Data"), data)]
    if role == Role.ADMIN:
        sections.append((N_("Admin"), [(N_("Connections"), "/admin/connections"),
                                       (N_("Users"), "/admin/users")]))
    settings = [(N_("Schedule"), "/settings/schedule")]
    if role == Role.ADMIN:
        settings.append((N_("Audit log"), "/settings/audit"))
    sections.append((N_("Settings"), settings))
    return sections


def render(request: Request, template: str, *, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A page with the shared context: caller, CSRF token, navigation and any notice."""
    caller = caller_of(request)
    notice = request.cookies.get(NOTICE_COOKIE)
    lang = language_of(request)
    response = request.app.state.templates.TemplateResponse(
        request, template,
        {"caller": caller, "user": caller.user if caller else None,
         "csrf_token": caller.csrf_token if caller else "", "nav": nav_for(caller),
         "path": request.url.path, "notice": unquote(notice)[:300] if notice else None,
         "lang": lang, **page_gettext(lang), **context},
        status_code=status)
    if notice:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"  # pages hold personal data
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language, Cookie"
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
