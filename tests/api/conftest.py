"""Fixtures of the API tests: the app on a port with a user of each role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from segment_export.config import Settings
from tests.api.harness import AppWorld, app_world, make_settings


@pytest.fixture
def site(settings: Settings, sqlite_engine: Engine) -> Iterator[AppWorld]:
    """The app over a SQLite state store."""
    with app_world(settings, engine=sqlite_engine) as world:
        yield world


@pytest.fixture
def site_any_db(settings: Settings, engine: Engine) -> Iterator[AppWorld]:
    """The app over the state store of ``engine``: SQLite and PostgreSQL."""
    with app_world(settings, engine=engine) as world:
        yield world


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    """One app for a whole module of tests that only add objects of their own (SQLite)."""
    data_dir: Path = tmp_path_factory.mktemp("site")
    with app_world(make_settings(data_dir)) as world:
        yield world
