"""`segment-export runs`: run history, reports, rejected rows, cancel and resume."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from segment_export.cli.context import AppContext, pass_app
from segment_export.db.models import Export, Run
from segment_export.definitions.exports import get_export
from segment_export.exports import runs as service
from segment_export.exports.engine import PAUSED
from segment_export.exports.runs import COUNT_LABELS
from segment_export.languages import N_, shown, when
from segment_export.web.render import STATUS_LABELS

console = Console()
# EX_TEMPFAIL: the run is not finished but will be (paused until the daily quota resets).
EXIT_PAUSED = 75

@click.group("runs")
def runs_group() -> None:
    """Run history and reports."""


def print_report(app: AppContext, run_id: str) -> None:
    """The run report: status, message, counts that add up, stages and activities."""
    with app.sessions() as session:
        run = service.get_run(session, run_id=run_id)
        export = session.get(Export, run.export_id)
        batches = service.run_details(session, run).batches
    t, number = app.t, app.number
    colour = {"succeeded": "green", "succeeded_with_rejections": "yellow",
              "skipped": "yellow", "paused": "yellow"}.get(run.status, "red")
    console.print(t(N_("Run %(run)s of %(export)s: %(status)s"),
                    run=f"[bold]{run.id}[/]", export=f"[bold]{export.name if export else '?'}[/]",
                    status=f"[{colour}]{status_text(app, run.status)}[/]")
                  + (t(N_(" (dry run)")) if run.dry_run else ""))
    if run.message:
        # The stored Text in the CLI's language (the API keeps the English message).
        console.print(shown(run.message, run.message_text, app.language), markup=False)
    resumes = service.retry_at(run)
    if resumes is not None:
        console.print(t(N_("Resumes after %(moment)s (the daily quota's reset)."),
                        moment=when(resumes, app.language)))
    table = Table("count", "value", show_header=False, box=None)
    for key, label in COUNT_LABELS:
        if key in run.counts:
            table.add_row(t(label), number(run.counts[key]))
    console.print(table)
    if run.counts.get("warnings"):
        console.print(t(N_("warnings:")) + " " + ", ".join(
            f"{k}: {number(v)}" for k, v in run.counts["warnings"].items()))
    if run.stage_seconds:
        console.print(t(N_("seconds per stage:")) + " " + ", ".join(
            f"{k} {number(round(v, 2))}" for k, v in run.stage_seconds.items()))
    if batches:
        console.print(t(N_("%(count)s Constant Contact activities:"), count=number(len(batches)))
            + " " + ", ".join(f"{b.kind} {b.activity_id} ({b.state}, {number(b.contacts)})"
                              for b in batches[:10])
            + (" ..." if len(batches) > 10 else ""))


def status_text(app: AppContext, status: str) -> str:
    """A run status for people: the code itself in English (scripts match on it), else the
    translated label with the code after it."""
    if app.language == "en":
        return status
    return f"{app.t(STATUS_LABELS.get(status, status))} ({status})"


@runs_group.command("list")
@click.option("--export", "export_name", help="Only this export's runs.")
@click.option("--limit", default=20, show_default=True)
@pass_app
def list_(app: AppContext, export_name: str | None, limit: int) -> None:
    """Recent runs, newest first."""
    with app.sessions() as session:
        export = get_export(session, name_or_id=export_name) if export_name else None
        runs = service.list_runs(session, export=export, limit=limit)
        t = app.t
        table = Table(t(N_("run")), t(N_("export")), t(N_("status")), t(N_("queued")),
                      t(N_("sent")), t(N_("rejected")), t(N_("removed")))
        for run in runs:
            owner = session.get(Export, run.export_id)
            rejected = run.counts.get("rejected_locally", 0) + run.counts.get(
                "rejected_by_constant_contact", 0)
            table.add_row(run.id[:8], owner.name if owner else "?",
                          status_text(app, run.status) + (t(N_(" (dry)")) if run.dry_run else ""),
                          when(run.queued_at, app.language), app.number(run.counts.get("sent", 0)),
                          app.number(rejected), app.number(run.counts.get("removed", 0)))
    console.print(table if runs else t(N_("No runs yet.")))


@runs_group.command("show")
@click.argument("run_id")
@pass_app
def show(app: AppContext, run_id: str) -> None:
    """The report of one run (an id prefix is enough)."""
    print_report(app, run_id)


@runs_group.command("rejected")
@click.argument("run_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the CSV here instead of standard output.")
@pass_app
def rejected(app: AppContext, run_id: str, out: Path | None) -> None:
    """The rejected rows of a run as CSV, with a reason per row (safe to open in a spreadsheet)."""
    with app.sessions() as session:
        run = service.get_run(session, run_id=run_id)
        chunks = service.rejected_rows_csv(session, run=run)
        if out is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            return
        with out.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
    click.echo(app.t(N_("Wrote %(path)s."), path=out), err=True)


@runs_group.command("cancel")
@click.argument("run_id")
@pass_app
def cancel(app: AppContext, run_id: str) -> None:
    """Stop a queued or running run at its next batch boundary."""
    with app.sessions() as session:
        run = service.get_run(session, run_id=run_id)
        service.cancel_run(session, actor=app.actor(session), run=run)
        session.commit()
    click.echo(app.t(N_("Cancellation requested for run %(run)s."), run=run.id))


@runs_group.command("resume")
@click.argument("run_id")
@pass_app
def resume(app: AppContext, run_id: str) -> None:
    """Continue a run whose worker died, or a paused one, here, after its last confirmed batch."""
    with app.sessions() as session:
        run = service.get_run(session, run_id=run_id)
    deps = app.runtime().deps()
    deps.stopping = app.stop_on_sigterm().is_set
    result = service.run_to_completion(run.id, deps=deps)
    print_report(app, result.id)
    exit_for(result)


def exit_for(result: Run) -> None:
    """The exit status a run's outcome gives the command that ran it (see docs/cli.md)."""
    if result.error_kind == "interrupted":
        raise SystemExit(143)  # stopped by SIGTERM, as a killed process would report
    if result.status == PAUSED:
        raise SystemExit(EXIT_PAUSED)
    if result.status in {"failed", "cancelled"}:
        raise SystemExit(1)
