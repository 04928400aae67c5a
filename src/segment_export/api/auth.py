"""Who is calling: browser sessions (cookie + CSRF token) and API tokens (Bearer)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from segment_export.api.throttle import SignInThrottle, client_key
from segment_export.config import Settings
from segment_export.db.models import User, WebSession
from segment_export.db.types import utcnow
from segment_export.errors import PermissionDeniedError
from segment_export.languages import N_
from segment_export.users import AuthenticationError, confirm_password, user_for_token

SESSION_COOKIE = "se_session"
LOGIN_CSRF_COOKIE = "se_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The signed-in user, and the browser session when the call came with the cookie."""

    user: User
    web_session: WebSession | None = None

    @property
    def csrf_token(self) -> str:
        """The token every form and script of this session must send back."""
        return self.web_session.csrf_token if self.web_session is not None else ""


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def start_web_session(
    session: Session, *, user: User, settings: Settings, replacing: str | None = None,
    now: datetime | None = None,
) -> tuple[str, WebSession]:
    """A new session for ``user``; returns the cookie value (only its hash is stored).

    Any session the browser presented before signing in is deleted: an id planted before
    login never becomes a signed-in one (session fixation).
    """
    now = now or utcnow()
    if replacing:
        session.execute(delete(WebSession).where(WebSession.id_hash == _hash(replacing)))
    # Expired sessions of anyone are swept here rather than by a separate job.
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    cookie = secrets.token_urlsafe(32)
    web_session = WebSession(id_hash=_hash(cookie), user_id=user.id,
                             csrf_token=secrets.token_urlsafe(32), created_at=now,
                             expires_at=now + timedelta(hours=settings.session_hours))
    session.add(web_session)
    session.flush()
    return cookie, web_session


def end_web_session(session: Session, *, cookie: str) -> None:
    """Sign out: the session row goes, so the cookie is worthless even if kept."""
    session.execute(delete(WebSession).where(WebSession.id_hash == _hash(cookie)))


def caller_from_cookie(session: Session, *, cookie: str,
                       now: datetime | None = None) -> Caller | None:
    """The caller a session cookie names, or None when it is unknown, expired or disabled."""
    web_session = session.get(WebSession, _hash(cookie))
    if web_session is None:
        return None
    if web_session.expires_at <= (now or utcnow()):
        session.delete(web_session)
        session.commit()
        return None
    user = session.get(User, web_session.user_id)
    if user is None or user.disabled:
        return None
    return Caller(user, web_session)


def caller_from_request(session: Session, request: Request) -> Caller | None:
    """The caller of ``request``: an ``Authorization: Bearer`` token wins over the cookie.

    A Bearer header that does not hold a valid token is an error, never a fall-back to the
    cookie, so a script cannot silently act as whoever is signed in to the browser.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError(N_("Use 'Authorization: Bearer <API token>'"))
        user = user_for_token(session, secret=secret.strip())
        session.commit()  # last_used_at
        return Caller(user)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return caller_from_cookie(session, cookie=cookie)
    return None


def client_of(request: Request) -> str:
    """The throttle's name for the client of ``request``: its address as the server sees it
    (the peer, or what a trusted proxy says: SEGMENT_EXPORT_TRUSTED_PROXIES)."""
    return client_key(request.client.host if request.client else None)


def check_password_again(session: Session, *, throttle: SignInThrottle, request: Request,
                         user: User, password: str) -> None:
    """Ask a signed-in user for their password again before a change that needs it (a new
    password, a new API token): a stolen session or token alone cannot make them.

    Counted like a sign-in (the same buckets): TooManyAttemptsError past the limits,
    WrongPasswordError for a wrong password (which stays counted).
    """
    attempt = throttle.attempt(user.username, client_of(request))
    confirm_password(session, user=user, password=password)
    attempt.succeeded()


def check_csrf(caller: Caller, presented: str | None) -> None:
    """Refuse a state-changing browser request without this session's CSRF token."""
    if caller.web_session is None:
        return  # Bearer tokens are never sent by a browser on its own
    if not presented or not secrets.compare_digest(presented, caller.web_session.csrf_token):
        raise CsrfError(N_("The form is missing its security token or it expired; reload the "
                           "page and try again"))


class CsrfError(PermissionDeniedError):
    """A state-changing browser request came without the session's CSRF token."""

    hint = "Reload the page and submit the form again."


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Cookies are Secure when the app is reached over https (directly or by its public URL)."""
    if settings.public_url and settings.public_url.startswith("https://"):
        return True
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, settings: Settings,
                       cookie: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(settings.session_hours * 3600),
                        httponly=True, samesite="lax", secure=secure_cookies(request, settings),
                        path="/")


def clear_session_cookie(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(request, settings))
