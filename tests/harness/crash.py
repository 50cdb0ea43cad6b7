"""Crash trials: an apply killed with SIGKILL at a random point, then the next apply.

Each trial builds a fresh sandbox Dashboard in this process (real HTTP on 127.0.0.1, with
latency and jitter so that an apply takes long enough to be killed mid-way), runs
`python -m tyksync apply` against it as a subprocess, kills that process with SIGKILL after
a delay drawn from a seeded RNG, and then applies again in-process until the plan is empty.
It reports what a crash must never cause: a duplicate request for an identity, a key issued
beyond what the manifests ask for, a journal that is not JSON lines (a torn last line
aside), a journal that holds a key, or a mutation the journal did not record first.

Run by tests/test_crash.py (asserting on every trial) and scripts/crash_trials.py
(figures).
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tyksync.models import key_label
from tyksync.sandbox import Faults, Sandbox

from .world import (
    SECRET,
    JournalReport,
    Phase,
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

# The killed apply's sandbox: every answer waits 5-20 ms (latency 5 ms + jitter up to 15 ms),
# so an apply of a few dozen actions lasts long enough for kills to land between its calls.
LATENCY = 0.005
JITTER = 0.015
# After a kill, calls the dead process already sent are still being answered (the sandbox
# sleeps before it commits, like a slow Dashboard). The next apply starts once they are
# done, as an operator's re-run would: a re-run racing the dead run's last in-flight call
# is a race between two applies, which tests/test_races.py covers.
DRAIN = LATENCY + JITTER + 0.05
FULL = WorldSpec()  # the world of a trial unless told otherwise


def write_ahead_violations(world: World, journal: JournalReport) -> list[str]:
    """Every mutation the Dashboard saw must have been journaled (and fsynced) before it was
    sent: that is what lets a person tell, after a kill, what the dead apply did."""
    sent_ops = {e.get("op") for e in journal.of("create.sent")}
    approve_sent = {e.get("request_id") for e in journal.of("approve.sent")}
    delete_sent = {e.get("request_id") for e in journal.of("delete.sent")}
    delete_sent |= {e.get("request_id") for e in journal.of("create.yield")}
    problems = []
    live = {r["id"]: r for r in world.sandbox.store.requests()}
    for request_id, r in live.items():
        if request_id not in world.initial:
            op = r["fields"].get("tyksync_op")
            if op not in sent_ops:
                problems.append(f"request {request_id} created without a create.sent entry")
        newly_approved = r["approved"] and not world.initial.get(request_id, False)
        if newly_approved and request_id not in approve_sent:
            problems.append(f"request {request_id} approved without an approve.sent entry")
    for request_id in world.initial:
        if request_id not in live and request_id not in delete_sent:
            problems.append(f"request {request_id} deleted without a delete.sent entry")
    # A revoke is journaled by the key's label (never its id) and the request it was for.
    revoke_sent = {(e.get("request_id"), e.get("key")) for e in journal.of("revoke.sent")}
    for k in world.sandbox.store.issued():
        if k["revoked"] and (k["request_id"], key_label(k["key_id"])) not in revoke_sent:
            problems.append(f"key of request {k['request_id']} revoked without a revoke.sent")
    return problems


# ---- one trial ----------------------------------------------------------------------------


# The share of kills aimed at start-up and planning (before apply.start is journaled); the
# rest are aimed at the mutations, which is where a kill can do harm.
EARLY_KILLS = 0.1


@dataclass(frozen=True)
class Timing:
    """An uncut apply, measured: from spawning it to its first journal entry (apply.start,
    written once the plan is made), and from there to its last entry (apply.end)."""

    startup: float
    span: float

    def draw(self, rng: random.Random) -> tuple[str, float]:
        """Where to kill: ("spawn", seconds after spawning) for an early kill, else
        ("apply.start", seconds after apply.start was journaled), spread over the span of
        the mutations and a little past it (kills during shut-down land "after").

        The mutations are timed from the journal line rather than from spawning, because
        Python's start-up varies by more than the span of a fast apply."""
        if rng.random() < EARLY_KILLS:
            return "spawn", rng.uniform(0.0, self.startup)
        return "apply.start", rng.uniform(0.0, 1.1 * self.span)


def calibrate(work: Path, parallelism: int, spec: WorldSpec = FULL, runs: int = 2) -> Timing:
    """Run uncut applies to their end and keep the fastest figures (the first run on a
    machine pays for cold caches)."""
    timings = []
    for n in range(runs):
        with Sandbox(SECRET, faults=Faults(latency=LATENCY, jitter=JITTER, seed=n)) as sb:
            world = build_world(sb, work / f"manifests-{n}", spec)
            journal = work / f"journal-{n}.jsonl"
            t0 = time.time()
            done = subprocess.run(
                apply_command(world, journal, parallelism),
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"calibration apply failed:\n{done.stdout}\n{done.stderr}")
        stamps = [_epoch(e["ts"]) - t0 for e in read_journal(journal, [SECRET]).events]
        timings.append(Timing(startup=min(stamps), span=max(stamps) - min(stamps)))
    return Timing(min(t.startup for t in timings), min(t.span for t in timings))


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


