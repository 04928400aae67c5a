"""`segment-export demo`: the main job on embedded defaults, against the bundled emulator."""

from __future__ import annotations

from pathlib import Path

import click

from segment_export.cli.context import AppContext, pass_app
from segment_export.cli.runs import console
from segment_export.demo import DEMO_ROWS, run_demo
from segment_export.languages import N_


@click.command("demo")
@click.option("--profiles", "profiles_file", type=click.Path(exists=True, dir_okay=False,
                                                             path_type=Path),
              help="Import this CSV/Parquet/JSONL (columns email, first_name, last_name are "
              "mapped by name; every row is in the segment) instead of generating profiles.")
@click.option("--emulator-url", help="Use the emulator running at this URL instead of starting "
              "one (it is reset and seeded through its control endpoints).")
@click.option("--rows", default=DEMO_ROWS, show_default=True,
              help="How many sample profiles to generate.")
@pass_app
def demo_command(app: AppContext, profiles_file: Path | None, emulator_url: str | None,
                 rows: int) -> None:
    """Export a sample segment to a Constant Contact list on the bundled emulator."""
    from segment_export.cli.runs import print_report
    from segment_export.db import make_engine, make_session_factory
    from segment_export.db.models import RejectedRow

    result = run_demo(app.settings, profiles_file=profiles_file, emulator_url=emulator_url,
                      rows=rows, say=lambda said: click.echo(said.in_language(app.language)))
    demo_app = type(app)(language=app.language)  # the report in the caller's language
    demo_app.settings = app.settings.model_copy(update={"data_dir": result.workspace,
                                                        "database_url": None})
    print_report(demo_app, result.run.id)
    engine = make_engine(demo_app.settings)
    with make_session_factory(engine)() as session:
        rejected = session.query(RejectedRow).filter(RejectedRow.run_id == result.run.id)
        # One example of each reason says more than five of the most common one.
        sample = {row.reason: row for row in rejected.order_by(RejectedRow.id.desc())}
    engine.dispose()
    if sample:
        console.print(app.t(N_("An example of each rejection (all: `segment-export runs "
                               "rejected`):")))
        for reason, row in sorted(sample.items()):
            console.print(app.t(N_("  %(reason)s: customer %(id)s, %(email)s"), reason=reason,
                                id=row.customer_id, email=repr(row.email)), markup=False)
    console.print(app.t(N_("The list now has %(count)s members. Demo state: %(path)s "
                           "(SEGMENT_EXPORT_DATA_DIR=%(path)s segment-export runs list)"),
                        count=app.number(result.list_members), path=result.workspace))
    if result.run.status not in {"succeeded", "succeeded_with_rejections"}:
        raise SystemExit(1)
