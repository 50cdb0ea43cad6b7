#!/usr/bin/env python3
"""Crash trials: an apply killed with SIGKILL at a random point, then the next apply.

    python scripts/crash_trials.py --trials 100 --seed 1

The trials are in tests/harness/crash.py (tests/test_crash.py runs them in CI): a sandbox
in this process, `python -m tyksync apply` killed after a seeded random delay, then
applies until the plan is empty. Printed: where the kills landed, torn journal lines,
journal errors, mutations sent without a journal entry first, leaks, duplicates, missing
and unpruned requests, extra keys, and the applies needed to converge. Exit status 1 when
any trial broke a rule (`--verbose` prints each one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # for `harness`

from harness.crash import TrialResult, run_trials, summarize
from harness.world import WorldSpec


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print every trial's problems")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results: list[TrialResult] = []
    with tempfile.TemporaryDirectory(prefix="tyksync-crash-") as tmp:
        spec = WorldSpec()
        for result in run_trials(range(args.trials), args.seed, Path(tmp), spec):
            results.append(result)
            if result.problems and args.verbose:
                print(result.describe(), file=sys.stderr)
    figures = summarize(results)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    for name, value in figures.items():
        print(f"{name:24} {value}")
    return 1 if figures["trials_with_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
