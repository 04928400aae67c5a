"""Fixtures every test package shares: isolated settings and a migrated state store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from tests.services import postgres_schema_url

# `world`: an emulator, a state store, a profile store and an authorized connection;
# `spark_session`: one local Spark session shared by the Spark tests.
pytest_plugins = ["tests.world", "tests.spark_session"]


@pytest.fixture(scope="session", autouse=True)
def _no_secret_reaches_a_log() -> Iterator[None]:
    """Everything the product logs during the whole suite, redacted as production does, must
    hold none of the tokens, codes and client secrets the suite used."""
    import io
    import logging

    from segment_export import log

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(log.RedactingFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {}
    for name in ("segment_export", "httpx", "huey"):
        logger = logging.getLogger(name)
        levels[name] = logger.level
        logger.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    text = buffer.getvalue()
    from tests.world import CLIENT_SECRET

    used = {secret for secret in log._known_secrets if len(secret) >= 12} | {CLIENT_SECRET}
    leaked = sorted(secret[:6] + "…" for secret in used if secret in text)
    assert not leaked, f"secrets found in the suite's logs: {leaked}"
    # A handful of tests chosen by hand may log nothing; the whole suite always logs.
    assert text or not used - {CLIENT_SECRET}, "the suite logged nothing: the scan proves nothing"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A developer's own SEGMENT_EXPORT_* variables or .env must not leak into tests.
    import os

    for name in list(os.environ):
        if name.startswith("SEGMENT_EXPORT_") and not name.startswith("SEGMENT_EXPORT_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", secret_key=Fernet.generate_key().decode(), log_level="DEBUG"
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Engine]:
    """A migrated state store, once on SQLite and once on the machine's PostgreSQL."""
    if request.param == "sqlite":
        eng = make_engine(settings)
        upgrade_database(eng)
        yield eng
        eng.dispose()
        return
    with postgres_schema_url() as url:
        eng = make_engine(settings, url=url)
        upgrade_database(eng)
        yield eng
        eng.dispose()


@pytest.fixture
def sqlite_engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings)
    upgrade_database(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)
