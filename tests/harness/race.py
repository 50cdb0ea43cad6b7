"""Race trials: two applies of the same manifests at once against one sandbox.

Each trial builds a fresh sandbox Dashboard (real HTTP on 127.0.0.1) and runs two applies
on threads, each with its own DashboardClient, Applier and freshly computed plan. Sandbox
latency, jitter and seed, each apply's parallelism, and how the two start (both plans made
before either writes, or the second starting part-way through the first) are drawn from a
seeded RNG, to vary the interleavings. A further apply must then converge to exactly one
request per declared identity, with no more keys issued than the manifests ask for.
`mode="processes"` runs a trial as two real `python -m tyksync apply` processes.

Run by tests/test_races.py (asserting on every trial) and scripts/race_trials.py
(figures).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tyksync.applier import Applier, ApplyResult
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.errors import Refused
from tyksync.journal import Journal
from tyksync.manifest import load_manifests
from tyksync.pipeline import plan_live
from tyksync.plan import check_safety
from tyksync.sandbox import Faults, Sandbox

from .world import (
    SECRET,
    Violations,
    World,
    WorldSpec,
    apply_command,
    build_world,
    check_final_state,
    child_env,
    converge,
    read_journal,
    secrets_of,
)

Mode = Literal["together", "staggered", "processes"]

# Small enough for 100+ trials in seconds, and still every kind of action: creates (with and
# without approval), an approval, replaces, prunes, a duplicate, requests kept as they are.
RACE_SPEC = WorldSpec(
    creates=6, pending_creates=2, approves=2, replaces=2, prunes=2, dups=1, kept=3
)


@dataclass
class Side:
    """What one of the two applies did."""

    parallelism: int
    actions: int = 0
    refused: str = ""
    failed: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class RaceResult:
    trial: int
    mode: Mode
    latency: float
    jitter: float
    offset: float
    sides: list[Side]
    applies_to_converge: int
    violations: Violations
    keys_issued: int
    keys_intended: int
    journal_errors: list[str]
    log: list[str]

    @property
    def problems(self) -> list[str]:
        found = [*self.violations.all(), *self.journal_errors]
        found += [f"an apply raised: {s.error}" for s in self.sides if s.error]
        if self.applies_to_converge > 2:
            found.append(f"not converged after 2 more applies ({self.applies_to_converge})")
        return found

    def count(self, words: str) -> int:
        """Outcomes of both applies whose detail says `words`."""
        return sum(words in d for s in self.sides for d in s.details)

    def describe(self) -> str:
        head = (
            f"trial {self.trial} ({self.mode}, latency {self.latency}, jitter {self.jitter}, "
            f"offset {self.offset:.3f}, parallelism {[s.parallelism for s in self.sides]})"
        )
        sides = [f"side {i}: {s}" for i, s in enumerate(self.sides)]
        return "\n".join([head, *self.problems, *sides, *self.log])


def _one_apply(
    world: World, side: Side, start: threading.Barrier | None, delay: float, journal: Path
) -> None:
    """Plan from live state, then apply, as `tyksync apply --auto-approve` does."""
    try:
        time.sleep(delay)
        client = DashboardClient(world.url, SECRET, retry=RetryPolicy(attempts=8))
        with client:
            manifests = load_manifests([world.manifests])
            plan = plan_live(client, manifests)
            side.actions = len(plan.actions)
            if start is not None:
                # Both plans are made before either apply writes: the widest race.
                start.wait(timeout=30)
            try:
                check_safety(plan, force=False)
            except Refused as e:
                side.refused = str(e)
                return
            the_journal = Journal(journal)
            try:
                result: ApplyResult = Applier(
                    client, journal=the_journal, parallelism=side.parallelism
                ).apply(plan)
            finally:
                the_journal.close()
        side.failed = [o.detail for o in result.by_status("failed")]
        side.details = [o.detail for o in result.outcomes]
    except Exception as e:  # reported as a problem of the trial, with the trial's log
        side.error = f"{type(e).__name__}: {e}"
        if start is not None:
            start.abort()


def run_trial(
    trial: int, seed: int, work: Path, spec: WorldSpec = RACE_SPEC, mode: Mode | None = None
) -> RaceResult:
    rng = random.Random(f"race/{seed}/{trial}")
    latency = rng.choice([0.0, 0.001, 0.003, 0.006])
    jitter = rng.choice([0.0, 0.002, 0.005, 0.01])
    modes: tuple[Mode, ...] = ("together", "together", "staggered")
    drawn = rng.choice(modes)  # drawn always, so that forcing a mode keeps the rest
    chosen = mode if mode is not None else drawn
    sides = [Side(rng.choice([1, 2, 4, 8])), Side(rng.choice([1, 2, 4, 8]))]
    # Staggered: the second apply reads live state somewhere inside the first one's run.
    offset = rng.uniform(0.0, 0.08) if chosen == "staggered" else 0.0
    work.mkdir(parents=True, exist_ok=True)
    faults = Faults(latency=latency, jitter=jitter, seed=rng.randrange(2**32))
    log: list[str] = []
    with Sandbox(SECRET, faults=faults) as sb:
        world = build_world(sb, work / "manifests", spec)
        journals = [work / "journal-0.jsonl", work / "journal-1.jsonl"]
        if chosen == "processes":
            _two_processes(world, sides, journals, log)
        else:
            barrier = threading.Barrier(2) if chosen == "together" else None
            threads = [
                threading.Thread(
                    target=_one_apply, args=(world, side, barrier, delay, journal), daemon=True
                )
                for side, delay, journal in zip(sides, (0.0, offset), journals, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
        sb.faults = Faults()
        applies, outputs = converge(world, work)
        log += outputs
        violations, issued, intended = check_final_state(world)
        keys = [SECRET, *secrets_of(sb)]
        journal_errors = [
            f"{path.name}: {e}"
            for path in sorted(work.glob("journal*.jsonl"))
            for e in read_journal(path, keys).errors
        ]
    return RaceResult(
        trial=trial,
        mode=chosen,
        latency=latency,
        jitter=jitter,
        offset=offset,
        sides=sides,
        applies_to_converge=applies,
        violations=violations,
        keys_issued=issued,
        keys_intended=intended,
        journal_errors=journal_errors,
        log=log,
    )


def _two_processes(world: World, sides: list[Side], journals: list[Path], log: list[str]) -> None:
    """Two `tyksync apply` processes started together; the sandbox is slowed down so that
    their runs overlap despite start-up times that differ by tens of milliseconds."""
    world.sandbox.faults = Faults(latency=0.01, jitter=0.01, seed=len(log))
    procs = [
        subprocess.Popen(
            apply_command(world, journal, side.parallelism),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for side, journal in zip(sides, journals, strict=True)
    ]
    for i, (proc, side) in enumerate(zip(procs, sides, strict=True)):
        out, _ = proc.communicate(timeout=120)
        log.append(f"process {i} exited {proc.returncode}:\n{out}")
        side.details = out.splitlines()
        if proc.returncode not in (0, 1):  # 1: an action failed, settled by the re-run
            side.error = f"exit {proc.returncode}"


def summarize(results: Sequence[RaceResult]) -> dict[str, Any]:
    return {
        "trials": len(results),
        "modes": dict(sorted(Counter(r.mode for r in results).items())),
        "yielded_to_a_concurrent_request": sum(r.count("appeared meanwhile") for r in results),
        "approvals_already_done": sum(r.count("already approved") for r in results),
        "deletes_already_gone": sum(r.count("already gone") for r in results),
        "revokes_already_done": sum(r.count("was revoked already") for r in results),
        "failed_actions": sum(len(s.failed) for r in results for s in r.sides),
        "refused_plans": sum(bool(s.refused) for r in results for s in r.sides),
        "applies_to_converge": dict(
            sorted(Counter(r.applies_to_converge for r in results).items())
        ),
        "duplicates": sum(len(r.violations.duplicates) for r in results),
        "extra_keys": sum(len(r.violations.extra_keys) for r in results),
        # Keys revoked wrongly, or left valid where `revoke: true` had to revoke them.
        "revocation_errors": sum(len(r.violations.revocations) for r in results),
        "keys_issued": sum(r.keys_issued for r in results),
        "keys_intended": sum(r.keys_intended for r in results),
        "trials_with_problems": sum(bool(r.problems) for r in results),
    }
