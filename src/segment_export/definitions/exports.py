"""Export destinations: which segments go to which Constant Contact list, mapped how, when."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from segment_export import audit
from segment_export.access import require_manage, require_usable
from segment_export.db.models import (
    Connection,
    Export,
    ExportContactIds,
    ExportMember,
    ExportMemberBlock,
    Run,
    RunBatch,
    Segment,
    User,
)
from segment_export.definitions.mapping import validate_mapping
from segment_export.definitions.phones import DEFAULT_PHONE_REGION, check_region
from segment_export.errors import ConfigurationError, NotFoundError
from segment_export.languages import N_

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
Mode = Literal["add_update", "mirror"]
ScheduleKind = Literal["manual", "refresh", "cron"]


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What a person configures on an export; used to create, edit and duplicate."""

    name: str
    connection_id: str
    list_id: str
    mapping: dict[str, str]
    segment_ids: list[str]
    list_name: str | None = None
    consent_field: str | None = None
    mode: Mode = "add_update"
    schedule_kind: ScheduleKind = "manual"
    cron: str | None = None
    timezone: str = "UTC"
    enabled: bool = True
    max_contacts: int | None = None
    rejected_alert_threshold: float | None = None
    # Where a phone number without its country code is (docs/sms.md); used with sms_number.
    phone_region: str = DEFAULT_PHONE_REGION


