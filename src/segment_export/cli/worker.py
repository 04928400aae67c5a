"""`segment-export worker`, `refresh` and `schedule`: running what is queued and due."""

from __future__ import annotations

import os
import socket

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.cli.runs import status_text
from segment_export.languages import N_, shown, when
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.schedules import (
    get_refresh_schedule,
    set_refresh_schedule,
    system_refresh,
)


@click.command("worker")
@click.option("--threads", type=int, help="Runs executed at once (default: the setting).")
@pass_app
def worker_command(app: AppContext, threads: int | None) -> None:
    """Execute queued runs and the schedules (Ctrl-C stops after the current batch)."""
    runtime = app.runtime()
    # Open the state store (and migrate it) before the threads start, not in each of them.
    _ = runtime.engine
    queue = TaskQueue(runtime)
    if app.settings.metrics_listen:
        from segment_export import metrics

        runtime.metrics.track_queue_depth(queue.huey.pending_count)
        runtime.metrics.track_runs(runtime.engine)
        metrics.serve(app.settings.metrics_listen, runtime.metrics,
                      token=app.settings.metrics_token)
    where = (app.t(N_("Redis queue %(name)s"), name=repr(app.settings.queue_name))
             if app.settings.redis_url else app.t(N_("SQLite queue: this machine only")))
    click.echo(app.t(N_("Worker %(worker)s started (%(where)s)."),
                     worker=f"{socket.gethostname()}:{os.getpid()}", where=where))
    queue.consumer(workers=threads).run()


@click.command("refresh")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Run the exports scheduled with the refresh here, or queue them.")
@pass_app
def refresh_command(app: AppContext, wait: bool) -> None:
    """Refresh every segment now, then run every export scheduled "with every refresh"."""
    from segment_export.exports.runs import run_to_completion

    runtime = app.runtime()
    queue = TaskQueue(runtime)
    queued: list[str] = []
    system_refresh(runtime, enqueue=queued.append)
    click.echo(app.t(N_("Segments refreshed; export runs started: %(count)s."),
                     count=app.number(len(queued))))
    for run_id in queued:
        if wait:
            run = run_to_completion(run_id, deps=runtime.deps())
            click.echo(app.t(N_("  run %(run)s: %(status)s - %(message)s"), run=run.id,
                             status=status_text(app, run.status),
                             message=shown(run.message, run.message_text, app.language)))
        else:
            queue.enqueue_run(run_id)


@click.group("schedule")
def schedule_group() -> None:
    """The system refresh schedule."""


@schedule_group.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Show the system refresh schedule."""
    with app.sessions() as session:
        schedule = get_refresh_schedule(session)
    if not schedule.cron:
        click.echo(app.t(N_("No system refresh schedule; segments refresh on demand "
                            "(`refresh`).")))
    else:
        click.echo(app.t(N_("cron %(cron)s (%(zone)s); next: %(next)s"), cron=schedule.cron,
                         zone=schedule.timezone, next=when(schedule.next_run_at, app.language)))


@schedule_group.command("set")
@click.argument("cron", required=False)
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--clear", is_flag=True, help="Remove the schedule.")
@pass_app
def set_(app: AppContext, cron: str | None, timezone: str, clear: bool) -> None:
    """Set the refresh schedule, e.g. `schedule set '0 5 * * *' --timezone Europe/Berlin`."""
    if not clear and not cron:
        raise click.UsageError(app.t(N_("Give a cron expression or --clear")))
    with app.sessions() as session:
        schedule = set_refresh_schedule(session, actor=app.actor(session),
                                        cron=None if clear else cron, timezone=timezone)
        session.commit()
    click.echo(app.t(N_("Next refresh: %(moment)s."),
                     moment=when(schedule.next_run_at, app.language)
                     if schedule.next_run_at else app.t(N_("none"))))
