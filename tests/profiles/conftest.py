"""A fresh DuckDB profile store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_export.profiles import DuckDBProfileStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBProfileStore]:
    with DuckDBProfileStore(tmp_path / "profiles.duckdb") as opened:
        yield opened
