"""`segment-export users`: people and their roles."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from segment_export.cli.context import AppContext, pass_app
from segment_export.users import Role, create_user, disable_user, list_users

console = Console()


@click.group("users")
def users_group() -> None:
    """Users and roles (admin, contributor, viewer)."""


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@pass_app
def create(app: AppContext, username: str, role: str) -> None:
    """Add a user (admins only)."""
    with app.sessions() as session:
        user = create_user(session, actor=app.actor(session), username=username, role=Role(role))
        session.commit()
    click.echo(f"Created {user.role} {user.username!r}.")


@users_group.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List users with their roles."""
    with app.sessions() as session:
        app.actor(session)
        table = Table("user", "role", "status", "created")
        for user in list_users(session):
            table.add_row(user.username, user.role, "disabled" if user.disabled else "active",
                          f"{user.created_at:%Y-%m-%d}")
    console.print(table)


@users_group.command("disable")
@click.argument("username")
@pass_app
def disable(app: AppContext, username: str) -> None:
    """Disable a user (admins only)."""
    with app.sessions() as session:
        disable_user(session, actor=app.actor(session), username=username)
        session.commit()
    click.echo(f"Disabled {username!r}.")
