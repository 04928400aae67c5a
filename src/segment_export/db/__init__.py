"""The state store: engine factory, ORM models, encrypted column type and migrations."""

from segment_export.db.engine import make_engine, make_session_factory, upgrade_database

__all__ = ["make_engine", "make_session_factory", "upgrade_database"]
