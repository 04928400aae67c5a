"""The CLI in Malay: --lang, the --as-user user's setting, SEGMENT_EXPORT_LANGUAGE, in that order,
on a real demo run (the bundled emulator over HTTP) and its report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from segment_export.cli import cli


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEGMENT_EXPORT_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("SEGMENT_EXPORT_LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_messages_and_run_report_follow_the_chosen_language(
        cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = _ok("--lang", "ms", "demo", "--rows", "1500")
    assert "Larian " in demo
    assert "Dalam segmen" in demo
    assert "Dihantar ke Constant Contact" in demo
    assert "Berjaya dengan penolakan (succeeded_with_rejections)" in demo
    assert "In the segment(s)" not in demo
    # The count as Malay (CLDR ms) groups it: 1,500 profiles in the sample segment or fewer.
    assert re.search(r"Dalam segmen\s+1,\d{3}\b", demo), demo
    workspace = re.search(r"SEGMENT_EXPORT_DATA_DIR=(\S+)", demo)
    assert workspace is not None
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", workspace.group(1))

    english = _ok("runs", "list")
    assert "No runs yet." not in english
    assert "succeeded_with_rejections" in english
    assert re.search(r"\b[A-Z][a-z]{2} \d{1,2}, \d{4} \d\d:\d\d UTC", english)  # Dec 7, 2026
    malay = _ok("--lang", "ms", "runs", "list")
    assert "dihantar" in malay
    assert "Berjaya dengan penolakan" in malay
    months = "Jan|Feb|Mac|Apr|Mei|Jun|Jul|Ogo|Sep|Okt|Nov|Dis"
    assert re.search(rf"\b\d{{1,2}} ({months}) \d{{4}} \d\d:\d\d UTC", malay), malay

    # The acting user's own setting, then the environment; --lang wins over both.
    _ok("users", "create", "siti", "--role", "viewer")
    _ok("users", "set-language", "siti", "ms")
    assert "dihantar" in _ok("--as-user", "siti", "runs", "list")
    assert "dihantar" not in _ok("--as-user", "siti", "--lang", "en", "runs", "list")
    monkeypatch.setenv("SEGMENT_EXPORT_LANGUAGE", "ms")
    assert "dihantar" in _ok("runs", "list")
    monkeypatch.setenv("SEGMENT_EXPORT_LANGUAGE", "")
    monkeypatch.setenv("LANG", "ms_MY.UTF-8")
    assert "dihantar" in _ok("runs", "list")
    _ok("users", "set-language", "siti", "en")
    assert "dihantar" not in _ok("--as-user", "siti", "runs", "list")  # the user beats LANG


def test_an_unknown_language_is_refused_naming_the_option(cli_env: Path) -> None:
    result = CliRunner().invoke(cli, ["--lang", "fr", "runs", "list"])
    assert result.exit_code == 2
    assert "--lang" in result.output
    assert "'fr'" in result.output
