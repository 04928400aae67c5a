"""Alembic environment: migrations run on the engine the caller hands over, or inside the
caller's transaction on the connection it hands over (a restore that must be all or nothing)."""

from alembic import context
from sqlalchemy import Connection

from segment_export.db.models import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    with context.config.attributes["engine"].begin() as connection:
        _run(connection)
