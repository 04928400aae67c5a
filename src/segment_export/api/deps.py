"""Dependencies every route shares, as ``Annotated`` aliases: the database session, the
services and the caller (signed in, with a role)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from segment_export.api.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    Caller,
    caller_from_request,
    check_csrf,
)
from segment_export.api.state import AppServices, services_of
from segment_export.db.models import User
from segment_export.languages import N_
from segment_export.users import AuthenticationError, Role, require_role

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _services(request: Request) -> AppServices:
    return services_of(request)


def _db(request: Request) -> Iterator[Session]:
    with services_of(request).runtime.sessions() as session:
        yield session


Services = Annotated[AppServices, Depends(_services)]
Db = Annotated[Session, Depends(_db)]


async def _presented_csrf(request: Request) -> str | None:
    """The CSRF token a request carries: the header (scripts) or the form field (forms)."""
    if request.method in SAFE_METHODS:
        return None
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(_FORM_TYPES):
        value = (await request.form()).get(CSRF_FIELD)  # starlette caches the parsed form
        return value if isinstance(value, str) else None
    return None


def _optional_caller(request: Request, db: Db) -> Caller | None:
    caller = caller_from_request(db, request)
    request.state.caller = caller  # pages render the user menu and CSRF field from it
    return caller


OptionalCaller = Annotated[Caller | None, Depends(_optional_caller)]


def _caller(request: Request, caller: OptionalCaller,
            csrf: Annotated[str | None, Depends(_presented_csrf)]) -> Caller:
    if caller is None:
        raise AuthenticationError(N_("Sign in first (or send an API token)"))
    if request.method not in SAFE_METHODS:
        check_csrf(caller, csrf)
    return caller


SignedIn = Annotated[Caller, Depends(_caller)]


def _user(caller: SignedIn) -> User:
    return caller.user


def _editor(caller: SignedIn) -> User:
    require_role(caller.user, Role.ADMIN, Role.CONTRIBUTOR)
    return caller.user


def _admin(caller: SignedIn) -> User:
    require_role(caller.user, Role.ADMIN)
    return caller.user


CurrentUser = Annotated[User, Depends(_user)]
"""Any signed-in user (viewer, contributor or admin)."""
EditorUser = Annotated[User, Depends(_editor)]
"""An admin or a contributor: people who manage segments and exports."""
AdminUser = Annotated[User, Depends(_admin)]
"""An admin."""
