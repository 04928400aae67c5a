"""Unified customer profiles: the profile store, file import and sample data."""

from segment_export.profiles.generate import generate_profiles, write_profiles
from segment_export.profiles.store import (
    DuckDBProfileStore,
    ImportMode,
    ImportSummary,
    ProfileStore,
)

__all__ = [
    "DuckDBProfileStore",
    "ImportMode",
    "ImportSummary",
    "ProfileStore",
    "generate_profiles",
    "write_profiles",
]
