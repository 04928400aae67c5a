"""Rule values are bounded (issue #17, point 6): any value either compiles and runs, or is
refused with a DataError naming the field, never another exception (a 500 in the API)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segment_export.errors import DataError
from segment_export.profiles import DuckDBProfileStore
from segment_export.profiles.imports import ProfileImport
from segment_export.segments import compile_segment, parse_rule
from segment_export.segments.rules import MAX_DAYS, MAX_INTEGER, MAX_TEXT, MIN_INTEGER, OPS


def _naive(*parts: int) -> datetime:
    """Wall-clock time, as a TIMESTAMP column holds it."""
    return datetime(*parts, tzinfo=UTC).replace(tzinfo=None)


COLUMNS = {"n": pa.int64(), "x": pa.float64(), "t": pa.string(), "b": pa.bool_(),
           "d": pa.date32(), "ts": pa.timestamp("us"), "tz": pa.timestamp("us", tz="UTC")}


@pytest.fixture(scope="module")
def typed_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBProfileStore]:
    path: Path = tmp_path_factory.mktemp("bounds") / "p.duckdb"
    rows = {"customer_id": [1, 2], "email": ["a@x.test", "b@x.test"], "n": [1, -5],
            "x": [1.5, None], "t": ["DE", ""], "b": [True, False],
            "d": [date(2024, 1, 1), date(1, 1, 1)],
            "ts": [_naive(2024, 1, 1), _naive(9999, 12, 31)],
            "tz": [datetime(2024, 1, 1, tzinfo=UTC), None]}
    schema = pa.schema([("customer_id", pa.int64()), ("email", pa.string()),
                        *COLUMNS.items()])
    with DuckDBProfileStore(path) as store:
        store.import_table(pa.table(rows, schema=schema), ProfileImport(id_column="customer_id"))
        yield store


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([MAX_DAYS, MAX_DAYS + 1, MIN_INTEGER - 1, MAX_INTEGER + 1, 10**6]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.text(min_size=MAX_TEXT, max_size=MAX_TEXT + 2),
    st.sampled_from(["1e400", "-1e309", "9" * 30, "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-12:00", "0001-01-01", "9999-12-31", "2024-02-30",
                     " 42 ", "+.5", "true"]),
    st.dates().map(date.isoformat),
    st.datetimes(timezones=st.sampled_from([None, UTC])).map(datetime.isoformat),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4))
conditions = st.fixed_dictionaries(
    {"field": st.sampled_from(list(COLUMNS)), "op": st.sampled_from(OPS), "value": values},
    optional={"timezone": st.sampled_from(["UTC", "Pacific/Kiritimati", "Etc/GMT+12",
                                           "Asia/Tokyo", "Nowhere/Else"])},
)
rules = st.one_of(conditions, st.lists(conditions, min_size=1, max_size=3).map(
    lambda parts: {"all": parts}))
moments = st.datetimes(min_value=_naive(1900, 1, 1), max_value=_naive(2200, 1, 1),
                       timezones=st.just(UTC))


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=rules, now=moments)
def test_any_rule_value_compiles_and_runs_or_is_a_data_error(
    typed_store: DuckDBProfileStore, rule: dict[str, Any], now: datetime
) -> None:
    schema = typed_store.schema()
    try:
        condition = compile_segment(schema=schema, rule=rule, now=now)
    except DataError as exc:
        refused: DataError | None = exc
    else:
        refused = None
        # What only the engine sees (a text compared with a number) is a DataError too.
        with contextlib.suppress(DataError):
            typed_store.count_where(condition)
    assert refused is None or refused.context.get("field"), refused


@pytest.mark.parametrize(("value", "fits"), [
    (0, True), (MAX_DAYS, True), (MAX_DAYS + 1, False), (10**6, False), (-1, False),
    (10**30, False), (1.0, False), (True, False),
])
def test_within_last_days_bounds(value: Any, fits: bool) -> None:
    rule = {"field": "d", "op": "within_last_days", "value": value}
    if fits:
        parse_rule(rule)
        compile_segment(schema={"d": "DATE"}, rule=rule, now=datetime(2026, 1, 1, tzinfo=UTC))
    else:
        with pytest.raises(DataError, match="from 0 to 36,500"):
            parse_rule(rule)


@pytest.mark.parametrize(("value", "fits"), [
    (MAX_INTEGER, True), (MIN_INTEGER, True), (MAX_INTEGER + 1, False),
    (MIN_INTEGER - 1, False), (1e300, True), (1.7e308, False), (float("inf"), False),
    ("x" * MAX_TEXT, True), ("x" * (MAX_TEXT + 1), False),
])
def test_value_bounds(value: Any, fits: bool) -> None:
    rule = {"field": "n", "op": "eq", "value": value}
    if fits:
        parse_rule(rule)
    else:
        with pytest.raises(DataError, match="Invalid rule"):
            parse_rule(rule)


def test_within_last_days_near_year_one_is_a_data_error() -> None:
    """A ``now`` within MAX_DAYS of year 1 cannot look that far back (no OverflowError)."""
    rule = {"field": "ts", "op": "within_last_days", "value": MAX_DAYS}
    early = datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=10)
    with pytest.raises(DataError, match="before year 1"):
        compile_segment(schema={"ts": "TIMESTAMP"}, rule=rule, now=early)
