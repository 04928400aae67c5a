"""Which exports send a segment, and who may change a segment because of them.

A segment's definition decides what every export that sends it delivers (and, in mirror mode,
which contacts it removes). So changing or deleting a segment is changing those exports: a
user may do it only if they may edit every one of them. Admins may edit every export;
contributors those on connections shared with them (``access.permissions``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export.access import permissions
from segment_export.db.models import Connection, Export, Segment, User
from segment_export.errors import PermissionDeniedError
from segment_export.languages import N_
from segment_export.users import Role, require_role

SEGMENT_PERMISSIONS = ("view", "edit", "delete")


@dataclass(frozen=True, slots=True)
class DependentExport:
    """An export that sends the segment, as the acting user may see it (no connection)."""

    id: str
    name: str
    mode: str
    enabled: bool
    permissions: tuple[str, ...]

    @property
    def may_edit(self) -> bool:
        """Whether the acting user may change this export (and so what it sends)."""
        return "edit" in self.permissions


def exports_by_segment(session: Session, actor: User | None) -> dict[str, list[DependentExport]]:
    """Every segment id that some export sends -> those exports (by name), seen by ``actor``."""
    connections = {c.id: c for c in session.scalars(select(Connection))}
    found: dict[str, list[DependentExport]] = defaultdict(list)
    for export in session.scalars(select(Export).order_by(Export.name)):
        connection = connections.get(export.connection_id) if export.connection_id else None
        allowed = tuple(permissions(actor, export, connection)) if actor is not None else (
            "view", "edit", "run", "remove")
        dependent = DependentExport(export.id, export.name, export.mode, export.enabled,
                                    allowed)
        for segment_id in dict.fromkeys(export.segment_ids or []):
            found[segment_id].append(dependent)
    return dict(found)


def dependent_exports(
    session: Session, *, segment: Segment, actor: User | None = None
) -> list[DependentExport]:
    """The exports that send ``segment``, by name, with what ``actor`` may do with each."""
    return exports_by_segment(session, actor).get(segment.id, [])


def segment_permissions(actor: User, dependents: list[DependentExport]) -> list[str]:
    """What ``actor`` may do with a segment that these exports send: view, edit, delete."""
    if actor.disabled or actor.role not in (Role.ADMIN, Role.CONTRIBUTOR):
        return []
    if all(d.may_edit for d in dependents):
        return list(SEGMENT_PERMISSIONS)
    return ["view"]


def require_may_change(session: Session, *, actor: User, segment: Segment) -> None:
    """PermissionDeniedError unless ``actor`` may change or delete ``segment``."""
    require_role(actor, Role.ADMIN, Role.CONTRIBUTOR)
    locked = [d for d in dependent_exports(session, segment=segment, actor=actor)
              if not d.may_edit]
    if locked:
        names = ", ".join(repr(d.name) for d in locked)
        raise PermissionDeniedError(
            N_("%(user)s may not change the segment %(name)s: it feeds export(s) %(exports)s, "
               "which you may not change"),
            values={"user": repr(actor.username), "name": repr(segment.name), "exports": names},
            hint=N_("A segment that feeds an export is changed by someone who may change that "
                    "export (an admin, or a contributor the export's connection is shared with). "
                    "Ask an administrator, or create a segment of your own with the same rule."),
            segment=segment.id,
            exports=[d.id for d in locked],
        )


__all__ = [
    "DependentExport",
    "dependent_exports",
    "exports_by_segment",
    "require_may_change",
    "segment_permissions",
]
