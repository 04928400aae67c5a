"""Rules and restricted SQL expressions -> checked sqlglot conditions over the profile table.

Both forms end as a sqlglot boolean expression whose columns exist in the profile schema and
whose values are literals made by sqlglot; each profile store renders it in its own dialect.

Semantics a marketer can rely on (and the tests pin down):

* ``eq``, ``lt``, ``le``, ``gt``, ``ge``, ``between``, ``in``, ``contains``, ``starts_with``
  never match an empty (NULL) value.
* ``ne`` does match empty values: "country is not DE" includes profiles without a country.
* ``is_empty`` matches NULL and, for text, blank text ('' or only spaces); ``is_not_empty``
  is its exact opposite.
* ``contains`` and ``starts_with`` ignore letter case (Unicode lower-casing); ``eq`` and
  ``in`` compare exactly.
* ``within_last_days N`` matches from the start of the day N days before today up to now,
  in the condition's time zone (default UTC); future dates do not match. Naive timestamps
  are read as wall-clock time in that zone.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from segment_export.errors import DataError
from segment_export.languages import N_, error_text
from segment_export.segments import unsubscribed
from segment_export.segments.rules import (
    MAX_DAYS,
    AllGroup,
    AnyGroup,
    Condition,
    Rule,
    check_value_bounds,
    parse_rule,
)

EXPRESSION_DIALECT = "duckdb"
MAX_EXPRESSION_CHARS = 10_000
MAX_EXPRESSION_NODES = 2_000

TEXT = "VARCHAR"
NUMBERS = frozenset({"BIGINT", "DOUBLE"})
TEMPORAL = frozenset({"DATE", "TIMESTAMP", "TIMESTAMPTZ"})
COMPARABLE = frozenset({TEXT, "BOOLEAN"}) | NUMBERS | TEMPORAL
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

# The restricted SQL: these node types and nothing else. No subqueries, tables, statements,
# or functions beyond a few pure scalar ones (read_csv, getenv, ... are refused).
_ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null,
    exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.And, exp.Or, exp.Not, exp.Paren, exp.Between, exp.In, exp.Like, exp.ILike, exp.Escape,
    exp.Is, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe,
    exp.Lower, exp.Upper, exp.Trim, exp.Length, exp.Coalesce, exp.Cast, exp.DataType,
    exp.DataTypeParam, exp.Abs, exp.Round, exp.Substring, exp.StartsWith, exp.StrPosition,
    exp.CurrentDate, exp.CurrentTimestamp, exp.Interval, exp.Var,
)
_PREDICATES: tuple[type[exp.Expr], ...] = (
    exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.And, exp.Or, exp.Not, exp.Between, exp.In, exp.Like, exp.ILike, exp.Is, exp.Boolean,
    exp.StartsWith, exp.Escape,
)
_CAST_TYPES = frozenset({
    exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR,
    exp.DataType.Type.INT, exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT,
    exp.DataType.Type.TINYINT, exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT,
    exp.DataType.Type.DECIMAL, exp.DataType.Type.DATE, exp.DataType.Type.TIMESTAMP,
    # DuckDB's TIMESTAMP parses as TIMESTAMPNTZ (and renders as TIMESTAMP_NTZ for Spark).
    exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.BOOLEAN,
})
_INTERVAL_UNITS = frozenset({"DAY", "DAYS", "WEEK", "WEEKS", "MONTH", "MONTHS", "YEAR", "YEARS",
                             "HOUR", "HOURS", "MINUTE", "MINUTES"})


def compile_segment(
    *,
    schema: Mapping[str, str],
    rule: Rule | Mapping[str, Any] | str | None = None,
    expression: str | None = None,
    now: datetime | None = None,
    timezone: str = "UTC",
) -> exp.Expr:
    """The condition of a segment given as a rule or as a restricted SQL expression."""
    if (rule is None) == (expression is None):
        raise DataError(N_("Give a segment either a rule or an expression (exactly one)"),
                        field="rule")
    if rule is not None:
        return compile_rule(parse_rule(rule), schema=schema, now=now, timezone=timezone)
    assert expression is not None
    return compile_expression(expression, schema=schema)


def to_sql(condition: exp.Expr, dialect: str = "duckdb") -> str:
    """The condition as SQL text of ``dialect`` (for display and logs)."""
    return condition.sql(dialect=dialect)


# -- rules -------------------------------------------------------------------------------------


def compile_rule(
    rule: Rule,
    *,
    schema: Mapping[str, str],
    now: datetime | None = None,
    timezone: str = "UTC",
) -> exp.Expr:
    """Compile a rule; ``now`` (aware, default: the current time) anchors relative dates."""
    if now is not None and now.tzinfo is None:
        raise DataError("now must be an aware datetime", field="now")
    if not schema:
        raise DataError(N_("No profiles have been imported, so no field can be checked"),
                        field="rule")
    context = _Context(schema=schema, now=now or datetime.now(zoneinfo.ZoneInfo("UTC")),
                       timezone=timezone)
    return _compile_node(rule.root, context)


class _Context:
    def __init__(self, *, schema: Mapping[str, str], now: datetime, timezone: str) -> None:
        self.schema = schema
        self.now = now
        self.timezone = timezone


def _compile_node(node: AllGroup | AnyGroup | Condition, context: _Context) -> exp.Expr:
    if isinstance(node, AllGroup):
        parts = [_compile_node(child, context) for child in node.all]
        return _paren(exp.and_(*parts, wrap=True)) if len(parts) > 1 else parts[0]
    if isinstance(node, AnyGroup):
        parts = [_compile_node(child, context) for child in node.any]
        return _paren(exp.or_(*parts, wrap=True)) if len(parts) > 1 else parts[0]
    return _compile_condition(node, context)


def _paren(node: exp.Expr) -> exp.Expr:
    return exp.Paren(this=node)


def resolve_column(name: str, schema: Mapping[str, str], *, what: str = "field") -> str:
    """The schema's own spelling of ``name`` (exact, else the one case-insensitive match)."""
    if name in schema:
        return name
    folded = [c for c in schema if c.casefold() == name.casefold()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(sorted(schema))
    shown = known if len(known) < 400 else known[:400] + "…"
    quotes = " (write text values in straight single quotes: 'DE')" if any(
        c in name for c in "‘’“”«»"
    ) else ""
    raise DataError(N_("Unknown %(what)s %(name)s%(quotes)s; the profiles have: %(shown)s"),
                    values={"what": what, "name": repr(name), "quotes": quotes,
                            "shown": shown}, field=name)


def _compile_condition(cond: Condition, context: _Context) -> exp.Expr:
    if unsubscribed.applies(cond.field, context.schema):
        return unsubscribed.compile_condition(cond, context.schema)
    name = resolve_column(cond.field, context.schema)
    ctype = context.schema[name]
    col = exp.column(name, quoted=True)
    op = cond.op
    if op in ("is_empty", "is_not_empty"):
        empty: exp.Expr = exp.Is(this=col.copy(), expression=exp.Null())
        if ctype == TEXT:
            blank = exp.EQ(this=exp.Trim(this=col.copy()), expression=exp.Literal.string(""))
            empty = exp.or_(empty, blank)
        return _paren(empty) if op == "is_empty" else _paren(exp.not_(_paren(empty)))
    if ctype not in COMPARABLE:
        raise DataError(
            N_("Field %(name)s holds %(type)s values, which a rule can only test with "
               "is_empty or is_not_empty"),
            values={"name": repr(name), "type": ctype},
            field=name,
        )
    if op == "within_last_days":
        return _within_last_days(cond, name, ctype, context)
    if op in ("contains", "starts_with"):
        if ctype != TEXT:
            raise DataError(N_("%(op)s needs a text field, but %(name)s is %(type)s"),
                            values={"op": op, "name": repr(name), "type": ctype}, field=name)
        needle = _literal(cond.value, name, ctype, cond, context)
        if cond.value == "":
            raise DataError(N_("%(op)s on %(name)s needs some text to look for"),
                            values={"op": op, "name": repr(name)}, field=name)
        lowered = exp.Lower(this=col)
        if op == "contains":
            return exp.GT(
                this=exp.StrPosition(this=lowered, substr=exp.Lower(this=needle)),
                expression=exp.Literal.number(0),
            )
        return exp.StartsWith(this=lowered, expression=exp.Lower(this=needle))
    if ctype == "BOOLEAN" and op not in ("eq", "ne"):
        raise DataError(N_("%(name)s is true/false; use eq or ne, not %(op)s"),
                        values={"name": repr(name), "op": op}, field=name)
    if op == "between":
        low, high = cond.value
        lo = _literal(low, name, ctype, cond, context)
        hi = _literal(high, name, ctype, cond, context)
        if _comparable_key(low, ctype) > _comparable_key(high, ctype):
            raise DataError(
                N_("between on %(name)s: the low bound %(low)s is above the high bound "
                   "%(high)s"),
                values={"name": repr(name), "low": repr(low), "high": repr(high)},
                field=name,
            )
        return exp.Between(this=col, low=lo, high=hi)
    if op == "in":
        return col.isin(*[_literal(v, name, ctype, cond, context) for v in cond.value])
    value = _literal(cond.value, name, ctype, cond, context)
    if op == "ne":
        # A marketer reads "not DE" as "everyone but DE", including those with no country.
        return _paren(exp.or_(exp.NEQ(this=col, expression=value),
                              exp.Is(this=col.copy(), expression=exp.Null())))
    comparison: dict[str, type[exp.Binary]] = {
        "eq": exp.EQ, "lt": exp.LT, "le": exp.LTE, "gt": exp.GT, "ge": exp.GTE,
    }
    return comparison[op](this=col, expression=value)


def _comparable_key(value: Any, ctype: str) -> Any:
    if ctype in NUMBERS:
        return float(value)
    return str(value)


def _literal(
    value: Any, name: str, ctype: str, cond: Condition, context: _Context
) -> exp.Expr:
    """A sqlglot literal of the column's type; the value is never pasted into SQL text."""
    shown = repr(value)
    if ctype == TEXT:
        if not isinstance(value, str):
            raise DataError(
                N_("Field %(name)s is text; give the value as text (\"%(value)s\"), not %(shown)s"),
                values={"name": repr(name), "value": value, "shown": shown},
                field=name,
            )
        return exp.Literal.string(value)
    if ctype in NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise DataError(N_("Field %(name)s is a number; %(value)s is not"),
                            values={"name": repr(name), "value": shown}, field=name)
        if isinstance(value, str):
            if not _NUMBER.fullmatch(value.strip()):
                raise DataError(N_("Field %(name)s is a number; %(value)s is not"),
                                values={"name": repr(name), "value": shown}, field=name)
            value = value.strip()
            _check_number_text(value, name)
        return exp.Literal.number(value)
    if ctype == "BOOLEAN":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise DataError(N_("Field %(name)s is true/false; %(value)s is not"),
                            values={"name": repr(name), "value": shown}, field=name)
        return exp.true() if value else exp.false()
    if not isinstance(value, str):
        raise DataError(
            N_("Field %(name)s is a %(ctype)s; give an ISO date like \"2024-01-31\", not "
               "%(shown)s"),
            values={"name": repr(name), "ctype": ctype.lower(), "shown": shown},
            field=name,
        )
    zone = _zone(cond.timezone or context.timezone)
    try:
        if ctype == "DATE":
            return _date(date.fromisoformat(value.strip()))
        moment = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise DataError(
            N_("Field %(name)s is a %(ctype)s; %(shown)s is not an ISO date or time (like "
               "2024-01-31 or 2024-01-31T12:00:00+01:00)"),
            values={"name": repr(name), "ctype": ctype.lower(), "shown": shown},
            field=name,
        ) from exc
    try:
        return _moment(moment, ctype, zone)
    except OverflowError as exc:
        # Moving 0001-01-01 or 9999-12-31 to another zone leaves the years datetime knows.
        raise DataError(N_("Field %(name)s: %(shown)s is too close to year 1 or 9999 to compare "
                           "in another time zone"),
                        values={"name": repr(name), "shown": shown}, field=name) from exc


def _check_number_text(text: str, name: str) -> None:
    """A number written as text obeys the same bounds as one written as a number."""
    number: int | float
    try:
        number = int(text) if text.lstrip("+-").isdigit() else float(text)
        check_value_bounds(number)
    except ValueError as exc:
        raise DataError(N_("Field %(name)s: %(error)s"),
                        values={"name": repr(name),
                                "error": error_text(exc)},
                        field=name) from exc


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise DataError(N_("Unknown time zone %(zone)s"), values={"zone": repr(name)},
                        field="timezone") from exc


def _date(day: date) -> exp.Expr:
    return exp.cast(exp.Literal.string(day.isoformat()), exp.DataType.build("DATE"))


def _moment(moment: datetime, ctype: str, zone: zoneinfo.ZoneInfo) -> exp.Expr:
    if ctype == "TIMESTAMP":
        # Naive timestamps are wall-clock time in the rule's zone.
        if moment.tzinfo is not None:
            moment = moment.astimezone(zone).replace(tzinfo=None)
        text = moment.isoformat(sep=" ")
        return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMP"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    text = moment.astimezone(zoneinfo.ZoneInfo("UTC")).isoformat(sep=" ")
    return exp.cast(exp.Literal.string(text), exp.DataType.build("TIMESTAMPTZ"))


def _within_last_days(cond: Condition, name: str, ctype: str, context: _Context) -> exp.Expr:
    if ctype not in TEMPORAL:
        raise DataError(
            N_("within_last_days needs a date or timestamp field, but %(name)s is %(type)s"),
            values={"name": repr(name), "type": ctype},
            field=name,
        )
    days = cond.value
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS:
        # The rule model refuses these already; a Rule built around it must not crash here.
        raise DataError(N_("within_last_days takes a whole number of days from 0 to %(max_days)s"),
                        values={"max_days": f"{MAX_DAYS:,}"},
                        field=name)
    zone = _zone(cond.timezone or context.timezone)
    col = exp.column(name, quoted=True)
    try:
        local_now = context.now.astimezone(zone)
        first_day = local_now.date() - timedelta(days=days)
        if ctype == "DATE":
            low, high = _date(first_day), _date(local_now.date())
        else:
            start = datetime.combine(first_day, time(0), tzinfo=zone)
            low, high = _moment(start, ctype, zone), _moment(local_now, ctype, zone)
    except OverflowError as exc:
        # Only a ``now`` within MAX_DAYS of year 1 gets here.
        raise DataError(N_("within_last_days %(days)s reaches before year 1"),
                        values={"days": days}, field=name) from exc
    return exp.Between(this=col, low=low, high=high)


# -- restricted SQL ----------------------------------------------------------------------------


def compile_expression(text: str, *, schema: Mapping[str, str]) -> exp.Expr:
    """Parse and check a restricted SQL boolean expression such as ``country = 'DE'``.

    Only columns of the profile table, literals, comparisons, AND/OR/NOT, BETWEEN, IN with
    values, LIKE/ILIKE, IS [NOT] NULL, a few scalar functions (LOWER, UPPER, TRIM, LENGTH,
    COALESCE, CAST, ABS, ROUND, SUBSTRING, STARTS_WITH, STRPOS), CURRENT_DATE and INTERVALs are
    accepted; anything else is refused with the reason.
    """
    if not text or not text.strip():
        raise DataError(N_("The expression is empty"), field="expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise DataError(N_("The expression is longer than %(most)s characters"),
                        values={"most": MAX_EXPRESSION_CHARS},
                        field="expression")
    if not schema:
        raise DataError(N_("No profiles have been imported, so no column can be checked"),
                        field="expression")
    try:
        statements = [s for s in sqlglot.parse(text, read=EXPRESSION_DIALECT) if s is not None]
    except (ParseError, TokenError) as exc:
        raise DataError(N_("The expression is not valid SQL: %(error)s"),
                        values={"error": _first_line(exc)},
                        field="expression") from exc
    if len(statements) != 1:
        raise DataError(N_("The expression must be a single condition (no ';')"),
                        field="expression")
    tree = statements[0]
    if not isinstance(tree, _PREDICATES) and not (
        isinstance(tree, exp.Paren) and isinstance(tree.unnest(), _PREDICATES)
    ):
        raise DataError(
            N_("The expression must be a condition (a comparison, AND/OR, IN, LIKE, IS NULL …), "
               "not %(kind)s"),
            values={"kind": type(tree).__name__},
            field="expression",
        )
    for count, node in enumerate(tree.walk(), start=1):
        if count > MAX_EXPRESSION_NODES:
            raise DataError(N_("The expression is too large"), field="expression")
        _check_node(node, schema)
    return tree.transform(lambda node: _requote(node, schema))


def _check_node(node: exp.Expr, schema: Mapping[str, str]) -> None:
    if node.comments:
        raise DataError(N_("Comments are not allowed in an expression"), field="expression")
    if not isinstance(node, _ALLOWED_NODES):
        if isinstance(node, exp.Anonymous):
            kind = f"function {str(node.name).upper()}()"
        elif isinstance(node, exp.Func):
            kind = f"function {node.sql_name()}()"
        else:
            kind = type(node).__name__
        raise DataError(N_("%(kind)s is not allowed in a segment expression"),
                        values={"kind": kind}, field="expression")
    if isinstance(node, exp.Column):
        if node.table or node.args.get("db") or node.args.get("catalog"):
            raise DataError(
                N_("%(node)s: name profile columns without a table"),
                values={"node": repr(node.sql())}, field="expression"
            )
        if isinstance(node.this, exp.Star):
            raise DataError(N_("* is not allowed in a segment expression"), field="expression")
        resolve_column(node.name, schema, what="column")
    elif isinstance(node, exp.In):
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise DataError(N_("IN takes a list of values, not a query"), field="expression")
    elif isinstance(node, exp.Var):
        parent = node.parent
        if not isinstance(parent, exp.Interval) or node.name.upper() not in _INTERVAL_UNITS:
            raise DataError(N_("%(name)s is not allowed here"), values={"name": repr(node.name)},
                            field="expression")
    elif isinstance(node, exp.DataType) and node.this not in _CAST_TYPES:
        raise DataError(N_("CAST to %(type)s is not allowed"), values={"type": node.sql()},
                        field="expression")


def _requote(node: exp.Expr, schema: Mapping[str, str]) -> exp.Expr:
    # Every dialect then sees the schema's exact column name, quoted by sqlglot.
    if isinstance(node, exp.Column):
        return exp.column(resolve_column(node.name, schema, what="column"), quoted=True)
    return node


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
