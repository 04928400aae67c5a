"""Profiles and segments at 1 M rows: generate, import, refresh 12 segments, read members."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from segment_export.config import load_settings
from segment_export.db import make_engine, upgrade_database
from segment_export.db.models import Segment
from segment_export.profiles import DuckDBProfileStore, generate_profiles, write_profiles
from segment_export.profiles.imports import ProfileImport
from segment_export.segments import SegmentSpec, create_segment, refresh_segments

SEGMENTS = {
    "germany": {"field": "country", "op": "eq", "value": "DE"},
    "not-us": {"field": "country", "op": "ne", "value": "US"},
    "vip": {"field": "loyalty_tier", "op": "in", "value": ["gold", "platinum"]},
    "recent": {"field": "last_purchase_date", "op": "within_last_days", "value": 30},
    "big": {"field": "lifetime_value", "op": "gt", "value": 1000},
    "mid": {"field": "lifetime_value", "op": "between", "value": [100, 500]},
    "anna": {"field": "first_name", "op": "contains", "value": "an"},
    "no-email": {"field": "email", "op": "is_empty"},
    "consent": {"field": "marketing_consent", "op": "eq", "value": True},
    "new": {"field": "signup_date", "op": "ge", "value": "2024-06-01"},
    "eu-vip": {"all": [{"field": "country", "op": "in", "value": ["DE", "FR", "ES", "PL"]},
                       {"field": "loyalty_tier", "op": "ne", "value": "bronze"}]},
}
EXPRESSION = "country IN ('JP', 'CN') AND lifetime_value > 50 OR city = 'Berlin'"


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"{label:<44} {time.perf_counter() - started:6.2f} s", flush=True)


def main(rows: int = 1_000_000) -> None:
    as_of = date(2025, 6, 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with timed(f"generate {rows:,} profiles"):
            table = generate_profiles(rows=rows, seed=42, as_of=as_of)
        with timed("write CSV"):
            csv = write_profiles(table, root / "profiles.csv")
        with timed("write Parquet"):
            parquet = write_profiles(table, root / "profiles.parquet")
        settings = load_settings(data_dir=root / "data")
        engine = make_engine(settings)
        upgrade_database(engine)
        with DuckDBProfileStore(settings.profiles_path) as store:
            with timed(f"import {rows:,} CSV rows (replace)"):
                store.import_file(csv, ProfileImport(email_column="email"))
            with timed(f"import {rows:,} Parquet rows (replace)"):
                store.import_file(parquet, ProfileImport(email_column="email"))
            with timed(f"import {rows:,} Parquet rows (upsert)"):
                store.import_file(parquet, ProfileImport(mode="upsert"))
            now = datetime(2025, 6, 1, 12, tzinfo=UTC)
            with Session(engine) as session:
                for name, rule in SEGMENTS.items():
                    create_segment(
                        session, store, spec=SegmentSpec(name=name, rule=rule, active=False)
                    )
                create_segment(
                    session,
                    store,
                    spec=SegmentSpec(name="asia", expression=EXPRESSION, active=False),
                )
                # Created inactive so that the timed refresh below does all the work.
                for segment in session.scalars(select(Segment)):
                    segment.active = True
                session.commit()
                with timed("refresh 12 segments over the profiles"):
                    results = refresh_segments(session, store, now=now)
            sizes = ", ".join(f"{r.name}={r.size:,}" for r in results)
            print(f"  sizes: {sizes}")
            union = [results[0].segment_id, results[1].segment_id]
            with timed("membership_size of 2 segments"):
                size = store.membership_size(union)
            rows_read = 0
            with timed(f"read_members {size:,} rows x 4 columns"):
                for batch in store.read_members(
                    union, ["email", "first_name", "last_name", "country"]
                ):
                    rows_read += batch.num_rows
            assert rows_read == size
        engine.dispose()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
