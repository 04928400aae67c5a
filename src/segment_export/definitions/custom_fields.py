"""Constant Contact's typed custom fields: the account's fields, the check of a mapping against
them, and the cast (or refusal) of each mapped value by its field's type.

Constant Contact silently ignores a ``cf:`` key that names no field of the account, and refuses
for that contact a value of the wrong type, saying so only in an activity's free text. So both
are checked here, before anything is sent: a missing field when an export is saved and again
when a run starts, a value that does not fit its type per row (reason ``invalid_custom_field``).

Casts, column by column in Arrow (docs/exports.md#custom-field-types has the table):

- ``string``, ``text_area``: text, at most 255 characters (longer is cut, with a warning).
- ``number``: integers, finite floats, decimals or numeric text, sent as a plain decimal
  (``42``, ``-3.5``; no exponent, no trailing zeros). NaN, infinities and other text are
  refused; so are decimals past the field's ``decimal_places``, fractions when it is
  ``integer``, and negatives unless it has ``allow_negative`` (Constant Contact's default is
  false).
- ``currency``: as ``number``, at most 2 decimal places (or the field's ``decimal_places``).
  A float within 1e-9 (relative) of a value with that many places is that value (arithmetic
  noise such as 0.30000000000000004).
- ``boolean``: booleans, 1/0 or true/false, yes/no, y/n, t/f in any case, sent as
  ``true``/``false``.
- ``date``: dates, timestamps (their UTC date) or ISO ``YYYY-MM-DD`` text, sent as
  ``YYYY-MM-DD``.
- ``datetime``: timestamps (one without a zone is read as UTC, as the profile stores keep
  them) or ISO 8601 text with an offset, sent as UTC ``YYYY-MM-DDTHH:MM:SSZ``. Text without an
  offset and bare dates are refused: their instant is unknown.
- ``single_select``: one of the field's choices (matched ignoring case and surrounding blanks,
  sent as the account spells it).
- ``multi_select``: a list, or comma-separated text, of choices, sent comma-separated.

Empty values are never refused: they are not sent, as for every other field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from segment_export.constant_contact import ConstantContactClient, CustomField
from segment_export.definitions.mapping import CUSTOM_FIELD_PREFIX
from segment_export.errors import ConfigurationError
from segment_export.languages import N_

REASON: Final = "invalid_custom_field"
TYPES: Final = ("string", "text_area", "number", "currency", "boolean", "date", "datetime",
                "single_select", "multi_select")
# Types whose values go as the text they are (cut at 255 like any text field).
_TEXT_TYPES: Final = frozenset({"string", "text_area"})
_SHOWN_CHARACTERS: Final = 40
_NUMBER_TEXT: Final = r"^[+-]?(\d+\.?\d*|\.\d+)$"
_CANONICAL_NUMBER: Final = r"^-?(0|[1-9]\d*)(\.\d*[1-9])?$"
# Numeric text to a plain decimal, in order: no +, no trailing zeros after the point, no bare
# point, a 0 before a leading point, no leading zeros.
_REWRITES: Final = ((r"^\+", ""), (r"^(-?\d*\.\d*?)0+$", r"\1"), (r"\.$", ""),
                    (r"^(-?)\.", r"\10."), (r"^(-?)0+(\d)", r"\1\2"))
_TRUE: Final = ("true", "yes", "y", "1", "t")
_FALSE: Final = ("false", "no", "n", "0", "f")
_ISO_DATE: Final = r"^\d{4}-\d{2}-\d{2}$"


@dataclass(frozen=True, slots=True)
class AccountField:
    """One custom field of the account, as much of it as a cast needs."""

    name: str
    type: str
    choices: tuple[str, ...] = ()
    decimal_places: int | None = None
    integer: bool = False
    allow_negative: bool = False

    @classmethod
    def of(cls, field: CustomField) -> AccountField:
        """From the API's view. A field without a type (or of a type newer than this code)
        is sent as text, as every field was before 2025-09."""
        kind = field.type if field.type in TYPES else "string"
        metadata = field.metadata
        return cls(
            name=field.name, type=kind,
            choices=tuple(c.choice_label for c in field.choices),
            decimal_places=metadata.decimal_places if metadata else None,
            integer=bool(metadata and metadata.integer),
            allow_negative=bool(metadata and metadata.allow_negative))

    def describe(self) -> str:
        return f"cf:{self.name} ({self.type})"


def mapped_names(mapping: Mapping[str, str]) -> list[str]:
    """The custom field names a mapping fills (without ``cf:``), sorted."""
    return sorted(f[len(CUSTOM_FIELD_PREFIX):] for f in mapping
                  if f.startswith(CUSTOM_FIELD_PREFIX))


def read_account_fields(client: ConstantContactClient) -> dict[str, AccountField]:
    """The account's custom fields by name (``GET /contact_custom_fields``, every page)."""
    return {f.name: AccountField.of(f) for f in client.list_custom_fields()}


