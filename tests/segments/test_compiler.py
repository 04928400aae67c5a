"""Every operator, null semantics, dates and time zones, unicode and bad rules, on real DuckDB."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from segment_export.errors import DataError
from segment_export.profiles import DuckDBProfileStore
from segment_export.segments import compile_segment, parse_rule, to_sql

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    # A naive TIMESTAMP column is what is tested here.
    return datetime(year, month, day, hour, minute)  # noqa: DTZ001


@pytest.fixture
def people(store: DuckDBProfileStore) -> DuckDBProfileStore:
    table = pa.table({
        "customer_id": pa.array(range(1, 9), pa.int64()),
        "name": ["Ana", "Björn", "Иван", "", "  ", "ΣΟΦΊΑ", "😀 Smile", None],
        "country": ["DE", "SE", None, "DE", "FR", "GR", "de", "IE"],
        "ltv": [10.0, 200.5, 1000.0, None, 0.0, 50.0, 75.0, 75.0],
        "visits": pa.array([1, 5, 9, None, 0, 3, 7, 7], pa.int64()),
        "vip": [True, False, True, None, False, True, True, False],
        "last_purchase": [date(2025, 6, 1), date(2025, 5, 25), date(2025, 5, 2), None,
                          date(2025, 6, 2), date(2025, 5, 31), date(2025, 5, 1),
                          date(2024, 1, 1)],
        "seen_at": [ts(2025, 6, 1, 11), ts(2025, 5, 31, 23, 30), ts(2025, 5, 31, 14, 59), None,
                    ts(2025, 6, 1, 13), ts(2025, 5, 1), ts(2025, 5, 31, 15, 0), ts(2020, 1, 1)],
        "seen_tz": pa.array(
            [datetime(2025, 6, 1, 11, tzinfo=UTC), datetime(2025, 5, 31, 14, 59, tzinfo=UTC),
             datetime(2025, 5, 31, 15, 0, tzinfo=UTC), None,
             datetime(2025, 6, 1, 13, tzinfo=UTC), None, None, None],
            pa.timestamp("us", tz="UTC")),
        "tags": [["a"], [], None, ["b"], None, None, None, None],
    })
    store.import_table(table)
    return store


def members(store: DuckDBProfileStore, rule: Any = None, expression: str | None = None,
            now: datetime = NOW, timezone: str = "UTC") -> list[int]:
    condition = compile_segment(schema=store.schema(), rule=rule, expression=expression,
                                now=now, timezone=timezone)
    return sorted(r["customer_id"] for r in store.sample_where(condition, 100))


def cond(field: str, op: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"field": field, "op": op, **extra}
    if value is not None:
        data["value"] = value
    return data


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (cond("country", "eq", "DE"), [1, 4]),  # exact: 'de' is not 'DE'
        (cond("country", "ne", "DE"), [2, 3, 5, 6, 7, 8]),  # ne includes the NULL country
        (cond("ltv", "lt", 50), [1, 5]),
        (cond("ltv", "le", 50), [1, 5, 6]),
        (cond("ltv", "gt", 75), [2, 3]),
        (cond("ltv", "ge", 75), [2, 3, 7, 8]),
        (cond("ltv", "between", [50, 200.5]), [2, 6, 7, 8]),
        (cond("visits", "between", ["3", "7"]), [2, 6, 7, 8]),  # numbers given as text are parsed
        (cond("country", "in", ["SE", "GR", "XX"]), [2, 6]),
        (cond("name", "contains", "ö"), [2]),
        (cond("name", "contains", "AN"), [1]),  # case-insensitive; Cyrillic "ан" is not "an"
        (cond("name", "starts_with", "σοφ"), [6]),  # Greek upper/lower case folding
        (cond("name", "starts_with", "ив"), [3]),  # Cyrillic
        (cond("name", "contains", "😀"), [7]),
        (cond("name", "is_empty"), [4, 5, 8]),  # NULL, '' and blank text
        (cond("name", "is_not_empty"), [1, 2, 3, 6, 7]),
        (cond("ltv", "is_empty"), [4]),
        (cond("tags", "is_empty"), [3, 5, 6, 7, 8]),  # lists: only NULL counts as empty
        (cond("vip", "eq", True), [1, 3, 6, 7]),
        (cond("vip", "ne", True), [2, 4, 5, 8]),
        (cond("vip", "eq", "false"), [2, 5, 8]),
        (cond("last_purchase", "ge", "2025-05-25"), [1, 2, 5, 6]),
        (cond("last_purchase", "between", ["2025-05-01", "2025-05-02"]), [3, 7]),
        ({"all": [cond("country", "eq", "DE"), cond("ltv", "gt", 5)]}, [1]),
        ({"any": [cond("country", "eq", "SE"), cond("visits", "eq", 9)]}, [2, 3]),
        ({"all": [cond("vip", "eq", True),
                  {"any": [cond("country", "is_empty"), cond("ltv", "lt", 60)]}]}, [1, 3, 6]),
    ],
)
def test_operators(people: DuckDBProfileStore, rule: dict[str, Any], expected: list[int]) -> None:
    assert members(people, rule) == expected


def test_contains_is_not_a_like_pattern(people: DuckDBProfileStore) -> None:
    # % and _ are plain characters, not wildcards
    assert members(people, cond("name", "contains", "%")) == []
    assert members(people, cond("name", "starts_with", "_")) == []


def test_in_and_eq_match_nothing_for_nulls(people: DuckDBProfileStore) -> None:
    everyone = set(range(1, 9))
    has_country = set(members(people, cond("country", "is_not_empty")))
    assert has_country == everyone - {3}
    assert set(members(people, cond("country", "eq", "DE"))) | set(
        members(people, cond("country", "ne", "DE"))) == everyone


# -- dates and time zones ----------------------------------------------------------------------


def test_within_last_days_on_dates_includes_today_excludes_future(
    people: DuckDBProfileStore,
) -> None:
    assert members(people, cond("last_purchase", "within_last_days", 0)) == [1]
    assert members(people, cond("last_purchase", "within_last_days", 7)) == [1, 2, 6]
    assert members(people, cond("last_purchase", "within_last_days", 30)) == [1, 2, 3, 6]
    assert members(people, cond("last_purchase", "within_last_days", 31)) == [1, 2, 3, 6, 7]


def test_within_last_days_uses_the_time_zone_for_today(people: DuckDBProfileStore) -> None:
    late_evening_utc = datetime(2025, 6, 1, 22, 0, tzinfo=UTC)  # already June 2 in Tokyo
    assert members(people, cond("last_purchase", "within_last_days", 0),
                   now=late_evening_utc) == [1]
    tokyo = cond("last_purchase", "within_last_days", 0, timezone="Asia/Tokyo")
    assert members(people, tokyo, now=late_evening_utc) == [5]
    assert members(people, cond("last_purchase", "within_last_days", 0),
                   now=late_evening_utc, timezone="Asia/Tokyo") == [5]


def test_within_last_days_on_naive_timestamps(people: DuckDBProfileStore) -> None:
    # UTC: from 2025-05-31 00:00 to now (12:00); 13:00 today is in the future.
    assert members(people, cond("seen_at", "within_last_days", 1)) == [1, 2, 3, 7]
    # Tokyo (UTC+9): now is 21:00 on June 1, naive values read as Tokyo wall-clock time.
    assert members(people, cond("seen_at", "within_last_days", 0, timezone="Asia/Tokyo")) == [
        1, 5]


def test_within_last_days_on_aware_timestamps(people: DuckDBProfileStore) -> None:
    # Today in Tokyo started at 2025-05-31 15:00 UTC.
    tokyo = cond("seen_tz", "within_last_days", 0, timezone="Asia/Tokyo")
    assert members(people, tokyo) == [1, 3]
    assert members(people, cond("seen_tz", "within_last_days", 1)) == [1, 2, 3]


def test_aware_and_naive_values_on_timestamps(people: DuckDBProfileStore) -> None:
    assert members(people, cond("seen_tz", "ge", "2025-06-01T06:00:00+09:00")) == [1, 5]
    assert members(people, cond("seen_tz", "lt", "2025-05-31T15:00:00")) == [2]
    assert members(people, cond("seen_at", "gt", "2025-06-01T12:00:00+02:00")) == [1, 5]


def test_within_last_days_is_a_literal_window(people: DuckDBProfileStore) -> None:
    condition = compile_segment(schema=people.schema(),
                                rule=cond("last_purchase", "within_last_days", 7), now=NOW)
    assert to_sql(condition) == (
        "\"last_purchase\" BETWEEN CAST('2025-05-25' AS DATE) AND CAST('2025-06-01' AS DATE)"
    )
    assert "CURRENT" not in to_sql(condition, "postgres")


def test_dst_zone_midnight(people: DuckDBProfileStore) -> None:
    now = datetime(2025, 3, 30, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # DST starts that day
    condition = compile_segment(
        schema=people.schema(),
        rule=cond("seen_tz", "within_last_days", 0, timezone="Europe/Berlin"), now=now)
    assert "2025-03-29 23:00:00+00:00" in to_sql(condition)  # midnight CET = 23:00 UTC


# -- bad rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (cond("nope", "eq", "x"), "Unknown field 'nope'"),
        (cond("country", "eq", 5), "Field 'country' is text"),
        (cond("ltv", "gt", "abc"), "Field 'ltv' is a number"),
        (cond("ltv", "gt", True), "Field 'ltv' is a number"),
        (cond("vip", "eq", 1), "Field 'vip' is true/false"),
        (cond("vip", "gt", True), "use eq or ne"),
        (cond("last_purchase", "ge", "31/01/2025"), "not an ISO date"),
        (cond("last_purchase", "ge", 20250101), "give an ISO date"),
        (cond("ltv", "contains", "1"), "contains needs a text field"),
        (cond("country", "within_last_days", 3), "needs a date or timestamp field"),
        (cond("ltv", "between", [100, 1]), "low bound 100 is above the high bound 1"),
        (cond("tags", "eq", "a"), "holds VARCHAR[] values"),
        (cond("name", "contains", ""), "needs some text"),
        (cond("last_purchase", "within_last_days", 3, timezone="Mars/Olympus"),
         "unknown time zone"),
        (cond("country", "in", []), "non-empty list"),
        (cond("country", "eq", None), "takes a single value"),
        (cond("country", "eq", {"$ne": 1}), "values must be text, numbers or true/false"),
        ({"all": []}, "at least 1 item"),
        ({"all": [cond("country", "eq", "DE")], "any": []}, "Extra inputs"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    people: DuckDBProfileStore, rule: dict[str, Any], message: str
) -> None:
    with pytest.raises(DataError) as caught:
        compile_segment(schema=people.schema(), rule=rule, now=NOW)
    assert message in caught.value.message


def test_deep_nesting_is_refused() -> None:
    rule: dict[str, Any] = cond("country", "eq", "DE")
    for _ in range(200):
        rule = {"all": [rule]}
    with pytest.raises(DataError, match="deeper"):
        parse_rule(rule)


def test_rule_json_round_trip() -> None:
    data = {"all": [cond("country", "in", ["DE", "AT"]),
                    {"any": [cond("ltv", "between", [1, 2.5]),
                             cond("last_purchase", "within_last_days", 3,
                                  timezone="Europe/Berlin")]}]}
    rule = parse_rule(data)
    assert rule.to_json() == data
    assert parse_rule(rule.to_json()) == rule
    import json

    assert parse_rule(json.dumps(data)) == rule


def test_needs_an_aware_now(people: DuckDBProfileStore) -> None:
    with pytest.raises(DataError, match="aware"):
        compile_segment(schema=people.schema(), rule=cond("country", "eq", "DE"),
                        now=datetime(2025, 1, 1))  # noqa: DTZ001 -- the naive value is refused


def test_exactly_one_form(people: DuckDBProfileStore) -> None:
    with pytest.raises(DataError, match="exactly one"):
        compile_segment(schema=people.schema())
    with pytest.raises(DataError, match="exactly one"):
        compile_segment(schema=people.schema(), rule=cond("country", "eq", "DE"),
                        expression="country = 'DE'")


# -- restricted SQL ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("country = 'DE'", [1, 4]),
        ("COUNTRY = 'DE' AND ltv > 5", [1]),  # column names are matched ignoring case
        ("lower(country) = 'de'", [1, 4, 7]),
        ("country IN ('SE', 'GR') OR visits >= 9", [2, 3, 6]),
        ("NOT (country = 'DE') AND country IS NOT NULL", [2, 5, 6, 7, 8]),
        ("ltv BETWEEN 50 AND 75", [6, 7, 8]),
        ("name ILIKE 'b%'", [2]),
        ("coalesce(trim(name), '') = ''", [4, 5, 8]),
        ("length(name) > 4", [2, 6, 7]),
        ("last_purchase >= DATE '2025-05-25'", [1, 2, 5, 6]),
        ("vip AND ltv < 100", [1, 6, 7]),
        ("cast(visits AS VARCHAR) = '7'", [7, 8]),
        ("starts_with(lower(name), 'ив')", [3]),
        ("visits * 2 + 1 > 14", [3, 7, 8]),
        ("(country = 'FR')", [5]),
    ],
)
def test_expressions(people: DuckDBProfileStore, expression: str, expected: list[int]) -> None:
    assert members(people, expression=expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("country = ", "not valid SQL"),
        ("ltv", "must be a condition"),
        ("1 + 1", "must be a condition"),
        ("nope = 1", "Unknown column 'nope'"),
        ("profiles.country = 'DE'", "without a table"),
        ("country = 'DE'; DELETE FROM profiles", "single condition"),
        ("country IN (SELECT country FROM profiles)", "not a query"),
        ("EXISTS (SELECT 1)", "must be a condition"),
        ("ltv > (SELECT 1)", "Subquery is not allowed"),
        ("read_csv('/etc/passwd') IS NOT NULL", "READ_CSV"),
        ("getenv('HOME') = ''", "GETENV"),
        ("country = 'DE' /* hi */", "Comments"),
        ("cast(country AS BLOB) = 'x'", "CAST to"),
        ("country = ’DE’", "straight single quotes"),
        ("country = 'x' " + "OR country = 'y' " * 2000, "longer than"),
    ],
)
def test_bad_expressions(people: DuckDBProfileStore, expression: str, message: str) -> None:
    with pytest.raises(DataError) as caught:
        compile_segment(schema=people.schema(), expression=expression)
    assert message in caught.value.message


def test_engine_type_errors_surface_as_data_errors(people: DuckDBProfileStore) -> None:
    condition = compile_segment(schema=people.schema(), expression="ltv > 'lots'")
    with pytest.raises(DataError, match="cannot be evaluated"):
        people.count_where(condition)


def test_dialect_neutral_rendering(people: DuckDBProfileStore) -> None:
    condition = compile_segment(
        schema=people.schema(),
        rule={"all": [cond("name", "contains", "O'B"), cond("name", "starts_with", "x")]})
    assert to_sql(condition, "duckdb") == (
        "(STRPOS(LOWER(\"name\"), LOWER('O''B')) > 0 AND STARTS_WITH(LOWER(\"name\"), LOWER('x')))"
    )
    assert "POSITION(LOWER('O''B') IN LOWER(\"name\"))" in to_sql(condition, "postgres")
    assert "`name`" in to_sql(condition, "spark")
