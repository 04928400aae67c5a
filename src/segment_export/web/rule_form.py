"""The rule builder's form: rows of field / operator / value to and from the rule JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segment_export.errors import DataError
from segment_export.languages import N_

OPERATORS = {
    "eq": N_("is"), "ne": N_("is not"), "lt": N_("is less than"), "le": N_("is at most"),
    "gt": N_("is more than"), "ge": N_("is at least"), "between": N_("is between (low, high)"),
    "in": N_("is one of (comma-separated)"), "contains": N_("contains"),
    "starts_with": N_("starts with"),
    "is_empty": N_("is empty"), "is_not_empty": N_("is not empty"),
    "within_last_days": N_("is within the last N days"),
}
NO_VALUE = frozenset({"is_empty", "is_not_empty"})
LIST_OPS = frozenset({"between", "in"})


@dataclass(frozen=True, slots=True)
class ConditionRow:
    """One row of the builder as the form shows it (the value as typed)."""

    field: str
    op: str
    value: str


def _scalar(text: str, column_type: str, field: str) -> Any:
    text = text.strip()
    try:
        if column_type == "BIGINT":
            return int(text)
        if column_type == "DOUBLE":
            return float(text)
    except ValueError:
        raise DataError(N_("%(field)s holds numbers; %(text)s is not one"),
                        values={"field": repr(field), "text": repr(text)}, field=field) from None
    if column_type == "BOOLEAN":
        lowered = text.lower()
        if lowered in {"true", "yes", "1"}:
            return True
        if lowered in {"false", "no", "0"}:
            return False
        raise DataError(N_("%(field)s is true or false; %(text)s is neither"),
                        values={"field": repr(field), "text": repr(text)}, field=field)
    return text


def rule_from_rows(match: str, rows: Sequence[ConditionRow],
                   schema: Mapping[str, str]) -> dict[str, Any]:
    """The rule JSON of the builder's rows (empty rows are ignored), typed by the columns."""
    conditions: list[dict[str, Any]] = []
    for row in rows:
        if not row.field.strip():
            continue
        if row.field not in schema:
            raise DataError(N_("There is no profile field %(field)s"),
                            values={"field": repr(row.field)}, field="rule")
        if row.op not in OPERATORS:
            raise DataError(N_("Unknown comparison %(op)s"), values={"op": repr(row.op)},
                            field="rule")
        column_type = schema[row.field]
        condition: dict[str, Any] = {"field": row.field, "op": row.op}
        if row.op in LIST_OPS:
            parts = [p for p in (p.strip() for p in row.value.split(",")) if p]
            condition["value"] = [_scalar(p, column_type, row.field) for p in parts]
        elif row.op == "within_last_days":
            condition["value"] = _scalar(row.value, "BIGINT", row.field)
        elif row.op not in NO_VALUE:
            condition["value"] = _scalar(row.value, column_type, row.field)
        conditions.append(condition)
    if not conditions:
        raise DataError(N_("Add at least one condition"), field="rule")
    return {"any" if match == "any" else "all": conditions}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def rows_from_rule(rule: Mapping[str, Any] | None) -> tuple[str, list[ConditionRow]] | None:
    """The builder's rows for a flat rule (one group of conditions); None if it nests deeper."""
    if not rule:
        return None
    if "field" in rule:
        items: list[Any] = [rule]
        match = "all"
    else:
        match = "any" if "any" in rule else "all"
        items = list(rule.get(match) or [])
    rows = []
    for item in items:
        if not isinstance(item, Mapping) or "field" not in item:
            return None
        rows.append(ConditionRow(str(item["field"]), str(item.get("op", "eq")),
                                 _text(item.get("value"))))
    return match, rows
