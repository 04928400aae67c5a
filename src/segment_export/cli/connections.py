"""`segment-export connections`: Constant Contact accounts, set up by admins over OAuth."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Literal, cast
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.table import Table

from segment_export.cli.context import AppContext, pass_app
from segment_export.definitions import connections as service
from segment_export.definitions.exports import list_exports
from segment_export.exports import suppression as suppressions
from segment_export.languages import N_, when

console = Console()


@click.group("connections")
def connections_group() -> None:
    """Connections to Constant Contact accounts (admins only)."""


@connections_group.command("add")
@click.argument("display_name")
@click.option("--client-id", required=True, help="The application's API key (client id).")
@click.option("--client-secret", prompt=True, hide_input=True,
              envvar="SEGMENT_EXPORT_CC_CLIENT_SECRET",
              help="The application's client secret (prompted, or from the environment).")
@click.option("--share/--admins-only", default=False, show_default=True,
              help="Let contributors use this connection in their exports.")
@click.option("--redirect-uri", default=service.DEFAULT_REDIRECT_URI, show_default=True,
              help="Redirect URI registered for the application in Constant Contact.")
@click.option("--i-agree", is_flag=True,
              help="Accept the data privacy and compliance statement (required).")
@click.option("--authorize/--no-authorize", default=True, show_default=True,
              help="Go on to the OAuth sign-in right away.")
@pass_app
def add(app: AppContext, display_name: str, client_id: str, client_secret: str, share: bool,
        redirect_uri: str, i_agree: bool, authorize: bool) -> None:
    """Add a connection; DISPLAY_NAME should say its purpose and target."""
    if not i_agree:
        click.echo(app.t(service.CONSENT_TEXT))
        i_agree = click.confirm(app.t(N_("Do you agree?")), default=False)
    with app.sessions() as session:
        actor = app.actor(session)
        conn = service.create_connection(session, actor=actor, spec=service.ConnectionSpec(
            display_name=display_name, client_id=client_id,
            client_secret=client_secret or None, consent=i_agree,
            shared_with_contributors=share, redirect_uri=redirect_uri))
        session.commit()
        click.echo(app.t(N_("Saved connection %(name)s (%(id)s)."),
                         name=repr(conn.display_name), id=conn.id))
    if authorize:
        _authorize(app, display_name, callback_url=None)


class _CallbackListener:
    """Listens on a loopback redirect URI for the browser's return from the consent page.

    Bound before the authorize URL is shown, so a fast browser cannot arrive too early.
    """

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        self.received: list[str] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                received.append(f"http://{parts.netloc}{self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"segment-export received the authorization; "
                                 b"you can close this tab.")

            def log_message(self, format: str, *args: object) -> None:  # the URL holds a code
                return

        self.server: HTTPServer | None = None
        if parts.hostname in {"127.0.0.1", "localhost"} and parts.port:
            try:
                self.server = HTTPServer((parts.hostname, parts.port), Handler)
            except OSError:
                self.server = None

    def wait(self, timeout: float = 300) -> str | None:
        if self.server is None:
            return None
        self.server.timeout = timeout
        self.server.handle_request()
        self.server.server_close()
        return self.received[0] if self.received else None


def _authorize(app: AppContext, name: str, callback_url: str | None) -> None:
    if callback_url is None:
        with app.sessions() as session:
            actor = app.actor(session)
            conn = service.get_connection(session, name_or_id=name)
            url = service.start_authorization(session, actor=actor, connection=conn,
                                              settings=app.settings)
            session.commit()
            listener = _CallbackListener(conn.redirect_uri or service.DEFAULT_REDIRECT_URI)
        click.echo(app.t(N_("Open this URL and sign in with a Constant Contact account "
                            "admin:")) + "\n")
        click.echo(url + "\n")
        sys.stdout.flush()  # the URL must reach a reading process before we block
        callback_url = listener.wait()
        if callback_url is None:
            callback_url = click.prompt(app.t(N_("Paste the full URL your browser was sent "
                                                 "back to")))
    with app.sessions() as session:
        actor = app.actor(session)
        conn = service.get_connection(session, name_or_id=name)
        service.complete_authorization(session, actor=actor, connection=conn,
                                       callback_url=callback_url, settings=app.settings,
                                       engine=app.engine)
        session.commit()
        click.echo(app.t(N_("Connected to %(account)s (%(email)s); export user: %(user)s."),
                         account=conn.account_name or app.t(N_("the account")),
                         email=conn.account_email or app.t(N_("no email")),
                         user=actor.username))


@connections_group.command("authorize")
@click.argument("name")
@click.option("--callback-url",
              help="Complete a sign-in started earlier with the URL the browser was sent back "
              "to (instead of starting one and waiting).")
@pass_app
def authorize(app: AppContext, name: str, callback_url: str | None) -> None:
    """Sign in to Constant Contact (again) for a connection (also: re-authorize)."""
    _authorize(app, name, callback_url)


@connections_group.command("list")
@pass_app
def list_(app: AppContext) -> None:
    """List connections with their status and who may use them."""
    with app.sessions() as session:
        rows = service.list_connections(session, actor=app.actor(session))
        t = app.t
        table = Table(t(N_("name")), t(N_("status")), t(N_("account")), t(N_("usable by")),
                      t(N_("token expires")))
        for c in rows:
            table.add_row(c.display_name, c.status, c.account_name or "-",
                          t(N_("admins, contributors")) if c.shared_with_contributors
                          else t(N_("admins")),
                          when(c.token_expires_at, app.language) if c.token_expires_at else "-")
    console.print(table if rows else app.t(N_("No connections yet: `segment-export connections "
                                             "add`.")))


@connections_group.command("set")
@click.argument("name")
@click.option("--sms-only/--no-sms-only", "sms_only", default=None,
              help="Whether the account takes SMS-only contacts (no email): exports then send "
              "members with a consented US mobile number and no email (docs/sms.md). The API "
              "cannot tell, so say so here; off (the default), they are refused.")
@click.option("--share/--admins-only", default=None,
              help="Let contributors use it in their exports, or admins only.")
@pass_app
def set_(app: AppContext, name: str, sms_only: bool | None, share: bool | None) -> None:
    """Change a connection's settings (admins)."""
    with app.sessions() as session:
        conn = service.update_connection(
            session, actor=app.actor(session),
            connection=service.get_connection(session, name_or_id=name),
            changes=service.ConnectionChanges(shared_with_contributors=share,
                                              sms_only_allowed=sms_only))
        session.commit()
        click.echo(f"{conn.display_name}: SMS-only contacts "
                   f"{'allowed' if conn.sms_only_allowed else 'not allowed'}; usable by "
                   f"{'admins, contributors' if conn.shared_with_contributors else 'admins'}.")


