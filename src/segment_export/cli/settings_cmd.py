"""`segment-export settings` and `segment-export secrets`: configuration and keys."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet

from segment_export.cli.context import AppContext, pass_app
from segment_export.config import Settings


@click.command("settings")
@pass_app
def settings_command(app: AppContext) -> None:
    """List every setting with its environment variable and current value (secrets hidden)."""
    current = app.settings
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        shown = "(set, hidden)" if name == "secret_key" and value is not None else value
        click.echo(f"SEGMENT_EXPORT_{name.upper():<28} {shown!s:<45} {field.description or ''}")


@click.group("secrets")
def secrets_group() -> None:
    """Keys that encrypt secrets at rest."""


@secrets_group.command("generate-key")
def generate_key() -> None:
    """Print a new encryption key for SEGMENT_EXPORT_SECRET_KEY."""
    click.echo(Fernet.generate_key().decode())
