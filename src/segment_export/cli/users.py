"""`segment-export users`: people, their roles, passwords and API tokens."""

from __future__ import annotations

import sys

import click
from babel.dates import format_date
from rich.console import Console
from rich.table import Table

from segment_export import users as accounts
from segment_export.cli.context import AppContext, pass_app
from segment_export.languages import N_, when
from segment_export.web.render import ROLE_LABELS

console = Console()


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set and whether it was generated (and so must be shown once)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin: standard input held no password")
        return password, False
    return accounts.generate_password(), True


@click.group("users")
def users_group() -> None:
    """Users and roles (admin, contributor, viewer)."""


@users_group.command("set-language")
@click.argument("username")
@click.argument("language", type=click.Choice(["en", "ms", "none"]))
@pass_app
def set_language_(app: AppContext, username: str, language: str) -> None:
    """Set a user's interface language (yourself, or anyone as an admin); `none` unsets it."""
    with app.sessions() as session:
        user = accounts.set_language(session, actor=app.actor(session),
                                     user=accounts.get_user(session, username=username),
                                     language=None if language == "none" else language)
        session.commit()
    click.echo(app.t(N_("Language of %(name)s: %(language)s."), name=repr(user.username),
                     language=user.language or app.t(N_("not chosen"))))


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in accounts.Role]), required=True)
@click.option("--email", help="Where alerts for this user go.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (otherwise one is generated and "
              "printed once).")
@pass_app
def create(app: AppContext, username: str, role: str, email: str | None,
           password_stdin: bool) -> None:
    """Add a user (admins only) who signs in to the web app with a password."""
    password, generated = _read_password(password_stdin)
    with app.sessions() as session:
        user = accounts.create_user(
            session,
            spec=accounts.UserSpec(username=username, role=accounts.Role(role),
                                   password=password, email=email),
            actor=app.actor(session),
        )
        session.commit()
    click.echo(app.t(N_("Created %(role)s %(name)s."), role=app.t(ROLE_LABELS.get(user.role,
                                                                                   user.role)),
                     name=repr(user.username)))
    if generated:
        click.echo(app.t(N_("Password (shown only now): %(password)s"), password=password))


@users_group.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (otherwise one is generated and "
              "printed once).")
@pass_app
def set_password_command(app: AppContext, username: str, password_stdin: bool) -> None:
    """Give a user a new password; their web sessions end and their API tokens are revoked."""
    password, generated = _read_password(password_stdin)
    with app.sessions() as session:
        revoked = accounts.set_password(
            session, actor=app.actor(session),
            user=accounts.get_user(session, username=username), password=password)
        session.commit()
    click.echo(app.t(N_("New password set for %(name)s; web sessions ended: %(sessions)s, API "
                        "tokens revoked: %(tokens)s."), name=repr(username),
                     sessions=app.number(revoked.sessions), tokens=app.number(revoked.tokens)))
    if generated:
        click.echo(app.t(N_("Password (shown only now): %(password)s"), password=password))


@users_group.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List users with their roles."""
    with app.sessions() as session:
        app.actor(session)
        t = app.t
        table = Table(t(N_("user")), t(N_("role")), t(N_("status")), t(N_("password")),
                      t(N_("created")))
        for user in accounts.list_users(session):
            table.add_row(user.username, user.role,
                          t(N_("disabled")) if user.disabled else t(N_("active")),
                          t(N_("set")) if user.password_hash else t(N_("none")),
                          format_date(user.created_at.date(), "medium", locale=app.language))
    console.print(table)


@users_group.command("set-email")
@click.argument("username")
@click.argument("address", required=False)
@click.option("--clear", is_flag=True, help="Remove the user's address.")
@pass_app
def set_email_command(app: AppContext, username: str, address: str | None, clear: bool) -> None:
    """Set where USERNAME's alert emails go (admins only; active admins receive alerts)."""
    if bool(address) == clear:
        raise click.UsageError(app.t(N_("Give an ADDRESS or --clear")))

    with app.sessions() as session:
        user = accounts.set_email(session, actor=app.actor(session), username=username,
                                  email=None if clear else address)
        session.commit()
    click.echo(app.t(N_("%(name)s receives alert emails at %(email)s."), name=repr(username),
                     email=user.email) if user.email
               else app.t(N_("%(name)s has no email address now."), name=repr(username)))


@users_group.command("disable")
@click.argument("username")
@pass_app
def disable(app: AppContext, username: str) -> None:
    """Disable a user (admins only): sessions end, tokens stop working."""
    with app.sessions() as session:
        accounts.disable_user(session, actor=app.actor(session), username=username)
        session.commit()
    click.echo(app.t(N_("Disabled %(name)s."), name=repr(username)))


@users_group.group("token")
def token_group() -> None:
    """API tokens for the REST API (sent as `Authorization: Bearer <token>`)."""


@token_group.command("create")
@click.argument("name")
@click.option("--user", "username", help="The user the token acts as (default: you).")
@pass_app
def token_create(app: AppContext, name: str, username: str | None) -> None:
    """Issue a token; it is printed once and only its hash is kept.

    No password is asked here, unlike on the web and API: whoever runs the command line can
    read the configuration and the state database, and so is trusted as an administrator.
    """
    with app.sessions() as session:
        actor = app.actor(session)
        owner = accounts.get_user(session, username=username) if username else actor
        issued = accounts.create_api_token(session, actor=actor, user=owner, name=name)
        session.commit()
    click.echo(app.t(N_("Token %(name)s for %(user)s (shown only now):"), name=repr(name),
                     user=repr(owner.username)), err=True)
    click.echo(issued.secret)


@token_group.command("list")
@click.option("--user", "username", help="Whose tokens (default: yours).")
@pass_app
def token_list(app: AppContext, username: str | None) -> None:
    """List tokens: id, name, prefix, last use, revoked."""
    with app.sessions() as session:
        actor = app.actor(session)
        owner = accounts.get_user(session, username=username) if username else actor
        tokens = accounts.list_api_tokens(session, actor=actor, user=owner)
        t, lang = app.t, app.language
        table = Table("id", t(N_("name")), t(N_("starts with")), t(N_("created")),
                      t(N_("last used")), t(N_("revoked")))
        for token in tokens:
            table.add_row(token.id, token.name, token.prefix + "…", when(token.created_at, lang),
                          when(token.last_used_at, lang) if token.last_used_at else "-",
                          when(token.revoked_at, lang) if token.revoked_at else "-")
    console.print(table if tokens else app.t(N_("No tokens for %(name)s."),
                                             name=repr(owner.username)))


@token_group.command("revoke")
@click.argument("token")
@pass_app
def token_revoke(app: AppContext, token: str) -> None:
    """Revoke a token by id or by the prefix shown in lists."""
    with app.sessions() as session:
        found = accounts.get_api_token(session, id_or_prefix=token)
        accounts.revoke_api_token(session, actor=app.actor(session), token=found)
        session.commit()
    click.echo(app.t(N_("Revoked token %(prefix)s…."), prefix=found.prefix))
