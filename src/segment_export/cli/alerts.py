"""`segment-export alerts`: where failure and rejection alerts go."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.exports.alerts import get_webhook, set_webhook


@click.group("alerts")
def alerts_group() -> None:
    """Alerts on failed runs and on rejected rows over an export's threshold."""


@alerts_group.command("show")
@pass_app
def show(app: AppContext) -> None:
    """Show the webhook alerts are posted to."""
    with app.sessions() as session:
        url = get_webhook(session)
    click.echo(url or "No alert webhook is set.")


@alerts_group.command("set-webhook")
@click.argument("url")
@pass_app
def set_(app: AppContext, url: str) -> None:
    """Post a JSON alert to URL when a run fails or rejects more rows than its threshold."""
    with app.sessions() as session:
        set_webhook(session, actor=app.actor(session), url=url)
        session.commit()
    click.echo(f"Alerts go to {url}.")


@alerts_group.command("clear")
@pass_app
def clear(app: AppContext) -> None:
    """Stop sending alerts."""
    with app.sessions() as session:
        set_webhook(session, actor=app.actor(session), url=None)
        session.commit()
    click.echo("Alert webhook removed.")
