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

from sqlglot import exp

from segment_export.profiles.rounding import DoubleSQL, round_half_away

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

E = TypeVar("E", bound=exp.Expr)



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
    # Spark reads 10.0 as a DECIMAL literal; the arithmetic must stay in doubles.
    return f"CAST('{value!r}' AS DOUBLE)"


def _keep_nan_and_infinity(rounded: str, value: str) -> str:
    # An infinite or NaN value (or one whose scaling overflows) comes back unchanged, as in
    # DuckDB; the formula would make it NaN, which Spark orders above everything.
    return (f"CASE WHEN ISNAN({rounded}) OR ABS({rounded}) = CAST('inf' AS DOUBLE) "
            f"THEN {value} ELSE {rounded} END")


# ``a - a % 1`` floors without leaving doubles.
_SPARK = DoubleSQL(
    dialect="spark",
    round_template=("SIGN({y}) * ((ABS({y}) - ABS({y}) % 1) + CASE WHEN ABS({y}) % 1 > 0.5 OR "
                    "(ABS({y}) % 1 = 0.5 AND SIGN({y}) * {err} >= 0) THEN 1 ELSE 0 END)"),
    literal=_double, ten="CAST(10 AS DOUBLE)", finish=_keep_nan_and_infinity, cast_value=True)


def _round_half_away(value: exp.Expr, decimals: exp.Expr | None) -> exp.Expr:
    """DuckDB's ROUND(double[, digits]) in Spark SQL; infinities and NaN stay as they are."""
    return round_half_away(value, decimals, _SPARK)
