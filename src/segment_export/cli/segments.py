"""`segment-export segments`: define, inspect, preview and refresh segments."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.cli.profiles import open_store
from segment_export.errors import DataError
from segment_export.languages import N_, message_text, when

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from segment_export.db.models import Segment, User

# The services (sqlglot, pydantic, DuckDB) load inside each command so `--help` stays quick.

RULE_HELP = (
    'The rule as JSON, or @FILE holding it, e.g. {"all": [{"field": "country", "op": "eq", '
    '"value": "DE"}]}.'
)
WHERE_HELP = "A restricted SQL condition, e.g. \"country = 'DE' AND lifetime_value > 100\"."


def _rule_text(value: str | None) -> str | None:
    if value is None or not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(N_("Cannot read the rule file %(file)s: %(error)s"),
                        values={"file": str(path), "error": str(exc)}, field="rule") from exc


def _checked_rule(app: AppContext, value: str | None) -> str | None:
    """The --rule text, refused as a usage error when it does not fit the rule model (the
    reason in the CLI's language, click's own ``Invalid value for`` in English)."""
    text = _rule_text(value)
    if text is None:
        return None
    from segment_export.segments import parse_rule

    try:
        parse_rule(text)
    except DataError as exc:
        raise click.BadParameter(message_text(exc).in_language(app.language),
                                 param_hint="'--rule'") from None
    return text


def _show_senders(app: AppContext, session: Session, segment: Segment,
                  actor: User | None) -> int:
    """Print the exports that send ``segment``; how many there are."""
    from segment_export.segments import dependent_exports

    senders = dependent_exports(session, segment=segment, actor=actor)
    if senders:
        click.echo(app.t(N_("Segment %(name)s is sent by %(count)s export(s):"),
                         name=repr(segment.name), count=app.number(len(senders))))
    for sender in senders:
        notes = [app.t(N_("mirror: removes contacts who leave") if sender.mode == "mirror"
                       else N_("add/update"))]
        if not sender.enabled:
            notes.append(app.t(N_("disabled")))
        if not sender.may_edit:
            notes.append(app.t(N_("you may not change it")))
        click.echo(f"  - {sender.name} ({'; '.join(notes)})")
    return len(senders)


def _when(app: AppContext, moment: datetime | None) -> str:
    return when(moment, app.language) if moment else app.t(N_("never"))


def _definition(segment: Segment) -> str:
    import json

    if segment.rule is not None:
        return json.dumps(segment.rule, ensure_ascii=False)
    return segment.expression or ""


@click.group("segments")
def segments_group() -> None:
    """Segments: named rules over profile fields, refreshed into member lists."""


@segments_group.command("create")
@click.argument("name")
@click.option("--rule", help=RULE_HELP)
@click.option("--where", "expression", help=WHERE_HELP)
@click.option("--description", default=None)
@click.option("--inactive", is_flag=True, help="Create it switched off (not refreshed).")
@pass_app
def create_command(
    app: AppContext, name: str, rule: str | None, expression: str | None,
    description: str | None, inactive: bool,
) -> None:
    """Create segment NAME from --rule or --where, and evaluate it at once."""
    from segment_export.segments import SegmentSpec, create_segment

    rule = _checked_rule(app, rule)
    with open_store(app) as store, app.sessions() as session:
        segment = create_segment(
            session,
            store,
            spec=SegmentSpec(
                name=name,
                rule=rule,
                expression=expression,
                description=description,
                active=not inactive,
            ),
            actor=app.actor(session),
        )
        session.commit()
        size = (app.t(N_("not refreshed (inactive)")) if segment.size is None
                else app.t(N_("%(count)s members"), count=app.number(segment.size)))
        click.echo(app.t(N_("Created segment %(name)s (%(id)s): %(size)s."),
                         name=repr(segment.name), id=segment.id, size=size))


@segments_group.command("edit")
@click.argument("name")
@click.option("--name", "new_name", default=None, help="Rename the segment.")
@click.option("--rule", help=RULE_HELP)
@click.option("--where", "expression", help=WHERE_HELP)
@click.option("--description", default=None, help="New description ('' clears it).")
@click.option("--active/--inactive", default=None, help="Switch refreshes on or off.")
@click.option("--yes", is_flag=True,
              help="Do not ask for confirmation when exports send the segment.")
@pass_app
def edit_command(
    app: AppContext, name: str, new_name: str | None, rule: str | None,
    expression: str | None, description: str | None, active: bool | None, yes: bool,
) -> None:
    """Change segment NAME; a new definition is evaluated at once.

    The exports that send it are listed first (a change changes what they send); changing it
    needs the right to change every one of them.
    """
    from segment_export.segments import (
        SegmentChanges,
        get_segment,
        require_may_change,
        update_segment,
    )

    rule = _checked_rule(app, rule)
    with open_store(app) as store, app.sessions() as session:
        actor = app.actor(session)
        found = get_segment(session, name_or_id=name)
        senders = _show_senders(app, session, found, actor)
        require_may_change(session, actor=actor, segment=found)
        if senders and not yes:
            click.confirm(app.t(N_("Change it, and so what these exports send?")), abort=True)
        segment = update_segment(
            session,
            store,
            changes=SegmentChanges(
                name=new_name,
                rule=rule,
                expression=expression,
                description=description,
                active=active,
            ),
            name_or_id=found.id,
            actor=actor,
        )
        session.commit()
        size = ("—" if segment.size is None
                else app.t(N_("%(count)s members"), count=app.number(segment.size)))
        click.echo(app.t(N_("Updated segment %(name)s: %(size)s."), name=repr(segment.name),
                         size=size))


@segments_group.command("list")
@pass_app
def list_command(app: AppContext) -> None:
    """List the segments with their size and last refresh."""
    from rich.console import Console
    from rich.table import Table

    from segment_export.segments import list_segments

    with app.sessions() as session:
        segments = list_segments(session)
    if not segments:
        click.echo(app.t(N_("No segments yet (segment-export segments create NAME "
                            "--rule/--where).")))
        return
    t = app.t
    table = Table(t(N_("name")), t(N_("active")), t(N_("size")), t(N_("refreshed")),
                  t(N_("definition")))
    for seg in segments:
        table.add_row(seg.name, t(N_("yes")) if seg.active else t(N_("no")),
                      "—" if seg.size is None else app.number(seg.size),
                      _when(app, seg.refreshed_at),
                      _definition(seg))
    Console().print(table)


@segments_group.command("show")
@click.argument("name")
@click.option("--history", "history_limit", type=click.IntRange(min=1, max=10_000), default=20,
              show_default=True, help="How many of the latest sizes to show.")
@pass_app
def show_command(app: AppContext, name: str, history_limit: int) -> None:
    """Show segment NAME with its definition and size history."""
    from rich.console import Console
    from rich.table import Table

    from segment_export.segments import dependent_exports, get_segment, size_history

    with app.sessions() as session:
        seg = get_segment(session, name_or_id=name)
        history = size_history(session, segment_id=seg.id, limit=history_limit)
        senders = dependent_exports(session, segment=seg, actor=app.actor(session))
    t = app.t
    click.echo(t(N_("Segment %(name)s (%(id)s)"), name=repr(seg.name), id=seg.id))
    facts = [(t(N_("description")), seg.description or "—"),
             (t(N_("active")), t(N_("yes")) if seg.active else t(N_("no"))),
             (t(N_("rule")) if seg.rule is not None else t(N_("where")), _definition(seg)),
             (t(N_("size")), "—" if seg.size is None else app.number(seg.size)),
             (t(N_("refreshed")), _when(app, seg.refreshed_at)),
             (t(N_("exports")), ", ".join(s.name for s in senders) or "—")]
    width = max(len(label) for label, _ in facts) + 2
    for label, value in facts:
        click.echo(f"  {label + ':':<{width}}{value}")
    if history:
        table = Table(t(N_("refreshed at")), t(N_("size")), title=t(N_("size history")))
        for point in history:
            table.add_row(_when(app, point.refreshed_at), app.number(point.size))
        Console().print(table)


@segments_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def delete_command(app: AppContext, name: str, yes: bool) -> None:
    """Delete segment NAME, its history and its stored members."""
    from segment_export.segments import delete_segment, get_segment, require_may_change

    with open_store(app) as store, app.sessions() as session:
        actor = app.actor(session)
        seg = get_segment(session, name_or_id=name)
        _show_senders(app, session, seg, actor)
        require_may_change(session, actor=actor, segment=seg)
        if not yes:
            click.confirm(app.t(N_("Delete segment %(name)s?"), name=repr(seg.name)), abort=True)
        delete_segment(session, store, name_or_id=seg.id, actor=actor)
        session.commit()
    click.echo(app.t(N_("Deleted segment %(name)s."), name=repr(seg.name)))


@segments_group.command("preview")
@click.argument("name", required=False)
@click.option("--rule", help=RULE_HELP)
@click.option("--where", "expression", help=WHERE_HELP)
@click.option("--limit", type=click.IntRange(min=0, max=1000), default=10, show_default=True,
              help="How many sample profiles to show.")
@click.option("--columns", default=None,
              help="Comma-separated columns to show (default: the first six).")
@pass_app
def preview_command(
    app: AppContext, name: str | None, rule: str | None, expression: str | None, limit: int,
    columns: str | None,
) -> None:
    """Count the members of segment NAME, or of an unsaved --rule/--where, and show a sample."""
    from rich.console import Console
    from rich.table import Table

    from segment_export.segments import preview_segment

    if name is None and rule is None and expression is None:
        raise click.UsageError(app.t(N_("Give a segment NAME, or --rule or --where.")))
    with open_store(app) as store, app.sessions() as session:
        preview = preview_segment(
            session, store, name_or_id=name, rule=_checked_rule(app, rule), expression=expression,
            limit=limit, actor=app.actor(session),
        )
    click.echo(app.t(N_("%(count)s matching profiles."), count=app.number(preview.count))
               + f"  WHERE {preview.sql}")
    if preview.rows:
        shown = _columns(preview.rows[0], columns)
        table = Table(*shown)
        for row in preview.rows:
            table.add_row(*(_cell(row.get(c)) for c in shown))
        Console().print(table)


def _columns(row: dict[str, Any], wanted: str | None) -> list[str]:
    if wanted:
        names = [c.strip() for c in wanted.split(",") if c.strip()]
        unknown = [c for c in names if c not in row]
        if unknown:
            raise DataError(N_("Unknown column(s): %(columns)s"),
                            values={"columns": ", ".join(unknown)}, field="columns")
        return names
    return list(row)[:6]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


@segments_group.command("refresh")
@pass_app
def refresh_command(app: AppContext) -> None:
    """Evaluate every active segment now and record its size."""
    from rich.console import Console
    from rich.table import Table

    from segment_export.segments import refresh_segments

    with open_store(app) as store, app.sessions() as session:
        results = refresh_segments(session, store)
    if not results:
        click.echo(app.t(N_("No active segments.")))
        return
    t = app.t
    table = Table(t(N_("segment")), t(N_("size")), t(N_("seconds")), t(N_("problem")))
    for result in results:
        table.add_row(result.name, "—" if result.size is None else app.number(result.size),
                      app.number(round(result.seconds, 2)), t(result.error or ""))
    Console().print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        raise click.ClickException(app.t(N_("Segments that could not be refreshed: "
                                            "%(count)s."), count=app.number(len(failed))))
