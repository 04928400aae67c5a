"""The `segment-export` command line: the same verbs as the REST API, one module per noun."""

from __future__ import annotations

import sys

import click

from segment_export import __version__
from segment_export.cli.context import AppContext, pass_app
from segment_export.cli.db import db_group
from segment_export.errors import SegmentExportError
from segment_export.languages import N_

__all__ = ["AppContext", "cli", "main", "pass_app"]
_current: AppContext | None = None  # the invocation's context, for main()'s error messages


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="segment-export")
@click.option("--as-user", "username", envvar="SEGMENT_EXPORT_CLI_USER", metavar="NAME",
              help="Act as this user (default: the first admin, created on first use).")
@click.option("--lang", "language", metavar="CODE",
              type=click.Choice(["en", "ms"], case_sensitive=False),
              help="Language of messages and run reports: en or ms (default: the --as-user "
                   "user's setting, else SEGMENT_EXPORT_LANGUAGE or LANG, else en). Help texts "
                   "stay in English.")
@click.pass_context
def cli(ctx: click.Context, username: str | None, language: str | None) -> None:
    """Keep customer segments flowing into Constant Contact contact lists.

    Settings come from SEGMENT_EXPORT_* environment variables or a .env file
    (see `segment-export settings`).
    """
    global _current
    ctx.obj = _current = AppContext(username, language)


cli.add_command(db_group)


def _register_optional_groups() -> None:
    # Each noun lives in its own module; importing them here keeps `--help` complete.
    from segment_export.cli import (
        alerts,
        connections,
        demo,
        emulator,
        exports,
        ops,
        profiles,
        runs,
        segments,
        serve,
        settings_cmd,
        users,
        worker,
    )

    cli.add_command(demo.demo_command)
    cli.add_command(settings_cmd.settings_command)
    cli.add_command(settings_cmd.secrets_group)
    cli.add_command(emulator.emulator_group)
    cli.add_command(profiles.profiles_group)
    cli.add_command(segments.segments_group)
    cli.add_command(connections.connections_group)
    cli.add_command(exports.exports_group)
    cli.add_command(runs.runs_group)
    cli.add_command(users.users_group)
    cli.add_command(serve.serve_command)
    cli.add_command(worker.worker_command)
    cli.add_command(worker.refresh_command)
    cli.add_command(worker.schedule_group)
    cli.add_command(alerts.alerts_group)
    ops.register(cli)


_register_optional_groups()


def main() -> None:
    """Entry point: run the CLI and turn product errors into a message and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SegmentExportError as exc:
        t = _current.t if _current is not None else _english
        # A message with values is translated with them; a fixed one when it is a msgid.
        said = t(exc.msgid, **exc.values) if exc.msgid and exc.values is not None \
            else t(exc.message)
        click.secho(t(N_("Error: %(message)s"), message=said), fg="red", err=True)
        if exc.hint:
            click.echo(f"  {t(exc.hint)}", err=True)
        sys.exit(1)


def _english(message: str, /, **variables: object) -> str:
    return message % variables if variables else message
