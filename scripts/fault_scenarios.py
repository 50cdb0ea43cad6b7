#!/usr/bin/env python3
"""Run thousands of seeded fault scenarios against the sandbox and print figures.

    python scripts/fault_scenarios.py --scenarios 5000 --seed 1 [--jobs 4]

Each scenario (see tests/harness/scenarios.py) writes random manifests, seeds a sandbox with random
live requests, turns on a random fault schedule, then plans and applies until the plan is
empty (at most 5 applies), and checks the end state against SPEC section 4. Printed:
scenarios run, faults injected by kind, duplicates and missing requests, the distribution
of applies needed to converge, mutating calls sent when the converged state is applied
again, keys issued against approve-intents, and wall time. Exit status 1 when any scenario
broke an invariant (each one is printed with its seed, for `--only SEED`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # for `harness`

from harness import scenarios

BATCH = 25  # scenarios per worker task: amortises process hand-offs, keeps progress fine


def _run_batch(seeds: list[int]) -> list[scenarios.ScenarioResult]:
    results = []
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="tyksync-fault-") as workdir:
            results.append(scenarios.run_scenario(scenarios.generate(seed), Path(workdir)))
    return results


def _batches(first: int, count: int) -> Iterator[list[int]]:
    for start in range(first, first + count, BATCH):
        yield list(range(start, min(start + BATCH, first + count)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=1000, help="how many (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; seeds are consecutive")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--only", type=int, metavar="SEED", help="run one scenario, verbosely")
    args = parser.parse_args(argv)

    if args.only is not None:
        scenario = scenarios.generate(args.only)
        print(scenario.describe())
        with tempfile.TemporaryDirectory(prefix="tyksync-fault-") as workdir:
            result = scenarios.run_scenario(scenario, Path(workdir))
        print(result)
        return 1 if result.problems else 0

    summary = scenarios.Summary()
    started = time.perf_counter()
    batches = list(_batches(args.seed, args.scenarios))
    if args.jobs <= 1:
        for batch in batches:
            for result in _run_batch(batch):
                summary.add(result)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for results in pool.map(_run_batch, batches):
                for result in results:
                    summary.add(result)
    wall = time.perf_counter() - started
    _print(summary, args, wall)
    return 1 if summary.problems else 0


def _print(summary: scenarios.Summary, args: argparse.Namespace, wall: float) -> None:
    n = summary.scenarios
    pct = 100 / max(n, 1)
    last = args.seed + n - 1
    print(f"scenarios:                {n} (seeds {args.seed}..{last}, {args.jobs} jobs)")
    print(f"  of them racing applies: {summary.concurrent}")
    print("fault profiles:           " + _pairs(summary.profiles))
    print("faults injected:          " + _pairs(summary.faults, skip_zero=True))
    print(f"  total:                  {sum(summary.faults.values())}")
    print(f"failed plan reads:        {summary.failed_plan_reads} (after the client's retries)")
    print(f"duplicates found:         {summary.duplicates}")
    print(f"declared but missing:     {summary.missing}")
    print(f"unowned duplicates kept:  {summary.tolerated}")
    print(f"creates committed:        {summary.creates_committed}")
    print(f"  one intent twice:       {summary.creates_committed_twice}")
    print("applies to converge:")
    top = scenarios.MAX_APPLIES
    for bucket in [*(str(i) for i in range(top + 1)), f">{top}"]:
        count = summary.applies.get(bucket, 0)
        print(f"  {bucket:>3}: {count:6d}  ({pct * count:6.2f}%)")
    within_3, within_top = pct * summary.within(3), pct * summary.within(top)
    print(f"  within 3: {within_3:.2f}%   within {top}: {within_top:.2f}%")
    if summary.slow_seeds:
        print(f"  seeds needing more than 3: {summary.slow_seeds[:20]}")
    print(f"mutating calls on converged re-apply: {summary.reapply_mutating_calls}")
    print(f"keys issued:              {summary.keys_issued}")
    print(f"keys revoked:             {summary.keys_revoked} (deletes under revoke: true)")
    print(f"approve-intents:          {summary.approve_intents} (bound on keys issued)")
    print("known open bugs hit:      " + (_pairs(summary.known) if summary.known else "none"))
    for name in summary.known:
        print(f"  {name}: {scenarios.KNOWN_BUGS[name]}")
    print(f"invariant violations:     {len(summary.problems)}")
    for problem in summary.problems[:50]:
        print(f"  {problem}")
    per = 1000 * summary.scenario_seconds / max(n, 1)
    print(f"wall time:                {wall:.1f} s ({per:.0f} ms per scenario incl. control run)")


def _pairs(counts: dict[str, int], skip_zero: bool = False) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k}={v}" for k, v in items if v or not skip_zero) or "none"


if __name__ == "__main__":
    sys.exit(main())
