"""Checks on rendered HTML that catch the common accessibility slips."""

from __future__ import annotations

from html.parser import HTMLParser

_SKIP_TYPES = {"hidden", "submit", "button", "reset", "image"}


class _Controls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.label_for: set[str] = set()
        self.inside_label = 0
        self.inside_template = 0
        self.controls: list[tuple[str, dict[str, str], bool]] = []
        self.ids: list[str] = []
        self.lang = ""
        self.h1 = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "html":
            self.lang = values.get("lang", "")
        elif tag == "h1":
            self.h1 += 1
        elif tag == "template":
            self.inside_template += 1
        elif tag == "label":
            self.inside_label += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        elif (tag in {"input", "select", "textarea"} and not self.inside_template
              and values.get("type", "text") not in _SKIP_TYPES):
            self.controls.append((tag, values, self.inside_label > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.inside_label -= 1
        elif tag == "template":
            self.inside_template -= 1


def accessibility_problems(html: str) -> list[str]:
    """Form controls without a label, duplicate ids, no language, no or several h1."""
    parser = _Controls()
    parser.feed(html)
    problems = []
    for tag, attrs, wrapped in parser.controls:
        named = wrapped or attrs.get("id", "") in parser.label_for or attrs.get("aria-label")
        if not named:
            problems.append(f"<{tag} name={attrs.get('name')!r}> has no label")
    duplicates = {i for i in parser.ids if parser.ids.count(i) > 1}
    if duplicates:
        problems.append(f"duplicate ids: {sorted(duplicates)}")
    if not parser.lang:
        problems.append("<html> has no lang")
    if parser.h1 != 1:
        problems.append(f"{parser.h1} <h1> elements")
    return problems
