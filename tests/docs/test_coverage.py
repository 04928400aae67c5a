"""Adding a command, option, setting, rejection reason, run status or metric without documenting
it fails here; so does a broken link between the guide's pages."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from segment_export.cli import cli
from segment_export.config import Settings
from segment_export.exports.engine import ACTIVE, TERMINAL
from segment_export.exports.validate import REASONS
from segment_export.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADING = re.compile(r"^#{1,6} ")


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.update(_commands(command, path))
        else:
            found[" ".join(path)] = command
    return found


def _sections(text: str) -> dict[str, str]:
    """Command path -> its section, for headings like ### `segment-export exports run NAME`."""
    sections: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if HEADING.match(line):
            current = None
            found = re.search(r"`segment-export ([^`]*)`", line)
            if found:
                words = []
                for word in found.group(1).split():
                    if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                        break
                    words.append(word)
                current = " ".join(words)
                sections[current] = ""
            continue
        if current is not None:
            sections[current] += line + "\n"
    return sections


COMMANDS = _commands(cli)


def test_the_command_tree_is_walked() -> None:
    assert {"exports run", "secrets rotate", "backup", "restore", "purge"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_option_is_in_the_cli_reference(path: str) -> None:
    sections = _sections(_read("cli.md"))
    assert path in sections, f"docs/cli.md has no ### `segment-export {path}` section"
    section = sections[path]
    missing = [
        opt for param in COMMANDS[path].params if isinstance(param, click.Option)
        for opt in param.opts if opt.startswith("--") and f"`{opt}" not in section
    ]
    assert not missing, f"docs/cli.md, section {path!r}, does not mention {missing}"


def test_global_options_are_documented() -> None:
    text = _read("cli.md")
    for param in cli.params:
        for opt in param.opts:
            if opt.startswith("--"):
                assert f"`{opt}" in text, opt


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`SEGMENT_EXPORT_{name.upper()}`" in _read("settings.md")


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_rejection_reason_is_documented(reason: str) -> None:
    assert f"| `{reason}` |" in _read("rejections.md")


@pytest.mark.parametrize("status", sorted(ACTIVE | TERMINAL))
def test_every_run_status_is_documented(status: str) -> None:
    assert f"| `{status}` |" in _read("statuses.md")


def test_every_metric_is_documented() -> None:
    text = _read("operations.md")
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in text, name
    assert "`segment_export_runs`" in text  # counted from the state store at scrape time


def test_every_page_is_in_the_index_and_every_link_resolves() -> None:
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    index = _read("README.md")
    for page in pages:
        if page != "README.md":
            assert f"({page})" in index, f"{page} is not linked from docs/README.md"
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", _read(page)):
            assert (DOCS / target).is_file(), f"{page} links to missing {target}"
