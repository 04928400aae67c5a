"""Soak: scheduled exports every minute on several segments, for 30 minutes, under random faults.

    python -m bench.soak [--minutes 30] [--workers 2] [--every 60] [--fault-every 20]

A deployment in processes on this machine: the Constant Contact emulator (4 requests/s, its own
process), ``segment-export worker`` processes sharing PostgreSQL state, a PostgreSQL profile store
and a Redis queue. Four exports (two mirror, two add/update; one over two segments) are scheduled
``* * * * *``; the profiles change before every round (updates, newcomers, leavers). Random faults
hit the emulator all along: 429 storms, 500/503 bursts, connections dropped before, during or
after an import, slow answers, activities that fail or time out, expired access tokens, and
workers killed with SIGKILL (and replaced). Then faults stop, each export runs once more, and:

- every run ended (none left queued or running), none crashed (error kind ``internal``);
- every successful run's counts add up (in the segment = sent + unchanged + rejected locally +
  without consent; sent = accepted + refused + unsubscribed);
- every list is exact: a mirror list holds exactly the valid members of its segments, an
  add/update list all of them and nothing that was never a member; no contact twice;
- every 429 the emulator answered was one the soak injected.

The last line is the verdict: ``soak: PASS ...`` or ``soak: FAIL ...`` (exit status 1).
``--every S`` under 60 compresses time for a quick check: the soak then moves the schedules
forward and runs the scheduler tick itself every S seconds instead of waiting for the workers'
minute tick.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from bench.cluster import EmulatorProcess, Workers, emulator_process, max_in_any_second
from segment_export.config import Settings, load_settings
from segment_export.db import make_engine, make_session_factory, upgrade_database
from segment_export.db.models import Export, Run
from segment_export.db.types import utcnow
from segment_export.definitions import connections
from segment_export.definitions.exports import ExportSpec, create_export
from segment_export.demo import connect_sandbox
from segment_export.exports.engine import ACTIVE, TERMINAL
from segment_export.exports.runs import request_run
from segment_export.log import RedactingFilter
from segment_export.profiles.engines import open_profile_store
from segment_export.profiles.imports import ProfileImport
from segment_export.scheduling.queue import TaskQueue
from segment_export.scheduling.runtime import Runtime
from segment_export.segments.refresh import refresh_segments
from segment_export.segments.service import SegmentSpec, create_segment
from segment_export.users import ensure_admin

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
CLIENT_SECRET = "soak-client-secret-0123456789"  # noqa: S105 - opens only the emulator
IMPORT_PATH = "/v3/activities/contacts_json_import"
TIERS = ("bronze", "silver", "gold")
COUNTRIES = ("DE", "FR", "US")


@dataclass(frozen=True)
class SegmentDef:
    name: str
    expression: str
    matches: Callable[[dict[str, Any]], bool]


SEGMENTS = (
    SegmentDef("gold", "tier = 'gold'", lambda p: p["tier"] == "gold"),
    SegmentDef("high score", "score >= 50", lambda p: p["score"] >= 50),
    SegmentDef("germany", "country = 'DE'", lambda p: p["country"] == "DE"),
    SegmentDef("low silver", "tier = 'silver' AND score < 30",
               lambda p: p["tier"] == "silver" and p["score"] < 30),
)
# (export name, mode, segments): one export over two segments (their union).
EXPORTS = (
    ("gold mirror", "mirror", ("gold",)),
    ("high score", "add_update", ("high score",)),
    ("germany + low silver", "mirror", ("germany", "low silver")),
    ("low silver", "add_update", ("low silver",)),
)


@dataclass
class Options:
    minutes: float = 30.0
    every: float = 60.0
    fault_every: float = 20.0
    workers: int = 2
    threads: int = 2
    contacts: int = 3000
    batch: int = 100
    kills: bool = True
    seed: int = 7
    postgres_url: str = POSTGRES_URL
    redis_url: str = REDIS_URL
    settle_timeout: float = 300.0
    workdir: Path | None = None


@dataclass
class Report:
    started: str = ""
    seconds: float = 0.0
    runs: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    triggers: dict[str, int] = field(default_factory=dict)
    attempts_over_one: int = 0
    counts_add_up: int = 0
    counts_wrong: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    faulted_requests: int = 0
    imports: int = 0
    status_429: int = 0
    uninjected_429: int = 0
    max_per_second: int = 0
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicate_contacts: int = 0
    failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        exact = sum(1 for v in self.lists.values() if v["exact"])
        head = "soak: PASS" if self.passed else "soak: FAIL"
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        faults = sum(self.faults.values())
        successful = sum(n for s, n in self.statuses.items() if s.startswith("succeeded"))
        text = (f"{head} - {self.runs} runs in {self.seconds / 60:.1f} min ({statuses}); "
                f"counts add up in {self.counts_add_up}/{successful} successful runs; "
                f"{exact}/{len(self.lists)} lists exact; {faults} faults injected "
                f"({self.faults.get('kill', 0)} worker kills); {self.status_429} 429s, "
                f"{self.uninjected_429} not injected; {self.requests} API requests "
                f"({self.faulted_requests} met a fault), at most "
                f"{self.max_per_second} in any second")
        if self.problems:
            text += "\n  " + "\n  ".join(self.problems[:20])
            # Why runs failed is the first thing to read when a list is not exact.
            text += "".join(f"\n  failed: {line}" for line in self.failures[:20])
        return text


class Profiles:
    """The soak's profiles, kept here too: what each segment should hold is computed from this
    copy, independently of the profile store and the segment engine."""

    def __init__(self, count: int, rng: random.Random) -> None:
        self.rng = rng
        self.rows: dict[str, dict[str, Any]] = {}
        self._next = 0
        for _ in range(count):
            self._add()
        self.ever: dict[str, set[str]] = {s.name: set() for s in SEGMENTS}
        self.note_members()

    def _add(self) -> None:
        self._next += 1
        n = self._next
        # About 1 in 100 addresses is broken: those rows are rejected before sending.
        email = f"broken{n}.example.com" if self.rng.random() < 0.01 else f"c{n}@example.com"
        self.rows[str(n)] = {
            "customer_id": str(n), "email": email, "first_name": f"F{n}",
            "last_name": self.rng.choice(("Doe", "Roe", "Poe")),
            "tier": self.rng.choice(TIERS), "score": self.rng.randrange(100),
            "country": self.rng.choice(COUNTRIES)}

    def mutate(self, share: float = 0.02) -> Counter[str]:
        """Updates (some leave or join segments), newcomers and departures."""
        done: Counter[str] = Counter()
        ids = list(self.rows)
        for cid in self.rng.sample(ids, max(1, int(len(ids) * share))):
            row = self.rows[cid]
            what = self.rng.choice(("name", "tier", "score", "country"))
            if what == "name":
                row["first_name"] = f"F{cid}-{self.rng.randrange(10**6)}"
            elif what == "tier":
                row["tier"] = self.rng.choice(TIERS)
            elif what == "score":
                row["score"] = self.rng.randrange(100)
            else:
                row["country"] = self.rng.choice(COUNTRIES)
            done["updated"] += 1
        for cid in self.rng.sample(ids, max(1, int(len(ids) * share / 2))):
            del self.rows[cid]
            done["removed"] += 1
        for _ in range(max(1, int(len(ids) * share / 2))):
            self._add()
            done["added"] += 1
        self.note_members()
        return done

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(list(self.rows.values()))

    def members(self, segment: str) -> set[str]:
        """The valid emails the segment holds now."""
        definition = next(s for s in SEGMENTS if s.name == segment)
        return {r["email"] for r in self.rows.values()
                if definition.matches(r) and "@" in r["email"]}

    def note_members(self) -> None:
        for segment in self.ever:
            self.ever[segment] |= self.members(segment)


@dataclass
class Deployment:
    settings: Settings
    engine: sa.Engine
    runtime: Runtime
    queue: TaskQueue
    emulator: EmulatorProcess
    workers: Workers
    exports: dict[str, str]  # name -> id
    lists: dict[str, str]  # export name -> list id


@contextmanager
def _schema(url: str) -> Iterator[str]:
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def _profile_store_url(url: str, schema: str) -> str:
    parts = sa.make_url(url)
    host = f"{parts.username or 'postgres'}@{parts.host or '127.0.0.1'}:{parts.port or 5432}"
    return f"postgresql://{host}/{parts.database}?schema={schema}&table=profiles"


@contextmanager
def deployment(options: Options, profiles: Profiles, workdir: Path) -> Iterator[Deployment]:
    with _schema(options.postgres_url) as schema, emulator_process(
            workdir / "emulator.log", activity_seconds=0.5) as emulator:
        client_id = f"soak-{uuid.uuid4().hex[:10]}"
        seeded = emulator.control.seed(
            apps=[{"client_id": client_id, "client_secret": CLIENT_SECRET,
                   "redirect_uris": [connections.DEFAULT_REDIRECT_URI]}],
            account={"organization_name": "Soak Bakery"}, lists=[e[0] for e in EXPORTS])
        settings = load_settings(
            data_dir=workdir / "driver", secret_key=Fernet.generate_key().decode(),
            database_url=_with_schema(options.postgres_url, schema),
            profile_store=_profile_store_url(options.postgres_url, schema),
            redis_url=options.redis_url, queue_name=f"soak-{uuid.uuid4().hex}",
            cc_api_url=emulator.api_url, cc_auth_url=emulator.auth_url,
            import_batch_contacts=options.batch, stale_run_seconds=10,
            worker_threads=options.threads, log_level="INFO")
        engine = make_engine(settings)
        upgrade_database(engine)
        workers = Workers(settings, workdir / "workers")
        workers.start(options.workers, threads=options.threads)
        store = open_profile_store(settings)
        runtime = Runtime(settings, engine=engine, store=store)
        try:
            sessions = make_session_factory(engine)
            with sessions.begin() as session:
                admin = ensure_admin(session)
            connection = connect_sandbox(
                sessions, engine=engine, settings=settings, control=emulator.control,
                actor=admin, display_name="Soak", client_id=client_id,
                client_secret=CLIENT_SECRET)
            store.import_table(profiles.table(), ProfileImport(id_column="customer_id"))
            segment_ids = {}
            for segment in SEGMENTS:
                with sessions.begin() as session:
                    segment_ids[segment.name] = create_segment(
                        session,
                        store,
                        spec=SegmentSpec(name=segment.name, expression=segment.expression),
                    ).id
            exports = {}
            for name, mode, segments in EXPORTS:
                with sessions.begin() as session:
                    exports[name] = create_export(session, actor=admin, spec=ExportSpec(
                        name=name, connection_id=connection.id, list_id=seeded.lists[name],
                        segment_ids=[segment_ids[s] for s in segments], mode=mode,  # type: ignore[arg-type]
                        mapping={"email": "email", "first_name": "first_name",
                                 "last_name": "last_name"},
                        schedule_kind="cron", cron="* * * * *")).id
            # The workers finish starting while the soak begins: runs wait for them in the queue.
            yield Deployment(settings, engine, runtime, TaskQueue(runtime), emulator, workers,
                             exports, {name: seeded.lists[name] for name, _, _ in EXPORTS})
        finally:
            workers.stop()
            TaskQueue(runtime).huey.flush()  # the soak's queue, not to outlive it in Redis
            store.close()
            engine.dispose()


class Faults:
    """One random fault at a time, of every kind the product must survive."""

    KINDS = ("429", "5xx", "drop", "slow", "activity", "token", "kill")

    def __init__(self, dep: Deployment, rng: random.Random, *, kills: bool) -> None:
        self.dep = dep
        self.rng = rng
        self.kinds = [k for k in self.KINDS if kills or k != "kill"]
        self.injected: Counter[str] = Counter()

    def inject(self) -> str:
        control = self.dep.emulator.control
        kind = self.rng.choice(self.kinds)
        if kind == "429":
            control.inject_fault(kind="status", status=429, count=self.rng.randint(2, 8))
        elif kind == "5xx":
            control.inject_fault(kind="status", status=self.rng.choice((500, 503)),
                                 count=self.rng.randint(1, 4))
        elif kind == "drop":
            control.inject_fault(kind="drop", when=self.rng.choice(("before", "during", "after")),
                                 path_prefix=IMPORT_PATH)
        elif kind == "slow":
            # Processed at once, answered late: a "before" stall would make the emulator count
            # the request seconds after it arrived, on top of the ones paced after it.
            control.inject_fault(kind="slow", when="after", delay=self.rng.uniform(1.0, 5.0),
                                 count=self.rng.randint(1, 3))
        elif kind == "activity":
            if self.rng.random() < 0.5:
                control.fail_activity(1)
            else:
                control.time_out_activity(1)
        elif kind == "token":
            control.expire_tokens()
        else:
            self._kill_a_worker()
        self.injected[kind] += 1
        return kind

    def _kill_a_worker(self) -> None:
        alive = self.dep.workers.alive()
        if not alive:
            return
        victim = self.rng.choice(alive)
        self.dep.workers.kill(victim)
        self.dep.workers.start(1, threads=self.dep.settings.worker_threads)


def _log_to(path: Path) -> None:
    # The product's own log lines (a scheduled run not queued because the last one still runs,
    # retries) go to a file; the console shows the soak's progress and verdict.
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _fast_forward(dep: Deployment) -> None:
    """Compressed time: make every scheduled export due now and run the minute's tick here."""
    with dep.runtime.sessions.begin() as session:
        session.execute(update(Export).where(Export.schedule_kind == "cron")
                        .values(next_run_at=utcnow()))
    dep.queue.tick()  # under the same lock as the workers' own ticks


