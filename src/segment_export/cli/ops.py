"""`segment-export backup`, `restore` and `purge`: keeping an installation safe and lean."""

from __future__ import annotations

from pathlib import Path

import click

from segment_export.cli.context import AppContext, pass_app


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


@click.command("backup")
@click.argument("destination", required=False, type=click.Path(path_type=Path))
@click.option("--include-key", is_flag=True,
              help="Also store the secrets key(s) in the backup (then keep the backup as safe "
              "as the key itself).")
@click.option("--no-profiles", is_flag=True,
              help="Leave out the profile store (e.g. while another process holds it).")
@pass_app
def backup_command(app: AppContext, destination: Path | None, include_key: bool,
                   no_profiles: bool) -> None:
    """Back up the state database and profile store to DESTINATION (a .tar.gz file or a
    directory; default: segment-export-<time>.tar.gz here). Safe while the service runs."""
    from segment_export.ops.backup import create_backup
    from segment_export.users import Role, require_role

    with app.sessions() as session:
        require_role(app.actor(session), Role.ADMIN)
    result = create_backup(settings=app.settings, engine=app.engine,
                           destination=destination or Path.cwd(), include_key=include_key,
                           profiles=not no_profiles)
    profiles = result.manifest["profiles"]
    click.echo(f"Wrote {result.path} ({_size(result.bytes)}): state database "
               f"({result.manifest['database']['dialect']})"
               + (f", profile store ({len(profiles['tables'])} tables)" if profiles else "")
               + (", secrets key" if include_key else "") + ".")
    if not no_profiles and not profiles:
        click.echo(f"The profiles are not in the backup: they live in "
                   f"{app.settings.profile_store.split('://')[0].split(':')[0]}; back them up "
                   "there.")
    if not include_key:
        fingerprints = ", ".join(result.manifest["key"]["fingerprints"]) or "none"
        click.echo(f"The secrets key is not in the backup (key fingerprint {fingerprints}); "
                   "keep it somewhere safe, apart from the backup.")


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Restore even if the configured key cannot decrypt the stored secrets "
              "(every connection must then be re-authorized).")
@pass_app
def restore_command(app: AppContext, archive: Path, yes: bool, force: bool) -> None:
    """Replace the state database and profile store with those of a backup ARCHIVE.

    Stop `serve` and every `worker` first.
    """
    from segment_export.ops.backup import read_manifest, restore_backup

    # Checked against the configured key before anything is asked or replaced.
    manifest = read_manifest(archive, settings=app.settings)
    if not yes:
        click.confirm(f"Replace the state database and profile store of {app.settings.data_dir} "
                      f"with the backup taken {manifest['created_at']}?", abort=True)
    result = restore_backup(settings=app.settings, archive=archive, force=force)
    click.echo(f"Restored the backup taken {manifest['created_at']} (version "
               f"{manifest['version']}): " + ", ".join(
                   f"{count:,} {name.replace('_', ' ')}" for name, count in result.counts.items())
               + ".")
    if result.requeued_runs:
        click.echo(f"{result.requeued_runs} run(s) that were running are queued again; a worker "
                   "resumes them after their last confirmed batch.")
    for warning in result.warnings:
        click.secho(f"Warning: {warning}", fg="yellow", err=True)


@click.command("purge")
@click.option("--older-than", "days", type=click.IntRange(min=1),
              help="Days after a run ends that its details are kept (default: the "
              "SEGMENT_EXPORT_RETENTION_DAYS setting).")
@click.option("--dry-run", is_flag=True, help="Only count what would be purged.")
@pass_app
def purge_command(app: AppContext, days: int | None, dry_run: bool) -> None:
    """Delete rejected rows and batch details of runs that ended before the retention period
    (run summaries, exports and the audit log are kept)."""
    from segment_export.ops.retention import purge_expired
    from segment_export.users import Role, require_role

    with app.sessions() as session:
        actor = app.actor(session)
        require_role(actor, Role.ADMIN)
        result = purge_expired(engine=app.engine,
                               retention_days=days or app.settings.retention_days,
                               dry_run=dry_run, actor=actor)
    verb = "Would purge" if dry_run else "Purged"
    click.echo(f"{verb} {result.rejected_rows:,} rejected rows and the details of "
               f"{result.batches:,} batches, from {result.runs:,} run(s) that ended before "
               f"{result.cutoff:%Y-%m-%d %H:%M} UTC.")


def register(group: click.Group) -> None:
    """Add these commands to the top-level command group."""
    for command in (backup_command, restore_command, purge_command):
        group.add_command(command)
