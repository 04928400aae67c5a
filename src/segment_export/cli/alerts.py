"""`segment-export alerts`: where failure and rejection alerts go."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.exports.alerts import (
    add_email_address,
    admin_addresses,
    email_enabled,
    get_webhook,
    list_email_addresses,
    remove_email_address,
    send_test_email,
    set_webhook,
)
from segment_export.languages import N_


@click.group("alerts")
def alerts_group() -> None:
    """Alerts on failed runs and on rejected rows over an export's threshold."""


@alerts_group.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Show the webhook alerts are posted to and who receives alert emails."""
    with app.sessions() as session:
        url = get_webhook(session)
        admins = admin_addresses(session)
        chosen = list_email_addresses(session)
    click.echo(app.t(N_("Webhook: %(url)s"), url=url) if url
               else app.t(N_("No alert webhook is set.")))
    settings = app.settings
    if not email_enabled(settings):
        click.echo(app.t(N_("Email: off (SEGMENT_EXPORT_SMTP_HOST is not set).")))
        return
    click.echo(app.t(N_("Email: through %(host)s (%(security)s) from %(sender)s"),
                     host=settings.smtp_host, security=settings.smtp_security,
                     sender=settings.smtp_from))
    for address in admins:
        click.echo(app.t(N_("  %(address)s (admin)"), address=address))
    for address in chosen:
        if address not in admins:
            click.echo(f"  {address}")
    if not admins and not chosen:
        click.echo(app.t(N_("  nobody: give an admin an email address or use "
                            "`alerts email add`")))


@alerts_group.command("set-webhook")
@click.argument("url")
@pass_app
def set_(app: AppContext, url: str) -> None:
    """Post a JSON alert to URL when a run fails or rejects more rows than its threshold."""
    with app.sessions() as session:
        set_webhook(session, actor=app.actor(session), url=url)
        session.commit()
    click.echo(app.t(N_("Alerts go to %(url)s."), url=url))


@alerts_group.command("clear")
@pass_app
def clear(app: AppContext) -> None:
    """Stop posting alerts to the webhook (alert emails are not affected)."""
    with app.sessions() as session:
        set_webhook(session, actor=app.actor(session), url=None)
        session.commit()
    click.echo(app.t(N_("Alert webhook removed.")))


@alerts_group.group("email")
def email_group() -> None:
    """Who receives alert emails besides the active admins with an email address."""


@email_group.command("list")
@pass_app
def email_list(app: AppContext) -> None:
    """List every recipient of alert emails: admins, then the added addresses."""
    with app.sessions() as session:
        admins = admin_addresses(session)
        chosen = list_email_addresses(session)
    for address in admins:
        click.echo(f"{address}\tadmin")
    for address in chosen:
        click.echo(f"{address}\tadded")
    if not admins and not chosen:
        click.echo(app.t(N_("Nobody receives alert emails.")))
    if not email_enabled(app.settings):
        click.echo(app.t(N_("Email alerts are off until SEGMENT_EXPORT_SMTP_HOST is set.")),
                   err=True)


@email_group.command("add")
@click.argument("address")
@pass_app
def email_add(app: AppContext, address: str) -> None:
    """Send alert emails to ADDRESS too."""
    with app.sessions() as session:
        added = add_email_address(session, actor=app.actor(session), address=address)
        session.commit()
    click.echo(app.t(N_("Alert emails also go to %(address)s."), address=added))


@email_group.command("remove")
@click.argument("address")
@pass_app
def email_remove(app: AppContext, address: str) -> None:
    """Stop sending alert emails to ADDRESS (an admin's own address goes with the admin)."""
    with app.sessions() as session:
        removed = remove_email_address(session, actor=app.actor(session), address=address)
        session.commit()
    click.echo(app.t(N_("Alert emails no longer go to %(address)s."), address=removed))


@email_group.command("test")
@click.option("--to", "to", multiple=True, metavar="ADDRESS",
              help="Send only to this address (repeatable); default: every recipient.")
@pass_app
def email_test(app: AppContext, to: tuple[str, ...]) -> None:
    """Send a test message through the configured mail server."""
    with app.sessions() as session:
        sent = send_test_email(session, actor=app.actor(session), settings=app.settings,
                               to=list(to) or None)
        session.commit()
    click.echo(app.t(N_("Test message sent to %(addresses)s."), addresses=", ".join(sent)))
