"""Users and roles: admin, contributor, viewer."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.db.models import User
from segment_export.errors import ConfigurationError, NotFoundError, PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    CONTRIBUTOR = "contributor"
    VIEWER = "viewer"


def require_role(user: User, *roles: Role) -> None:
    """Raise PermissionDeniedError unless ``user`` is active and holds one of ``roles``."""
    if user.disabled:
        raise PermissionDeniedError(f"User {user.username!r} is disabled")
    if user.role not in {r.value for r in roles}:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDeniedError(
            f"This needs the {allowed} role; {user.username!r} is a {user.role}",
            username=user.username,
        )


def get_user(session: Session, *, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFoundError(f"No user named {username!r}", username=username)
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
        raise ConfigurationError(f"User {username!r} exists but is not an active admin")
    admin = User(username=username, role=Role.ADMIN)
    session.add(admin)
    session.flush()
    audit.record(session, actor=None, action="user.created", target_type="user",
                 target_id=admin.id, username=username, role=Role.ADMIN.value)
    return admin


def create_user(session: Session, *, actor: User | None, username: str, role: Role) -> User:
    """Add a user (admins only, except the very first one)."""
    if actor is not None:
        require_role(actor, Role.ADMIN)
    if session.scalar(select(func.count()).select_from(User).where(User.username == username)):
        raise ConfigurationError(f"A user named {username!r} already exists", username=username)
    user = User(username=username, role=role.value)
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="user.created", target_type="user",
                 target_id=user.id, username=username, role=role.value)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def disable_user(session: Session, *, actor: User, username: str) -> User:
    """Disable a user: they can no longer sign in or act (admins only)."""
    require_role(actor, Role.ADMIN)
    user = get_user(session, username=username)
    if user.id == actor.id:
        raise ConfigurationError("You cannot disable yourself")
    user.disabled = True
    audit.record(session, actor=actor, action="user.disabled", target_type="user",
                 target_id=user.id, username=username)
    return user