def _refresh(dep: Deployment, profiles: Profiles) -> None:
    dep.runtime.store.import_table(profiles.table(), ProfileImport(id_column="customer_id"))
    with dep.runtime.sessions() as session:
        refresh_segments(session, dep.runtime.store)
        session.commit()


def _active_runs(dep: Deployment) -> int:
    with dep.runtime.sessions() as session:
        return len(session.scalars(select(Run.id).where(Run.status.in_(ACTIVE))).all())


def _wait_idle(dep: Deployment, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _active_runs(dep) == 0:
            return True
        # A run retrying after a passing failure waits in the queue; the tick re-sends it.
        time.sleep(1.0)
    return False


def soak(options: Options, *, say: Callable[[str], None] = print) -> Report:
    """Run the soak and return what it found (``report.passed``)."""
    rng = random.Random(options.seed)
    profiles = Profiles(options.contacts, rng)
    report = Report(started=datetime.now(UTC).isoformat(timespec="seconds"))
    started = time.monotonic()
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _log_to(workdir / "driver.log")
    with deployment(options, profiles, workdir) as dep:
        say(f"soak: {options.minutes:g} min, {options.workers} workers x {options.threads} "
            f"threads, {len(EXPORTS)} exports every {options.every:g} s, a fault every "
            f"~{options.fault_every:g} s; emulator {dep.emulator.base_url}; logs in {workdir}")
        faults = Faults(dep, rng, kills=options.kills and options.workers > 1)
        end = time.monotonic() + options.minutes * 60
        next_round = time.monotonic() + (options.every if options.every >= 60 else 0)
        next_change = time.monotonic() + options.every / 2
        next_fault = time.monotonic() + rng.uniform(0.5, 1.5) * options.fault_every
        while time.monotonic() < end:
            now = time.monotonic()
            if options.every < 60 and now >= next_round:
                _fast_forward(dep)
                next_round = now + options.every
            if now >= next_change:
                changed = profiles.mutate()
                _refresh(dep, profiles)
                say(f"  {time.monotonic() - started:6.0f} s: profiles changed {dict(changed)}; "
                    f"{_active_runs(dep)} runs active")
                next_change = now + options.every
            if now >= next_fault:
                kind = faults.inject()
                say(f"  {time.monotonic() - started:6.0f} s: fault {kind}")
                next_fault = now + rng.uniform(0.5, 1.5) * options.fault_every
            time.sleep(0.2)
        report.faults = dict(faults.injected)
        dep.workers.wait_ready()
        _settle(dep, options, say)
        _check(dep, profiles, report)
    report.seconds = time.monotonic() - started
    return report


def _settle(dep: Deployment, options: Options, say: Callable[[str], None]) -> None:
    """Faults off and schedules stopped; what is running ends; then each export runs once."""
    dep.emulator.control.clear_faults()
    with dep.runtime.sessions.begin() as session:
        session.execute(update(Export).values(schedule_kind="manual", next_run_at=None))
    if not dep.workers.alive():
        dep.workers.start(1, threads=options.threads)
    say("  settling: faults cleared, schedules stopped, waiting for the runs in progress")
    if not _wait_idle(dep, options.settle_timeout):
        return  # _check reports the runs still going
    for export_id in dep.exports.values():
        with dep.runtime.sessions.begin() as session:
            export = session.get(Export, export_id)
            assert export is not None
            run_id = request_run(session, actor=None, export=export, trigger="manual").id
        dep.queue.enqueue_run(run_id)
    say("  settling: one last run per export")
    _wait_idle(dep, options.settle_timeout)


def _check(dep: Deployment, profiles: Profiles, report: Report) -> None:
    with dep.runtime.sessions() as session:
        runs = session.scalars(select(Run).where(Run.dry_run.is_(False))).all()
    report.runs = len(runs)
    report.statuses = dict(Counter(r.status for r in runs))
    report.triggers = dict(Counter(r.trigger for r in runs))
    report.attempts_over_one = sum(1 for r in runs if r.attempt > 1)
    names = {export_id: name for name, export_id in dep.exports.items()}
    for run in runs:
        if run.status == "failed":
            report.failures.append(f"{names.get(run.export_id, run.export_id)!r} run {run.id} "
                                   f"attempt {run.attempt} ({run.error_kind}): {run.message}")
        if run.status not in TERMINAL:
            report.unfinished.append(run.id)
            report.problems.append(f"run {run.id} never ended: {run.status} - {run.message}")
        elif run.error_kind == "internal":
            report.crashed.append(run.id)
            report.problems.append(f"run {run.id} crashed: {run.message}")
        elif run.status in ("succeeded", "succeeded_with_rejections"):
            problem = _counts_problem(run.counts)
            if problem:
                report.counts_wrong.append(run.id)
                report.problems.append(f"run {run.id}: counts do not add up: {problem}")
            else:
                report.counts_add_up += 1
    control = dep.emulator.control
    for name, mode, segments in EXPORTS:
        actual = control.list_members(dep.lists[name])
        current = set().union(*(profiles.members(s) for s in segments))
        ever = set().union(*(profiles.ever[s] for s in segments))
        # Mirror: exactly the members now. Add/update: everyone who is a member now, and
        # nobody who never was.
        exact = actual == current if mode == "mirror" else current <= actual <= ever
        report.lists[name] = {"mode": mode, "members": len(actual), "expected": len(current),
                              "missing": len(current - actual), "extra": len(
                                  actual - (current if mode == "mirror" else ever)),
                              "exact": exact}
        if not exact:
            report.problems.append(f"list of {name!r} is not exact: {report.lists[name]}")
    emails = [c["email"].lower() for c in control.contacts()]
    report.duplicate_contacts = len(emails) - len(set(emails))
    if report.duplicate_contacts:
        report.problems.append(f"{report.duplicate_contacts} contacts exist twice")
    api = [r for r in control.requests() if r.path.startswith("/v3/")]
    report.requests = len(api)
    report.faulted_requests = sum(1 for r in api if r.fault is not None)
    report.imports = sum(1 for r in api if r.path == IMPORT_PATH)
    report.status_429 = sum(1 for r in api if r.status == 429)
    report.uninjected_429 = sum(1 for r in api if r.status == 429 and r.fault != "status:429")
    if report.uninjected_429:
        report.problems.append(f"{report.uninjected_429} 429s were not injected: the shared "
                               "rate budget let too many requests through")
        for index, r in enumerate(api):
            if r.status == 429 and r.fault != "status:429":
                report.problems.append("  the second before it: " + "; ".join(
                    f"{p.time - r.time:+.3f} {p.method} {p.path.rsplit('/', 1)[-1]} "
                    f"{p.status} {p.fault or ''} {p.duration:.2f}s"
                    for p in api[max(0, index - 8):index + 1] if p.time > r.time - 1.5))
    report.max_per_second = max_in_any_second([r.time for r in api])


def _counts_problem(c: dict[str, Any]) -> str | None:
    try:
        local = c["sent"] + c["unchanged"] + c["rejected_locally"] + c["no_consent"]
        remote = c["accepted"] + c["rejected_by_constant_contact"] + c["unsubscribed_not_added"]
    except KeyError as exc:
        return f"count {exc} missing"
    if c["in_segment"] != local:
        return f"in_segment {c['in_segment']} != {local}"
    if c["sent"] != remote:
        return f"sent {c['sent']} != {remote}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long faults and "
                        "schedules run (default 30)")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between rounds; 60: "
                        "the workers' own minute tick; less: compressed time (default 60)")
    parser.add_argument("--fault-every", type=float, default=20.0,
                        help="mean seconds between faults (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (default 2)")
    parser.add_argument("--contacts", type=int, default=3000, help="profiles (default 3000)")
    parser.add_argument("--batch", type=int, default=100, help="contacts per import (default 100)")
    parser.add_argument("--no-kills", action="store_true", help="never SIGKILL a worker")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default=POSTGRES_URL, help=f"default {POSTGRES_URL}")
    parser.add_argument("--redis", default=REDIS_URL, help=f"default {REDIS_URL}")
    parser.add_argument("--settle-timeout", type=float, default=300.0,
                        help="seconds to wait for the runs to end after the soak (default 300)")
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    options = Options(
        minutes=args.minutes, every=args.every, fault_every=args.fault_every,
        workers=args.workers, threads=args.threads, contacts=args.contacts, batch=args.batch,
        kills=not args.no_kills, seed=args.seed, postgres_url=args.postgres,
        redis_url=args.redis, settle_timeout=args.settle_timeout, workdir=args.workdir)
    report = soak(options, say=lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    print(report.verdict(), flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