def _wait_for_first_entry(proc: subprocess.Popen[bytes], journal: Path, limit: float) -> bool:
    """Poll until the journal has its first line (apply.start, fsynced before any write is
    sent); False when the process ended first or the limit passed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if journal.stat().st_size > 0:
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


@dataclass
class TrialResult:
    trial: int
    parallelism: int
    delay: float  # seconds from spawning to the kill
    exit_code: int  # -9 when the kill landed; 0 when the apply had already finished
    phase: Phase
    journal_lines: int
    torn_last_line: bool
    journal_errors: list[str]
    write_ahead: list[str]
    leaks: list[str]  # keys or the secret in the killed process's output
    applies_to_converge: int
    violations: Violations
    keys_issued: int
    keys_intended: int
    mutations_before_kill: int
    log: list[str]

    @property
    def problems(self) -> list[str]:
        found = [*self.journal_errors, *self.write_ahead, *self.leaks, *self.violations.all()]
        if self.applies_to_converge > 2:
            found.append(f"not converged after 2 more applies ({self.applies_to_converge})")
        return found

    def describe(self) -> str:
        head = (
            f"trial {self.trial}: parallelism {self.parallelism}, killed after "
            f"{self.delay:.3f}s ({self.phase}, exit {self.exit_code})"
        )
        return "\n".join([head, *self.problems, *self.log])


def run_trial(
    trial: int, seed: int, parallelism: int, timing: Timing, work: Path, spec: WorldSpec
) -> TrialResult:
    rng = random.Random(f"crash/{seed}/{trial}")
    mark, offset = timing.draw(rng)
    work.mkdir(parents=True, exist_ok=True)
    faults = Faults(latency=LATENCY, jitter=JITTER, seed=rng.randrange(2**32))
    with Sandbox(SECRET, faults=faults) as sb:
        world = build_world(sb, work / "manifests", spec)
        journal_path = work / "journal.jsonl"
        output = work / "killed-output.txt"
        with output.open("wb") as sink:
            proc = subprocess.Popen(
                apply_command(world, journal_path, parallelism),
                env=child_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            spawned = time.monotonic()
            if mark == "apply.start":
                _wait_for_first_entry(proc, journal_path, limit=30.0)
            try:
                proc.wait(timeout=offset)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            exit_code = proc.wait(timeout=30)
            delay = time.monotonic() - spawned
        time.sleep(DRAIN)
        sb.faults = Faults()  # the re-run needs no slowness
        mutations = sb.mutating_calls()
        keys = secrets_of(sb)
        journal = read_journal(journal_path, [SECRET, *keys])
        write_ahead = write_ahead_violations(world, journal)
        printed = output.read_text(encoding="utf-8", errors="replace")
        leaks = [f"killed apply printed {k[:6]}..." for k in [SECRET, *keys] if k in printed]
        applies, log = converge(world, work)
        violations, issued, intended = check_final_state(world)
        # The re-runs' journals must hold no key either, including the keys they issued.
        all_keys = [SECRET, *secrets_of(sb)]
        for path in sorted(work.glob("journal-followup-*.jsonl")):
            journal.errors += [f"{path.name}: {e}" for e in read_journal(path, all_keys).errors]
        rerun_output = "\n".join(log)
        leaks += [f"a re-run printed {k[:6]}..." for k in all_keys if k in rerun_output]
    return TrialResult(
        trial=trial,
        parallelism=parallelism,
        delay=delay,
        exit_code=exit_code,
        phase=journal.phase,
        journal_lines=journal.lines,
        torn_last_line=journal.torn_last_line,
        journal_errors=journal.errors,
        write_ahead=write_ahead,
        leaks=leaks,
        applies_to_converge=applies,
        violations=violations,
        keys_issued=issued,
        keys_intended=intended,
        mutations_before_kill=mutations,
        log=[f"killed apply output:\n{printed}", *log],
    )


PARALLELISMS = (2, 4)


def parallelism_of(trial: int) -> int:
    return PARALLELISMS[trial % len(PARALLELISMS)]


class Calibrations:
    """One calibration per parallelism, measured on first use."""

    def __init__(self, work: Path, spec: WorldSpec) -> None:
        self.work = work
        self.spec = spec
        self._timings: dict[int, Timing] = {}

    def __call__(self, parallelism: int) -> Timing:
        if parallelism not in self._timings:
            where = self.work / f"calibrate-{parallelism}"
            self._timings[parallelism] = calibrate(where, parallelism, self.spec)
        return self._timings[parallelism]


def run_trials(
    trials: Sequence[int], seed: int, work: Path, spec: WorldSpec = FULL
) -> Iterator[TrialResult]:
    timings = Calibrations(work, spec)
    for trial in trials:
        p = parallelism_of(trial)
        yield run_trial(trial, seed, p, timings(p), work / f"trial-{trial}", spec)


# ---- figures --------------------------------------------------------------------------------


def summarize(results: Sequence[TrialResult]) -> dict[str, Any]:
    phases = Counter(r.phase for r in results)
    return {
        "trials": len(results),
        "kills_before_mutations": phases["before"],
        "kills_during_mutations": phases["during"],
        "kills_after_mutations": phases["after"],
        "mid_apply_share": round(phases["during"] / len(results), 3) if results else 0.0,
        "torn_last_lines": sum(r.torn_last_line for r in results),
        "journal_errors": sum(len(r.journal_errors) for r in results),
        "write_ahead_violations": sum(len(r.write_ahead) for r in results),
        "leaks": sum(len(r.leaks) for r in results),
        "duplicates": sum(len(r.violations.duplicates) for r in results),
        "missing": sum(len(r.violations.missing) for r in results),
        "not_pruned": sum(len(r.violations.not_pruned) for r in results),
        "extra_keys": sum(len(r.violations.extra_keys) for r in results),
        # Keys revoked wrongly, or left valid where `revoke: true` had to revoke them.
        "revocation_errors": sum(len(r.violations.revocations) for r in results),
        "applies_to_converge": dict(
            sorted(Counter(r.applies_to_converge for r in results).items())
        ),
        "keys_issued": sum(r.keys_issued for r in results),
        "keys_intended": sum(r.keys_intended for r in results),
        "trials_with_problems": sum(bool(r.problems) for r in results),
    }
