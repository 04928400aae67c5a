"""The embedded profile store: unified profiles in a DuckDB file, the default engine."""

from segment_export.profiles.duckdb.store import DuckDBProfileStore

__all__ = ["DuckDBProfileStore"]
