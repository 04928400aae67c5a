"""Imports into a Spark store's Parquet directory: DuckDB's checks, then one directory swap."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
from sqlglot import exp

from segment_export.profiles.duckdb import DuckDBProfileStore
from segment_export.profiles.imports import ImportMode, ProfileImport
from segment_export.profiles.store import PROFILES, ImportSummary

Load = Callable[[DuckDBProfileStore], ImportSummary]


def import_into_parquet(
    directory: Path, *, scratch: Path, load: Load, mode: ImportMode, current_id: str | None
) -> ImportSummary:
    """Run ``load`` on a staging DuckDB store, then make its profiles the directory's content.

    The staging store applies exactly the embedded store's rules (unique ids, upsert by id,
    the same messages). For an upsert it first receives the directory's current profiles.
    The directory is replaced by renaming a finished sibling into its place: a reader sees the
    old or the new profiles (or, for an instant, none), never a mix.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    staging_path = scratch / f"import-{uuid.uuid4().hex}.duckdb"
    try:
        with DuckDBProfileStore(staging_path) as staging:
            if mode == "upsert" and current_id is not None and _has_parquet(directory):
                current = ds.dataset(directory, format="parquet", partitioning="hive").to_table()
                staging.import_table(current, ProfileImport(id_column=current_id))
            summary = load(staging)
        fresh = directory.parent / f".{directory.name}.import-{uuid.uuid4().hex}"
        fresh.mkdir(parents=True)
        try:
            target = exp.Literal.string(str(fresh / "part-00000.parquet")).sql(dialect="duckdb")
            with duckdb.connect(str(staging_path)) as conn:
                conn.execute(f"COPY {PROFILES} TO {target} (FORMAT parquet)")
            _swap(fresh, directory)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
        return summary
    finally:
        for leftover in (staging_path, staging_path.with_name(staging_path.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _has_parquet(directory: Path) -> bool:
    return directory.is_dir() and any(directory.rglob("*.parquet"))


def _swap(fresh: Path, directory: Path) -> None:
    old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex}"
    if directory.exists():
        os.replace(directory, old)
    os.replace(fresh, directory)
    shutil.rmtree(old, ignore_errors=True)
