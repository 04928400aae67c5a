"""Time the email check alone on 1,000,000 generated addresses: ``python -m bench.email_check``."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow as pa

from segment_export.exports import validate
from segment_export.profiles import generate_profiles

# Hard cases mixed in at a few percent, so the rejected rows' details are measured as well.
_HARD = ["a..b@example.com", ".a@example.com", "a.@example.com", "{a}@example.com",
         "j\u00f6rg@example.com", "a\u200b@example.com", "a\u00ad@example.com",
         "\ufeffa@example.com", "a@[192.0.2.1]", '"a b"@example.com', "a@-x.example.com",
         "a@example.c0m", "a@example", "a b@example.com", "a@@example.com"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hard-share", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    emails = generate_profiles(rows=args.rows, seed=42).column("email").to_pylist()
    rng = np.random.default_rng(1)
    for i in np.flatnonzero(rng.random(args.rows) < args.hard_share):
        emails[i] = _HARD[i % len(_HARD)]
    members = pa.table({"customer_id": pa.array(np.arange(1, args.rows + 1)),
                        "email": pa.array(emails, pa.string())})
    print(f"load {os.getloadavg()[0]:.2f}, {args.rows:,} emails, "
          f"{args.hard_share:.0%} hard cases added")
    masks: list[tuple[float, float]] = []
    whole: list[tuple[float, float]] = []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        base = validate._base(members, id_column="customer_id", email_column="email")
        validate._email_problems(base)
        masks.append((time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = time.perf_counter(), time.process_time()
        result = validate.validate_members(members, id_column="customer_id",
                                           mapping={"email": "email"})
        whole.append((time.perf_counter() - wall, time.process_time() - cpu))
    # On a shared machine the CPU seconds follow the code more than the wall time does.
    mask_wall, mask_cpu = min(w for w, _ in masks), min(c for _, c in masks)
    all_wall, all_cpu = min(w for w, _ in whole), min(c for _, c in whole)
    print(f"normalise + check masks: best wall {mask_wall:.3f} s, best CPU {mask_cpu:.3f} s "
          f"of {args.repeat}")
    print(f"validate_members (masks, details, dedupe): best wall {all_wall:.3f} s, best CPU "
          f"{all_cpu:.3f} s; {result.contacts.num_rows:,} valid, "
          f"{result.rejected_count:,} rejected")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
