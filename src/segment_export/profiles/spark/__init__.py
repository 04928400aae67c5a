"""Profiles in a lakehouse, read through Apache Spark (``SEGMENT_EXPORT_PROFILE_STORE=spark:...``).

Laid out as ``profiles/postgres/``: the store, its SQL dialect, imports and the session."""

from segment_export.profiles.spark.session import local_session, parse_setting
from segment_export.profiles.spark.store import SparkProfileStore

__all__ = ["SparkProfileStore", "local_session", "parse_setting"]
