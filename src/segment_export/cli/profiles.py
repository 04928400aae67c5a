"""`segment-export profiles`: import, inspect and generate unified customer profiles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.languages import N_

if TYPE_CHECKING:
    from segment_export.profiles import ProfileStore

# Kept literal (and tested equal to profiles.importer.FORMATS) so `--help` need not load DuckDB.
FORMAT_CHOICES = ("csv", "parquet", "jsonl")


@contextmanager
def open_store(app: AppContext) -> Iterator[ProfileStore]:
    """The configured profile store (SEGMENT_EXPORT_PROFILE_STORE), closed afterwards."""
    from segment_export.profiles.engines import open_profile_store

    store = open_profile_store(app.settings)
    try:
        yield store
    finally:
        store.close()


def require_profile_role(app: AppContext, *roles: str) -> None:
    """Refuse unless the acting user (--as-user, else the first admin) holds one of ``roles``:
    importing replaces everyone's data (admins); columns are for those who build segments."""
    from segment_export.users import Role, require_role

    with app.sessions() as session:
        require_role(app.actor(session), *(Role(r) for r in roles))


@click.group("profiles")
def profiles_group() -> None:
    """Unified customer profiles: import, inspect, generate sample data."""


@profiles_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--id-column", default="customer_id", show_default=True,
              help="The column holding each customer's unique id.")
@click.option("--mode", type=click.Choice(["replace", "upsert"]), default="replace",
              show_default=True,
              help="replace: the file becomes the profiles. upsert: add or replace by id "
              "(the last row of a repeated id wins).")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default=None,
              help="File format; default: from the extension.")
@click.option("--email-column", default="email", show_default=True,
              help="The column holding email addresses; the import is refused without it.")
@click.option("--no-email-column", is_flag=True,
              help="Import even though no column holds email addresses.")
@pass_app
def import_command(
    app: AppContext, file: Path, id_column: str, mode: str, fmt: str | None,
    email_column: str, no_email_column: bool,
) -> None:
    """Import profiles from a CSV, Parquet or JSON Lines FILE (admins)."""
    from segment_export.profiles.imports import ProfileImport

    require_profile_role(app, "admin")
    options = ProfileImport(id_column=id_column, mode="upsert" if mode == "upsert" else "replace",
                            format=fmt, email_column=None if no_email_column else email_column)
    started = time.perf_counter()
    with open_store(app) as store:
        summary = store.import_file(file, options)
    seconds = time.perf_counter() - started
    n = app.number
    note = (app.t(N_(", %(count)s repeated ids (last row kept)"), count=n(summary.superseded))
            if summary.superseded else "")
    click.echo(app.t(
        N_("Imported %(rows)s rows and %(columns)s columns from %(file)s (%(mode)s%(note)s) in "
           "%(seconds)s s; the store holds %(total)s profiles keyed by %(id)s."),
        rows=n(summary.rows), columns=n(len(summary.columns)), file=file.name,
        mode=summary.mode, note=note, seconds=n(round(seconds, 1)), total=n(summary.total),
        id=repr(summary.id_column)))


@profiles_group.command("show")
@pass_app
def show_command(app: AppContext) -> None:
    """Show how many profiles there are and their columns (admins and contributors)."""
    require_profile_role(app, "admin", "contributor")
    from rich.console import Console
    from rich.table import Table

    with open_store(app) as store:
        count, schema, id_column = store.count(), store.schema(), store.id_column
        store_location = store.location
    if not schema:
        click.echo(app.t(N_("No profiles imported yet (segment-export profiles import FILE).")))
        return
    click.echo(app.t(N_("%(count)s profiles in %(where)s, keyed by %(id)s."),
                     count=app.number(count), where=store_location, id=repr(id_column)))
    table = Table(app.t(N_("column")), app.t(N_("type")))
    for name, dtype in schema.items():
        table.add_row(name + (" (id)" if name == id_column else ""), dtype)
    Console().print(table)


@profiles_group.command("generate")
@click.option("--rows", type=click.IntRange(min=1), required=True, help="How many profiles.")
@click.option("--seed", type=int, default=42, show_default=True,
              help="The same seed (and --as-of) gives the same profiles.")
@click.option("--as-of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The 'today' that dates are generated around (default: today, UTC).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write a .csv, .parquet or .jsonl file instead of importing into the store.")
@pass_app
def generate_command(
    app: AppContext, rows: int, seed: int, as_of: datetime | None, out: Path | None
) -> None:
    """Generate realistic sample profiles (several scripts, some bad email addresses);
    importing them into the store takes an admin."""
    from segment_export.profiles import ProfileImport, generate_profiles, write_profiles

    if out is None:
        require_profile_role(app, "admin")
    started = time.perf_counter()
    table = generate_profiles(rows=rows, seed=seed, as_of=as_of.date() if as_of else None)
    if out is not None:
        write_profiles(table, out)
        click.echo(app.t(N_("Wrote %(count)s profiles to %(path)s in %(seconds)s s."),
                         count=app.number(rows), path=out,
                         seconds=app.number(round(time.perf_counter() - started, 1))))
        return
    with open_store(app) as store:
        summary = store.import_table(table, ProfileImport(id_column="customer_id",
                                                          email_column="email"))
    click.echo(app.t(
        N_("Generated and imported %(count)s profiles in %(seconds)s s (replacing the previous "
           "profiles)."), count=app.number(summary.rows),
        seconds=app.number(round(time.perf_counter() - started, 1))))