def _missing(mapping: Mapping[str, str], fields: Mapping[str, AccountField]) -> list[str]:
    return [name for name in mapped_names(mapping) if name not in fields]


def _choices_hint(fields: Mapping[str, AccountField]) -> str:
    return ", ".join(f.describe() for f in sorted(fields.values(), key=lambda f: f.name)) or (
        "(the account has none)")


def check_mapping(mapping: Mapping[str, str], fields: Mapping[str, AccountField], *,
                  account: str) -> None:
    """Every ``cf:<name>`` the mapping fills must be a field of the account, else a
    ConfigurationError naming the first missing one (Constant Contact would drop its values
    without a word)."""
    missing = _missing(mapping, fields)
    if not missing:
        return
    names = ", ".join(f"cf:{n}" for n in missing)
    raise ConfigurationError(
        N_("Custom field %(names)s does not exist in the Constant Contact account %(account)s")
        if len(missing) == 1 else
        N_("Custom field %(names)s do not exist in the Constant Contact account %(account)s"),
        values={"names": names, "account": account},
        hint="Constant Contact would silently ignore it. Create it in Constant Contact "
        "(Contacts > Custom fields), or map one of: " + _choices_hint(fields),
        field=f"cf:{missing[0]}")


def fields_for_run(client: ConstantContactClient, mapping: Mapping[str, str], *,
                   account: str) -> dict[str, AccountField] | None:
    """At run start: the account's fields the mapping fills, read once (None when it fills
    none: no request, no cost). A field deleted since the export was saved fails the run
    before anything is sent, rather than have its values silently dropped."""
    if not mapped_names(mapping):
        return None
    fields = read_account_fields(client)
    missing = _missing(mapping, fields)
    if missing:
        names = ", ".join(f"cf:{n}" for n in missing)
        raise ConfigurationError(
            N_("The export maps %(names)s, which no longer exists in the Constant Contact "
               "account %(account)s; nothing was sent"),
            values={"names": names, "account": account},
            hint="Edit the export's mapping, or create the field again in Constant Contact, "
            "then run again. Available: " + _choices_hint(fields),
            field=f"cf:{missing[0]}")
    return {name: fields[name] for name in mapped_names(mapping)}


# -- casts ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cast:
    values: Any  # string array: what is sent (null: nothing)
    problem: Any  # string array: why a value is refused (null: it is not)


def _text(values: Any) -> Any:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _null_strings(length: int) -> pa.Array:
    return pa.nulls(length, pa.string())


def _choose(*cases: tuple[Any, str]) -> Any:
    """The message of the first true mask per row, else null."""
    result: Any = pa.scalar(None, pa.string())
    for mask, message in reversed(cases):
        result = pc.if_else(pc.fill_null(mask, False), pa.scalar(message), result)
    return result


def _by_unique(text: Any, convert: Callable[[str], tuple[str | None, str | None]]) -> _Cast:
    """Apply a Python conversion once per distinct value (choices, booleans and dates repeat
    a lot), then spread the answers back over the rows."""
    distinct = pc.drop_null(pc.unique(text))
    answers = [convert(v) for v in distinct.to_pylist()]
    position = pc.index_in(text, value_set=distinct)
    return _Cast(pa.array([a[0] for a in answers], pa.string()).take(position),
                 pa.array([a[1] for a in answers], pa.string()).take(position))


def _canonical_number(text: Any) -> tuple[Any, Any]:
    """Text as a plain decimal (no +, no leading or trailing zeros), and which rows are not
    numbers at all. Only the rows not already in that form go through the rewrites."""
    canonical = pc.fill_null(pc.match_substring_regex(text, _CANONICAL_NUMBER), True)
    if pc.all(canonical).as_py():
        return text, pa.nulls(len(text), pa.bool_())
    odd = pc.invert(canonical)
    rest = pc.filter(text, odd)
    numeric = pc.match_substring_regex(rest, _NUMBER_TEXT)
    fixed = pc.if_else(numeric, rest, pa.scalar(None, pa.string()))
    for pattern, rewrite in _REWRITES:
        fixed = pc.replace_substring_regex(fixed, pattern, rewrite)
    not_number = pc.replace_with_mask(pa.array([False] * len(text)), odd, pc.invert(numeric))
    return pc.replace_with_mask(text, odd, fixed), not_number


def _plain_decimal(value: str) -> str:
    """A float's exponent form (``1e+20``) as a plain decimal."""
    return format(Decimal(value), "f")


