"""`segment-export serve`: the web app, REST API and an in-process worker, together."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (anything but loopback is reachable from outside).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", type=click.IntRange(1, 64),
              help="Runs the in-process worker executes at once (default: the setting).")
@click.option("--worker/--no-worker", "with_worker", default=True, show_default=True,
              help="Run an in-process worker; --no-worker when `segment-export worker` "
                   "processes execute the runs (with SEGMENT_EXPORT_REDIS_URL).")
@pass_app
def serve_command(app: AppContext, host: str, port: int, workers: int | None,
                  with_worker: bool) -> None:
    """Start the web app and the worker together (Ctrl-C stops both)."""
    from segment_export.api.server import serve
    from segment_export.app import create_app
    from segment_export.log import register_secret
    from segment_export.net import bind, is_loopback
    from segment_export.users import first_start

    settings = app.settings
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    register_secret(password)
    with app.sessions() as session:
        admin, generated = first_start(session, password=password)
        session.commit()
    if generated:
        # Printed, never logged: log files outlive the terminal.
        click.secho(f"Created the first admin {admin.username!r} with the password:",
                    fg="yellow", err=True)
        click.echo(f"    {generated}", err=True)
        click.echo("It is shown only now; change it under Your account after signing in.",
                   err=True)
    if not is_loopback(host):
        click.secho(f"Warning: listening on {host} makes the app reachable from other "
                    "machines; serve it behind https and set SEGMENT_EXPORT_PUBLIC_URL.",
                    fg="yellow", err=True)
    sock = bind(host, port)
    web = create_app(settings, runtime=app.runtime(), start_worker=with_worker,
                     worker_threads=workers)
    shown = f"[{host}]" if ":" in host else host
    worker = (f"worker: {workers or settings.worker_threads} threads" if with_worker
              else "no worker: `segment-export worker` processes execute the runs")
    click.echo(f"segment-export: serving http://{shown}:{sock.getsockname()[1]} "
               f"({worker}); Ctrl-C stops it.")
    serve(web, host=host, port=port, sock=sock)
