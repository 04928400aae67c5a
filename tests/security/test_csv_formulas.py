"""The rejected-rows CSV defuses every cell a spreadsheet could run as a formula, including ones
hidden behind whitespace, control or format characters, or written in compatibility forms."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_export.exports.runs import formula_safe, would_be_formula

FORMULA = ("=", "+", "-", "@")


def _skippable(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "CZ"


def _as_a_spreadsheet_reads_it(cell: str) -> str:
    folded = unicodedata.normalize("NFKC", cell)
    i = 0
    while i < len(folded) and _skippable(folded[i]):
        i += 1
    return folded[i:]


@pytest.mark.parametrize("cell", [
    "=1+1", " =1+1", "\n=1+1", "\r=1+1", "\t=1+1", "\u00a0=1+1", "\u200b=1+1", "\ufeff@SUM(A1)",
    "\u3000+1", "＝1+1", "＋1", "－1", "＠SUM(A1)", "﹦1", " \t\n ＝HYPERLINK(\"x\")", "\x00=1",
    "\u2028-2", "\t", "\r",
])
def test_hidden_formulas_are_prefixed(cell: str) -> None:
    assert would_be_formula(cell)
    assert formula_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["", "alice@example.com", "a=b", "1+1", " plain", "'=quoted",
                                  "Ａlice", "not-an-email-3"])
def test_ordinary_cells_are_left_alone(cell: str) -> None:
    assert formula_safe(cell) == cell


_CHARS = st.one_of(
    st.sampled_from(["=", "+", "-", "@", "＝", "＋", "－", "＠", "﹦", "﹢", "﹣", "\t", "\r", "\n",
                     " ", "\u00a0", "\u200b", "\u200e", "\ufeff", "\u3000", "\u2028", "\x00",
                     "\x1f", "\u0085", "a", "1", "'"]),
    st.characters(codec="utf-8"),
)


@settings(max_examples=3000, deadline=None)
@given(st.text(_CHARS, max_size=12))
def test_no_guarded_cell_starts_a_formula(cell: str) -> None:
    guarded = formula_safe(cell)
    seen = _as_a_spreadsheet_reads_it(guarded)
    assert not seen.startswith(FORMULA) or guarded.startswith("'"), repr(cell)
    assert guarded in (cell, "'" + cell)  # the content itself is never changed
