"""The `profiles` and `segments` commands, end to end through click."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from segment_export.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def invoke(runner: CliRunner, *args: str, ok: bool = True) -> Result:
    result = runner.invoke(cli, list(args), catch_exceptions=True)
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_profiles_generate_import_show(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    assert "Wrote 300 profiles" in invoke(
        runner, "profiles", "generate", "--rows", "300", "--seed", "1", "--out", str(out),
        "--as-of", "2025-06-01").output
    result = invoke(runner, "profiles", "import", str(out))
    assert "Imported 300 rows and 14 columns" in result.output
    show = invoke(runner, "profiles", "show").output
    assert "300 profiles" in show
    assert "lifetime_value" in show
    assert "DOUBLE" in show
    assert "Generated and imported 50 profiles" in invoke(
        runner, "profiles", "generate", "--rows", "50").output


def test_profiles_import_errors_are_reported(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "p.csv"
    bad.write_text("customer_id,name\n1,Ana\n", encoding="utf-8")
    result = invoke(runner, "profiles", "import", str(bad), ok=False)
    assert result.exit_code != 0
    assert "no 'email' column" in str(result.exception)
    assert "1 rows" in invoke(runner, "profiles", "import", str(bad), "--no-email-column").output
    assert "No profiles" not in invoke(runner, "profiles", "show").output


def test_segments_lifecycle(runner: CliRunner, tmp_path: Path) -> None:
    invoke(runner, "profiles", "generate", "--rows", "2000", "--as-of", "2025-06-01")
    rule_file = tmp_path / "rule.json"
    rule_file.write_text(json.dumps(
        {"all": [{"field": "loyalty_tier", "op": "in", "value": ["gold", "platinum"]}]}))
    assert "Created segment 'vip'" in invoke(
        runner, "segments", "create", "vip", "--rule", f"@{rule_file}",
        "--description", "top").output
    assert "Created segment 'de'" in invoke(
        runner, "segments", "create", "de", "--where", "country = 'DE'").output
    listing = invoke(runner, "segments", "list").output
    assert "vip" in listing
    assert "country = 'DE'" in listing
    refreshed = invoke(runner, "segments", "refresh").output
    assert "vip" in refreshed
    assert "de" in refreshed
    shown = invoke(runner, "segments", "show", "vip").output
    assert "size history" in shown
    assert "top" in shown
    preview = invoke(runner, "segments", "preview", "de", "--limit", "2",
                     "--columns", "customer_id,country").output
    assert "matching profiles" in preview
    assert "DE" in preview
    live = invoke(runner, "segments", "preview", "--where", "lifetime_value > 100").output
    assert "WHERE \"lifetime_value\" > 100" in live
    assert "Updated segment 'germany'" in invoke(
        runner, "segments", "edit", "de", "--name", "germany", "--inactive").output
    assert "Deleted segment 'germany'" in invoke(
        runner, "segments", "delete", "germany", "--yes").output
    assert "germany" not in invoke(runner, "segments", "list").output


def test_segments_refuse_bad_definitions(runner: CliRunner) -> None:
    invoke(runner, "profiles", "generate", "--rows", "100")
    result = invoke(runner, "segments", "create", "x", "--where",
                    "read_csv('/etc/passwd') IS NOT NULL", ok=False)
    assert "READ_CSV" in str(result.exception)
    result = invoke(runner, "segments", "create", "x", "--rule", "{not json", ok=False)
    assert result.exit_code == 2  # a rule that fits no rule model is a usage error
    assert "Invalid value for '--rule'" in result.output
    assert "not valid JSON" in result.output
    result = invoke(runner, "segments", "preview", ok=False)
    assert "Give a segment NAME" in result.output
    result = invoke(runner, "segments", "show", "missing", ok=False)
    assert "No segment named 'missing'" in str(result.exception)
