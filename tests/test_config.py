"""Settings: environment, defaults, generated key file, placeholder refusal."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from segment_export.config import load_settings
from segment_export.errors import ConfigurationError


def test_defaults_point_at_the_real_service_and_a_local_data_dir() -> None:
    settings = load_settings()
    assert settings.data_dir == Path(".segment-export")
    assert settings.cc_api_url == "https://api.cc.email/v3"
    assert settings.cc_auth_url == "https://authz.constantcontact.com/oauth2/default/v1"
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith(".segment-export/state.db")


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENT_EXPORT_CC_API_URL", "http://127.0.0.1:9/v3")
    monkeypatch.setenv("SEGMENT_EXPORT_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("SEGMENT_EXPORT_LOG_LEVEL", "debug")
    monkeypatch.setenv("SEGMENT_EXPORT_LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.cc_api_url == "http://127.0.0.1:9/v3"
    assert settings.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert settings.log_level == "DEBUG"
    assert settings.log_format == "json"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SEGMENT_EXPORT_CC_AUTH_URL=http://127.0.0.1:7/oauth\n")
    assert load_settings().cc_auth_url == "http://127.0.0.1:7/oauth"


def test_key_is_generated_once_with_owner_only_permissions(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d")
    keys = settings.encryption_keys
    key_file = tmp_path / "d" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(keys) == 1
    Fernet(keys[0])  # a usable key
    assert load_settings(data_dir=tmp_path / "d").encryption_keys == keys


@pytest.mark.parametrize("value", ["changeme", "CHANGEME", "secret", "", "not-a-fernet-key"])
def test_placeholder_or_malformed_key_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="SEGMENT_EXPORT_SECRET_KEY"):
        load_settings(secret_key=value)


def test_several_keys_newest_first() -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    assert load_settings(secret_key=f"{new},{old}").encryption_keys == [new.encode(), old.encode()]


def test_invalid_log_format_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="log_format"):
        load_settings(log_format="xml")
