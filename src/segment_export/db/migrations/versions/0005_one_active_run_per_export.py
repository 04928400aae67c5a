"""one active run per export

A partial unique index on runs(export_id) over queued, running and paused real runs, so that two
requests at once (a manual run and the scheduler's tick) cannot both start a run of one export.
Active duplicates left by that race before this revision are cancelled, oldest kept.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept literal: a migration must not change when the model's constant does.
ONE_ACTIVE_RUN = "status IN ('queued', 'running', 'paused') AND NOT dry_run"


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE runs SET status = 'cancelled', "
        "message = 'Cancelled: another run of this export was already active' "
        f"WHERE {ONE_ACTIVE_RUN} AND EXISTS (SELECT 1 FROM runs AS older "
        "WHERE older.export_id = runs.export_id AND older.status IN ('queued', 'running', "
        "'paused') AND NOT older.dry_run AND (older.queued_at < runs.queued_at OR "
        "(older.queued_at = runs.queued_at AND older.id < runs.id)))"))
    op.create_index("uq_runs_one_active_per_export", "runs", ["export_id"], unique=True,
                    sqlite_where=sa.text(ONE_ACTIVE_RUN),
                    postgresql_where=sa.text(ONE_ACTIVE_RUN))


def downgrade() -> None:
    op.drop_index("uq_runs_one_active_per_export", table_name="runs")
