"""`segment-export db`: the state database."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.db import make_engine, upgrade_database
from segment_export.db.engine import current_revision
from segment_export.log import redact


@click.group("db")
def db_group() -> None:
    """Manage the state database."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target migration.")
@pass_app
def upgrade(app: AppContext, revision: str) -> None:
    """Apply the database migrations (also done automatically on start)."""
    engine = make_engine(app.settings)
    upgrade_database(engine, revision)
    click.echo(f"Database {redact(engine.url.render_as_string(hide_password=True))} "
               f"is at revision {current_revision(engine)}.")


@db_group.command("current")
@pass_app
def current(app: AppContext) -> None:
    """Show the applied migration revision."""
    click.echo(current_revision(make_engine(app.settings)) or "none")
