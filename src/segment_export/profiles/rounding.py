"""DuckDB's ROUND of a double, written in another engine's SQL.

DuckDB rounds half away from zero of the double's *exact* value (round(2.675, 2) is 2.67, as
2.675 is a little less); PostgreSQL rounds halves to even and Spark rounds the decimal spelling.
The rewrite scales the value, keeps the exact part the scaling lost (Dekker's product error),
and uses it only when the scaled double lands exactly on a half.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

_SPLITTER = 134217729.0  # 2**27 + 1 splits a double into two halves of 26 bits
_VALUE = "__rounded_value__"


@dataclass(frozen=True)
class DoubleSQL:
    """How one engine's SQL spells the pieces of the rewrite."""

    dialect: str
    # Half away from zero of {y}, a double, where {err} is what y lost of the exact value.
    round_template: str
    literal: Callable[[float], str] = repr  # a double literal
    ten: str = "10"
    # The rounded expression and the value -> the final expression (e.g. keep NaN as it is).
    finish: Callable[[str, str], str] = lambda rounded, _value: rounded
    cast_value: bool = False  # read the value through CAST(... AS DOUBLE)

    def value(self) -> str:
        return f"CAST({_VALUE} AS DOUBLE)" if self.cast_value else _VALUE


def _product_error(a: str, b: float, product: str, literal: Callable[[float], str]) -> str:
    """SQL for a·b − product, exactly, when product is the double nearest to a·b."""
    splitter = literal(_SPLITTER)
    a_high = f"(({splitter} * {a}) - (({splitter} * {a}) - {a}))"
    a_low = f"({a} - {a_high})"
    scaled = _SPLITTER * b
    b_high = scaled - (scaled - b)
    b_low = b - b_high
    return (f"(((({a_high} * {literal(b_high)} - {product}) + {a_high} * {literal(b_low)}) + "
            f"{a_low} * {literal(b_high)}) + {a_low} * {literal(b_low)})")


def round_half_away(value: exp.Expr, decimals: exp.Expr | None, sql: DoubleSQL) -> exp.Expr:
    """DuckDB's ROUND(value[, decimals]) for a double ``value``, in ``sql``'s dialect."""
    digits = 0 if decimals is None else int(decimals.to_py()) if decimals.is_int else None
    v, number, template = sql.value(), sql.literal, sql.round_template
    if digits is None or not -22 <= digits <= 22:
        # Not a literal power of ten that a double holds exactly: ties are taken as they come.
        scale = sql.ten if decimals is None else (
            f"POWER(10, {decimals.sql(dialect=sql.dialect)})")
        rounded = f"{template.format(y=f'({v} * {scale})', err='0')} / {scale}"
    elif digits == 0:
        rounded = template.format(y=v, err="0")
    elif digits > 0:
        factor = 10.0 ** digits
        y = f"({v} * {number(factor)})"
        err = _product_error(v, factor, y, number)
        rounded = f"{template.format(y=y, err=err)} / {number(factor)}"
    else:
        divisor = 10.0 ** -digits
        y = f"({v} / {number(divisor)})"
        back = f"({y} * {number(divisor)})"
        remainder = f"(({v} - {back}) - {_product_error(y, divisor, back, number)})"
        rounded = f"{template.format(y=y, err=remainder)} * {number(divisor)}"
    tree = sqlglot.parse_one(sql.finish(rounded, v), read=sql.dialect)
    return exp.Paren(this=tree.transform(
        lambda node: exp.Paren(this=value.copy())
        if isinstance(node, exp.Column) and node.name == _VALUE else node))
