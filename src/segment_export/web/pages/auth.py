"""Signing in and out, and the home page."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from segment_export.api.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    clear_session_cookie,
    client_of,
    end_web_session,
    secure_cookies,
    set_session_cookie,
    start_web_session,
)
from segment_export.api.deps import Db, OptionalCaller, Services, SignedIn
from segment_export.api.throttle import (
    ThrottleUnavailableError,
    TooManyAttemptsError,
)
from segment_export.languages import N_
from segment_export.users import AuthenticationError, authenticate
from segment_export.web.render import number, redirect, render, safe_next, translate

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)


@router.get("/")
def home(caller: OptionalCaller) -> Response:
    """Start at the exports (or at the sign-in page)."""
    return redirect("/data/exports" if caller else "/login")


def _login_page(request: Request, services: Services, *, next_url: str, status: int = 200,
                error: str | None = None, username: str = "") -> Response:
    # Before sign-in there is no session to hold a CSRF token: the form and a cookie carry the
    # same random value (double submit), so another site cannot post a login.
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, login_csrf=token, next_url=next_url,
                      error=error, username=username)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=secure_cookies(request, services.settings), path="/login")
    return response


@router.get("/login")
def login_form(request: Request, services: Services, caller: OptionalCaller,
               next: str | None = None) -> Response:
    """The sign-in page."""
    if caller is not None:
        return redirect(safe_next(next))
    return _login_page(request, services, next_url=safe_next(next))


@router.post("/login")
def login(request: Request, db: Db, services: Services,
          username: Annotated[str, Form(max_length=120)],
          password: Annotated[str, Form(max_length=1024)],
          login_csrf: Annotated[str, Form(max_length=100)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/") -> Response:
    """Check the password and start a new session (a fresh id: no session fixation)."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(login_csrf, expected):
        return _login_page(request, services, next_url=safe_next(next), status=403,
                           error=N_("The sign-in form expired; please try again."),
                           username=username)
    client = client_of(request)
    try:
        attempt = services.sign_ins.attempt(username, client)
    except TooManyAttemptsError as exc:
        log.warning("sign-in throttled for user name %r from %s", username[:120], client)
        wait = max(1, math.ceil((exc.retry_after or 1) / 60))  # whole minutes, rounded up
        response = _login_page(
            request, services, next_url=safe_next(next), status=429, username=username,
            error=translate(request, N_("Too many failed sign-ins. Try again in 1 minute.")
                            if wait == 1 else
                            N_("Too many failed sign-ins. Try again in %(count)s minutes."),
                            count=number(wait, request)))
        response.headers["Retry-After"] = str(int(exc.retry_after or 1))
        return response
    except ThrottleUnavailableError as exc:
        return _login_page(request, services, next_url=safe_next(next), status=503,
                           username=username, error=exc.message)
    try:
        user = authenticate(db, username=username, password=password)
    except AuthenticationError as exc:
        # The attempt stays counted: that is the failure.
        log.warning("sign-in refused for user name %r from %s", username[:120], client)
        db.commit()
        return _login_page(request, services, next_url=safe_next(next), status=401,
                           error=exc.message, username=username)
    attempt.succeeded()
    cookie, _ = start_web_session(db, user=user, settings=services.settings,
                                  replacing=request.cookies.get(SESSION_COOKIE))
    db.commit()
    response = redirect(safe_next(next))
    set_session_cookie(response, request, services.settings, cookie)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, db: Db, services: Services, _caller: SignedIn) -> Response:
    """End the session on the server and drop the cookie."""
    end_web_session(db, cookie=request.cookies.get(SESSION_COOKIE, ""))
    db.commit()
    response = redirect("/login", notice=translate(request, N_("You are signed out.")))
    clear_session_cookie(response, request, services.settings)
    return response