def next_cron_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The next time ``cron`` fires in ``timezone`` after ``after`` (aware, returned in UTC)."""
    zone = ZoneInfo(timezone)
    return croniter(cron, after.astimezone(zone)).get_next(datetime).astimezone(ZoneInfo("UTC"))


def check_spec(session: Session, actor: User, spec: ExportSpec,
               profile_columns: Mapping[str, str] | None, *,
               list_pending: bool = False) -> dict[str, str]:
    """What can be checked of ``spec`` without asking Constant Contact; returns the mapping
    normalised. ``list_pending``: the list is yet to be created, so it has no id to check."""
    if not spec.name.strip():
        raise ConfigurationError(N_("An export needs a name"), field="name")
    connection = session.get(Connection, spec.connection_id)
    if connection is None:
        raise NotFoundError(N_("No connection %(id)s"), values={"id": repr(spec.connection_id)},
                            field="connection")
    require_usable(actor, connection)
    if not list_pending and not UUID_PATTERN.match(spec.list_id):
        raise ConfigurationError(
            N_("The list id %(id)s is not a Constant Contact list id (a UUID like "
               "1b2e3c4d-0000-1111-2222-333344445555; it is in the list's URL)"),
            values={"id": repr(spec.list_id)},
            field="list_id",
        )
    if not spec.segment_ids:
        raise ConfigurationError(N_("Choose at least one segment"), field="segment_ids")
    for segment_id in spec.segment_ids:
        if session.get(Segment, segment_id) is None:
            raise NotFoundError(N_("No segment %(id)s"), values={"id": repr(segment_id)},
                                field="segment_ids")
    mapping = validate_mapping(spec.mapping, profile_columns=profile_columns)
    if spec.consent_field and profile_columns is not None and (
        spec.consent_field not in profile_columns
    ):
        raise ConfigurationError(
            N_("The consent field %(field)s is not a profile column"),
            values={"field": repr(spec.consent_field)},
            field="consent_field")
    if spec.mode not in ("add_update", "mirror"):
        raise ConfigurationError(N_("Unknown mode %(mode)s: add_update or mirror"),
                                 values={"mode": repr(spec.mode)},
                                 field="mode")
    if spec.schedule_kind not in ("manual", "refresh", "cron"):
        raise ConfigurationError(
            N_("Unknown schedule %(kind)s: manual, refresh or cron"),
            values={"kind": repr(spec.schedule_kind)}, field="schedule")
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(N_("Unknown time zone %(zone)s"),
                                 values={"zone": repr(spec.timezone)},
                                 field="timezone") from exc
    if spec.schedule_kind == "cron" and not (spec.cron and croniter.is_valid(spec.cron)):
        raise ConfigurationError(N_("Not a valid cron expression: %(cron)s"),
                                 values={"cron": repr(spec.cron)}, field="cron")
    if spec.max_contacts is not None and spec.max_contacts <= 0:
        raise ConfigurationError(N_("The contact limit must be positive"), field="max_contacts")
    check_region(spec.phone_region)
    return mapping


def check_name_free(session: Session, name: str, export: Export | None) -> None:
    """Export names are unique; ``export`` may keep its own."""
    query = select(Export.id).where(Export.name == name.strip())
    if export is not None:
        query = query.where(Export.id != export.id)
    if session.scalar(query):
        raise ConfigurationError(N_("An export named %(name)s already exists"),
                                 values={"name": repr(name)}, field="name")


def _apply(export: Export, spec: ExportSpec, mapping: dict[str, str]) -> None:
    export.name = spec.name.strip()
    export.connection_id = spec.connection_id
    export.list_id = spec.list_id.lower()
    export.list_name = spec.list_name
    export.mapping = mapping
    export.segment_ids = list(spec.segment_ids)
    export.consent_field = spec.consent_field or None
    export.phone_region = check_region(spec.phone_region)
    export.mode = spec.mode
    export.schedule_kind = spec.schedule_kind
    export.cron = spec.cron if spec.schedule_kind == "cron" else None
    export.timezone = spec.timezone
    export.enabled = spec.enabled
    export.max_contacts = spec.max_contacts
    export.rejected_alert_threshold = spec.rejected_alert_threshold
    export.next_run_at = (
        next_cron_time(spec.cron, spec.timezone, datetime.now(ZoneInfo("UTC")))
        if spec.schedule_kind == "cron" and spec.cron else None
    )


def _spec_summary(spec: ExportSpec) -> dict[str, Any]:
    return {"name": spec.name, "list_id": spec.list_id, "segments": spec.segment_ids,
            "fields": sorted(spec.mapping), "mode": spec.mode, "schedule": spec.schedule_kind}


def create_export(
    session: Session, *, actor: User, spec: ExportSpec,
    profile_columns: Mapping[str, str] | None = None,
) -> Export:
    """Save an export (it does not run until scheduled or started).

    Checks only what needs no call to Constant Contact; the API, the web app and the CLI save
    through :func:`segment_export.definitions.configuration.save_export`, which also checks the
    list and the custom fields in the account.
    """
    mapping = check_spec(session, actor, spec, profile_columns)
    check_name_free(session, spec.name, None)
    export = Export(created_by_id=actor.id)
    _apply(export, spec, mapping)
    session.add(export)
    session.flush()
    audit.record(session, actor=actor, action="export.created", target_type="export",
                 target_id=export.id, **_spec_summary(spec))
    return export


def update_export(
    session: Session, *, actor: User, export: Export, spec: ExportSpec,
    profile_columns: Mapping[str, str] | None = None,
) -> Export:
    require_manage(session, actor, export)
    mapping = check_spec(session, actor, spec, profile_columns)
    check_name_free(session, spec.name, export)
    if spec.list_id.lower() != export.list_id:
        hold_export(session, export.id)
        _no_run_sending(session, export)
        # What was delivered to the old list says nothing about the new one.
        forget_export_state(session, export_id=export.id)
    _apply(export, spec, mapping)
    audit.record(session, actor=actor, action="export.updated", target_type="export",
                 target_id=export.id, **_spec_summary(spec))
    return export


# The statuses of a run that holds its export (exports/engine.py ACTIVE, which sits above).
_SENDING = ("queued", "running", "paused")


def hold_export(session: Session, export_id: str) -> None:
    """Take the export's row for the rest of the caller's transaction, so that a change of its
    list and a request of its run happen one after the other: otherwise a run requested (and
    started) between the list change's check and its commit reads the old list, and what it
    delivers there is then taken for the new list's.

    PostgreSQL locks the row (``FOR NO KEY UPDATE``: as an edit of the export does, so runs
    inserted for it, which take only a key share, are not held up); SQLite has no row locks,
    and a write that changes nothing takes its database write lock instead (the session's
    first statement of a transaction otherwise only reads, and a write could come in between).
    A transaction that holds several exports takes them in the order of their ids, so that
    two of them never wait for each other.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Export.id).where(Export.id == export_id)
                        .with_for_update(key_share=True))
        return
    # updated_at named so that its onupdate does not fire: nothing of the export changes.
    session.execute(
        update(Export).where(Export.id == export_id)
        .values(id=Export.id, updated_at=Export.updated_at)
        .execution_options(synchronize_session=False))


