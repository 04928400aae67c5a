"""Every error message a person can see goes through the catalogues.

Walks the source of every module (except ``constant_contact/`` and ``emulator/``, which keep
Constant Contact's English, see docs/languages.md) and fails on a ``raise X(...)`` or
``return X(...)`` of a product error class (those of ``errors.py`` and their subclasses) or
of ``ValueError`` whose message is a plain string or an f-string instead of an ``N_()`` msgid,
and on a ``hint=`` that is not one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import segment_export

SRC = Path(segment_export.__file__).parent
SKIPPED = ("constant_contact", "emulator")
# Other errors a message may go through: ValueError of the pydantic validators (the rule
# model's are translated, see segments/rules.py) and click's usage error.
# ``refuse`` is ops/backup.py's shorthand for a BackupRefused of one member.
ALSO_CHECKED = frozenset({"ValueError", "TranslatedValueError", "refuse"})

# Messages that stay English on purpose: (module path, first words of the message) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    # Internal checks of a function's arguments: only a programming error reaches them, no
    # person who uses the product can make them happen.
    ("exports/bodies.py", "only contiguous slices"): "argument check of slice_body",
    ("db/types.py", "naive datetime given"): "argument check of the UTC column type",
    ("db/types.py", "This engine was made without"): "engine built without make_engine",
    ("segments/refresh.py", "now must be an aware"): "argument check (callers pass utcnow)",
    ("segments/compiler.py", "now must be an aware"): "argument check (callers pass utcnow)",
    ("profiles/duckdb/store.py", "batch_size must be"): "argument check of a store iterator",
    ("profiles/postgres/store.py", "batch_size must be"): "argument check of a store iterator",
    ("profiles/spark/store.py", "batch_size must be"): "argument check of a store iterator",
    # The engine's own signals between its threads: caught by the engine, which stores a
    # translated message of its own (or logs them), never shown as they are.
    ("exports/engine.py", "cancel requested"): "RunCancelled signal",
    ("exports/engine.py", "the process is shutting down"): "RunInterrupted signal",
    ("exports/engine.py", "worker "): "RunLost signal (logged)",
    ("api/server.py", "The app did not start"): "test/bench helper server (RuntimeError)",
    # The settings are read before any language is known and name environment variables;
    # pydantic writes them into its own English report (``Invalid settings: ...``).
    ("config.py", "SEGMENT_EXPORT_"): "settings validators (operator output)",
    # A hint built with values (a hint is a fixed msgid; this one names the missing table).
    ("profiles/postgres/store.py", "{} (There is no table"): "hint with values",
    ("definitions/custom_fields.py", "Constant Contact would silently"): "hint listing fields",
    ("definitions/custom_fields.py", "Edit the export's mapping"): "hint listing fields",
    ("definitions/mapping.py", "Map to one of: "): "hint listing fields",
    ("definitions/mapping.py", "Columns: "): "hint listing columns",
    # The REST API's request-body validators: the API's 422 details are English.
    ("api/types.py", "control characters are"): "API body validator (English API)",
    ("api/types.py", "NUL characters are"): "API body validator (English API)",
    ("api/types.py", "unknown time zone"): "API body validator (English API)",
    ("api/routes/exports.py", "give either list_id"): "API body validator (English API)",
}


def _error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """Names of the classes of errors.py and of every class deriving from one of them."""
    names = {node.name for node in trees["errors.py"].body if isinstance(node, ast.ClassDef)}
    grown = True
    while grown:
        grown = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(
                        _name(base) in names for base in node.bases):
                    names.add(node.name)
                    grown = True
    return names


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _text_of(node: ast.expr) -> str | None:
    """The English words of a plain or f-string message (None when it is neither)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):  # "..." + "..." or "..." % (...)
        return _text_of(node.left)
    return None


def _trees() -> dict[str, ast.Module]:
    trees = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.split("/")[0] in SKIPPED:
            continue
        trees[relative] = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    return trees


def english_messages(trees: dict[str, ast.Module]) -> list[tuple[str, int, str]]:
    """(module, line, message) of every raised or returned error with an untranslated text."""
    checked = _error_classes(trees) | ALSO_CHECKED
    found = []
    for relative, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise | ast.Return):
                continue
            value = node.exc if isinstance(node, ast.Raise) else node.value
            if not isinstance(value, ast.Call) or _name(value.func) not in checked:
                continue
            if not value.args:
                continue
            message = _text_of(value.args[0])
            if message is None:
                continue
            if any(relative == module and message.startswith(start)
                   for module, start in ALLOWED):
                continue
            found.append((relative, node.lineno, message))
        for node in ast.walk(tree):
            # A hint (what to do) is shown beside the message: a fixed msgid too.
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                hint = _text_of(keyword.value) if keyword.arg == "hint" else None
                if hint is not None and not any(
                        relative == module and hint.startswith(start)
                        for module, start in ALLOWED):
                    found.append((relative, keyword.value.lineno, f"hint: {hint}"))
    return found


def test_every_error_message_a_person_sees_is_a_catalogue_msgid() -> None:
    found = english_messages(_trees())
    assert not found, "raise/return with an English text, wrap it in N_():\n" + "\n".join(
        f"  {module}:{line}: {message!r}" for module, line, message in found)


def test_the_guard_sees_an_english_message(tmp_path: Path) -> None:
    trees = _trees()
    trees["example.py"] = ast.parse(
        "from segment_export.errors import DataError, NotFoundError\n"
        "class NoSuchThing(NotFoundError):\n    pass\n"
        "def f(name):\n"
        "    if name:\n        raise NoSuchThing(f'No thing {name!r}')\n"
        "    return DataError('Bad data', hint='Fix it')\n"
        "def g(name):\n"
        "    raise DataError(N_('A segment needs a name'), field='name')\n")
    assert sorted((m, line) for m, line, _ in english_messages(trees) if m == "example.py") == [
        ("example.py", 6), ("example.py", 7), ("example.py", 7)]


def test_every_allowed_message_still_exists() -> None:
    # An allow-list entry whose message is gone (translated or removed) must go too.
    trees = _trees()
    texts = {module: [text for node in ast.walk(trees[module])
                      if isinstance(node, ast.Constant | ast.JoinedStr)
                      and (text := _text_of(node)) is not None]
             for module in {module for module, _ in ALLOWED}}
    stale = [key for key in ALLOWED if not any(t.startswith(key[1]) for t in texts[key[0]])]
    assert not stale, stale