@connections_group.command("test")
@click.argument("name")
@pass_app
def test(app: AppContext, name: str) -> None:
    """Call Constant Contact and show the account the connection reaches."""
    with app.sessions() as session:
        conn = service.get_connection(session, name_or_id=name)
        result = service.check_connection(session, actor=app.actor(session), connection=conn,
                                          settings=app.settings, engine=app.engine)
    if result.ok:
        click.echo(app.t(N_("OK: %(account)s <%(email)s>; access token valid until "
                            "%(until)s."), account=result.account_name,
                         email=result.account_email,
                         until=when(result.token_expires_at, app.language)))
    else:
        raise click.ClickException(app.t(N_("The connection does not work: %(error)s"),
                                         error=app.t(result.error or "")))


@connections_group.command("remove")
@click.argument("name")
@click.option("--exports", "dependents", type=click.Choice(["remove", "detach"]),
              help="What to do with every export that uses the connection.")
@pass_app
def remove(app: AppContext, name: str, dependents: Literal["remove", "detach"] | None) -> None:
    """Revoke and delete a connection, removing or detaching the exports that use it."""
    with app.sessions() as session:
        actor = app.actor(session)
        conn = service.get_connection(session, name_or_id=name)
        using = [e for e in list_exports(session) if e.connection_id == conn.id]
        choice: dict[str, Literal["remove", "detach"]] = {}
        for export in using:
            choice[export.id] = dependents or cast(
                Literal["remove", "detach"],
                click.prompt(app.t(N_("Export %(name)s uses this connection: remove or "
                                      "detach?"), name=repr(export.name)),
                             type=click.Choice(["remove", "detach"])))
        service.remove_connection(session, actor=actor, connection=conn, settings=app.settings,
                                  exports=choice)
        session.commit()
    click.echo(app.t(N_("Removed connection %(name)s (exports handled: %(count)s)."),
                     name=repr(name), count=app.number(len(using))) if using
               else app.t(N_("Removed connection %(name)s."), name=repr(name)))


@connections_group.command("sync-unsubscribes")
@click.argument("name", required=False)
@click.option("--full", is_flag=True,
              help="Read every unsubscribed contact, not only those since the last read, and "
              "lift the suppressions Constant Contact no longer shows unsubscribed.")
@pass_app
def sync_unsubscribes(app: AppContext, name: str | None, full: bool) -> None:
    """Read unsubscribed contacts back from Constant Contact (NAME, or every connection).

    Suppressed contacts are never sent again by any export over the connection.
    """
    with app.sessions() as session:
        actor = app.actor(session)
        targets = ([service.get_connection(session, name_or_id=name)] if name else
                   [c for c in service.list_connections(session, actor=actor)
                    if c.status == "connected"])
        for conn in targets:
            result = suppressions.sync_connection(session, actor=actor, connection=conn,
                                                  settings=app.settings, engine=app.engine,
                                                  full=full)
            session.commit()
            n = app.number
            click.echo(app.t(N_("%(name)s: read %(read)s unsubscribed (%(how)s), %(added)s new, "
                                "%(lifted)s lifted; %(suppressed)s suppressed."),
                             name=conn.display_name, read=n(result.read),
                             how=app.t(N_("full read") if result.full
                                       else N_("since the last read")),
                             added=n(result.added), lifted=n(result.lifted),
                             suppressed=n(result.suppressed)))
    if not targets:
        click.echo(app.t(N_("No connected connections.")))


@connections_group.command("suppression")
@click.argument("name")
@click.option("--check", "email", help="Say whether this one address is suppressed.")
@pass_app
def suppression(app: AppContext, name: str, email: str | None) -> None:
    """Show a connection's suppression count and last read (emails are not kept)."""
    with app.sessions() as session:
        actor = app.actor(session)
        conn = service.get_connection(session, name_or_id=name)
        found = suppressions.connection_suppression(actor=actor, connection=conn,
                                                    engine=app.engine)
        checked = None if email is None else suppressions.check_email(
            actor=actor, connection=conn, engine=app.engine, email=email)
    synced = when(found.synced_at, app.language) if found.synced_at else app.t(N_("never"))
    click.echo(app.t(N_("%(name)s: %(count)s suppressed; last read %(at)s."),
                     name=conn.display_name, count=app.number(found.suppressed), at=synced))
    if checked is not None:
        click.echo(app.t(N_("%(email)s: suppressed.") if checked
                         else N_("%(email)s: not suppressed."), email=email))
