"""A corpus of segment rules and restricted SQL over a seeded profile table with awkward rows.

Every operator of the rule language meets every type it accepts, in groups, in several time
zones, over generated profiles plus edge rows (NULLs, empty and blank text, unicode, LIKE
metacharacters, NaN and infinities, dates at day and DST boundaries). Engines that serve the
same segments must select the same members for each case (tests/segments/test_engine_parity.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlglot import exp

from segment_export.profiles import generate_profiles
from segment_export.segments import compile_segment

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
AS_OF = NOW.date()
ROWS = 3000
SEED = 20250601


def _ts(day: date, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    # Naive on purpose: the TIMESTAMP column holds wall-clock times.
    return datetime(day.year, day.month, day.day, hour, minute, second, micro)  # noqa: DTZ001


def _utc(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def corpus_profiles(rows: int = ROWS) -> pa.Table:
    """Generated profiles with four more columns (counts, two timestamps, tags), then edge rows."""
    base = generate_profiles(rows=rows, seed=SEED, as_of=AS_OF)
    rng = np.random.default_rng(SEED)
    visits = rng.integers(0, 20, size=rows)
    seen_minutes = rng.integers(0, 90 * 24 * 60, size=rows)
    now_naive = np.datetime64(NOW.replace(tzinfo=None), "us")
    seen = now_naive - (seen_minutes * 60_000_000).astype("timedelta64[us]")
    tag_pool = ["vip", "newsletter", "b2b", "Ö-Kunde", ""]
    tags = [None if rng.random() < 0.3 else
            [tag_pool[i] for i in rng.integers(0, len(tag_pool), size=rng.integers(0, 3))]
            for _ in range(rows)]
    table = base.append_column("visits", pa.array(visits, pa.int64(),
                                                  mask=rng.random(rows) < 0.1))
    table = table.append_column("seen_at", pa.array(seen, pa.timestamp("us"),
                                                    mask=rng.random(rows) < 0.05))
    table = table.append_column("seen_tz", pa.array(seen + np.timedelta64(90, "m"),
                                                    pa.timestamp("us", tz="UTC"),
                                                    mask=rng.random(rows) < 0.05))
    table = table.append_column("tags", pa.array(tags, pa.list_(pa.string())))
    edges = pa.Table.from_pylist(_edge_rows(rows + 1), schema=table.schema)
    return pa.concat_tables([table, edges])


def _edge_rows(first_id: int) -> list[dict[str, Any]]:
    today, yesterday, tomorrow = AS_OF, AS_OF - timedelta(days=1), AS_OF + timedelta(days=1)
    rows: list[dict[str, Any]] = [
        {},  # nothing but the id
        {"email": "", "first_name": "", "last_name": "", "country": "", "city": "",
         "company": "", "tags": [], "lifetime_value": 0.0, "visits": 0},
        {"email": "   ", "first_name": "   ", "last_name": "\t", "country": " ", "city": "  ",
         "tags": [""], "lifetime_value": -0.0, "visits": -1},
        {"first_name": "ΣΟΦΊΑΣ", "last_name": "Straße", "city": "İstanbul", "country": "TR",
         "email": "sofia@example.com", "lifetime_value": math.nan, "visits": 2**40},
        {"first_name": "😀 Smile", "last_name": "e\u0301clair", "city": "Łódź", "country": "pl",
         "email": "SOFIA@Example.com ", "lifetime_value": math.inf, "marketing_consent": True},
        {"first_name": "Zoë", "last_name": "O'Brien", "company": "100% Juice_Bar",
         "city": "back\\slash", "email": " sofia@example.com", "lifetime_value": -math.inf,
         "marketing_consent": True},
        {"first_name": "ana", "last_name": "ANA", "company": "a%b", "city": "a_b",
         "email": "ana@example.org", "lifetime_value": 2.5, "marketing_consent": True},
        {"first_name": "Ана", "last_name": "αβγ", "email": "dup@example.org",
         "lifetime_value": -2.5, "marketing_consent": True, "visits": 7},
        {"first_name": "Tab", "email": "\tDUP@example.org ", "marketing_consent": True,
         "lifetime_value": 80.5},
        # RE2's \s is ASCII: the em space stays, so this address is not the two above (were
        # it stripped, this row's higher id would become the duplicate's sort_id_max).
        {"first_name": "Em", "email": "\u2003dup@example.org", "marketing_consent": True,
         "lifetime_value": 79.5},
        {"first_name": "Bob", "last_name": "Smith", "email": "bob@example.com",
         "lifetime_value": 0.25, "marketing_consent": False},
        {"first_name": "Bob", "last_name": "Smith", "email": "BOB@example.com",
         "lifetime_value": 80.45, "marketing_consent": None},
        {"first_name": "x", "email": "no-at-sign.example.com", "lifetime_value": 1e15},
        {"first_name": "x", "email": "no-at-sign.example.com", "lifetime_value": 1e-9},
    ]
    moments = [
        (today, _ts(today), _utc(today)),  # midnight
        (yesterday, _ts(yesterday, 23, 59, 59, 999_999), _utc(yesterday, 23, 59, 59)),
        (tomorrow, _ts(today, 12, 0, 1), _utc(today, 12, 0, 1)),  # just after "now"
        (date(2025, 5, 31), _ts(date(2025, 5, 31), 15), _utc(date(2025, 5, 31), 15)),  # Tokyo
        (date(2025, 3, 30), _ts(date(2025, 3, 30), 2, 30), _utc(date(2025, 3, 29), 23)),  # DST
        (date(2024, 2, 29), _ts(date(2024, 2, 29)), _utc(date(2024, 2, 29), 12)),
        (date(1900, 1, 1), _ts(date(1900, 1, 1)), _utc(date(1970, 1, 1))),
        (date(2100, 12, 31), _ts(date(2100, 12, 31), 23, 59), _utc(date(2100, 12, 31))),
    ]
    for day, naive, aware in moments:
        rows.append({"first_name": "When", "email": f"when{len(rows)}@example.com",
                     "last_purchase_date": day, "signup_date": day, "seen_at": naive,
                     "seen_tz": aware, "marketing_consent": True, "country": "DE",
                     "lifetime_value": 100.0})
    return [{**row, "customer_id": first_id + i} for i, row in enumerate(rows)]


@dataclass(frozen=True)
class Case:
    """One segment definition: a rule (JSON) or a restricted SQL expression."""

    name: str
    rule: Any = None
    expression: str | None = None
    # A few cases exist to match nothing on purpose (e.g. "contains %" where no one has it).
    may_be_empty: bool = False
    # The condition cannot be evaluated over the corpus (a DataError on every engine).
    refused: bool = False

    def condition(self, schema: dict[str, str]) -> exp.Expr:
        return compile_segment(schema=schema, rule=self.rule, expression=self.expression,
                               now=NOW)


def c(field: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"field": field, "op": op, **extra}
    if value is not None:
        data["value"] = value
    return data


def _rules() -> list[Case]:
    d = AS_OF.isoformat
    week_ago = (AS_OF - timedelta(days=7)).isoformat()
    return [
        # text
        Case("text eq", c("country", "eq", "DE")),
        Case("text eq empty string", c("first_name", "eq", "")),
        Case("text eq unicode", c("city", "eq", "München")),
        Case("text eq quote", c("last_name", "eq", "O'Brien")),
        Case("text ne includes empty", c("country", "ne", "DE")),
        Case("text lt byte order", c("last_name", "lt", "M")),
        Case("text ge lower case", c("first_name", "ge", "a")),
        Case("text gt beyond ascii", c("city", "gt", "Z")),
        Case("text le", c("country", "le", "ES")),
        Case("text between", c("last_name", "between", ["B", "Mz"])),
        Case("text in", c("country", "in", ["DE", "FR", "pl", "TR", "XX"])),
        Case("text in unicode", c("city", "in", ["Москва", "東京", "Łódź", "İstanbul"])),
        Case("contains ascii any case", c("first_name", "contains", "AN")),
        Case("contains umlaut", c("first_name", "contains", "Ö")),
        Case("contains greek", c("first_name", "contains", "σοφ")),
        Case("contains cyrillic", c("first_name", "contains", "ИВ")),
        Case("contains emoji", c("first_name", "contains", "😀")),
        Case("contains percent is literal", c("company", "contains", "%")),
        Case("contains underscore is literal", c("city", "contains", "_")),
        Case("contains backslash", c("city", "contains", "\\")),
        Case("contains quote", c("last_name", "contains", "'b")),
        Case("contains eszett", c("last_name", "contains", "ß")),
        Case("contains nothing here", c("company", "contains", "%%"), may_be_empty=True),
        Case("starts_with", c("email", "starts_with", "ANNA")),
        Case("starts_with cyrillic", c("city", "starts_with", "мос")),
        Case("starts_with underscore", c("city", "starts_with", "a_")),
        Case("text is_empty", c("company", "is_empty")),
        Case("text is_empty blank", c("last_name", "is_empty")),
        Case("text is_not_empty", c("job_title", "is_not_empty")),
        Case("field name in other case", c("COUNTRY", "eq", "FR")),
        # numbers
        Case("double eq", c("lifetime_value", "eq", 0)),
        Case("double ne", c("lifetime_value", "ne", 0)),
        Case("double lt", c("lifetime_value", "lt", 50.5)),
        Case("double le negative", c("lifetime_value", "le", -2.5)),
        Case("double gt NaN and inf", c("lifetime_value", "gt", 1e12)),
        Case("double ge", c("lifetime_value", "ge", 2000)),
        Case("double between", c("lifetime_value", "between", [80, 80.45])),
        Case("double between given as text", c("lifetime_value", "between", ["0", "1e2"])),
        Case("double in", c("lifetime_value", "in", [0, 2.5, 80.45])),
        Case("double is_empty", c("lifetime_value", "is_empty")),
        Case("bigint eq", c("visits", "eq", 7)),
        Case("bigint eq fraction", c("visits", "eq", 7.5), may_be_empty=True),
        Case("bigint ne", c("visits", "ne", 7)),
        Case("bigint lt", c("visits", "lt", 0)),
        Case("bigint gt huge", c("visits", "gt", 2**39)),
        Case("bigint between", c("visits", "between", [3, 5])),
        Case("bigint in", c("visits", "in", [1, 2, "3"])),
        Case("bigint is_not_empty", c("visits", "is_not_empty")),
        Case("id le", c("customer_id", "le", 10)),
        # true/false
        Case("bool eq true", c("marketing_consent", "eq", True)),
        Case("bool eq false as text", c("marketing_consent", "eq", "false")),
        Case("bool ne true includes empty", c("marketing_consent", "ne", True)),
        Case("bool is_empty", c("marketing_consent", "is_empty")),
        # dates
        Case("date eq", c("signup_date", "eq", d())),
        Case("date ne", c("last_purchase_date", "ne", week_ago)),
        Case("date lt", c("signup_date", "lt", "2019-01-01")),
        Case("date ge", c("last_purchase_date", "ge", week_ago)),
        Case("date between leap day", c("signup_date", "between", ["2024-02-29", "2024-03-01"])),
        Case("date in", c("signup_date", "in", ["1900-01-01", "2100-12-31", d()])),
        Case("date is_empty", c("last_purchase_date", "is_empty")),
        Case("date within 0 days", c("last_purchase_date", "within_last_days", 0)),
        Case("date within 7 days", c("last_purchase_date", "within_last_days", 7)),
        Case("date within 30 days Tokyo",
             c("last_purchase_date", "within_last_days", 30, timezone="Asia/Tokyo")),
        Case("date within 1 day Los Angeles",
             c("signup_date", "within_last_days", 1, timezone="America/Los_Angeles")),
        # timestamps without a zone (wall-clock time in the rule's zone)
        Case("timestamp gt with offset", c("seen_at", "gt", "2025-05-31T20:00:00+02:00")),
        Case("timestamp lt naive", c("seen_at", "lt", "2025-03-30T02:45:00")),
        Case("timestamp between", c("seen_at", "between",
                                    ["2025-05-31T00:00:00", "2025-05-31T23:59:59.999999"])),
        Case("timestamp eq midnight", c("seen_at", "eq", f"{d()}T00:00:00")),
        Case("timestamp within 0 days", c("seen_at", "within_last_days", 0)),
        Case("timestamp within 1 day Tokyo",
             c("seen_at", "within_last_days", 1, timezone="Asia/Tokyo")),
        Case("timestamp within 3 days Berlin",
             c("seen_at", "within_last_days", 3, timezone="Europe/Berlin")),
        Case("timestamp is_empty", c("seen_at", "is_empty")),
        # timestamps with a zone
        Case("timestamptz ge aware", c("seen_tz", "ge", "2025-06-01T06:00:00+09:00")),
        Case("timestamptz lt naive read in UTC", c("seen_tz", "lt", "2025-05-31T15:00:00")),
        Case("timestamptz eq", c("seen_tz", "eq", "2025-05-31T15:00:00Z")),
        Case("timestamptz ne", c("seen_tz", "ne", "2025-05-31T15:00:00Z")),
        Case("timestamptz within 0 days Tokyo",
             c("seen_tz", "within_last_days", 0, timezone="Asia/Tokyo")),
        Case("timestamptz within 1 day", c("seen_tz", "within_last_days", 1)),
        Case("timestamptz within 60 days Berlin DST",
             c("seen_tz", "within_last_days", 60, timezone="Europe/Berlin")),
        Case("timestamptz within 1 day Kathmandu",
             c("seen_tz", "within_last_days", 1, timezone="Asia/Kathmandu")),
        # lists: only emptiness
        Case("list is_empty", c("tags", "is_empty")),
        Case("list is_not_empty", c("tags", "is_not_empty")),
        # groups
        Case("all", {"all": [c("country", "eq", "DE"), c("lifetime_value", "gt", 100)]}),
        Case("any", {"any": [c("country", "eq", "JP"), c("visits", "eq", 19)]}),
        Case("single-member groups", {"all": [{"any": [c("country", "eq", "GR")]}]}),
        Case("nested", {"all": [
            c("marketing_consent", "eq", True),
            {"any": [c("company", "is_empty"), c("lifetime_value", "lt", 60)]},
            {"any": [{"all": [c("country", "in", ["DE", "FR"]),
                              c("last_purchase_date", "within_last_days", 365)]},
                     c("first_name", "contains", "a")]},
        ]}),
        Case("ne in any with is_empty", {"any": [c("country", "ne", "US"),
                                                 c("country", "is_empty")]}),
    ]


def _expressions() -> list[Case]:
    texts = [
        "country = 'DE'",
        "lower(country) = 'de'",
        "upper(last_name) = 'SMITH'",
        "first_name ILIKE 'an%'",
        "last_name LIKE '%son'",
        "city LIKE 'back\\slash'",
        "company LIKE '100!%%' ESCAPE '!' AND customer_id > 0",
        "last_name NOT LIKE '%a%'",
        "coalesce(trim(company), '') = ''",
        "length(first_name) > 5",
        "length(last_name) = 6",
        "last_purchase_date >= DATE '2025-05-25'",
        "marketing_consent AND lifetime_value < 100",
        "NOT marketing_consent",
        "marketing_consent IS NULL",
        "cast(visits AS VARCHAR) = '7'",
        "cast(marketing_consent AS VARCHAR) = 'true'",
        "starts_with(lower(first_name), 'ив')",
        "strpos(email, '.') BETWEEN 1 AND 4",
        "visits * 2 + 1 > 14",
        "visits / 2 = 3.5",
        "visits % 3 = 1",
        "lifetime_value % 2 < 1",
        "round(lifetime_value) = 80",
        "round(lifetime_value, 1) = 80.5",
        "round(lifetime_value, -2) = 100",
        "round(lifetime_value, 1) > lifetime_value",
        "abs(lifetime_value - 100) < 5",
        "-visits < -15",
        "cast(visits AS DOUBLE) / 4 > 4.5",
        "substring(phone, 1, 3) = '+49'",
        "substring(email, -11) = 'example.com'",
        "substring(email, -7, 3) = 'ple'",
        "substring(city, -9, 4) = 'B'",
        "country IS DISTINCT FROM 'DE'",
        "country <=> 'FR'",
        "first_name || ' ' || last_name = 'Bob Smith'",
        "last_name < 'M'",
        "lower(city) >= 'x'",
        "email BETWEEN 'a' AND 'c'",
        "visits IN (1, 2, 3) OR company IS NULL",
        "lifetime_value > 1e3",
        "lifetime_value = lifetime_value",
        "signup_date > current_date - INTERVAL 30 DAY",
        "seen_tz > current_timestamp - INTERVAL 1000 DAY",
        "signup_date + INTERVAL 1 MONTH > DATE '2025-05-01'",
        "cast(seen_tz AS DATE) = DATE '2025-05-31'",
        "cast(seen_at AS DATE) = DATE '2025-05-31'",
        "seen_at < TIMESTAMP '2025-05-01 00:00:00'",
        "(country = 'FR' OR country = 'ES') AND NOT (visits > 10)",
    ]
    cases = [Case(f"sql: {text}", expression=text) for text in texts]
    # NaN and the infinities have no integer: both engines refuse the whole condition.
    cases += [Case(f"sql refused: {text}", expression=text, refused=True) for text in (
        "cast(lifetime_value AS INTEGER) = 3",
        "cast(lifetime_value AS BIGINT) BETWEEN -3 AND 0",
    )]
    return cases


CORPUS: list[Case] = _rules() + _expressions()
