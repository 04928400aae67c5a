"""`segment-export exports`: destinations that send segments to Constant Contact lists."""

from __future__ import annotations

import dataclasses
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from segment_export import access
from segment_export.cli.context import AppContext, pass_app
from segment_export.cli.runs import exit_for, print_report, status_text
from segment_export.db.models import Connection, Export, Run
from segment_export.definitions import exports as service
from segment_export.definitions.configuration import ExportCreate, ExportUpdate, save_export
from segment_export.definitions.connections import get_connection
from segment_export.errors import ConfigurationError
from segment_export.exports.engine import PAUSED
from segment_export.exports.run_all import SKIP_LABELS, run_all
from segment_export.exports.runs import RunRequest, request_run, run_to_completion
from segment_export.languages import N_, error_text, shown, when
from segment_export.scheduling.queue import TaskQueue
from segment_export.segments.service import get_segment
from segment_export.web.render import PERMISSION_LABELS

console = Console()


@click.group("exports")
def exports_group() -> None:
    """Export destinations: segments -> a Constant Contact list."""


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: use FIELD=COLUMN, e.g. email=email_address",
                                     param_hint="--map")
        mapping[field.strip()] = column.strip()
    return mapping


def _spec_options(fn: Any) -> Any:
    options = [
        click.option("--connection", "connection_name", help="Connection name or id."),
        click.option("--list-id", help="Constant Contact list id (UUID, in the list's URL)."),
        click.option("--create-list", help="Create (or reuse) a list with this name instead."),
        click.option("--map", "maps", multiple=True, metavar="FIELD=COLUMN",
                     help="Constant Contact field = profile column; email=... is required. "
                     "Fields: first_name, last_name, phone, job_title, company_name, street, "
                     "city, state, zip, country, birthday, anniversary, cf:<custom field>..."),
        click.option("--segment", "segments", multiple=True, help="Segment name (repeatable)."),
        click.option("--consent-field", help="Only profiles where this column is true are sent."),
        click.option("--mode", type=click.Choice(["add_update", "mirror"]),
                     help="mirror also removes from the list the members who left."),
        click.option("--schedule", type=click.Choice(["manual", "refresh", "cron"]),
                     help="manual, with every refresh, or a cron expression."),
        click.option("--cron", help="Cron expression for --schedule cron, e.g. '0 6 * * *'."),
        click.option("--timezone", help="Time zone of the cron expression (IANA name)."),
        click.option("--max-contacts", type=int, help="Skip runs over this many contacts."),
        click.option("--alert-threshold", type=float,
                     help="Alert when more than this share of rows is rejected (0-1)."),
        click.option("--enabled/--disabled", default=None, help="Whether schedules run it."),
        click.option("--phone-region", help="Where a mapped sms_number without a country code "
                     "is (ISO 3166 alpha-2; default US). See docs/sms.md."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _configuration(session: Any, base: ExportUpdate | None, name: str,
                   opts: dict[str, Any]) -> ExportCreate:
    """The options (over ``base``, the export's configuration, on edit) as the configuration
    the service checks, the same for the API and the web app."""
    values: dict[str, Any] = base.model_dump() if base else {"name": name, "connection_id": ""}
    values["name"] = name
    if opts["connection_name"]:
        values["connection_id"] = get_connection(session, name_or_id=opts["connection_name"]).id
    if opts["maps"]:
        values["mapping"] = _mapping(opts["maps"])
    if opts["segments"]:
        values["segment_ids"] = [get_segment(session, name_or_id=s).id for s in opts["segments"]]
    for key, option in (("consent_field", "consent_field"), ("mode", "mode"),
                        ("schedule_kind", "schedule"), ("cron", "cron"),
                        ("timezone", "timezone"), ("max_contacts", "max_contacts"),
                        ("rejected_alert_threshold", "alert_threshold"),
                        ("enabled", "enabled"), ("phone_region", "phone_region")):
        if opts[option] is not None:
            values[key] = opts[option]
    if opts["list_id"] or opts["create_list"]:
        values["list_id"], values["create_list_name"] = opts["list_id"], opts["create_list"]
    return (ExportUpdate if base else ExportCreate).model_validate(values)


def _save(app: AppContext, session: Any, name: str, opts: dict[str, Any],
          export: Export | None = None) -> Export:
    """Save through the one service; a configuration it refuses is a usage error."""
    try:
        data = _configuration(session, ExportUpdate.of(export) if export else None, name, opts)
        return save_export(session, actor=app.actor(session), data=data, export=export,
                           settings=app.settings, engine=app.engine,
                           profile_columns=app.store.schema())
    except ConfigurationError as exc:
        raise click.UsageError(shown(None, error_text(exc).as_json(), app.language)) from exc


@exports_group.command("create")
@click.argument("name")
@_spec_options
@pass_app
def create(app: AppContext, /, name: str, **opts: Any) -> None:
    """Add an export destination (saving does not run it)."""
    with app.sessions() as session:
        export = _save(app, session, name, opts)
        session.commit()
        click.echo(app.t(N_("Saved export %(name)s -> list %(list)s (%(mode)s, %(schedule)s). "
                            "Run it with `segment-export exports run %(name)s`."),
                         name=repr(export.name), list=export.list_name or export.list_id,
                         mode=export.mode, schedule=export.schedule_kind))


@exports_group.command("edit")
@click.argument("name")
@click.option("--rename", help="New name.")
@_spec_options
@pass_app
def edit(app: AppContext, /, name: str, rename: str | None, **opts: Any) -> None:
    """Change an export's settings."""
    with app.sessions() as session:
        export = service.get_export(session, name_or_id=name)
        _save(app, session, rename or export.name, opts, export)
        session.commit()
        click.echo(app.t(N_("Updated export %(name)s."), name=repr(export.name)))


@exports_group.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List exports with status, schedule, last run and your permissions."""
    with app.sessions() as session:
        actor = app.actor(session)
        exports = service.list_exports(session)
        t = app.t
        table = Table(t(N_("name")), t(N_("list")), t(N_("mode")), t(N_("schedule")),
                      t(N_("enabled")), t(N_("last run")), t(N_("your permissions")))
        from segment_export.exports.runs import list_runs

        for e in exports:
            conn = session.get(Connection, e.connection_id) if e.connection_id else None
            last = list_runs(session, export=e, limit=1)
            schedule = {"cron": f"cron {e.cron} {e.timezone}",
                        "refresh": t(N_("with every refresh")),
                        "manual": t(N_("manual"))}[e.schedule_kind]
            table.add_row(e.name, e.list_name or e.list_id, e.mode, schedule,
                          t(N_("yes")) if e.enabled else t(N_("no")),
                          f"{status_text(app, last[0].status)} "
                          f"{when(last[0].queued_at, app.language)}" if last else "-",
                          ", ".join(t(PERMISSION_LABELS.get(p, p))
                                    for p in access.permissions(actor, e, conn)))
    console.print(table if exports else app.t(N_("No exports yet: `segment-export exports "
                                                 "create`.")))


@exports_group.command("show")
@click.argument("name")
@pass_app
def show(app: AppContext, name: str) -> None:
    """Show an export's full configuration."""
    with app.sessions() as session:
        export = service.get_export(session, name_or_id=name)
        for key, value in dataclasses.asdict(service.spec_of(export)).items():
            click.echo(f"{key:>26}: {value}")


@exports_group.command("duplicate")
@click.argument("name")
@click.argument("new_name")
@pass_app
def duplicate(app: AppContext, name: str, new_name: str) -> None:
    """Copy an export under a new name (the copy starts disabled)."""
    with app.sessions() as session:
        export = service.get_export(session, name_or_id=name)
        copy = service.duplicate_export(session, actor=app.actor(session), export=export,
                                        name=new_name)
        session.commit()
        click.echo(app.t(N_("Created %(name)s (disabled)."), name=repr(copy.name)))


@exports_group.command("remove")
@click.argument("name")
@click.confirmation_option(prompt="Remove this export and purge its stored state?")
@pass_app
def remove(app: AppContext, name: str) -> None:
    """Stop an export and purge what was stored for it (the list itself is not touched)."""
    with app.sessions() as session:
        service.remove_export(session, actor=app.actor(session),
                              export=service.get_export(session, name_or_id=name))
        session.commit()
    click.echo(app.t(N_("Removed export %(name)s."), name=repr(name)))


def _watch(app: AppContext, run_id: str) -> Run:
    deps = app.runtime().deps()
    deps.stopping = app.stop_on_sigterm().is_set
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn(app.t(N_("members read"))), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task(app.t(N_("starting")), total=None)

        def progress(run: Run) -> None:
            counts = run.counts
            sent = counts.get("sent_so_far", 0)
            bar.update(task, description=app.t(N_("%(status)s, %(count)s sent"),
                                               status=status_text(app, run.status),
                                               count=app.number(sent)),
                       total=counts.get("segment_size"), completed=counts.get("processed", 0))

        deps.progress = progress
        return run_to_completion(run_id, deps=deps)


@exports_group.command("run")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Report what would be sent; send nothing.")
@click.option("--full", is_flag=True, help="Send every member again (full resync).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Run here with a progress bar, or queue it for a worker.")
@pass_app
def run(app: AppContext, name: str, dry_run: bool, full: bool, wait: bool) -> None:
    """Run an export now."""
    with app.sessions() as session:
        export = service.get_export(session, name_or_id=name)
        queued = request_run(session, actor=app.actor(session), export=export,
                             request=RunRequest(dry_run=dry_run, full_resync=full))
        session.commit()
        run_id = queued.id
    if not wait:
        TaskQueue(app.runtime()).enqueue_run(run_id)
        click.echo(app.t(N_("Queued run %(run)s; a worker (`segment-export worker`) will execute "
                            "it."), run=run_id))
        return
    result = _watch(app, run_id)
    print_report(app, result.id)
    exit_for(result)


@exports_group.command("run-all")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Run them here one after another, or queue them for a worker.")
@pass_app
def run_all_(app: AppContext, wait: bool) -> None:
    """Refresh the segments, then run every enabled export you may run."""
    with app.sessions() as session:
        enqueue = None if wait else TaskQueue(app.runtime()).enqueue_run
        result = run_all(session, actor=app.actor(session), store=app.store, enqueue=enqueue)
    t = app.t
    for refreshed in result.refreshed:
        outcome = (t(N_("%(count)s members"), count=app.number(refreshed.size)) if refreshed.ok
                   else t(N_("not refreshed (%(error)s)"), error=refreshed.error))
        click.echo(t(N_("Refreshed segment %(name)s: %(outcome)s"), name=repr(refreshed.name),
                     outcome=outcome))
    for skipped in result.skipped:
        click.echo(t(N_("Skipped %(name)s: %(reason)s (%(message)s)"),
                     name=repr(skipped.export_name), reason=t(SKIP_LABELS[skipped.reason]),
                     message=skipped.message))
    if not result.queued:
        click.echo(t(N_("No run queued.")))
        return
    if not wait:
        click.echo(t(N_("Queued %(count)s run(s); a worker (`segment-export worker`) will "
                        "execute them:"), count=len(result.queued)) + " " + ", ".join(
                       f"{q.export_name!r} {q.run_id}" for q in result.queued))
        return
    runs = []
    for queued in result.queued:
        click.echo(t(N_("Running %(name)s (%(run)s)"), name=repr(queued.export_name),
                     run=queued.run_id))
        runs.append(_watch(app, queued.run_id))
    table = Table(t(N_("export")), t(N_("run")), t(N_("status")), t(N_("sent")),
                  t(N_("rejected")), t(N_("removed")))
    for queued, done in zip(result.queued, runs, strict=True):
        counts = done.counts
        rejected = counts.get("rejected_locally", 0) + counts.get(
            "rejected_by_constant_contact", 0)
        table.add_row(queued.export_name, done.id, status_text(app, done.status),
                      app.number(counts.get("sent", 0)), app.number(rejected),
                      app.number(counts.get("removed", 0)))
    console.print(table)

    def severity(done: Run) -> int:
        if done.error_kind == "interrupted":
            return 3
        return 2 if done.status in {"failed", "cancelled"} else int(done.status == PAUSED)

    # The worst run decides the exit status, as for one run (skipped exports do not count).
    exit_for(max(runs, key=severity))
