"""`segments edit/delete/show/create` through the real CLI: the acting user (--as-user) is the
one whose rights are checked, the exports a segment feeds are listed (and confirmed) before a
change, and rule values out of bounds are a usage error (issue #17, points 1 and 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet

from segment_export.cli import cli

LIST_ID = "1b2e3c4d-0000-1111-2222-333344445555"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SEGMENT_EXPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SEGMENT_EXPORT_SECRET_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


def run(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(cli, list(args), input=stdin, catch_exceptions=True)


def ok(runner: CliRunner, *args: str, stdin: str | None = None) -> str:
    result = run(runner, *args, stdin=stdin)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _export_on(shared: bool, segment_name: str) -> str:
    """An export of the segment on a new connection (shared with contributors or not)."""
    from segment_export.config import load_settings
    from segment_export.db import make_engine, make_session_factory
    from segment_export.definitions.connections import ConnectionSpec, create_connection
    from segment_export.definitions.exports import ExportSpec, create_export
    from segment_export.segments import get_segment
    from segment_export.users import ensure_admin

    engine = make_engine(load_settings())
    try:
        with make_session_factory(engine).begin() as db:
            admin = ensure_admin(db)
            connection = create_connection(db, actor=admin, spec=ConnectionSpec(
                display_name=f"Conn {segment_name} {shared}", client_id="cid",
                client_secret="secret-0123456789", consent=True,
                shared_with_contributors=shared))
            segment = get_segment(db, name_or_id=segment_name)
            export = create_export(db, actor=admin, spec=ExportSpec(
                name=f"Newsletter {segment_name}", connection_id=connection.id,
                list_id=LIST_ID, mapping={"email": "email"}, segment_ids=[segment.id],
                mode="mirror"))
            return export.name
    finally:
        engine.dispose()


@pytest.fixture
def world(runner: CliRunner) -> CliRunner:
    ok(runner, "profiles", "generate", "--rows", "200", "--as-of", "2025-06-01")
    ok(runner, "users", "create", "carla", "--role", "contributor")
    ok(runner, "users", "create", "vic", "--role", "viewer")
    for name in ("locked", "open", "free"):
        ok(runner, "segments", "create", name, "--where", "country = 'DE'")
    return runner


def test_contributor_cannot_change_a_segment_an_unshared_export_sends(world: CliRunner) -> None:
    export = _export_on(False, "locked")
    for args in (["--where", "country IS NOT NULL"], ["--inactive"], ["--name", "renamed"],
                 ["--description", "x"]):
        refused = run(world, "--as-user", "carla", "segments", "edit", "locked", "--yes", *args)
        assert refused.exit_code != 0, refused.output
        assert "may not change the segment 'locked'" in str(refused.exception)
        assert export in refused.output  # listed before the refusal
    refused = run(world, "--as-user", "carla", "segments", "delete", "locked", "--yes")
    assert refused.exit_code != 0
    assert "may not change the segment 'locked'" in str(refused.exception)
    shown = ok(world, "segments", "show", "locked")
    assert "country = 'DE'" in shown
    assert "active:      yes" in shown
    assert f"exports:     {export}" in shown
    # The first admin (the default identity) may, after confirming.
    aborted = run(world, "segments", "edit", "locked", "--where", "country IS NOT NULL",
                  stdin="n\n")
    assert aborted.exit_code != 0
    assert "sent by 1 export(s)" in aborted.output
    assert f"{export} (mirror: removes contacts who leave" in aborted.output
    assert "country = 'DE'" in ok(world, "segments", "show", "locked")
    assert "Updated segment 'locked'" in ok(
        world, "segments", "edit", "locked", "--where", "country IS NOT NULL", stdin="y\n")


def test_contributor_changes_a_segment_a_shared_export_sends(world: CliRunner) -> None:
    export = _export_on(True, "open")
    out = ok(world, "--as-user", "carla", "segments", "edit", "open", "--where",
             "country = 'FR'", "--yes")
    assert export in out
    assert "Updated segment 'open'" in out
    # Still refused for everyone while an export sends it: it would empty a mirror list.
    still_used = run(world, "--as-user", "carla", "segments", "delete", "open", "--yes")
    assert "is used by export(s)" in str(still_used.exception)


def test_viewer_changes_no_segment(world: CliRunner) -> None:
    for args in (["edit", "free", "--description", "x"], ["delete", "free", "--yes"],
                 ["create", "mine", "--where", "country = 'DE'"]):
        refused = run(world, "--as-user", "vic", "segments", *args)
        assert refused.exit_code != 0, refused.output
        assert "needs the admin or contributor role" in str(refused.exception)
    assert "Deleted segment 'free'" in ok(world, "--as-user", "carla", "segments", "delete",
                                           "free", "--yes")


@pytest.mark.parametrize(("command", "value", "message"), [
    ("create", 10**6, "from 0 to 36,500"),
    ("edit", 10**30, "from 0 to 36,500"),
    ("preview", -1, "from 0 to 36,500"),
])
def test_rule_values_out_of_bounds_are_a_usage_error(world: CliRunner, command: str,
                                                     value: int, message: str) -> None:
    rule = json.dumps({"field": "last_purchase_date", "op": "within_last_days", "value": value})
    args = {"create": ["create", "far"], "edit": ["edit", "free", "--yes"],
            "preview": ["preview"]}[command]
    result = run(world, "segments", *args, "--rule", rule)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Invalid value for '--rule'" in result.output
    assert message in result.output


def test_profiles_and_previews_follow_the_roles_table(world: CliRunner, tmp_path: Path) -> None:
    # Viewers see exports and runs, not profiles: no sample, no columns, no import.
    source = tmp_path / "p.csv"
    source.write_text("customer_id,email\n1,a@example.com\n")
    for args in (["segments", "preview", "open"],
                 ["segments", "preview", "--where", "country = 'DE'"],
                 ["profiles", "show"],
                 ["profiles", "import", str(source)],
                 ["profiles", "generate", "--rows", "5"]):
        refused = run(world, "--as-user", "vic", *args)
        assert refused.exit_code != 0, (args, refused.output)
        assert "is a viewer" in str(refused.exception), (args, refused.exception)
    # Contributors preview and see columns, but do not replace everyone's profiles.
    assert "matching profiles" in ok(world, "--as-user", "carla", "segments", "preview", "open")
    assert "profiles in" in ok(world, "--as-user", "carla", "profiles", "show")
    for args in (["profiles", "import", str(source)], ["profiles", "generate", "--rows", "5"]):
        refused = run(world, "--as-user", "carla", *args)
        assert "needs the admin role" in str(refused.exception), (args, refused.exception)
    assert ok(world, "profiles", "show").startswith("200 profiles")  # nothing was replaced
    # Writing sample data to a file touches no store: anyone may.
    ok(world, "--as-user", "vic", "profiles", "generate", "--rows", "5",
       "--out", str(tmp_path / "sample.csv"))
    assert ok(world, "--as-user", "admin", "profiles", "import", str(source)).startswith(
        "Imported 1 rows")
