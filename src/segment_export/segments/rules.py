"""The segment rule model: nestable all/any groups of conditions, stored as JSON."""

from __future__ import annotations

import json
import math
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from segment_export.errors import DataError, TranslatedValueError
from segment_export.languages import N_, Text, error_text, text

Op = Literal[
    "eq", "ne", "lt", "le", "gt", "ge", "between", "in", "contains", "starts_with",
    "is_empty", "is_not_empty", "within_last_days",
]
OPS: tuple[str, ...] = get_args(Op)
NO_VALUE_OPS = frozenset({"is_empty", "is_not_empty"})
MAX_IN_VALUES = 10_000
MAX_DEPTH = 12
MAX_CONDITIONS = 500
# Bounds of the values themselves, so no value can overflow the compiler's date arithmetic or
# an engine's number types (docs/profiles-and-segments.md lists them).
MAX_DAYS = 36_500  # within_last_days: a hundred years back is the furthest a rule may look
MIN_INTEGER = -(2**63)  # whole numbers fit a 64-bit BIGINT, the widest integer column
MAX_INTEGER = 2**63 - 1
MAX_NUMBER = 1e300  # decimals: finite, and far from overflowing when an engine scales them
MAX_TEXT = 1_000  # characters in one text value

Scalar = bool | int | float | str


class Condition(BaseModel):
    """One test of one profile column, e.g. ``{"field": "country", "op": "eq", "value": "DE"}``.

    ``timezone`` (IANA name) only matters for ``within_last_days``: which calendar day
    "today" is. Text matching (``contains``, ``starts_with``) ignores letter case.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Annotated[str, Field(min_length=1, max_length=200)]
    op: Op
    # Checked by hand below: a pydantic union would coerce "1" to 1 and explain badly.
    value: Any = None
    timezone: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        if zone is None:
            return None
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise TranslatedValueError(N_("unknown time zone %(zone)s"),
                                      values={"zone": repr(zone)}) from exc
        return zone

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        try:
            self._check_value()
        except ValueError as exc:
            raise TranslatedValueError(N_("field %(field)s: %(error)s"),
                                      values={"field": repr(self.field),
                                              "error": error_text(exc)}) from None
        return self

    def _check_value(self) -> None:
        op, value = self.op, self.value
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is not None and not isinstance(item, Scalar):
                raise TranslatedValueError(N_("values must be text, numbers or true/false"))
            if op != "within_last_days":  # its own bound below says more
                check_value_bounds(item)
        if op in NO_VALUE_OPS:
            if value is not None:
                raise TranslatedValueError(N_("%(op)s takes no value"), values={"op": op})
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2 or None in value:
                raise TranslatedValueError(N_("between takes a list of two values [low, high]"))
        elif op == "in":
            if not isinstance(value, list) or not value:
                raise TranslatedValueError(N_("in takes a non-empty list of values"))
            if len(value) > MAX_IN_VALUES:
                raise TranslatedValueError(N_("in takes at most %(most)s values"),
                                          values={"most": MAX_IN_VALUES})
            if None in value:
                raise TranslatedValueError(
                    N_("in cannot match an empty value; use is_empty in an any group"))
        elif op == "within_last_days":
            if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value <= MAX_DAYS
            ):
                raise TranslatedValueError(
                    N_("within_last_days takes a whole number of days from 0 to %(most)s"),
                    values={"most": f"{MAX_DAYS:,}"})
        elif value is None or isinstance(value, list):
            raise TranslatedValueError(N_("%(op)s takes a single value"), values={"op": op})
        if self.timezone is not None and op != "within_last_days":
            raise TranslatedValueError(N_("timezone only applies to within_last_days"))


def check_value_bounds(value: Any) -> None:
    """Raise ValueError unless a rule value lies within the documented bounds."""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not MIN_INTEGER <= value <= MAX_INTEGER:
            raise TranslatedValueError(
                N_("whole numbers must lie between %(least)s and %(most)s (64 bits)"),
                values={"least": f"{MIN_INTEGER:,}", "most": f"{MAX_INTEGER:,}"})
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise TranslatedValueError(
                N_("numbers must be finite and between -%(most)s and %(most)s"),
                values={"most": f"{MAX_NUMBER:g}"})
    elif isinstance(value, str) and len(value) > MAX_TEXT:
        raise TranslatedValueError(N_("text values have at most %(most)s characters"),
                                   values={"most": f"{MAX_TEXT:,}"})


class AllGroup(BaseModel):
    """Matches when every member matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all: Annotated[list[Node], Field(min_length=1)]


