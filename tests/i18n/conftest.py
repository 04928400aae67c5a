"""Fixtures of the language tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CLI environment of its own (data directory, key) with no language chosen by it."""
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEGMENT_EXPORT_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("SEGMENT_EXPORT_LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path
