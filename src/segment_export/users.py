"""Users and roles (admin, contributor, viewer), their argon2 passwords and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.addresses import check_address
from segment_export.db.models import ApiToken, User, WebSession
from segment_export.db.types import utcnow
from segment_export.errors import (
    ConfigurationError,
    DataError,
    NotFoundError,
    PermissionDeniedError,
)
from segment_export.languages import LANGUAGES, N_
from segment_export.log import register_secret

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is an attack
TOKEN_PREFIX = "se_"  # noqa: S105 - how our tokens start, so scanners and people can spot them
# Writing last_used_at on every request would turn each API read into a write.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong name costs as long as a
    wrong password (made on first use: hashing takes a noticeable fraction of a second)."""
    return _hasher.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    ADMIN = "admin"
    CONTRIBUTOR = "contributor"
    VIEWER = "viewer"


class AuthenticationError(PermissionDeniedError):
    """Nobody is signed in, or the credentials given do not identify an active user."""

    hint = "Sign in again, or use a valid API token."


class WrongPasswordError(DataError):
    """A signed-in user was asked for their password again and gave a wrong one."""

    hint = "Type your current password (the one you sign in with)."


def require_role(user: User, *roles: Role) -> None:
    """Raise PermissionDeniedError unless ``user`` is active and holds one of ``roles``."""
    if user.disabled:
        raise PermissionDeniedError(N_("User %(name)s is disabled"),
                                    values={"name": repr(user.username)})
    if user.role not in {r.value for r in roles}:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDeniedError(
            N_("This needs the %(allowed)s role; %(name)s is a %(role)s"),
            values={"allowed": allowed, "name": repr(user.username), "role": user.role},
            username=user.username,
        )


def get_user(session: Session, *, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFoundError(N_("No user named %(name)s"), values={"name": repr(username)},
                            username=username)
    return user


def ensure_admin(session: Session, *, username: str = "admin") -> User:
    """The first admin, created when the state store has no user yet (first start)."""
    existing = session.scalars(
        select(User).where(User.role == Role.ADMIN, User.disabled.is_(False)).order_by(
            User.created_at
        )
    ).first()
    if existing is not None:
        return existing
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise ConfigurationError(N_("User %(name)s exists but is not an active admin"),
                                 values={"name": repr(username)})
    admin = User(username=username, role=Role.ADMIN)
    session.add(admin)
    session.flush()
    audit.record(session, actor=None, action="user.created", target_type="user",
                 target_id=admin.id, username=username, role=Role.ADMIN.value)
    return admin


# -- passwords -------------------------------------------------------------------------------


def generate_password() -> str:
    """A random password for a new account (about 128 bits), to be shown once."""
    return secrets.token_urlsafe(16)


def hash_password(password: str) -> str:
    """The argon2id hash stored for ``password``, after checking its length."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DataError(N_("A password needs at least %(least)s characters"),
                        values={"least": MIN_PASSWORD_LENGTH},
                        field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise DataError(N_("A password has at most %(most)s characters"),
                        values={"most": MAX_PASSWORD_LENGTH},
                        field="password")
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class CredentialsRevoked:
    """What a password change ended: the user's browser sessions and API tokens."""

    sessions: int
    tokens: int


def set_password(session: Session, *, actor: User | None, user: User,
                 password: str) -> CredentialsRevoked:
    """Give ``user`` a new password (themselves or an admin; ``actor`` None = the system).

    Every browser session of the user ends and every API token of theirs is revoked: whoever
    held the old password (or anything made with it) keeps nothing. A page that changed the
    caller's own password starts a fresh session for that browser afterwards.
    """
    if actor is not None and actor.id != user.id:
        require_role(actor, Role.ADMIN)
    user.password_hash = hash_password(password)
    revoked = revoke_credentials(session, user=user)
    audit.record(session, actor=actor, action="user.password_set", target_type="user",
                 target_id=user.id, username=user.username, sessions_ended=revoked.sessions,
                 tokens_revoked=revoked.tokens)
    return revoked


def set_language(session: Session, *, actor: User, user: User, language: str | None) -> User:
    """Set the interface language of ``user`` (themselves, or any user for an admin).

    ``language`` is a supported code (``en``, ``ms``) or None/"" for "not chosen".
    """
    if actor.id != user.id:
        require_role(actor, Role.ADMIN)
    code = (language or "").strip() or None
    if code is not None and code not in LANGUAGES:
        raise DataError(N_("language: %(code)s is not one of %(choices)s"),
                        values={"code": repr(code), "choices": ", ".join(LANGUAGES)})
    user.language = code
    audit.record(session, actor=actor, action="user.language_set", target_type="user",
                 target_id=user.id, username=user.username, language=code)
    return user


def revoke_credentials(session: Session, *, user: User) -> CredentialsRevoked:
    """End every browser session of ``user`` and revoke every API token they still have."""
    sessions = session.scalar(
        select(func.count()).select_from(WebSession).where(WebSession.user_id == user.id)) or 0
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    now = utcnow()
    tokens = list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                         ApiToken.revoked_at.is_(None))))
    for token in tokens:
        token.revoked_at = now
    session.flush()
    return CredentialsRevoked(sessions=sessions, tokens=len(tokens))