class AnyGroup(BaseModel):
    """Matches when at least one member matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    any: Annotated[list[Node], Field(min_length=1)]


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "all" if "all" in value else "any" if "any" in value else "condition"
    if isinstance(value, AllGroup):
        return "all"
    return "any" if isinstance(value, AnyGroup) else "condition"


Node = Annotated[
    Annotated[AllGroup, Tag("all")] | Annotated[AnyGroup, Tag("any")]
    | Annotated[Condition, Tag("condition")],
    Discriminator(_kind),
]
AllGroup.model_rebuild()
AnyGroup.model_rebuild()


class Rule(BaseModel):
    """A segment's rule: the root group or condition, kept as JSON in the state store."""

    model_config = ConfigDict(frozen=True)

    root: Node

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in ``Segment.rule``."""
        return self.root.model_dump(mode="json", exclude_none=True)

    def conditions(self) -> list[Condition]:
        """Every condition of the tree, depth first."""
        found: list[Condition] = []
        _collect(self.root, found)
        return found


def _collect(node: Node, found: list[Condition]) -> None:
    if isinstance(node, Condition):
        found.append(node)
        return
    for child in node.all if isinstance(node, AllGroup) else node.any:
        _collect(child, found)


def _depth(data: Any, level: int = 0) -> int:
    """How many objects are nested, counted only up to just past the limit."""
    # Checked before pydantic sees the data, so a hostile nesting cannot exhaust the stack.
    if level > MAX_DEPTH + 1:
        return level
    if isinstance(data, Mapping):
        return max([_depth(v, level + 1) for v in data.values()], default=level + 1)
    if isinstance(data, list):
        return max([_depth(v, level) for v in data], default=level)
    return level


def parse_rule(data: Rule | Mapping[str, Any] | str) -> Rule:
    """A :class:`Rule` from its JSON (text or parsed); DataError naming the bad part otherwise."""
    if isinstance(data, Rule):
        return data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise DataError(N_("The rule is not valid JSON: %(error)s"), values={"error": str(exc)},
                        field="rule") from exc
    if not isinstance(data, Mapping):
        raise DataError(N_("The rule must be a JSON object (a group or a condition)"), field="rule")
    if _depth(data) > MAX_DEPTH + 1:  # groups plus the innermost condition
        raise DataError(N_("The rule nests deeper than %(most)s groups"),
                        values={"most": MAX_DEPTH}, field="rule")
    try:
        rule = Rule(root=_node(data))
    except ValidationError as exc:
        raise DataError(N_("Invalid rule: %(detail)s"), values={"detail": _describe(exc)},
                        field="rule") from exc
    if len(rule.conditions()) > MAX_CONDITIONS:
        raise DataError(N_("The rule has more than %(most)s conditions"),
                        values={"most": MAX_CONDITIONS}, field="rule")
    return rule


def _node(data: Mapping[str, Any]) -> Node:
    # The keys say which kind of node it is; validating against the right model keeps the
    # error messages about that model instead of a union's three-way guess.
    if "all" in data:
        return AllGroup.model_validate(dict(data))
    if "any" in data:
        return AnyGroup.model_validate(dict(data))
    return Condition.model_validate(dict(data))


def _describe(exc: ValidationError) -> Text:
    """What pydantic found, ``loc: message; ...``: our validators' messages are translatable
    (pydantic keeps the TranslatedValueError in ``ctx``); pydantic's own stay English."""
    parts = []
    for error in exc.errors()[:3]:
        # Drop the discriminator tags pydantic puts after each list index.
        path = [p for i, p in enumerate(error["loc"])
                if not (i and isinstance(error["loc"][i - 1], int))]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        raised = (error.get("ctx") or {}).get("error")
        message = error_text(raised) if isinstance(raised, TranslatedValueError) else Text(
            ((str(error["msg"]).removeprefix("Value error, "), {}),))
        parts.append(text(N_("%(loc)s: %(message)s"), loc=loc, message=message) if loc
                     else message)
    return Text(tuple(part for said in parts for part in said.parts), sep="; ")
