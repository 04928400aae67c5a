"""Who may do what with a connection or an export: the one rule the pages, the API, the CLI
and the segments' dependents all ask."""

from __future__ import annotations

from sqlalchemy.orm import Session

from segment_export.db.models import Connection, Export, User
from segment_export.errors import ConfigurationError, PermissionDeniedError
from segment_export.languages import N_
from segment_export.users import Role


def can_use(user: User, connection: Connection) -> bool:
    """Admins use every connection; contributors those shared with them; viewers none."""
    if user.disabled:
        return False
    if user.role == Role.ADMIN:
        return True
    return user.role == Role.CONTRIBUTOR and connection.shared_with_contributors


def require_usable(actor: User, connection: Connection | None) -> Connection:
    if connection is None:
        raise ConfigurationError(
            N_("This export is detached from its connection; attach it to a connection first"))
    if not can_use(actor, connection):
        # Not by name: someone who may not use a connection learns nothing about it, not even
        # the name behind an id (contributors see the names of shared connections only).
        raise PermissionDeniedError(N_("%(user)s may not use this connection"),
                                    values={"user": repr(actor.username)},
                                    hint=N_("Ask an administrator to share it with contributors."))
    return connection


def permissions(user: User, export: Export, connection: Connection | None) -> list[str]:
    """What ``user`` may do with ``export`` (the *Your permissions* column)."""
    if user.disabled:
        return []
    if user.role == Role.VIEWER or (connection is None and user.role != Role.ADMIN):
        return ["view"]
    if user.role == Role.ADMIN or (connection is not None and can_use(user, connection)):
        return ["view", "edit", "run", "remove"]
    return ["view"]


def require_manage(session: Session, user: User, export: Export) -> None:
    connection = session.get(Connection, export.connection_id) if export.connection_id else None
    if "edit" not in permissions(user, export, connection):
        raise PermissionDeniedError(
            N_("%(user)s may not change the export %(export)s"),
            values={"user": repr(user.username), "export": repr(export.name)},
            hint=N_("Contributors manage exports whose connection an admin shared with them."),
        )
