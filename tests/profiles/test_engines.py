"""The profile_store setting picks an engine, or says clearly what it does not understand."""

from __future__ import annotations

import pytest

from segment_export.errors import ConfigurationError
from segment_export.profiles.engines import engine_of


@pytest.mark.parametrize(("setting", "engine"), [
    ("duckdb", "duckdb"),
    (" duckdb ", "duckdb"),
    ("postgresql://u@h/db", "postgresql"),
    ("postgresql+psycopg://u@h/db?table=people", "postgresql"),
    ("postgres://u@h/db", "postgresql"),
    ("spark:lake.profiles", "spark"),
])
def test_settings_name_their_engine(setting: str, engine: str) -> None:
    assert engine_of(setting) == engine


@pytest.mark.parametrize("setting", ["", "mysql://u@h/db", "sqlite:///x.db", "profiles.duckdb"])
def test_an_unknown_store_is_named_in_the_error(setting: str) -> None:
    with pytest.raises(ConfigurationError, match="SEGMENT_EXPORT_PROFILE_STORE") as caught:
        engine_of(setting)
    assert repr(setting) in str(caught.value)
