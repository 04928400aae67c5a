"""The catalogues: extraction from today's sources equals the committed messages.pot, and every
message has a real English and Malay translation with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from segment_export import languages

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "src" / "segment_export" / "locale"
# %(name)s, %(name)d, ... and {name} (the run page's live-progress template).
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|\{\w+\}")


def _read(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle)


def _extract(tmp_path: Path) -> Catalog:
    # The command docs/languages.md gives, run on the sources as they are now.
    out = tmp_path / "messages.pot"
    CommandLineInterface().run(["pybabel", "-q", "extract", "-F", str(ROOT / "babel.cfg"),
                                "-k", "N_", "--no-location", "--sort-output",
                                "-o", str(out), str(ROOT)])
    return _read(out)


def _ids(catalog: Catalog) -> set[str]:
    return {str(message.id) for message in catalog if message.id}


def test_committed_template_is_what_the_sources_hold(tmp_path: Path) -> None:
    fresh, committed = _ids(_extract(tmp_path)), _ids(_read(LOCALE / "messages.pot"))
    assert fresh - committed == set(), (
        "strings in the code missing from messages.pot: run the pybabel commands of "
        "docs/languages.md and translate them")
    assert committed - fresh == set(), "messages.pot holds strings no longer in the code"
    assert len(fresh) > 150  # the extraction really read the templates and the code


@pytest.mark.parametrize("language", ["en", "ms"])
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    template = _read(LOCALE / "messages.pot")
    catalog = _read(LOCALE / language / "LC_MESSAGES" / "messages.po")
    problems = []
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        if translated is None or not translated.string:
            problems.append(f"untranslated: {message.id!r}")
        elif translated.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif sorted(PLACEHOLDER.findall(str(message.id))) != sorted(
                PLACEHOLDER.findall(str(translated.string))):
            problems.append(f"placeholders differ: {message.id!r} -> {translated.string!r}")
    assert problems == []
    assert catalog.fuzzy is False  # a fuzzy header would hide the catalogue from gettext


def test_malay_is_not_english_and_keeps_the_product_name() -> None:
    catalog = _read(LOCALE / "ms" / "LC_MESSAGES" / "messages.po")
    same = [m.id for m in catalog if m.id and m.string == m.id]
    # Only words Malay writes as English does (names, codes, loanwords) may stay the same.
    # A message that is only placeholders and punctuation reads the same in every language.
    same = [m for m in same if re.sub(PLACEHOLDER, "", str(m)).strip(" ():;,.")]
    assert set(same) <= {"Data", "REST API", "Status", "manual", "status", "edit", "Cron",
                         "Webhook: %(url)s", "Status: %(status)s", "SMS"}
    for message in catalog:
        if message.id and "Constant Contact" in str(message.id):
            assert "Constant Contact" in str(message.string), message.id
    ms = languages.translations("ms")
    assert ms.gettext("Exports") == "Eksport"
    assert ms.gettext("Connections") == "Sambungan"
    assert ms.gettext("Add destination") == "Tambah destinasi"


def test_runtime_catalogue_is_compiled_from_the_po() -> None:
    assert languages.translations("ms").gettext("Sign in") == "Daftar masuk"
    assert languages.translations("en").gettext("Sign in") == "Sign in"
    assert languages.translations("xx").gettext("Sign in") == "Sign in"


def test_language_choice_and_locale_formats() -> None:
    from datetime import UTC, datetime

    assert languages.from_accept_language("fr-FR,ms-MY;q=0.8,en;q=0.5") == "ms"
    assert languages.from_accept_language("en-GB;q=0.3, ms;q=0.9") == "ms"
    assert languages.from_accept_language("fr, de;q=0.5") is None
    assert languages.from_accept_language("ms;q=0") is None
    assert languages.choose(None, "ms_MY.UTF-8") == "ms"
    assert languages.choose("de", None) == "en"
    moment = datetime(2026, 12, 7, 14, 5, tzinfo=UTC)
    assert languages.when(moment, "ms") == "7 Dis 2026 14:05 UTC"
    assert languages.when(moment, "en") == "Dec 7, 2026 14:05 UTC"
    assert languages.number(1234567, "ms") == "1,234,567"  # CLDR: ms groups as en does
    assert languages.number(1234.5, "ms") == "1,234.5"
