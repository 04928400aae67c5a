"""A 1 M-member segment in a 10 M-profile store, against the same segment in a 1 M store.

    python -m bench.store_10m [--rows 10000000] [--members 1000000] [--seed 42] [--dir /tmp/...]

For each store (the 1 M one first, then the 10 M one), in fresh child processes: import the
profiles from a CSV file, then again (replace) from a Parquet file; refresh the segment; run a
full export of it to an emulator process enforcing Constant Contact's limits. Each step prints
its wall and CPU seconds, the 1-minute load average and its process's peak RSS.

The data: ``--rows / --members`` parts of ``--members`` generated profiles each (part k with
seed ``seed + k``), interleaved row by row, so customer ids ``1 + k, 1 + k + parts, ...`` belong
to part k and every part is spread over the whole file; a ``store_part`` column says which. The
segment is ``store_part = 0``: exactly the profiles ``bench.export_1m`` generates with the same
seed (only their customer ids differ, in the same order), so both exports send the same
contacts in the same bodies and their times compare. The 1 M store is part 0 alone. Files are
generated, never committed, and removed afterwards unless ``--dir`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench import export_1m

PART = "store_part"
FILE_SLICE = 100_000  # rows of each part per written slice


# -- children: one import or one refresh in its own process --------------------------------

def child(what: str, path: str | None) -> None:
    """Import ``path`` (what = import) or refresh the segments (what = refresh); print JSON."""
    export_1m._sample_rss()
    from segment_export.config import load_settings
    from segment_export.profiles import DuckDBProfileStore, ProfileImport

    settings = load_settings()
    profiler = _profiler()
    load_before = os.getloadavg()[0]
    cpu_before = os.times()
    started = time.perf_counter()
    result: dict[str, Any] = {}
    with DuckDBProfileStore(settings.profiles_path) as store:
        if what == "import":
            assert path is not None
            summary = store.import_file(Path(path), ProfileImport(email_column="email"))
            result = {"rows": summary.rows, "total": summary.total}
        else:
            from sqlalchemy import select

            from segment_export.db import make_engine, make_session_factory
            from segment_export.db.models import Segment
            from segment_export.segments.refresh import refresh_segments

            engine = make_engine(settings)
            with make_session_factory(engine)() as session:
                for segment in session.scalars(select(Segment)):
                    segment.active = True
                session.commit()
                started = time.perf_counter()  # the refresh alone
                results = refresh_segments(session, store)
            engine.dispose()
            result = {"sizes": [r.size for r in results], "errors": [r.error for r in results]}
    wall = time.perf_counter() - started
    cpu_after = os.times()
    if profiler is not None:
        profiler.stop()
        name = what if path is None else f"{what}-{Path(path).suffix.lstrip('.')}"
        Path(os.environ["BENCH_PROFILE"], f"{name}.txt").write_text(
            profiler.output_text(show_all=False))
    print(json.dumps({
        **result, "wall": wall, "load": [load_before, os.getloadavg()[0]],
        "cpu": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "peak_rss_mb": export_1m._peak_rss_mb(),
        "store_bytes": settings.profiles_path.stat().st_size,
    }))


def _profiler() -> Any:
    if not os.environ.get("BENCH_PROFILE"):
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.005)
    profiler.start()
    return profiler


def _run(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.store_10m", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- parent: files, stores, exports ---------------------------------------------------------

def interleaved(parts: list[pa.Table], start: int, length: int) -> pa.Table:
    """Rows ``start .. start+length`` of every part, interleaved (part 0's row, part 1's row,
    ...), with customer ids numbering the interleaved rows and ``store_part`` saying whose."""
    count = len(parts)
    stacked = pa.concat_tables([p.slice(start, length) for p in parts])
    position = np.arange(length * count)
    table = stacked.take(pa.array((position % count) * length + position // count))
    first = start * count + 1
    ids = pa.array(np.arange(first, first + length * count, dtype=np.int64))
    table = table.set_column(table.schema.get_field_index("customer_id"), "customer_id", ids)
    return table.append_column(PART, pa.array((position % count).astype(np.int8)))


def write_files(parts: list[pa.Table], folder: Path) -> tuple[Path, Path]:
    """The interleaved profiles as CSV and Parquet, written a slice at a time."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = folder / "profiles.csv", folder / "profiles.parquet"
    rows = parts[0].num_rows
    first = interleaved(parts, 0, min(FILE_SLICE, rows))
    with pacsv.CSVWriter(csv_path, first.schema) as csv_out, \
            pq.ParquetWriter(parquet_path, first.schema) as parquet_out:
        for start in range(0, rows, FILE_SLICE):
            table = first if start == 0 else interleaved(parts, start, min(FILE_SLICE,
                                                                           rows - start))
            csv_out.write_table(table)
            parquet_out.write_table(table)
    return csv_path, parquet_path


