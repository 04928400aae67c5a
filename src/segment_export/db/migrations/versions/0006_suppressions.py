"""suppressions: the unsubscribed contacts read back from Constant Contact, per connection

Two new tables, nothing else changes: ``suppressions`` (connection, SHA-256 of the normalised
email, how and when it was learnt) and ``suppression_syncs`` (the watermark of the incremental
reads and when the last one ran). A downgrade drops both; the next run after an upgrade reads
every unsubscribed contact again.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import segment_export.db.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    moment = segment_export.db.types.UTCDateTime(timezone=True)
    op.create_table(
        "suppressions",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("opt_out_source", sa.String(length=20), nullable=True),
        sa.Column("opted_out_at", moment, nullable=True),
        sa.Column("learnt_at", moment, nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_suppressions_connection_id_connections"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", "email_hash", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "suppression_syncs",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("watermark", moment, nullable=True),
        sa.Column("synced_at", moment, nullable=True),
        sa.Column("full_synced_at", moment, nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_suppression_syncs_connection_id_connections"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_suppression_syncs")),
    )


def downgrade() -> None:
    op.drop_table("suppression_syncs")
    op.drop_table("suppressions")
