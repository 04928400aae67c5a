"""Admin > Users, and your own account (language, password, API tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from segment_export.api.auth import check_password_again, set_session_cookie, start_web_session
from segment_export.api.deps import AdminUser, CurrentUser, Db, Services
from segment_export.api.throttle import ThrottleUnavailableError, TooManyAttemptsError
from segment_export.api.types import ObjectId
from segment_export.db.models import User
from segment_export.errors import ConfigurationError, DataError, NotFoundError
from segment_export.languages import LANGUAGES, N_
from segment_export.users import (
    IssuedToken,
    Role,
    UserSpec,
    create_api_token,
    create_user,
    disable_user,
    generate_password,
    get_api_token,
    get_user,
    list_api_tokens,
    list_users,
    revoke_api_token,
    set_language,
    set_password,
)
from segment_export.web.render import redirect, render, translate

router = APIRouter(include_in_schema=False)


@router.get("/admin/users")
def users(request: Request, db: Db, _admin: AdminUser) -> Response:
    """Every user, their role and status; add and disable users."""
    return render(request, "users/list.html", users=list_users(db), roles=list(Role),
                  created=None, error=None, form={})


@router.post("/admin/users")
def add_user(request: Request, db: Db, admin: AdminUser,
             username: Annotated[str, Form(max_length=120)] = "",
             role: Annotated[Role, Form()] = Role.VIEWER,
             password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Add a user; without a password one is generated and shown once."""
    chosen = password or generate_password()
    try:
        user = create_user(
            db, spec=UserSpec(username=username, role=role, password=chosen), actor=admin
        )
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return render(
            request,
            "users/list.html",
            status=422,
            users=list_users(db),
            roles=list(Role),
            created=None,
            error=exc,
            form={"username": username, "role": role.value},
        )
    db.commit()
    return render(request, "users/list.html", users=list_users(db), roles=list(Role),
                  created={"username": user.username,
                           "password": None if password else chosen}, error=None, form={})


@router.post("/admin/users/{username}/disable")
def disable(request: Request, username: ObjectId, db: Db, admin: AdminUser) -> Response:
    """Disable a user: their sessions end at once."""
    disable_user(db, actor=admin, username=username)
    db.commit()
    return redirect("/admin/users", notice=f"Disabled {username!r}.")


@router.post("/admin/users/{username}/language")
def user_language(request: Request, username: ObjectId, db: Db, admin: AdminUser,
                  language: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Set another user's interface language (or "not chosen")."""
    target = get_user(db, username=username)
    set_language(db, actor=admin, user=target, language=language)
    db.commit()
    return redirect("/admin/users", notice=translate(
        request, N_("Language of %(name)s: %(language)s."), name=username,
        language=LANGUAGES.get(language, translate(request, N_("browser's choice")))))


def _account_page(request: Request, db: Db, user: User, *, status: int = 200,
                  error: Exception | None = None, issued: IssuedToken | None = None,
                  retry_after: float | None = None) -> Response:
    response = render(request, "account.html", status=status, error=error, issued=issued,
                      tokens=list_api_tokens(db, actor=user, user=user))
    if retry_after:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


@router.get("/account")
def account(request: Request, db: Db, user: CurrentUser) -> Response:
    """Your account: change your password and manage your API tokens."""
    return _account_page(request, db, user)


@router.post("/account/language")
def account_language(request: Request, db: Db, user: CurrentUser,
                     language: Annotated[str, Form(max_length=10)] = "") -> Response:
    """Choose your interface language (empty: follow the browser)."""
    try:
        set_language(db, actor=user, user=user, language=language)
    except DataError as exc:
        db.rollback()
        return _account_page(request, db, user, status=422, error=exc)
    db.commit()
    # The redirect renders in the new language: the notice is translated into it too.
    return redirect("/account", notice=translate(request, N_("Language saved.")))


@router.post("/account/tokens")
def new_token(request: Request, db: Db, services: Services, user: CurrentUser,
              name: Annotated[str, Form(max_length=120)] = "",
              password: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Issue an API token after asking for your password again; it is shown on this page once."""
    try:
        check_password_again(db, throttle=services.sign_ins, request=request, user=user,
                             password=password)
        issued = create_api_token(db, actor=user, user=user, name=name)
    except (TooManyAttemptsError, ThrottleUnavailableError, DataError) as exc:
        return _refused(request, db, user, exc)
    db.commit()
    return _account_page(request, db, user, issued=issued)


@router.post("/account/tokens/{token_id}/revoke")
def revoke(request: Request, token_id: ObjectId, db: Db, user: CurrentUser) -> Response:
    """Revoke one of your API tokens."""
    token = get_api_token(db, id_or_prefix=token_id)
    if token.user_id != user.id:
        raise NotFoundError(N_("No API token %(token)s"), values={"token": repr(token_id)})
    revoke_api_token(db, actor=user, token=token)
    db.commit()
    return redirect("/account", notice=f"Revoked the token {token.prefix}….")


@router.post("/account/password")
def change_password(request: Request, db: Db, services: Services, user: CurrentUser,
                    current: Annotated[str, Form(max_length=1024)] = "",
                    new: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Change your password. Your other sessions end and your API tokens are revoked; this
    browser stays signed in, with a new session."""
    try:
        check_password_again(db, throttle=services.sign_ins, request=request, user=user,
                             password=current)
        revoked = set_password(db, actor=user, user=user, password=new)
    except (TooManyAttemptsError, ThrottleUnavailableError, DataError) as exc:
        return _refused(request, db, user, exc)
    # set_password ended every session, this one too: this browser gets a fresh one.
    cookie, _ = start_web_session(db, user=user, settings=services.settings)
    db.commit()
    others = max(revoked.sessions - 1, 0)  # this browser's session was one of them
    tokens = revoked.tokens
    response = redirect("/account", notice=(
        "Password changed. You stay signed in here; "
        f"{_count(others, 'other session')} signed out and "
        f"{_count(tokens, 'API token')} revoked (create new tokens for your scripts)."))
    set_session_cookie(response, request, services.settings, cookie)
    return response


def _refused(request: Request, db: Db, user: User, exc: Exception) -> Response:
    """The account page again, saying why a change that asked for the password was refused;
    nothing of it is kept."""
    db.rollback()
    if isinstance(exc, TooManyAttemptsError):
        return _account_page(request, db, user, status=429, error=exc,
                             retry_after=exc.retry_after)
    if isinstance(exc, ThrottleUnavailableError):
        return _account_page(request, db, user, status=503, error=exc)
    return _account_page(request, db, user, status=422, error=exc)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
