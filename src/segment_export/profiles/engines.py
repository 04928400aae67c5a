"""Open the profile store the settings name: embedded DuckDB, a PostgreSQL table, or Spark."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segment_export.errors import ConfigurationError
from segment_export.languages import N_

if TYPE_CHECKING:
    from segment_export.config import Settings
    from segment_export.profiles.store import ProfileStore

ENGINES = ("duckdb", "postgresql", "spark")


def engine_of(setting: str) -> str:
    """The engine a ``profile_store`` setting names, or a ConfigurationError saying what is."""
    value = setting.strip()
    if value == "duckdb":
        return "duckdb"
    scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "spark":
        return "spark"
    raise ConfigurationError(
        N_("SEGMENT_EXPORT_PROFILE_STORE=%(setting)s names no profile store; use duckdb, "
           "postgresql://user@host/db or spark:<table>"),
        values={"setting": repr(setting)}
    )


def open_profile_store(settings: Settings) -> ProfileStore:
    """The configured profile store (imports are deferred: each engine loads only if used)."""
    engine = engine_of(settings.profile_store)
    if engine == "postgresql":
        from segment_export.profiles.postgres import PostgresProfileStore

        return PostgresProfileStore.from_url(settings.profile_store)
    if engine == "spark":
        from segment_export.profiles.spark import SparkProfileStore

        return SparkProfileStore.from_setting(settings.profile_store, settings=settings)
    from segment_export.profiles.duckdb import DuckDBProfileStore

    settings.ensure_data_dir()
    return DuckDBProfileStore(settings.profiles_path)