def _no_run_sending(session: Session, export: Export) -> None:
    """Refuse to change the list under a run: it sends to the list it read at its start and
    records what it delivered as the export's, which would then be taken for the new list's
    (those contacts would never reach it). A dry run sends nothing and does not hold it."""
    run = session.scalars(select(Run).where(
        Run.export_id == export.id, Run.status.in_(_SENDING), Run.dry_run.is_(False))).first()
    if run is not None:
        raise ConfigurationError(
            N_("The export %(export)s has a run %(status)s (%(run)s): its list cannot change "
               "until that run ends"),
            values={"export": repr(export.name), "status": run.status, "run": run.id},
            hint=N_("Wait for the run to end, or cancel it, then change the list."),
            run_id=run.id)


def spec_of(export: Export) -> ExportSpec:
    return ExportSpec(
        name=export.name, connection_id=export.connection_id or "", list_id=export.list_id,
        mapping=dict(export.mapping), segment_ids=list(export.segment_ids),
        list_name=export.list_name, consent_field=export.consent_field,
        mode=export.mode,  # type: ignore[arg-type]
        schedule_kind=export.schedule_kind,  # type: ignore[arg-type]
        cron=export.cron, timezone=export.timezone, enabled=export.enabled,
        max_contacts=export.max_contacts,
        rejected_alert_threshold=export.rejected_alert_threshold,
        phone_region=export.phone_region or DEFAULT_PHONE_REGION,
    )


def duplicate_export(session: Session, *, actor: User, export: Export, name: str) -> Export:
    """A copy with a new name, disabled so it does not run before it is reviewed."""
    require_manage(session, actor, export)
    spec = spec_of(export)
    copy = dataclasses.replace(spec, name=name, enabled=False)
    return create_export(session, actor=actor, spec=copy)


def remove_export(session: Session, *, actor: User, export: Export) -> None:
    """Stop the export for good and purge what was stored for it (runs, reports, state)."""
    require_manage(session, actor, export)
    forget_export_state(session, export_id=export.id)
    for run in session.scalars(select(Run).where(Run.export_id == export.id,
                                                 Run.status.in_(("queued", "running")))):
        run.cancel_requested = True
    audit.record(session, actor=actor, action="export.removed", target_type="export",
                 target_id=export.id, name=export.name)
    session.delete(export)


def get_export(session: Session, *, name_or_id: str) -> Export:
    export = session.scalars(
        select(Export).where(or_(Export.id == name_or_id, Export.name == name_or_id))
    ).one_or_none()
    if export is None:
        raise NotFoundError(N_("No export named %(name)s"), values={"name": repr(name_or_id)},
                            export=name_or_id)
    return export


def list_exports(session: Session) -> list[Export]:
    return list(session.scalars(select(Export).order_by(Export.name)))


def forget_export_state(session: Session, *, export_id: str) -> None:
    """Forget everything the export delivered (its list changed, or it is being removed).

    Batches its runs left unconfirmed are marked ``unknown`` too: they went to the old list,
    and a later run that settled them would make their contacts delivered (or, a removal's,
    the export's to remove) on the new one."""
    session.execute(delete(ExportMember).where(ExportMember.export_id == export_id))
    session.execute(delete(ExportMemberBlock).where(ExportMemberBlock.export_id == export_id))
    # The contact ids mirror runs learnt are of the old list's contacts.
    session.execute(delete(ExportContactIds).where(ExportContactIds.export_id == export_id))
    session.execute(update(RunBatch).where(
        RunBatch.run_id.in_(select(Run.id).where(Run.export_id == export_id)),
        RunBatch.state.in_(("sent", "pending"))).values(state="unknown"))
