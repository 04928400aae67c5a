"""Errors with values as a person sees them in Malay: a profile file that cannot be read and a
bad segment rule on the command line, a rule the segment form refuses on a page. The English
text (``str(exc)``, the API's ``detail``) stays what it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from segment_export.cli import main
from segment_export.errors import DataError
from segment_export.languages import error_text
from segment_export.segments.rules import parse_rule
from tests.api.harness import AppWorld, app_world, make_settings

LONG = "x" * 1001


def _refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str, code: int = 1) -> str:
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["segment-export", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == code
    return capsys.readouterr().err


def test_a_profile_file_with_a_stray_field_is_refused_in_malay_naming_the_line(
        cli_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    bad = cli_env / "customers.csv"
    bad.write_text("customer_id,email,name\n1,a@x.io,Ana\n2,b@x.io,B,extra\n3,c@x.io,C\n",
                   encoding="utf-8")
    malay = _refused(monkeypatch, capsys, "--lang", "ms", "profiles", "import", str(bad))
    assert malay.startswith("Ralat: customers.csv, baris 3: dijangka 3 medan tetapi ditemui 4 "
                            "(setiap baris memerlukan"), malay
    assert "Betulkan data yang dinamakan dalam mesej" in malay
    assert "expected" not in malay
    english = _refused(monkeypatch, capsys, "profiles", "import", str(bad))
    assert english.startswith("Error: customers.csv, line 3: expected 3 fields but found 4 "
                              "(every row needs"), english


def test_a_bad_segment_rule_is_refused_in_the_chosen_language(
        cli_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEGMENT_EXPORT_LANGUAGE", "ms")
    rule = '{"all": [{"field": "country", "op": "in", "value": []}]}'
    # A usage error: click's frame (``Error: Invalid value for '--rule'``) stays English.
    malay = _refused(monkeypatch, capsys, "segments", "create", "Kosong", "--rule", rule,
                     code=2)
    assert ("Invalid value for '--rule': Peraturan tidak sah: all[0]: medan 'country': in "
            "menerima senarai nilai yang tidak kosong") in malay, malay
    assert "takes" not in malay
    zone = '{"field": "joined", "op": "within_last_days", "value": 3, "timezone": "Mars/Base"}'
    malay = _refused(monkeypatch, capsys, "segments", "create", "Marikh", "--rule", zone,
                     code=2)
    assert "Peraturan tidak sah: timezone: zon waktu 'Mars/Base' tidak dikenali" in malay, malay


def test_a_rule_error_keeps_the_english_text_of_before() -> None:
    with pytest.raises(DataError) as refused:
        parse_rule({"all": [{"field": "country", "op": "eq", "value": LONG}]})
    assert refused.value.message == ("Invalid rule: all[0]: field 'country': text values have "
                                     "at most 1,000 characters")
    assert error_text(refused.value).in_language("ms").startswith(
        "Peraturan tidak sah: all[0]: medan 'country': nilai teks mempunyai paling banyak "
        "1,000 aksara (")
    # pydantic's own words (not ours) stay as pydantic wrote them.
    with pytest.raises(DataError) as unknown:
        parse_rule({"field": "country", "op": "near"})
    assert error_text(unknown.value).in_language("ms").startswith(
        "Peraturan tidak sah: op: Input should be 'eq'")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppWorld]:
    with app_world(make_settings(tmp_path_factory.mktemp("errshown"))) as site:
        yield site


def test_the_segment_form_shows_a_rule_error_in_malay(world: AppWorld) -> None:
    web = world.browser("contributor")
    fields = {"name": "Terlalu panjang", "kind": "builder", "match": "all",
              "cond_field": ["country"], "cond_op": ["eq"], "cond_value": [LONG],
              "active": "true"}
    web.post("/account/language", {"language": "ms"})
    try:
        refused = web.post("/data/segments/new", fields)
        assert refused.status_code == 422
        assert ("Peraturan tidak sah: all[0]: medan &#39;country&#39;: nilai teks mempunyai "
                "paling banyak 1,000 aksara") in refused.text, refused.text[-3000:]
        assert "text values have" not in refused.text
        empty = web.post("/data/segments/new", {"name": "Tiada syarat", "kind": "builder",
                                                "match": "all", "active": "true"})
        assert empty.status_code == 422
        assert "Tambah sekurang-kurangnya satu syarat" in empty.text
    finally:
        web.post("/account/language", {"language": ""})
    english = web.post("/data/segments/new", fields)
    assert "text values have at most 1,000 characters" in english.text
