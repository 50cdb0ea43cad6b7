#!/usr/bin/env python3
"""Race trials: two applies of the same manifests at once against one sandbox.

    python scripts/race_trials.py --trials 200 --seed 1 [--processes 4]

The trials are in tests/harness/race.py (tests/test_races.py runs them in CI): a fresh
sandbox per trial, two applies on threads (or, with `--processes N`, N trials as two real
`python -m tyksync apply` processes) with seeded latency, jitter, parallelism and start,
then a further apply. Printed: how often one apply yielded to the other's request or found
its approval or delete already done, failed actions, duplicates, extra keys and the
applies needed to converge. Exit status 1 when any trial broke a rule (`--verbose`
prints each one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # for `harness`

from harness.race import Mode, RaceResult, run_trial, summarize


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4, help="trials as two processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print every trial's problems")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results: list[RaceResult] = []
    with tempfile.TemporaryDirectory(prefix="tyksync-race-") as tmp:
        plan: list[tuple[int, Mode | None]] = [(t, None) for t in range(args.trials)]
        plan += [(args.trials + t, "processes") for t in range(args.processes)]
        for trial, mode in plan:
            result = run_trial(trial, args.seed, Path(tmp) / f"trial-{trial}", mode=mode)
            results.append(result)
            if result.problems and args.verbose:
                print(result.describe(), file=sys.stderr)
    figures = summarize(results)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    for name, value in figures.items():
        print(f"{name:32} {value}")
    return 1 if figures["trials_with_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
