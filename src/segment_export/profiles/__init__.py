"""Unified customer profiles: the profile store, file import and sample data."""

from segment_export.profiles.duckdb import DuckDBProfileStore
from segment_export.profiles.generate import generate_profiles, write_profiles
from segment_export.profiles.imports import ImportMode, ProfileImport
from segment_export.profiles.store import ImportSummary, ProfileStore

__all__ = [
    "DuckDBProfileStore",
    "ImportMode",
    "ImportSummary",
    "ProfileImport",
    "ProfileStore",
    "generate_profiles",
    "write_profiles",
]