def _float_text(values: Any) -> tuple[Any, Any]:
    """Floats as plain decimals (Arrow already writes the shortest form, ``3`` for 3.0), and
    which are not finite numbers (NaN, ±inf)."""
    not_finite = pc.invert(pc.is_finite(values))
    finite = pc.if_else(not_finite, pa.scalar(None, values.type), values)
    text = pc.cast(finite, pa.string())
    exponent = pc.fill_null(pc.match_substring(text, "e"), False)
    if pc.any(exponent).as_py():
        plain = [_plain_decimal(t) if e else t
                 for t, e in zip(text.to_pylist(), exponent.to_pylist(), strict=True)]
        text = pa.array(plain, pa.string())
    return text, not_finite


def _decimals(text: Any) -> Any:
    dot = pc.find_substring(text, ".")
    return pc.if_else(pc.less(dot, 0), 0, pc.subtract(pc.subtract(pc.utf8_length(text), dot), 1))


# A float this close (relatively) to its value at the field's places is that value: arithmetic
# gives 0.1 + 0.2 = 0.30000000000000004, which is 0.30, not a price with 17 decimals. A real
# third decimal (19.999) is far above it.
_FLOAT_NOISE: Final = 1e-9


def _without_float_noise(values: Any, places: int) -> Any:
    rounded = pc.round(values, places)
    tolerance = pc.multiply(pc.max_element_wise(pc.abs(values), 1.0), _FLOAT_NOISE)
    noise = pc.less_equal(pc.abs(pc.subtract(values, rounded)), tolerance)
    return pc.if_else(pc.fill_null(noise, False), rounded, values)


def _places(field: AccountField) -> int | None:
    if field.integer:
        return 0
    if field.type == "currency" and field.decimal_places is None:
        return 2
    return field.decimal_places


def _cast_number(values: Any, field: AccountField) -> _Cast:
    no: Any = pa.nulls(len(values), pa.bool_())
    places = _places(field)
    if pa.types.is_floating(values.type) and places is not None:
        values = _without_float_noise(values, places)
    if pa.types.is_integer(values.type):
        clean, not_finite, bad = pc.cast(values, pa.string()), no, no
        below_zero = pc.less(values, 0)
    elif pa.types.is_floating(values.type):
        clean, not_finite = _float_text(values)
        bad = no
        clean = pc.if_else(pc.equal(clean, "-0"), "0", clean)
        below_zero = pc.less(values, 0)
    else:
        clean, bad = _canonical_number(_text(values))
        clean = pc.if_else(pc.equal(clean, "-0"), "0", clean)
        not_finite = no
        below_zero = pc.starts_with(clean, "-")
    too_precise = pc.greater(_decimals(clean), places) if places is not None else no
    negative = below_zero if field.type == "number" and not field.allow_negative else no
    problem = _choose(
        (not_finite, "is not a finite number"),
        (bad, "is not a number"),
        (too_precise, f"has more than {places} decimal places" if places else
         "is not a whole number"),
        (negative, "is negative (the field does not allow negative numbers)"),
    )
    return _Cast(pc.if_else(pc.is_null(problem), clean, pa.scalar(None, pa.string())), problem)


def _cast_boolean(values: Any) -> _Cast:
    if pa.types.is_boolean(values.type):
        return _Cast(pc.if_else(values, "true", "false"), _null_strings(len(values)))
    text = pc.utf8_lower(_text(values))
    yes, no = pc.is_in(text, pa.array(_TRUE)), pc.is_in(text, pa.array(_FALSE))
    sent = pc.if_else(yes, "true", pc.if_else(no, "false", pa.scalar(None, pa.string())))
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.or_(yes, no)))
    return _Cast(sent, _choose((bad, "is not true or false (true/false, yes/no, 1/0)")))


def _utc(values: Any) -> Any:
    """A timestamp column in UTC, to the second (one without a zone is taken as UTC)."""
    seconds = pc.cast(values, pa.timestamp(values.type.unit, "UTC"))
    return pc.cast(seconds, pa.timestamp("s", "UTC"), safe=False)


def _cast_date(values: Any) -> _Cast:
    if pa.types.is_date(values.type):
        return _Cast(pc.strftime(values, format="%Y-%m-%d"), _null_strings(len(values)))
    if pa.types.is_timestamp(values.type):
        return _Cast(pc.strftime(_utc(values), format="%Y-%m-%d"), _null_strings(len(values)))
    text = _text(values)
    shaped = pc.match_substring_regex(text, _ISO_DATE)
    parsed = pc.strptime(pc.if_else(shaped, text, pa.scalar(None, pa.string())),
                         format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2024-02-30 over to March: a real date prints back as it was written.
    real = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), text)
    bad = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(real, False)))
    return _Cast(pc.if_else(bad, pa.scalar(None, pa.string()), text),
                 _choose((bad, "is not a date (YYYY-MM-DD)")))