def authenticate(session: Session, *, username: str, password: str) -> User:
    """The active user with this name and password; AuthenticationError otherwise.

    The error never says which of the two was wrong.
    """
    user = session.scalars(select(User).where(User.username == username.strip())).one_or_none()
    stored = user.password_hash if user is not None and user.password_hash else _dummy_hash()
    try:
        _hasher.verify(stored, password)
        valid = user is not None and user.password_hash is not None
    except (VerificationError, InvalidHashError):
        valid = False
    if not valid or user is None or user.disabled:
        raise AuthenticationError(N_("Wrong user name or password"))
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)  # parameters were raised since it was made
    return user


def confirm_password(session: Session, *, user: User, password: str) -> None:
    """Check the password of ``user``, who is signed in already, before a change that needs
    it again (a new password, a new API token); WrongPasswordError when it is not theirs."""
    try:
        authenticate(session, username=user.username, password=password)
    except AuthenticationError as exc:
        raise WrongPasswordError(N_("Your current password is not correct"),
                                 field="password") from exc


def first_start(session: Session, *, password: str | None) -> tuple[User, str | None]:
    """Make sure an admin exists who can sign in to the web app.

    The first admin gets ``password`` (SEGMENT_EXPORT_ADMIN_PASSWORD) or, when none is given,
    a generated one, which is returned so the caller can print it once. An admin that already
    has a password is left alone (and None is returned).
    """
    admin = ensure_admin(session)
    if admin.password_hash is not None:
        return admin, None
    generated = None if password else generate_password()
    admin.password_hash = hash_password(password or generated or "")
    audit.record(session, actor=None, action="user.password_set", target_type="user",
                 target_id=admin.id, username=admin.username, first_start=True)
    return admin, generated


# -- users -----------------------------------------------------------------------------------


class UserSpec(BaseModel):
    """A new user as an admin describes them (API, page and CLI alike); checked by
    ``create_user``, which names the field of a refused value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    role: Role
    password: str | None = None  # None: they cannot sign in until one is set
    email: str | None = None


def create_user(session: Session, *, actor: User | None, spec: UserSpec) -> User:
    """Add a user (admins only, except the very first one)."""
    if actor is not None:
        require_role(actor, Role.ADMIN)
    role, password, email = spec.role, spec.password, spec.email
    username = spec.username.strip()
    if not username or len(username) > 120 or any(c.isspace() for c in username):
        raise DataError(N_("A user name is 1-120 characters without spaces"), field="username")
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise ConfigurationError(N_("A user named %(name)s already exists"),
                                 values={"name": repr(username)}, username=username)
    user = User(username=username, role=Role(role).value, email=email or None,
                password_hash=hash_password(password) if password is not None else None)
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="user.created", target_type="user",
                 target_id=user.id, username=username, role=user.role)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def disable_user(session: Session, *, actor: User, username: str) -> User:
    """Disable a user: they can no longer sign in or act (admins only).

    Their browser sessions end at once; their API tokens stop working with them.
    """
    require_role(actor, Role.ADMIN)
    user = get_user(session, username=username)
    if user.id == actor.id:
        raise ConfigurationError(N_("You cannot disable yourself"))
    user.disabled = True
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(session, actor=actor, action="user.disabled", target_type="user",
                 target_id=user.id, username=username)
    return user


def set_email(session: Session, *, actor: User, username: str, email: str | None) -> User:
    """Set (or with None clear) where a user's alert emails go (admins only; docs/alerts.md)."""
    require_role(actor, Role.ADMIN)
    user = get_user(session, username=username)
    user.email = check_address(email) if email else None
    audit.record(session, actor=actor, action="user.email_set", target_type="user",
                 target_id=user.id, username=username, email=user.email)
    return user


