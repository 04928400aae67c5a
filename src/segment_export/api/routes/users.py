"""Users (admins manage them) and the caller's own account and API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from segment_export.api.auth import check_password_again
from segment_export.api.deps import AdminUser, CurrentUser, Db, Services
from segment_export.api.errors import PROBLEM_RESPONSES, TOO_MANY_ATTEMPTS
from segment_export.api.types import Name, ObjectId
from segment_export.db.models import ApiToken, User
from segment_export.errors import NotFoundError
from segment_export.languages import N_
from segment_export.users import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Role,
    UserSpec,
    create_api_token,
    create_user,
    disable_user,
    get_api_token,
    get_user,
    list_api_tokens,
    list_users,
    revoke_api_token,
    set_password,
)

router = APIRouter(prefix="/api", tags=["users"], responses=PROBLEM_RESPONSES)
Username = Annotated[str, Path(min_length=1, max_length=120, pattern=r"^[^\x00-\x20\x7f]+$")]
Password = Annotated[SecretStr, Field(min_length=MIN_PASSWORD_LENGTH,
                                      max_length=MAX_PASSWORD_LENGTH)]


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    role: Role
    disabled: bool
    email: str | None
    created_at: datetime


class UserCreate(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[^\x00-\x20\x7f]+$")]
    role: Role
    password: Password
    email: Annotated[str, Field(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None


class PasswordChange(BaseModel):
    password: Password


class TokenCreate(BaseModel):
    name: Name = Field(description="What the token is for (shown in lists).")
    password: SecretStr = Field(
        min_length=1, max_length=MAX_PASSWORD_LENGTH,
        description="Your password, asked again: a stolen token or session alone cannot "
        "issue tokens. Wrong ones are counted like failed sign-ins (429 past the limit).")


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenPublic):
    token: str = Field(description="The token itself: shown this once, never again.")


def _public(user: User) -> UserPublic:
    return UserPublic.model_validate(user)


@router.get("/users")
def users(db: Db, _admin: AdminUser) -> list[UserPublic]:
    """Every user with their role (admins only)."""
    return [_public(u) for u in list_users(db)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def add_user(body: UserCreate, db: Db, admin: AdminUser) -> UserPublic:
    """Add a user with a role and a password (admins only)."""
    user = create_user(
        db,
        spec=UserSpec(
            username=body.username,
            role=body.role,
            password=body.password.get_secret_value(),
            email=body.email,
        ),
        actor=admin,
    )
    db.commit()
    return _public(user)


@router.get("/users/{username}")
def user(username: Username, db: Db, _admin: AdminUser) -> UserPublic:
    """One user (admins only)."""
    return _public(get_user(db, username=username))


@router.post("/users/{username}/disable")
def disable(username: Username, db: Db, admin: AdminUser) -> UserPublic:
    """Disable a user: their sessions end and their tokens stop working (admins only)."""
    user = disable_user(db, actor=admin, username=username)
    db.commit()
    return _public(user)


@router.put("/users/{username}/password", status_code=status.HTTP_204_NO_CONTENT)
def change_password(username: Username, body: PasswordChange, db: Db,
                    admin: AdminUser) -> None:
    """Set a user's password: their browser sessions end and their API tokens are revoked
    (yours too, when you set your own: sign in and create new ones) (admins only)."""
    set_password(db, actor=admin, user=get_user(db, username=username),
                 password=body.password.get_secret_value())
    db.commit()


@router.get("/me")
def me(user: CurrentUser) -> UserPublic:
    """The signed-in user."""
    return _public(user)


@router.get("/me/tokens")
def my_tokens(db: Db, user: CurrentUser) -> list[TokenPublic]:
    """The caller's API tokens, newest first."""
    return [TokenPublic.model_validate(t) for t in list_api_tokens(db, actor=user, user=user)]


@router.post("/me/tokens", status_code=status.HTTP_201_CREATED, responses=TOO_MANY_ATTEMPTS)
def new_token(body: TokenCreate, request: Request, db: Db, services: Services,
              user: CurrentUser) -> TokenIssued:
    """Issue an API token acting as the caller, after checking the caller's password again;
    the token is in this answer only."""
    check_password_again(db, throttle=services.sign_ins, request=request, user=user,
                         password=body.password.get_secret_value())
    issued = create_api_token(db, actor=user, user=user, name=body.name)
    db.commit()
    return TokenIssued(**TokenPublic.model_validate(issued.token).model_dump(),
                       token=issued.secret)


@router.delete("/me/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: ObjectId, db: Db, user: CurrentUser) -> None:
    """Revoke one of the caller's API tokens."""
    token = _own_token(db, user, token_id)
    revoke_api_token(db, actor=user, token=token)
    db.commit()


def _own_token(db: Db, user: User, token_id: str) -> ApiToken:
    token = get_api_token(db, id_or_prefix=token_id)
    if token.user_id != user.id:
        # Someone else's token is reported as absent, not as forbidden: ids are not disclosed.
        raise NotFoundError(N_("No API token %(token_id)s"),
                            values={"token_id": repr(token_id)}, token=token_id)
    return token

