"""Segment conditions made to mean in Spark SQL what they mean in DuckDB.

sqlglot transpiles the syntax; two constructs parse the same in both engines but evaluate
differently, and are rewritten here so a segment has the same members wherever it runs:

* ``LIKE`` has no escape character in DuckDB; Spark treats ``\\`` as one, so a backslash in a
  pattern without ``ESCAPE`` is doubled;
* DuckDB rounds a double's exact binary value half away from zero (``ROUND(2.675, 2)`` is
  2.67); Spark rounds its shortest decimal spelling (2.68).

Everything else the compiler emits was checked against DuckDB over the segment corpus (text
ordered by bytes, ASCII ``\\s`` in regular expressions, ``%`` on doubles, negative
``SUBSTRING`` starts, NaN above every number, intervals, zones and casts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import sqlglot
from sqlglot import exp

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

E = TypeVar("E", bound=exp.Expr)

_VALUE = "__rounded_value__"
# Half away from zero of y + err, where err is what the double y lost of the exact value: it
# only matters when y lands exactly on a half. ``a - a % 1`` floors without leaving doubles.
_ROUND = ("SIGN({y}) * ((ABS({y}) - ABS({y}) % 1) + CASE WHEN ABS({y}) % 1 > 0.5 OR "
          "(ABS({y}) % 1 = 0.5 AND SIGN({y}) * {err} >= 0) THEN 1 ELSE 0 END)")
_SPLITTER = 134217729.0  # 2**27 + 1 splits a double into two halves of 26 bits


def spark_sql(condition: exp.Expr, frame: DataFrame) -> str:
    """The condition as Spark SQL over ``frame`` (the profiles), meaning what DuckDB means."""
    holder = exp.Paren(this=condition.copy())
    for like in _innermost_first(holder, exp.Like, exp.ILike):
        pattern = like.expression
        if (not isinstance(like.parent, exp.Escape) and isinstance(pattern, exp.Literal)
                and pattern.is_string and "\\" in pattern.this):
            like.set("expression", exp.Literal.string(pattern.this.replace("\\", "\\\\")))
    for rounding in _innermost_first(holder, exp.Round):
        if _is_floating(rounding.this, frame):
            rounding.replace(_round_half_away(rounding.this, rounding.args.get("decimals")))
    text: str = holder.this.sql(dialect="spark")
    return text


def _innermost_first(tree: exp.Expr, *kinds: type[E]) -> list[E]:
    # A rewrite copies its operand, so a node nested in another is rewritten first.
    return list(tree.find_all(*kinds))[::-1]


def _is_floating(node: exp.Expr, frame: DataFrame) -> bool:
    """Whether Spark types ``node`` as a double or float (decimals already round exactly)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import types as T

    try:
        dtype = frame.selectExpr(node.sql(dialect="spark")).schema.fields[0].dataType
    except AnalysisException:
        return False  # the condition itself will report what is wrong
    return isinstance(dtype, T.DoubleType | T.FloatType)


def _double(value: float) -> str:
    # Spark reads 10.0 as a DECIMAL literal; the arithmetic below must stay in doubles.
    return f"CAST('{value!r}' AS DOUBLE)"


def _product_error(a: str, b: float, product: str) -> str:
    """Spark SQL for a·b − product, exactly, when product is the double nearest to a·b."""
    splitter = _double(_SPLITTER)
    a_high = f"(({splitter} * {a}) - (({splitter} * {a}) - {a}))"
    a_low = f"({a} - {a_high})"
    scaled = _SPLITTER * b
    b_high = scaled - (scaled - b)
    b_low = b - b_high
    return (f"(((({a_high} * {_double(b_high)} - {product}) + {a_high} * {_double(b_low)}) + "
            f"{a_low} * {_double(b_high)}) + {a_low} * {_double(b_low)})")


def _round_half_away(value: exp.Expr, decimals: exp.Expr | None) -> exp.Expr:
    """DuckDB's ROUND(double[, digits]) in Spark SQL; infinities and NaN stay as they are."""
    digits = 0 if decimals is None else int(decimals.to_py()) if decimals.is_int else None
    v = f"CAST({_VALUE} AS DOUBLE)"
    if digits is None or not -22 <= digits <= 22:
        # Not a literal power of ten that a double holds exactly: ties are taken as they come.
        scale = "CAST(10 AS DOUBLE)" if decimals is None else (
            f"POWER(10, {decimals.sql(dialect='spark')})")
        rounded = f"{_ROUND.format(y=f'({v} * {scale})', err='0')} / {scale}"
    elif digits == 0:
        rounded = _ROUND.format(y=v, err="0")
    elif digits > 0:
        factor = 10.0 ** digits
        y = f"({v} * {_double(factor)})"
        rounded = f"{_ROUND.format(y=y, err=_product_error(v, factor, y))} / {_double(factor)}"
    else:
        divisor = 10.0 ** -digits
        y = f"({v} / {_double(divisor)})"
        back = f"({y} * {_double(divisor)})"
        remainder = f"(({v} - {back}) - {_product_error(y, divisor, back)})"
        rounded = f"{_ROUND.format(y=y, err=remainder)} * {_double(divisor)}"
    # An infinite or NaN value (or one whose scaling overflows) comes back unchanged, as in
    # DuckDB; the formula above would make it NaN, which Spark orders above everything.
    text = (f"CASE WHEN ISNAN({rounded}) OR ABS({rounded}) = CAST('inf' AS DOUBLE) "
            f"THEN {v} ELSE {rounded} END")
    tree = sqlglot.parse_one(text, read="spark")
    return exp.Paren(this=tree.transform(
        lambda node: exp.Paren(this=value.copy())
        if isinstance(node, exp.Column) and node.name == _VALUE else node))
