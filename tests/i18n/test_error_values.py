"""Errors that carry values (a name, an id, a limit) read in the reader's language with their
values, while ``str(exc)`` (the API's ``detail``, logs, scripts) stays the English text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from segment_export.cli import cli, main
from segment_export.errors import DataError, NotFoundError
from segment_export.languages import N_, Text, error_text
from tests.api.harness import AppWorld, app_world, make_settings


def test_the_english_text_is_what_the_f_string_wrote_and_malay_keeps_the_values() -> None:
    exc = NotFoundError(N_("No segment named %(name)s"), values={"name": repr("Ahli 50%")},
                        segment="Ahli 50%")
    assert exc.message == "No segment named 'Ahli 50%'"
    assert str(exc) == "No segment named 'Ahli 50%' (Check the name or id.)"
    assert exc.context == {"segment": "Ahli 50%"}  # values are not problem-body context
    shown = error_text(exc)
    assert shown.in_language("en") == str(exc)
    assert shown.in_language("ms") == "Tiada segmen bernama 'Ahli 50%' (Semak nama atau ID.)"
    # What a failed run stores survives the trip through JSON, still translatable.
    assert Text.from_json(shown.as_json()).in_language("ms") == shown.in_language("ms")
    # Numbers are written as the English text wrote them (no grouping of a limit or an id).
    limit = DataError(N_("A password has at most %(most)s characters"), values={"most": 1024})
    assert limit.message == "A password has at most 1024 characters"
    assert error_text(limit).in_language("ms").startswith(
        "Kata laluan mempunyai paling banyak 1024 aksara (")
    # An error without values is exactly as before.
    plain = DataError("Not a msgid: 100%")
    assert (plain.msgid, plain.values, plain.message) == ("", None, "Not a msgid: 100%")


def _refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> str:
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["segment-export", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 1
    return capsys.readouterr().err


def test_the_cli_shows_a_refusal_with_values_in_malay(
        cli_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    created = CliRunner().invoke(cli, ["users", "create", "siti", "--role", "viewer"],
                                 catch_exceptions=False)
    assert created.exit_code == 0, created.output
    malay = _refused(monkeypatch, capsys, "--lang", "ms", "users", "create", "siti",
                     "--role", "viewer")
    assert malay.startswith("Ralat: Pengguna bernama 'siti' sudah wujud"), malay
    assert "already exists" not in malay
    english = _refused(monkeypatch, capsys, "users", "create", "siti", "--role", "viewer")
    assert english.startswith("Error: A user named 'siti' already exists"), english
    missing = _refused(monkeypatch, capsys, "--lang", "ms", "segments", "show", "Tiada-ini")
    assert "Ralat: Tiada segmen bernama 'Tiada-ini'" in missing, missing
    assert "Semak nama atau ID." in missing


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    with app_world(make_settings(tmp_path_factory.mktemp("errvalues")), profiles=0) as site:
        yield site


def test_a_malay_page_shows_the_refusal_with_its_values_and_the_api_stays_english(
        world: AppWorld) -> None:
    admin = world.browser("admin")
    taken = world.users["viewer"].username
    admin.post("/account/language", {"language": "ms"})
    try:
        refused = admin.post("/admin/users", {"username": taken, "role": "viewer",
                                              "password": "a long enough password"})
        assert refused.status_code == 422
        assert f"Pengguna bernama &#39;{taken}&#39; sudah wujud" in refused.text
        assert "already exists" not in refused.text
    finally:
        admin.post("/account/language", {"language": ""})
    problem = world.api("admin").get("/api/segments/no-such-segment",
                                     headers={"Accept-Language": "ms"})
    assert problem.status_code == 404
    assert problem.json()["detail"].startswith("No segment named 'no-such-segment'")
