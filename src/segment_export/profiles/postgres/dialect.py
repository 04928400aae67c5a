"""Segment conditions and RE2 patterns made to mean in PostgreSQL what they mean in DuckDB.

sqlglot transpiles the syntax; a few constructs parse the same in both engines but evaluate
differently, and are rewritten here so a segment has the same members wherever it runs:

* text is ordered byte by byte in DuckDB; PostgreSQL follows the column's collation
  (``'a' < 'B'`` under en_US), so ordering comparisons on text use ``COLLATE "C"``;
* ``LIKE`` has no escape character in DuckDB; PostgreSQL treats ``\\`` as one unless told
  ``ESCAPE ''``;
* DuckDB's ``ROUND`` takes halves away from zero; PostgreSQL rounds a double half to even
  and has no ``ROUND(double, digits)`` (casts to integers round half to even in both);
* ``%`` on a double and ``SUBSTRING`` from a negative position are DuckDB extensions;
* RE2's ``\\s``, ``\\d`` and ``\\w`` are ASCII; PostgreSQL's follow the locale (an em space is
  ``\\s`` there).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from sqlglot import exp

from segment_export.profiles.rounding import DoubleSQL, round_half_away

E = TypeVar("E", bound=exp.Expr)

TEXT = "VARCHAR"
BYTE_ORDER = "C"

_ORDERING = (exp.LT, exp.LTE, exp.GT, exp.GTE)
_TEXT_FUNCTIONS = (exp.Lower, exp.Upper, exp.Trim, exp.Substring, exp.DPipe)
_TEXT_TYPES = frozenset({
    exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR,
})
# RE2's shorthand classes, spelled out so PostgreSQL's locale cannot widen them.
_RE2_CLASSES = {"s": "\\t\\n\\f\\r ", "d": "0-9", "w": "0-9A-Za-z_"}


def adapt_condition(condition: exp.Expr, types: Mapping[str, str], *,
                    schema: str | None = None) -> exp.Expr:
    """A copy of ``condition`` (DuckDB semantics) rewritten for PostgreSQL.

    ``types`` maps the profile columns to their normalized types (VARCHAR, DOUBLE, ...);
    ``schema`` qualifies the tables a condition reads (the copy of the suppression set).
    """
    # Held in a parenthesis so that even the root (a LIKE, say) can be replaced in place.
    holder = exp.Paren(this=condition.copy())
    for rounding in _innermost_first(holder, exp.Round):
        rounding.replace(_round_half_away(rounding.this, rounding.args.get("decimals")))
    for mod in _innermost_first(holder, exp.Mod):
        for key in ("this", "expression"):
            operand = mod.args.get(key)
            if operand is not None and _is_double(operand, types):
                mod.set(key, exp.cast(operand.copy(), exp.DataType.build("DECIMAL")))
    for substring in _innermost_first(holder, exp.Substring):
        _substring_from_end(substring)
    for comparison in _innermost_first(holder, *_ORDERING, exp.Between):
        _compare_bytes(comparison, types)
    for like in _innermost_first(holder, exp.Like, exp.ILike):
        if not isinstance(like.parent, exp.Escape):
            like.replace(exp.Escape(this=like.copy(), expression=exp.Literal.string("")))
    for digest in _innermost_first(holder, exp.SHA2):
        # DuckDB hashes text; PostgreSQL's sha256 takes bytes (the hex form is the same).
        digest.set("this", exp.func("convert_to", digest.this.copy(),
                                    exp.Literal.string("UTF8")))
    if schema is not None:
        for table in holder.find_all(exp.Table):
            if not table.args.get("db"):
                table.set("db", exp.to_identifier(schema, quoted=True))
    adapted: exp.Expr = holder.this
    return adapted


def _compare_bytes(node: exp.Expr, types: Mapping[str, str]) -> None:
    keys = ("this", "low", "high") if isinstance(node, exp.Between) else ("this", "expression")
    for key in keys:
        operand = node.args.get(key)
        if operand is not None and is_text(operand, types) and not _is_literal(operand):
            # One explicit collation decides the comparison; literals need none.
            node.set(key, byte_order(operand.copy()))


def _innermost_first(tree: exp.Expr, *kinds: type[E]) -> list[E]:
    # Rewrites copy their operands, so a node nested in another is rewritten first.
    return list(tree.find_all(*kinds))[::-1]


def byte_order(node: exp.Expr) -> exp.Expr:
    """``node COLLATE "C"``: compared and sorted byte by byte, as DuckDB does."""
    return exp.Collate(this=node, expression=exp.to_identifier(BYTE_ORDER, quoted=True))


def is_text(node: exp.Expr, types: Mapping[str, str]) -> bool:
    """Whether ``node`` is a text value (as far as can be told without the engine)."""
    if isinstance(node, exp.Paren):
        return is_text(node.this, types)
    if isinstance(node, exp.Column):
        return types.get(node.name) == TEXT
    if isinstance(node, exp.Literal):
        return bool(node.is_string)
    if isinstance(node, _TEXT_FUNCTIONS):
        return True
    if isinstance(node, exp.Coalesce):
        return is_text(node.this, types)
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        return isinstance(to, exp.DataType) and to.this in _TEXT_TYPES
    return False


def _is_literal(node: exp.Expr) -> bool:
    return isinstance(node.unnest() if isinstance(node, exp.Paren) else node, exp.Literal)


def _is_double(node: exp.Expr, types: Mapping[str, str]) -> bool:
    if isinstance(node, exp.Paren):
        return _is_double(node.this, types)
    return isinstance(node, exp.Column) and types.get(node.name) == "DOUBLE"


# Half away from zero of y; err (what y lost of the exact value) decides exact halves.
_POSTGRES = DoubleSQL(
    dialect="postgres",
    round_template=("SIGN({y}) * (FLOOR(ABS({y})) + CASE WHEN ABS({y}) - FLOOR(ABS({y})) > 0.5 "
                    "OR (ABS({y}) - FLOOR(ABS({y})) = 0.5 AND SIGN({y}) * {err} >= 0) "
                    "THEN 1 ELSE 0 END)"))


def _round_half_away(value: exp.Expr, decimals: exp.Expr | None) -> exp.Expr:
    """DuckDB's ROUND(value[, decimals]) in PostgreSQL."""
    return round_half_away(value, decimals, _POSTGRES)


def _substring_from_end(node: exp.Substring) -> None:
    # DuckDB counts a negative start from the end of the text; PostgreSQL would count it as
    # positions before the first character.
    start = node.args.get("start")
    if isinstance(start, exp.Neg) and isinstance(start.this, exp.Literal) and start.this.is_int:
        offset = -int(start.this.to_py())
    elif isinstance(start, exp.Literal) and start.is_int and int(start.to_py()) < 0:
        offset = int(start.to_py())
    else:
        return
    # Positions before the first character still count against the length, in both engines.
    length = exp.Length(this=node.this.copy())
    node.set("start", exp.Paren(
        this=exp.Add(this=length, expression=exp.Literal.number(offset + 1))))


def re2_to_postgres(pattern: str) -> str:
    """An RE2 pattern with its ASCII shorthand classes spelled out for PostgreSQL's ``~``."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _RE2_CLASSES:
                spelled = _RE2_CLASSES[nxt]
                out.append(spelled if in_class else f"[{spelled}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            # A ']' (or '^]') right after the opening bracket is a literal member.
            if pattern.startswith("^", i + 1):
                out.append("^")
                i += 1
            if pattern.startswith("]", i + 1):
                out.append("]")
                i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)
