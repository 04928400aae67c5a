"""export contact ids

Constant Contact contact ids learnt for an export's members (from the list's contact export),
kept packed per export so a mirror run finds its leavers' ids without downloading the list.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import segment_export.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_contact_ids",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("export_id", sa.String(length=36), nullable=False),
        sa.Column("list_id", sa.String(length=36), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("keys", sa.LargeBinary(), nullable=False),
        sa.Column("contact_ids", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", segment_export.db.types.UTCDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["export_id"], ["exports.id"],
                                name=op.f("fk_export_contact_ids_export_id_exports"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_contact_ids")),
    )
    with op.batch_alter_table("export_contact_ids") as batch:
        batch.create_index(batch.f("ix_export_contact_ids_export_id"), ["export_id"],
                           unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_contact_ids") as batch:
        batch.drop_index(batch.f("ix_export_contact_ids_export_id"))
    op.drop_table("export_contact_ids")
