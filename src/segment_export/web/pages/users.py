"""Admin > Users, and your own account (password, API tokens)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from segment_export.api.deps import AdminUser, CurrentUser, Db
from segment_export.api.types import ObjectId
from segment_export.errors import ConfigurationError, DataError, NotFoundError
from segment_export.users import (
    AuthenticationError,
    Role,
    authenticate,
    create_api_token,
    create_user,
    disable_user,
    generate_password,
    get_api_token,
    list_api_tokens,
    list_users,
    revoke_api_token,
    set_password,
)
from segment_export.web.render import redirect, render

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
        user = create_user(db, actor=admin, username=username, role=role, password=chosen)
    except (ConfigurationError, DataError) as exc:
        db.rollback()
        return render(request, "users/list.html", status=422, users=list_users(db),
                      roles=list(Role), created=None, error=exc,
                      form={"username": username, "role": role.value})
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


@router.get("/account")
def account(request: Request, db: Db, user: CurrentUser) -> Response:
    """Your account: change your password and manage your API tokens."""
    return render(request, "account.html", tokens=list_api_tokens(db, actor=user, user=user),
                  issued=None, error=None)


@router.post("/account/tokens")
def new_token(request: Request, db: Db, user: CurrentUser,
              name: Annotated[str, Form(max_length=120)] = "") -> Response:
    """Issue an API token; it is shown on this page once."""
    try:
        issued = create_api_token(db, actor=user, user=user, name=name)
    except DataError as exc:
        db.rollback()
        return render(request, "account.html", status=422, error=exc, issued=None,
                      tokens=list_api_tokens(db, actor=user, user=user))
    db.commit()
    return render(request, "account.html", tokens=list_api_tokens(db, actor=user, user=user),
                  issued=issued, error=None)


@router.post("/account/tokens/{token_id}/revoke")
def revoke(request: Request, token_id: ObjectId, db: Db, user: CurrentUser) -> Response:
    """Revoke one of your API tokens."""
    token = get_api_token(db, id_or_prefix=token_id)
    if token.user_id != user.id:
        raise NotFoundError(f"No API token {token_id!r}")
    revoke_api_token(db, actor=user, token=token)
    db.commit()
    return redirect("/account", notice=f"Revoked the token {token.prefix}….")


@router.post("/account/password")
def change_password(request: Request, db: Db, user: CurrentUser,
                    current: Annotated[str, Form(max_length=1024)] = "",
                    new: Annotated[str, Form(max_length=1024)] = "") -> Response:
    """Change your password (all your sessions end; sign in again)."""
    try:
        authenticate(db, username=user.username, password=current)
        set_password(db, actor=user, user=user, password=new)
    except (AuthenticationError, DataError) as exc:
        db.rollback()
        return render(request, "account.html", status=422, issued=None,
                      error=DataError("Your current password is not correct")
                      if isinstance(exc, AuthenticationError) else exc,
                      tokens=list_api_tokens(db, actor=user, user=user))
    db.commit()
    return redirect("/login", notice="Password changed; sign in with the new one.")