def _datetime_text(value: str) -> tuple[str | None, str | None]:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None, "is not an ISO 8601 date and time"
    if moment.tzinfo is None:
        return None, "has no time zone offset (add Z or +HH:MM)"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), None


def _cast_datetime(values: Any) -> _Cast:
    if pa.types.is_timestamp(values.type):
        return _Cast(pc.strftime(_utc(values), format="%Y-%m-%dT%H:%M:%SZ"),
                     _null_strings(len(values)))
    if pa.types.is_date(values.type):
        known = pc.is_valid(values)
        return _Cast(_null_strings(len(values)),
                     _choose((known, "is a date without a time of day")))
    return _by_unique(_text(values), _datetime_text)


def _cast_select(values: Any, field: AccountField) -> _Cast:
    labels = {c.strip().casefold(): c for c in field.choices}

    def single(value: str) -> tuple[str | None, str | None]:
        label = labels.get(value.casefold())
        return (label, None) if label is not None else (None, "is not one of the choices")

    def many(value: str) -> tuple[str | None, str | None]:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        unknown = [p for p in parts if p.casefold() not in labels]
        if unknown:
            return None, "names a choice the field does not have"
        chosen = list(dict.fromkeys(labels[p.casefold()] for p in parts))
        return (",".join(chosen) or None), None

    if field.type == "multi_select" and (pa.types.is_list(values.type)
                                         or pa.types.is_large_list(values.type)):
        values = pc.binary_join(pc.cast(values, pa.list_(pa.string())), ",")
    return _by_unique(_text(values), many if field.type == "multi_select" else single)


def cast_values(values: Any, field: AccountField) -> tuple[Any, Any]:
    """``values`` (one column) as Constant Contact takes them for ``field``: the text to send
    (null: nothing) and, per row, why a value is refused (null: it is not)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = field.type
    if kind in ("number", "currency"):
        cast = _cast_number(values, field)
    elif kind == "boolean":
        cast = _cast_boolean(values)
    elif kind == "date":
        cast = _cast_date(values)
    elif kind == "datetime":
        cast = _cast_datetime(values)
    elif kind in ("single_select", "multi_select"):
        cast = _cast_select(values, field)
    else:
        return values, _null_strings(len(values))
    return cast.values, cast.problem


def _detail(values: Any, problem: Any, field: AccountField) -> Any:
    """``cf:tier (single_select): 'Platinum' is not one of the choices``, the value cut short."""
    text = pc.cast(values, pa.string()) if not pa.types.is_string(values.type) else values
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        text = pc.binary_join(pc.cast(values, pa.list_(pa.string())), ",")
    long = pc.fill_null(pc.greater(pc.utf8_length(text), _SHOWN_CHARACTERS), False)
    shown = pc.if_else(long, pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(text, 0, _SHOWN_CHARACTERS), "…", ""), text)
    return pc.binary_join_element_wise(
        f"{field.describe()}: '", pc.fill_null(shown, ""), "' ", problem, "")


def cast_custom_fields(table: pa.Table, mapping: Mapping[str, str],
                       fields: Mapping[str, AccountField]) -> tuple[pa.Table, pa.Table]:
    """Cast every mapped custom field column (``f:cf:<name>``) of ``table`` by its type.

    Returns the rows that fit, with the cast text in place, and the refused rows as
    rejections (customer_id, email, reason, detail); a row refused by several fields names
    each. Text types pass through untouched, so mapping only those costs nothing.
    """
    detail: Any = None
    for name in mapped_names(mapping):
        field = fields.get(name)
        if field is None or field.type in _TEXT_TYPES:
            continue
        column = f"f:{CUSTOM_FIELD_PREFIX}{name}"
        original = table.column(column).combine_chunks()
        sent, problem = cast_values(original, field)
        table = table.set_column(table.schema.get_field_index(column), column, sent)
        if pc.all(pc.is_null(problem)).as_py():
            continue
        here = _detail(original, problem, field)
        if detail is None:
            detail = here
        else:
            both = pc.binary_join_element_wise(detail, here, "; ")
            detail = pc.if_else(pc.is_null(detail), here,
                                pc.if_else(pc.is_null(here), detail, both))
    if detail is None:
        return table, _no_rejections()
    refused = pc.is_valid(detail)
    picked = table.filter(refused)
    rejected = pa.table({
        "customer_id": picked.column("customer_id"),
        "email": picked.column("raw_email"),
        "reason": pa.array([REASON] * picked.num_rows, pa.string()),
        "detail": pc.filter(detail, refused),
    })
    return table.filter(pc.invert(refused)), rejected


def _no_rejections() -> pa.Table:
    return pa.table({n: pa.array([], pa.string())
                     for n in ("customer_id", "email", "reason", "detail")})
