"""`segment-export serve`."""

from __future__ import annotations

import click


@click.command("serve")
def serve_command() -> None:
    """(being built) Start the web app and the worker together."""
