"""The interface languages (English and Malay): catalogues, choosing one, locale formatting.

Catalogues are the ``.po`` files under ``locale/``, compiled in memory on first use (cached per
process), so a fresh clone installed with ``pip install -e .`` needs no build step and no
committed ``.mo`` file can drift from its ``.po``.
"""

from __future__ import annotations

import gettext as gettext_module
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.dates import format_date, format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALE_DIR = Path(__file__).with_name("locale")
DEFAULT = "en"
# Code -> the language's own name (shown in the language selector).
LANGUAGES = {"en": "English", "ms": "Bahasa Melayu"}


def N_(message: str) -> str:
    """Mark a string for the catalogue where it is defined; it is translated where shown."""
    return message


@cache
def translations(language: str) -> gettext_module.NullTranslations:
    """The compiled catalogue of ``language`` (English strings for an unknown one)."""
    if language not in LANGUAGES:
        return gettext_module.NullTranslations()
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext_module.GNUTranslations(compiled)


@cache
def msgids(language: str) -> frozenset[str]:
    """The messages ``language``'s catalogue holds (what pages may trust as markup)."""
    catalog: dict[object, str] = getattr(translations(language), "_catalog", {})
    return frozenset(key for key in catalog if isinstance(key, str) and key)


def normalize(value: str | None) -> str | None:
    """``ms_MY.UTF-8``, ``ms-MY`` or ``MS`` -> ``ms``; None when it is no supported language."""
    if not value:
        return None
    code = value.strip().split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    return code if code in LANGUAGES else None


def from_accept_language(header: str | None) -> str | None:
    """The supported language the browser prefers most (``Accept-Language``), if any."""
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        code = normalize(tag)
        if code and quality > 0:
            choices.append((-quality, position, code))
    return min(choices)[2] if choices else None


def from_environment() -> str | None:
    """SEGMENT_EXPORT_LANGUAGE, else the POSIX locale variables (LC_ALL, LC_MESSAGES, LANG)."""
    for name in ("SEGMENT_EXPORT_LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        code = normalize(os.environ.get(name))
        if code:
            return code
    return None


def choose(*candidates: str | None) -> str:
    """The first supported language among ``candidates``, else English."""
    for candidate in candidates:
        code = normalize(candidate)
        if code:
            return code
    return DEFAULT


def number(value: object, language: str) -> str:
    """An integer or decimal with the locale's grouping (``1,234,567`` in both en and ms)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    return format_decimal(value, locale=language)


def when(moment: datetime | None, language: str) -> str:
    """A UTC moment as the locale writes it: ``Dec 7, 2026 14:05 UTC``, ``7 Dis 2026 14:05 UTC``."""
    if moment is None:
        return "—"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # The locale's medium date, then hours and minutes (seconds are noise in a report).
    day = format_date(aware.astimezone(UTC).date(), "medium", locale=language)
    clock = format_time(aware, "HH:mm", tzinfo=UTC, locale=language)
    return f"{day} {clock} UTC"


def short_when(moment: datetime, language: str) -> str:
    """A UTC moment for a chart's axis: ``Dec 7 14:05`` (en), ``7 Dis 14:05`` (ms)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return format_datetime(aware, "MMM d HH:mm" if language == "en" else "d MMM HH:mm",
                           tzinfo=UTC, locale=language)


@dataclass(frozen=True)
class Text:
    """A message written now and read later, in the reader's language: catalogue msgids with
    their values, joined by ``sep`` and closed by ``end``.

    What the engine stores beside a run's English ``message`` (which the API and scripts keep
    reading): pages and the CLI show ``in_language(...)``. Values that are numbers are grouped
    as the locale groups them; a value that is itself a Text is translated too; strings (names,
    ids, an error's English text) are left as they are.
    """

    parts: tuple[tuple[str, Mapping[str, Any]], ...]
    sep: str = ""
    end: str = ""

    def in_language(self, language: str) -> str:
        catalogue = translations(language)
        out = []
        for msgid, values in self.parts:
            text = catalogue.gettext(msgid) if msgid else msgid
            if values:
                text = text % {name: _shown(value, language) for name, value in values.items()}
            out.append(text)
        return self.sep.join(out) + self.end

    def __str__(self) -> str:
        return self.in_language(DEFAULT)

    def as_json(self) -> dict[str, Any]:
        return {"parts": [[msgid, {name: _stored(value) for name, value in values.items()}]
                          for msgid, values in self.parts], "sep": self.sep, "end": self.end}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Text:
        return cls(tuple((str(msgid), {name: _loaded(value) for name, value in values.items()})
                         for msgid, values in data.get("parts", [])),
                   sep=str(data.get("sep", "")), end=str(data.get("end", "")))


def text(msgid: str, /, **values: Any) -> Text:
    """One message: ``text(N_("Sent %(count)s contacts"), count=12)``."""
    return Text(((msgid, values),))


def joined(*texts: Text, sep: str = "; ", end: str = ".") -> Text:
    """Several messages as one sentence: ``a; b; c.``"""
    return Text(tuple(part for t in texts for part in t.parts), sep=sep, end=end)


def message_text(exc: BaseException) -> Text:
    """An error's message without its hint as a Text (translated when the catalogue has it)."""
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        return Text(((str(exc), {}),))
    msgid, values = getattr(exc, "msgid", ""), getattr(exc, "values", None)
    if isinstance(msgid, str) and msgid and isinstance(values, Mapping):
        # Values as the English text wrote them (no locale grouping: ids and row numbers).
        return Text(((msgid, {name: value if isinstance(value, Text) else str(value)
                              for name, value in values.items()}),))
    return Text(((message, {}),))


def error_text(exc: BaseException) -> Text:
    """An error as a Text: its message (translated when the catalogue has it) and its hint,
    read ``message (hint)`` as ``str()`` of the product's errors reads."""
    said = message_text(exc)
    # Only the product's errors (those with a ``message``) carry a hint worth showing.
    hint = (getattr(exc, "hint", "") or "") if isinstance(getattr(exc, "message", None), str) \
        else ""
    if not hint:
        return said
    return text(N_("%(message)s (%(hint)s)"), message=said,
                hint=Text(((hint, {}),)))


def shown(message: str | None, stored: Mapping[str, Any] | None, language: str) -> str:
    """What a reader sees of a stored message: its Text in ``language`` when one was stored,
    else the English text (translated when it is a catalogue msgid, as fixed messages are)."""
    if stored:
        try:
            return Text.from_json(stored).in_language(language)
        except (AttributeError, KeyError, TypeError, ValueError):
            pass  # a Text this version cannot read: the English text still tells the story
    if not message:
        return ""
    return translations(language).gettext(message) if language != DEFAULT else message


def filled(values: Mapping[str, Any], language: str) -> dict[str, Any]:
    """An error's ``values`` for ``msgid % values`` in ``language``: a value that is a Text
    (a nested message) in that language, the others as the English text wrote them."""
    return {name: value.in_language(language) if isinstance(value, Text) else value
            for name, value in values.items()}


def _shown(value: Any, language: str) -> Any:
    if isinstance(value, Text):
        return value.in_language(language)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value, language)
    return value


def _stored(value: Any) -> Any:
    return {"text": value.as_json()} if isinstance(value, Text) else value


def _loaded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"text"}:
        return Text.from_json(value["text"])
    return value
