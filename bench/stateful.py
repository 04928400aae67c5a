"""The stateful test's long run: a seeded random walk over the same actions and checks.

    python -m bench.stateful [--steps 3000] [--minutes 60] [--seed 1] [--length 25]

The rig of ``tests/exports/stateful_support.py`` (the emulator over HTTP in this process, a
SQLite state store, a DuckDB profile store, real ``segment-export runs resume`` processes forked
warm to be killed with SIGKILL) runs sequences of ``--length`` steps, each with fresh people,
lists and exports: profiles join and leave the segment, consent changes, renames, people
unsubscribe or add contacts by hand, faults are armed (429s, 5xx, dropped connections, read
timeouts after acceptance, failed or timed-out activities, expired access tokens, a reused
rotated refresh token), and exports run in both modes, incremental or full, here or killed and
resumed. After every run the list is checked against the model and the counts must add up.

It stops after ``--steps`` steps or ``--minutes`` minutes, whichever comes first, and prints
what it did and found; the verdict line says ``stateful: PASS`` only if no contact was lost,
extra or re-subscribed, every count added up and no run broke (exit status 1 otherwise). A
sequence that finds a violation ends there (its state is no longer what the model knows) and
the walk goes on with a new one. Logs and data go to a temporary directory (``--workdir``).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from tests.exports.faults_support import Zygote
from tests.exports.stateful_support import (
    FAULT_KINDS,
    POOL,
    WHERE,
    FaultPlan,
    Rig,
    RunPlan,
    Tally,
    Violation,
)
from tests.world import open_world

from segment_export.config import load_settings
from segment_export.db import make_engine, upgrade_database
from segment_export.log import RedactingFilter

# How often each action is picked (relative weights).
WEIGHTS = {"join_or_leave": 14, "toggle_consent": 4, "rename": 6, "unsubscribe": 5,
           "add_by_hand": 7, "arm": 10, "run": 26, "run_killed": 14}


def random_fault(rng: random.Random) -> FaultPlan:
    return FaultPlan(kind=rng.choice(FAULT_KINDS), count=rng.randint(1, 4),
                     status=rng.choice((500, 502, 503, 504)), where=rng.choice(sorted(WHERE)),
                     when=rng.choice(("before", "during", "after")),
                     outcome=rng.choice(("failed", "timed_out")))


def step(rig: Rig, rng: random.Random) -> str:
    """One action, picked and parameterised by ``rng``; returns its name."""
    action = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    if action == "join_or_leave":
        rig.join_or_leave(rng.randrange(POOL))
    elif action == "toggle_consent":
        rig.toggle_consent(rng.randrange(POOL))
    elif action == "rename":
        rig.rename(rng.randrange(POOL))
    elif action == "unsubscribe":
        rig.unsubscribe(rng.randrange(10_000))
    elif action == "add_by_hand":
        rig.add_by_hand(rng.randrange(2), rng.randrange(10_000), rng.random() < 0.5)
    elif action == "arm":
        rig.arm(random_fault(rng))
    else:
        rig.run(RunPlan(export=rng.randrange(2), full=rng.random() < 0.25,
                        kill=action == "run_killed", kill_after=rng.randint(0, 14),
                        kill_delay=rng.uniform(0.0, 0.05), resume_in_cli=rng.random() < 0.3,
                        kill_in_removal=rng.random() < 0.3))
    return action


def walk(rig: Rig, *, steps: int, minutes: float, length: int, seed: int,
         say: Callable[[str], None] = print) -> Tally:
    """Sequences of ``length`` steps until ``steps`` steps or ``minutes`` minutes."""
    rng = random.Random(seed)
    tally = rig.tally
    end = time.monotonic() + minutes * 60
    started = time.monotonic()
    while tally.steps < steps and time.monotonic() < end:
        rig.begin()
        try:
            for _ in range(length):
                if tally.steps >= steps or time.monotonic() >= end:
                    break
                step(rig, rng)
        except Violation as found:
            tally.problems.append(f"sequence {rig.sequence}: {found}")
            say(f"  sequence {rig.sequence}: VIOLATION {found}")
        except Exception as exc:
            tally.violations["crashed"] += 1
            tally.problems.append(f"sequence {rig.sequence}: {exc!r}")
            say(f"  sequence {rig.sequence}: CRASH {exc!r}\n{traceback.format_exc()}")
        finally:
            rig.end()
        if rig.sequence % 10 == 0:
            say(f"  {time.monotonic() - started:6.0f} s: {tally.sequences} sequences, "
                f"{tally.steps} steps, {tally.runs} runs, {tally.kills} kills, "
                f"{sum(tally.violations.values())} violations")
    return tally


def report(tally: Tally, seconds: float) -> str:
    v = tally.violations
    bad = sum(v.values())
    broken = sum(1 for p in tally.problems if "run broke" in p or "no recovery" in p)
    faults = ", ".join(f"{n} {k}" for k, n in sorted(tally.faults.items()))
    actions = ", ".join(f"{n} {k}" for k, n in sorted(tally.actions.items()))
    lines = [
        f"sequences {tally.sequences}, steps {tally.steps}, in {seconds / 60:.1f} min",
        f"runs {tally.runs} ({tally.full_resyncs} full resyncs); {tally.runs_failed} failed "
        f"and were recovered ({tally.recoveries} recoveries); {tally.checks} list checks",
        f"kills {tally.kills} (SIGKILL of a real CLI process; {tally.kills_mid_run} mid-run), "
        f"{tally.resumes_in_cli} resumed by another CLI process, the rest here",
        f"faults {sum(tally.faults.values())}: {faults}",
        f"actions: {actions}",
        f"lost {v['lost']}, extra {v['extra']}, re-subscribed {v['resubscribed']}, counts "
        f"wrong {v['counts']}, stale values {v['stale']}, contacts twice {v['twice']}, runs "
        f"broken {broken}, crashes {v['crashed']}",
    ]
    verdict = "stateful: PASS" if not bad and not tally.problems else "stateful: FAIL"
    lines.append(f"{verdict} - {tally.steps} steps, {tally.runs} runs, {tally.kills} kills, "
                 f"{sum(tally.faults.values())} faults; lost/extra/re-subscribed "
                 f"{v['lost']}/{v['extra']}/{v['resubscribed']}")
    lines.extend(f"  {p}" for p in tally.problems[:20])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stateful",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="stop after this many steps")
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="or after this many minutes (default 60)")
    parser.add_argument("--length", type=int, default=25, help="steps per sequence (25)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="logs and data (default: a temp dir)")
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith("SEGMENT_EXPORT_")]:
        del os.environ[name]  # the forked CLI processes must see only the rig's settings
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="stateful-"))
    workdir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(workdir / "product.log")
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings(data_dir=workdir / "data", secret_key=Fernet.generate_key().decode(),
                             log_level="INFO")
    engine = make_engine(settings)
    upgrade_database(engine)
    print(f"stateful: up to {args.steps} steps or {args.minutes:g} min, {args.length} steps a "
          f"sequence, seed {args.seed}; logs in {workdir}", flush=True)
    started = time.monotonic()
    with open_world(settings, engine) as world:
        zygote = Zygote(workdir / "zygote.log")
        try:
            tally = walk(Rig(world, zygote), steps=args.steps, minutes=args.minutes,
                         length=args.length, seed=args.seed,
                         say=lambda line: print(line, flush=True))
        finally:
            zygote.close()
    engine.dispose()
    print(report(tally, time.monotonic() - started), flush=True)
    return 0 if not tally.violations and not tally.problems else 1


if __name__ == "__main__":
    sys.exit(main())