def _prepare(workdir: Path, emulator: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "bench.key").write_text(Fernet.generate_key().decode())
    env = export_1m._env(workdir, emulator)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                      os.environ.get("PYTHONPATH")]))
    return env


def _connect(env: dict[str, str], list_id: str, control: Any) -> None:
    """Create the segment (inactive: the refresh child evaluates it), connect, create the
    export."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("SEGMENT_EXPORT_")})
    from segment_export.config import load_settings
    from segment_export.db import make_engine, make_session_factory, upgrade_database
    from segment_export.definitions.exports import ExportSpec, create_export
    from segment_export.demo import connect_sandbox
    from segment_export.profiles import DuckDBProfileStore
    from segment_export.segments.service import SegmentSpec, create_segment
    from segment_export.users import ensure_admin

    settings = load_settings()
    engine = make_engine(settings)
    upgrade_database(engine)
    sessions = make_session_factory(engine)
    with DuckDBProfileStore(settings.profiles_path) as store, sessions.begin() as session:
        segment = create_segment(
            session,
            store,
            spec=SegmentSpec(
                name="part 0", active=False, rule={"field": PART, "op": "eq", "value": 0}
            ),
        )
        segment_id = segment.id
    with sessions.begin() as session:
        admin = ensure_admin(session)
    connection = connect_sandbox(
        sessions, engine=engine, settings=settings, control=control, actor=admin,
        display_name="bench", client_id=export_1m.CLIENT_ID,
        client_secret=export_1m.CLIENT_SECRET, redirect_uri=export_1m.REDIRECT)
    with sessions.begin() as session:
        create_export(session, actor=admin, spec=ExportSpec(
            name="bench", connection_id=connection.id, list_id=list_id,
            mapping=export_1m.MAPPING, segment_ids=[segment_id]))
    engine.dispose()


def _line(label: str, result: dict[str, Any], extra: str = "") -> None:
    print(f"   {label:<22} {result['wall']:7.2f} s, {result['cpu']:6.2f} s CPU, peak RSS "
          f"{result['peak_rss_mb']:4.0f} MB, load {result['load'][0]:.1f} -> "
          f"{result['load'][1]:.1f}{extra}", flush=True)


def run_store(name: str, parts: list[pa.Table], folder: Path, emulator: str, list_id: str,
              control: Any, profile: Path | None) -> dict[str, Any]:
    """Files, imports, refresh and a full export for one store; the figures."""
    started = time.perf_counter()
    csv_path, parquet_path = write_files(parts, folder / "files")
    rows = parts[0].num_rows * len(parts)
    print(f"\n== {name} store: {rows:,} profiles; wrote {csv_path.stat().st_size / 1e6:,.0f} MB "
          f"CSV and {parquet_path.stat().st_size / 1e6:,.0f} MB Parquet in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    env = _prepare(folder / "work", emulator)
    if profile is not None:
        (profile / name).mkdir(parents=True, exist_ok=True)
        env["BENCH_PROFILE"] = str((profile / name).resolve())
    figures: dict[str, Any] = {}
    for label, path in (("import CSV", csv_path), ("import Parquet", parquet_path)):
        result = _run(["--child", "import", "--path", str(path)], env)
        assert result["total"] == rows, result
        _line(label, result, f"; store file {result['store_bytes'] / 1e6:,.0f} MB")
        figures[label] = result
    # Only Parquet's copy is kept: the CSV is the largest file and no longer needed.
    csv_path.unlink()
    _connect(env, list_id, control)
    result = _run(["--child", "refresh"], env)
    assert result["sizes"] == [parts[0].num_rows], result
    _line("refresh segment", result, f"; {result['sizes'][0]:,} members")
    figures["refresh"] = result
    full = export_1m._run_child("full", env)
    if "sent" not in full["counts"]:
        raise SystemExit(f"{name} store export: {full['status']}: {full['message']}")
    floor_requests = export_1m._needed_imports(
        full["counts"]["sent"], export_1m._payload_bytes(full)) + 1
    ratio = export_1m._print_phase(full, floor_requests)
    full["floor_ratio"] = ratio
    full["accounted"] = export_1m._check_accounted(control, list_id, env, full)
    figures["export"] = full
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dir", type=Path, help="Work here and keep the files.")
    parser.add_argument("--profile", type=Path,
                        help="Write pyinstrument profiles of every step into DIR/<store>/.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path)
        return
    if args.rows % args.members:
        parser.error("--rows must be a multiple of --members")
    from segment_export.profiles import generate_profiles

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench-store-"))
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    # CSV ~170 bytes a row, Parquet ~60, the DuckDB file ~2x its table while an import swaps.
    needed = args.rows * 450
    if free < needed:
        raise SystemExit(f"{root}: {free / 1e9:.1f} GB free, about {needed / 1e9:.1f} GB needed")
    port = export_1m._free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "segment_export", "emulator", "serve", "--port", str(port),
         "--requests-per-second", str(export_1m.RPS), "--activity-seconds", "0",
         "--auto-approve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"bench: {args.members:,}-member segment in a {args.members:,} and a {args.rows:,} "
          f"profile store, seed {args.seed}; {platform.node()} ({os.cpu_count()} cores, "
          f"Python {platform.python_version()}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
          f"{root} ({free / 1e9:.0f} GB free)", flush=True)
    try:
        control, seeded = export_1m.seed_emulator(emulator_url,
                                                  lists=["small store", "big store"])
        started = time.perf_counter()
        parts = [generate_profiles(rows=args.members, seed=args.seed + k)
                 for k in range(args.rows // args.members)]
        print(f"generated {len(parts)} x {args.members:,} profiles in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        small = run_store("1M" if args.members == 1_000_000 else f"{args.members:,}",
                          parts[:1], root / "small", emulator_url, seeded.lists["small store"],
                          control, args.profile)
        big = run_store("10M" if args.rows == 10_000_000 else f"{args.rows:,}", parts,
                        root / "big", emulator_url, seeded.lists["big store"], control,
                        args.profile)
        del parts
        _verdicts(small, big)
    finally:
        emulator.terminate()
        emulator.wait(10)
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def _verdicts(small: dict[str, Any], big: dict[str, Any]) -> None:
    s, b = small["export"], big["export"]
    print(f"\n   export: {b['wall']:.2f} s in the big store, {s['wall']:.2f} s in the small one: "
          f"{b['wall'] / s['wall']:.2f}x; peak RSS {b['peak_rss_mb']:.0f} MB and "
          f"{s['peak_rss_mb']:.0f} MB")
    for step in ("import CSV", "import Parquet", "refresh"):
        print(f"   {step}: {big[step]['wall']:.2f} s / {small[step]['wall']:.2f} s, peak RSS "
              f"{big[step]['peak_rss_mb']:.0f} / {small[step]['peak_rss_mb']:.0f} MB")
    verdicts = [
        ("big-store export within 1.2x the small store's", b["wall"] <= 1.2 * s["wall"]),
        # "The same": within 5 % (the RSS of two runs of one export differs by a few MB).
        ("big-store export: peak RSS within 5 % of the small store's",
         b["peak_rss_mb"] <= 1.05 * s["peak_rss_mb"]),
        ("exports: the same contacts sent", s["counts"]["sent"] == b["counts"]["sent"]),
        ("exports: every contact accounted for", s["accounted"] and b["accounted"]),
        ("full export: peak RSS under 300 MB", s["peak_rss_mb"] < 300),
    ]
    print()
    for name, ok in verdicts:
        print(f"target {'met   ' if ok else 'MISSED'}: {name}")
    missed = [name for name, ok in verdicts if not ok]
    print("targets: met" if not missed else f"targets: missed ({'; '.join(missed)})")


if __name__ == "__main__":
    main()
