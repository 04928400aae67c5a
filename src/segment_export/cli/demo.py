"""`segment-export demo`: the main job on embedded defaults, against the bundled emulator."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.db.engine import current_revision


@click.command("demo")
@click.option("--profiles", "profiles_file", type=click.Path(exists=True, dir_okay=False),
              help="Import this file instead of generating sample profiles.")
@click.option("--emulator-url", help="Use a running emulator instead of starting one.")
@pass_app
def demo_command(app: AppContext, profiles_file: str | None, emulator_url: str | None) -> None:
    """Export a sample segment to a Constant Contact list on the bundled emulator."""
    revision = current_revision(app.engine)
    click.echo(f"State store ready at {app.settings.data_dir} (schema {revision}).")
    click.echo(
        "The export pipeline is not built yet. When it is, this command will start the "
        "bundled Constant Contact emulator, generate sample profiles, create a segment, "
        "connect over OAuth, export the segment to a list and print the run report."
    )
