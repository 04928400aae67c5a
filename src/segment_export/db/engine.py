"""Engine and session factories for the state store, and applying migrations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import SECRET_KEY_FILE, Settings
from segment_export.db.keyring import KeyFileSecretBox
from segment_export.db.types import SecretBox, attach_secret_box

if TYPE_CHECKING:
    # Imported where migrations run: a process that only reads and writes the state store
    # (an export run) does without alembic, mako and pygments (~11 MB).
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web app read while the worker writes; the busy timeout rides out short locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """An engine for the state store whose encrypted columns use the settings' keys."""
    url = url or settings.resolved_database_url
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        settings.ensure_data_dir()
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    keys = settings.encryption_keys  # also creates the key file on first use
    if settings.secret_key is None:
        # The key file can change under a running process (`secrets rotate`): follow it.
        attach_secret_box(engine.dialect, KeyFileSecretBox(settings.data_dir / SECRET_KEY_FILE))
    else:
        attach_secret_box(engine.dialect, SecretBox(keys))
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (services return them)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def upgrade_in_transaction(connection: Connection, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` on ``connection``, inside the transaction its
    caller holds and will commit or roll back (PostgreSQL's DDL is transactional)."""
    from alembic import command

    config = alembic_config(connection.engine)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