# -- API tokens ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: ``secret`` is shown once and never stored (only its SHA-256 is)."""

    token: ApiToken
    secret: str


def token_hash(secret: str) -> str:
    """How a token is looked up: SHA-256 suffices for 256 random bits (no guessing to slow)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _may_manage_tokens(actor: User, owner: User) -> None:
    if actor.id != owner.id:
        require_role(actor, Role.ADMIN)
    elif actor.disabled:
        raise PermissionDeniedError(N_("User %(name)s is disabled"),
                                    values={"name": repr(actor.username)})


def create_api_token(session: Session, *, actor: User, user: User, name: str) -> IssuedToken:
    """Issue a REST API token that acts as ``user`` (their own, or any user's for an admin)."""
    _may_manage_tokens(actor, user)
    name = name.strip()
    if not name or len(name) > 120:
        raise DataError(N_("A token needs a name of 1-120 characters (what it is for)"),
                        field="name")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    register_secret(secret)
    token = ApiToken(user_id=user.id, name=name, token_hash=token_hash(secret),
                     prefix=secret[: len(TOKEN_PREFIX) + 8])
    session.add(token)
    session.flush()
    audit.record(session, actor=actor, action="token.created", target_type="user",
                 target_id=user.id, token_id=token.id, name=name, prefix=token.prefix)
    return IssuedToken(token, secret)


def list_api_tokens(session: Session, *, actor: User, user: User) -> list[ApiToken]:
    """``user``'s tokens, newest first (revoked ones included, marked)."""
    _may_manage_tokens(actor, user)
    return list(session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())))


def get_api_token(session: Session, *, id_or_prefix: str) -> ApiToken:
    """A token by id or by the prefix shown in lists."""
    token = session.get(ApiToken, id_or_prefix)
    if token is None:
        matches = session.scalars(select(ApiToken).where(ApiToken.prefix == id_or_prefix)).all()
        token = matches[0] if len(matches) == 1 else None
    if token is None:
        raise NotFoundError(N_("No API token %(token)s"), values={"token": repr(id_or_prefix)},
                            token=id_or_prefix)
    return token


def revoke_api_token(session: Session, *, actor: User, token: ApiToken) -> ApiToken:
    """Stop a token from working (kept, marked revoked, for the record)."""
    owner = session.get(User, token.user_id)
    assert owner is not None  # tokens cascade with their user
    _may_manage_tokens(actor, owner)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, actor=actor, action="token.revoked", target_type="user",
                     target_id=owner.id, token_id=token.id, prefix=token.prefix)
    return token


def user_for_token(session: Session, *, secret: str, now: datetime | None = None) -> User:
    """The active user an API token acts as; AuthenticationError for anything else."""
    now = now or utcnow()
    token = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == token_hash(secret))).one_or_none()
    if token is None or token.revoked_at is not None:
        raise AuthenticationError(N_("The API token is not valid (unknown or revoked)"))
    user = session.get(User, token.user_id)
    if user is None or user.disabled:
        raise AuthenticationError(N_("The API token's user is disabled"))
    if token.last_used_at is None or now - token.last_used_at > TOKEN_USE_RESOLUTION:
        token.last_used_at = now
    return user
