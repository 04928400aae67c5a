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
        click.echo(f"SEGMENT_EXPORT_{name.upper():<28} {shown_value(getattr(current, name))!s:<45} "
                   f"{field.description or ''}")


def shown_value(value: object) -> str:
    """A setting as `settings` prints it: secrets hidden, URL passwords and tokens redacted the
    way the logs redact them."""
    from pydantic import SecretStr

    from segment_export.log import redact

    if isinstance(value, SecretStr):
        return "(set, hidden)"
    return "None" if value is None else redact(str(value))


@click.group("secrets")
def secrets_group() -> None:
    """Keys that encrypt secrets at rest."""


@secrets_group.command("generate-key")
def generate_key() -> None:
    """Print a new encryption key for SEGMENT_EXPORT_SECRET_KEY."""
    click.echo(Fernet.generate_key().decode())


@secrets_group.command("rotate")
@click.option("--new-key/--no-new-key", default=True, show_default=True,
              help="With the key file: write a new key first in it before re-encrypting.")
@click.option("--drop-old", is_flag=True,
              help="Afterwards remove the old keys (checked first: nothing may still need them).")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rows re-encrypted per transaction.")
@pass_app
def rotate(app: AppContext, new_key: bool, drop_old: bool, batch_size: int) -> None:
    """Re-encrypt every stored secret under a new key, while the service runs."""
    from segment_export import audit
    from segment_export.ops.keys import rotate_keys
    from segment_export.users import Role, require_role

    with app.sessions() as session:
        actor = app.actor(session)
        require_role(actor, Role.ADMIN)
        result = rotate_keys(settings=app.settings, engine=app.engine, new_key=new_key,
                             drop_old=drop_old, batch_size=batch_size)
        audit.record(session, actor=actor, action="secrets.rotated", target_type="system",
                     newest_key=result.newest, generated=result.generated,
                     reencrypted=result.reencrypted.values, dropped_keys=result.dropped)
        session.commit()
    where = "the key file" if result.source == "file" else "SEGMENT_EXPORT_SECRET_KEY"
    click.echo(("Generated a new key in the key file; " if result.generated else "")
               + f"re-encrypted {result.reencrypted.values} secret(s) under the newest key of "
               f"{where} (fingerprint {result.newest}); {result.reencrypted.current} already "
               "were.")
    if result.dropped:
        click.echo(f"Removed {len(result.dropped)} old key(s): {', '.join(result.dropped)}.")
    if result.instructions:
        click.echo(result.instructions)
