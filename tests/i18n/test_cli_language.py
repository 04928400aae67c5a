"""The CLI in Malay: --lang, the --as-user user's setting, SEGMENT_EXPORT_LANGUAGE, in that order,
on a real demo run (the bundled emulator over HTTP) and its report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from segment_export.cli import cli


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


def test_the_other_commands_and_the_run_message_speak_malay(
        cli_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    demo = _ok("demo", "--rows", "300")
    workspace = re.search(r"SEGMENT_EXPORT_DATA_DIR=(\S+)", demo)
    run = re.search(r"Run (\S+) of ", demo)
    assert workspace is not None
    assert run is not None
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", workspace.group(1))
    monkeypatch.setenv("SEGMENT_EXPORT_LANGUAGE", "ms")

    # The run's message: English in the database (and so the API), Malay in the report.
    english = _ok("--lang", "en", "runs", "show", run.group(1))
    assert re.search(r"Sent \d[\d,]* contacts \(", english)
    malay = _ok("runs", "show", run.group(1))
    assert re.search(r"\d[\d,]* kenalan dihantar \(\d[\d,]* diterima", malay), malay
    assert "contacts (" not in malay

    segments = _ok("segments", "list")
    assert "nama" in segments
    assert "saiz" in segments
    assert "ya" in segments
    name = re.search(r"Segment '([^']+)'", demo)
    assert name is not None
    shown = _ok("segments", "show", name.group(1))
    assert "keterangan:" in shown
    assert "disegar semula:" in shown
    assert "never" not in shown
    assert "description:" not in shown
    exports = _ok("exports", "list")
    assert "keizinan anda" in exports
    assert "lihat, edit, larian, alih keluar" in exports
    assert "view, edit" not in exports
    connections = _ok("connections", "list")
    assert "boleh digunakan oleh" in connections
    assert "token tamat tempoh" in connections
    users = _ok("users", "list")
    assert "peranan" in users
    assert "aktif" in users
    assert "Belum ada profil diimport" not in _ok("profiles", "show")
    assert "profil dalam" in _ok("profiles", "show")
    assert _ok("alerts", "show").startswith("Tiada webhook amaran ditetapkan.")
    assert "Tiada jadual segar semula sistem" in _ok("schedule", "show")

    # A refused command: the product's error (its English text) and its hint in Malay.
    from segment_export.cli import main

    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["segment-export", "runs", "show", "no-such-run"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 1
    said = capsys.readouterr().err
    assert said.startswith("Ralat: ")
    assert "Semak nama atau ID." in said
    assert "Check the name or id." not in said
