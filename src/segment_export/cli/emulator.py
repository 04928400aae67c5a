"""`segment-export emulator`: run the bundled Constant Contact emulator (sandbox mode)."""

from __future__ import annotations

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.emulator import Backend, EmulatorConfig, serve
from segment_export.emulator.schemas import SeedApp, SeedRequest
from segment_export.net import bind, is_loopback

# Deliberately obvious sandbox values: they open nothing but this emulator.
DEMO_CLIENT_ID = "sandbox-client-id"
DEMO_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - a published demo value
DEMO_REDIRECT_URIS = (
    "http://127.0.0.1:8000/connections/callback",
    "http://localhost:8000/connections/callback",
)


def demo_seed() -> SeedRequest:
    """A demo app, account, list and a few contacts (one of them unsubscribed)."""
    return SeedRequest(
        apps=[SeedApp(client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET,
                      redirect_uris=list(DEMO_REDIRECT_URIS), name="segment-export (demo)")],
        account={"organization_name": "Sandbox Shop"},
        custom_fields=["loyalty_tier"],
        lists=[{"name": "Sandbox newsletter", "description": "Seeded by --seed-demo"}],
        contacts=[
            {"email": "ada@sandbox.example", "first_name": "Ada", "last_name": "Lovelace",
             "lists": ["Sandbox newsletter"]},
            {"email": "opted.out@sandbox.example", "first_name": "Otto",
             "permission_to_send": "unsubscribed"},
        ],
    )


@click.group("emulator")
def emulator_group() -> None:
    """Run the bundled Constant Contact emulator (sandbox mode: no account needed)."""


@emulator_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address is warned about.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--requests-per-second", default=4.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="API requests per key per second.")
@click.option("--daily-quota", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="API requests per key per UTC day.")
@click.option("--activity-seconds", default=0.0, show_default=True,
              type=click.FloatRange(min=0), help="Time an activity takes to complete.")
@click.option("--token-lifetime", default=86_400.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Access token lifetime, seconds.")
@click.option("--max-body-bytes", default=4_000_000, show_default=True,
              type=click.IntRange(min=1), help="Import bodies are cut (silently) past this size.")
@click.option("--max-contacts-per-import", default=40_000, show_default=True,
              type=click.IntRange(min=1))
@click.option("--auto-approve", is_flag=True,
              help="Skip the consent page: authorize redirects back at once.")
@click.option("--seed-demo", is_flag=True,
              help=f"Register a demo app ({DEMO_CLIENT_ID} / {DEMO_CLIENT_SECRET}) with a list "
                   "and a few contacts.")
@pass_app
def serve_command(
    app: AppContext,
    host: str,
    port: int,
    requests_per_second: float,
    daily_quota: int,
    activity_seconds: float,
    token_lifetime: float,
    max_body_bytes: int,
    max_contacts_per_import: int,
    auto_approve: bool,
    seed_demo: bool,
) -> None:
    """Serve the emulated V3 API, OAuth server and control endpoints until interrupted."""
    _ = app.settings  # configures logging like every other command
    config = EmulatorConfig(
        requests_per_second=requests_per_second,
        daily_quota=daily_quota,
        activity_seconds=activity_seconds,
        access_token_seconds=token_lifetime,
        max_body_bytes=max_body_bytes,
        max_contacts_per_import=max_contacts_per_import,
        auto_approve=auto_approve,
    )
    backend = Backend(config)
    if seed_demo:
        backend.seed(demo_seed())
    if not is_loopback(host):
        click.secho(f"Warning: listening on {host}, not only on this machine. The emulator's "
                    "control endpoints have no authentication.", fg="yellow", err=True)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc}") from exc
    base = f"http://{host}:{sock.getsockname()[1]}"
    click.echo(f"Constant Contact emulator on {base}")
    click.echo(f"  SEGMENT_EXPORT_CC_API_URL={base}/v3")
    click.echo(f"  SEGMENT_EXPORT_CC_AUTH_URL={base}/oauth2/default/v1")
    click.echo(f"  control: {base}/_emulator/state")
    if seed_demo:
        click.echo(f"  demo app: client id {DEMO_CLIENT_ID}, secret {DEMO_CLIENT_SECRET}, "
                   f"redirect URIs {', '.join(DEMO_REDIRECT_URIS)}")
    serve(host=host, port=port, backend=backend, sock=sock)
