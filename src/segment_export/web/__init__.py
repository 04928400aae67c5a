"""The web UI: server-rendered pages over the same services as the API and the CLI."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from segment_export.web.pages import auth, connections, exports, runs, segments, settings, users
from segment_export.web.render import STATIC_DIR, make_templates, render

__all__ = ["error_page", "register"]


def register(app: FastAPI) -> None:
    """Add the pages, their templates and the static files to ``app``."""
    app.state.templates = make_templates()
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    for module in (auth, connections, segments, exports, runs, settings, users):
        app.include_router(module.router)


def error_page(request: Request, status: int, title: str, detail: str,
               hint: str | None) -> Response:
    """The HTML page every UI error is shown on."""
    return render(request, "error.html", status=status, code=status, title=title,
                  detail=detail, hint=hint)
