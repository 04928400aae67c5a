"""sms

SMS numbers in exports: each connection says whether its account takes SMS-only contacts
(``sms_only_allowed``: the API cannot tell), and each export the region its profiles' phone
numbers are written in when they carry no country code (``phone_region``).

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("sms_only_allowed", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("exports") as batch:
        batch.add_column(sa.Column("phone_region", sa.String(2), nullable=False,
                                   server_default="US"))


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("phone_region")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("sms_only_allowed")
