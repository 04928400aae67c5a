"""Profiles in a PostgreSQL table (``SEGMENT_EXPORT_PROFILE_STORE=postgresql://...``)."""

from segment_export.profiles.postgres.store import PostgresProfileStore

__all__ = ["PostgresProfileStore"]
