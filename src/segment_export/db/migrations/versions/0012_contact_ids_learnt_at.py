"""contact ids learnt at

When each block of an export's kept contact ids was learnt (just before the list's contact export
was asked for), so a mirror run can ask Constant Contact which of those contacts changed since.
Blocks kept before this revision have none (NULL): their ids are not used, and their leavers are
looked up on the list again.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import segment_export.db.types

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("export_contact_ids") as batch:
        batch.add_column(sa.Column("learnt_at",
                                   segment_export.db.types.UTCDateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_contact_ids") as batch:
        batch.drop_column("learnt_at")
