"""Phone numbers for Constant Contact SMS: parsed with libphonenumber, kept in E.164, US only."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from segment_export.errors import ConfigurationError
from segment_export.languages import N_

# Constant Contact's SMS takes US numbers only (FACTS.md §4.1: "International phone numbers are
# currently not supported"), written as their 10 digits.
SMS_REGION = "US"
DEFAULT_PHONE_REGION = "US"
# The key of an SMS-only member (no email) in an export's delivered state: never an email key,
# which always holds an @.
SMS_KEY_PREFIX = "sms:"


def check_region(region: str) -> str:
    """An export's phone region, upper-cased; a ConfigurationError if libphonenumber has none."""
    clean = (region or "").strip().upper()
    if clean not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(
            N_("%(region)s is not a region phone numbers can be read in"),
            values={"region": repr(region)},
            hint=N_("Use a two-letter ISO 3166 country code, e.g. US, CA or GB."),
            field="phone_region")
    return clean


@dataclass(frozen=True, slots=True)
class ParsedPhones:
    """Per value: its E.164 form and Constant Contact's 10 digits (both null unless it is a
    valid US number), and why not (``invalid_phone`` or ``phone_not_us``) with a detail."""

    e164: pa.Array
    digits: pa.Array
    problem: pa.Array
    detail: pa.Array


def parse_phones(values: pa.Array | pa.ChunkedArray, *, region: str) -> ParsedPhones:
    """Parse each (trimmed, non-empty) number; a null stays null everywhere.

    ``region`` is where a number without a +country code is taken to be. Each distinct value is
    parsed once: libphonenumber runs in Python, and a segment's numbers repeat little, so this
    runs over the rows that have one, not over every row.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    distinct = pc.unique(values.drop_null()) if values.null_count else pc.unique(values)
    e164: list[str | None] = []
    digits: list[str | None] = []
    problems: list[str | None] = []
    details: list[str | None] = []
    for raw in distinct.to_pylist():
        outcome = _parse_one(raw, region)
        e164.append(outcome[0])
        digits.append(outcome[1])
        problems.append(outcome[2])
        details.append(outcome[3])
    index = pc.index_in(values, value_set=distinct)

    def spread(found: list[str | None]) -> pa.Array:
        return pa.array(found, pa.string()).take(index)

    return ParsedPhones(spread(e164), spread(digits), spread(problems), spread(details))


def _parse_one(raw: str, region: str) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return None, None, "invalid_phone", f"{raw!r} is not a phone number ({exc})"
    if number.extension:
        return None, None, "invalid_phone", (f"{raw!r} has an extension (x{number.extension}); "
                                             "a number that takes texts has none")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # The usual case first: checking one region's patterns costs a third of finding the region
    # (which tries each of the 25 +1 countries); US comes first among them, so a number valid
    # for the US is one libphonenumber places in the US.
    if number.country_code == 1 and phonenumbers.is_valid_number_for_region(number, SMS_REGION):
        return e164, str(number.national_number), None, None
    if not phonenumbers.is_valid_number(number):
        return None, None, "invalid_phone", f"{raw!r} is not a valid phone number"
    where = phonenumbers.region_code_for_number(number)
    return None, None, "phone_not_us", (f"{raw!r} is a number in {where or 'no country'} "
                                        f"({e164}); Constant Contact SMS takes US numbers only")
