"""unsettled batches

A run's next run now settles the batches an ended run (failed, cancelled) left in flight. Two
things go with it:

- a partial index on the batches still in flight, so finding them at each run's start does not
  scan every batch of the installation;
- batches left in flight by runs that had ended before this version are marked ``unknown``, as
  if that version had settled them without an answer: later runs have written the delivered
  state since, and settling one of them now would put its contacts over later removals (a
  contact someone put back by hand would be removed again). Nothing changes for them: before,
  they were never settled either.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSETTLED = "state IN ('sent', 'pending')"
ENDED = "('succeeded', 'succeeded_with_rejections', 'failed', 'cancelled', 'skipped')"


def upgrade() -> None:
    op.execute(sa.text(f"UPDATE run_batches SET state = 'unknown' WHERE {UNSETTLED} AND run_id IN "
                       f"(SELECT id FROM runs WHERE status IN {ENDED})"))
    op.create_index("ix_run_batches_unsettled", "run_batches", ["run_id"],
                    postgresql_where=sa.text(UNSETTLED), sqlite_where=sa.text(UNSETTLED))


def downgrade() -> None:
    op.drop_index("ix_run_batches_unsettled", table_name="run_batches")
