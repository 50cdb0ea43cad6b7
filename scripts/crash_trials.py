#!/usr/bin/env python3
"""Crash trials: an apply killed with SIGKILL at a random point, then the next apply.

Each trial builds a fresh sandbox Dashboard in this process (real HTTP on 127.0.0.1, with
latency and jitter so that an apply takes long enough to be killed mid-way), runs
`python -m tyksync apply` against it as a subprocess, kills that process with SIGKILL after
a delay drawn from a seeded RNG, and then applies again in-process until the plan is empty.
It reports what a crash must never cause: a duplicate request for an identity, a key issued
beyond what the manifests ask for, a journal that is not JSON lines (a torn last line
aside), a journal that holds a key, or a mutation the journal did not record first.

    python scripts/crash_trials.py --trials 100 --seed 1

tests/test_crash.py runs the same trials in CI and asserts on their results; the shared
world (manifests, live state, store inspection) is also used by scripts/race_trials.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tyksync.cli import run as cli_run
from tyksync.sandbox import Faults, Sandbox

SECRET = "crash-secret-CANARY-7f3a91"
OWNER = "crash-team"
OTHER_OWNER = "someone-else"

Identity = tuple[str, frozenset[str]]  # (developer id, policy `_id`s)
Phase = Literal["before", "during", "after"]

# The killed apply's sandbox: every answer waits 5-20 ms (latency 5 ms + jitter up to 15 ms),
# so an apply of a few dozen actions lasts long enough for kills to land between its calls.
LATENCY = 0.005
JITTER = 0.015
# After a kill, calls the dead process already sent are still being answered (the sandbox
# sleeps before it commits, like a slow Dashboard). The next apply starts once they are
# done, as an operator's re-run would: a re-run racing the dead run's last in-flight call
# is a race between two applies, which tests/test_races.py covers.
DRAIN = LATENCY + JITTER + 0.05


# ---- the world: live state and manifests -----------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """How many identities of each kind the manifests declare (see `build_world`)."""

    creates: int = 24  # no live request; approved: true -> create, then approve
    pending_creates: int = 4  # no live request; approved: false -> create only
    approves: int = 4  # a pending owned request with the declared fields -> approve
    replaces: int = 3  # a pending owned request with other fields -> replace
    prunes: int = 3  # an owned request no manifest declares -> delete
    dups: int = 2  # two pending owned requests for one identity -> delete one, approve one
    kept: int = 6  # an approved owned request as declared -> nothing to do


@dataclass(frozen=True)
class Intent:
    declared: bool  # False: a request prune must delete
    approved: bool  # what the one request left must be (when declared)
    new_keys: int  # keys an apply must issue for it: 1 or 0, never more
    where: str  # its role, for messages


@dataclass
class World:
    sandbox: Sandbox
    manifests: Path
    intents: dict[Identity, Intent]
    untouched: dict[str, dict[str, Any]]  # requests out of scope, by id, as they started
    initial: dict[str, bool]  # request id -> approved, before any apply
    keys_before: Counter[Identity]
    policy_ids: dict[str, str]  # policy name -> `_id`

    @property
    def url(self) -> str:
        return self.sandbox.url


def build_world(sb: Sandbox, root: Path, spec: WorldSpec = WorldSpec()) -> World:
    """Developers, policies and live requests in `sb`; one manifest file under `root`.

    Every kind of action is present (create, create without approval, approve, replace,
    delete by prune, delete of a duplicate), beside requests that must stay as they are
    (already as declared, of an unlisted developer, of another owner). Deletes stay under
    the 30% safety limit so that apply runs without --force, as CI would run it.
    """
    store = sb.store
    gold = store.add_policy("Gold", id="gold")["_id"]
    silver = store.add_policy("Silver", id="silver")["_id"]
    reports = store.add_policy("Reports", id="reports")["_id"]
    policy_ids = {"Gold": gold, "Silver": silver, "Reports": reports}
    intents: dict[Identity, Intent] = {}
    lines = [f"version: 1\nowner: {OWNER}\nprune: owned\ndefaults:\n  approved: true\n"]
    lines.append("developers:\n")
    counter = iter(range(10_000))

    def developer(role: str) -> tuple[str, str]:
        email = f"{role}{next(counter):03d}@example.com"
        return store.add_developer(email)["id"], email

    def owned(ticket: str) -> dict[str, str]:
        return {"ticket": ticket, "tyksync_owner": OWNER}

    with store.batch():
        for i in range(spec.creates):
            dev, email = developer("create")
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: C-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "create")
            if i < spec.pending_creates:
                # A second identity of the same developer, left for a person to approve.
                lines.append(
                    "    - plans: [Silver, Reports]\n      approved: false\n"
                    f"      fields: {{ticket: P-{i}}}\n"
                )
                intents[(dev, frozenset({silver, reports}))] = Intent(
                    True, False, 0, "pending create"
                )
        for i in range(spec.approves):
            dev, email = developer("approve")
            store.add_request(dev, [gold], fields=owned(f"A-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: A-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "approve")
        for i in range(spec.replaces):
            dev, email = developer("replace")
            store.add_request(dev, [gold], fields=owned(f"OLD-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: R-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "replace")
        for i in range(spec.prunes):
            dev, email = developer("prune")
            # Its Reports request is no longer declared; the last one was approved (its key
            # stays valid after the delete, and must not be counted as a new one).
            store.add_request(dev, [reports], approved=i == spec.prunes - 1, fields=owned("X"))
            lines.append(f"  {email}:\n    - plan: Silver\n      fields: {{ticket: S-{i}}}\n")
            intents[(dev, frozenset({reports}))] = Intent(False, False, 0, "prune")
            intents[(dev, frozenset({silver}))] = Intent(True, True, 1, "create beside prune")
        for i in range(spec.dups):
            dev, email = developer("dup")
            store.add_request(dev, [gold], fields=owned(f"D-{i}"))
            store.add_request(dev, [gold], fields=owned(f"D-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: D-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "duplicate")
        for i in range(spec.kept):
            dev, email = developer("kept")
            store.add_request(dev, [gold], approved=True, fields=owned(f"K-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: K-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 0, "kept")
        # Out of scope: an unlisted developer's own request, and another owner's.
        stranger, _ = developer("stranger")
        store.add_request(stranger, [gold], fields={"ticket": "mine"})
        store.add_request(stranger, [silver], fields={"tyksync_owner": OTHER_OWNER})

    root.mkdir(parents=True, exist_ok=True)
    (root / "crash.yaml").write_text("".join(lines), encoding="utf-8")
    untouched = {r["id"]: r for r in store.requests() if r["by_user"] == stranger}
    return World(
        sandbox=sb,
        manifests=root,
        intents=intents,
        untouched=untouched,
        initial={r["id"]: bool(r["approved"]) for r in store.requests()},
        keys_before=keys_by_identity(sb),
        policy_ids=policy_ids,
    )


# ---- reading the store ------------------------------------------------------------------


def _canonical(sb: Sandbox) -> dict[str, str]:
    """Policy reference (explicit `id` or `_id`) -> `_id`."""
    refs: dict[str, str] = {}
    for p in sb.store.policies():
        refs[p["_id"]] = p["_id"]
        if p["id"]:
            refs[p["id"]] = p["_id"]
    return refs


def request_identity(r: dict[str, Any], canonical: dict[str, str]) -> Identity:
    refs = r.get("apply_policies") or ([r["for_plan"]] if r.get("for_plan") else [])
    return (r["by_user"], frozenset(canonical.get(ref, ref) for ref in refs))


def requests_by_identity(sb: Sandbox) -> Counter[Identity]:
    canonical = _canonical(sb)
    return Counter(request_identity(r, canonical) for r in sb.store.requests())


def keys_by_identity(sb: Sandbox) -> Counter[Identity]:
    """Keys ever issued per identity: every approval adds one to its developer's `keys`,
    and deleting the request does not take it away (SPEC section 1)."""
    found: Counter[Identity] = Counter()
    for d in sb.store.developers():
        for policies in d["keys"].values():
            found[(d["id"], frozenset(policies))] += 1
    return found


@dataclass
class Violations:
    """What the final state got wrong; empty lists when all is well."""

    duplicates: list[str] = field(default_factory=list)  # identities with 2+ requests
    missing: list[str] = field(default_factory=list)  # declared, no request
    not_pruned: list[str] = field(default_factory=list)  # undeclared owned, still there
    wrong_approval: list[str] = field(default_factory=list)
    extra_keys: list[str] = field(default_factory=list)  # more keys than the intent needs
    missing_keys: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # out-of-scope requests changed

    def all(self) -> list[str]:
        return [
            *self.duplicates,
            *self.missing,
            *self.not_pruned,
            *self.wrong_approval,
            *self.extra_keys,
            *self.missing_keys,
            *self.touched,
        ]


def check_final_state(world: World) -> tuple[Violations, int, int]:
    """Compare the converged store with the intents; also (keys issued, keys intended)."""
    sb = world.sandbox
    counts = requests_by_identity(sb)
    keys_now = keys_by_identity(sb)
    canonical = _canonical(sb)
    approved = {request_identity(r, canonical): bool(r["approved"]) for r in sb.store.requests()}
    v = Violations()
    issued = intended = 0
    for identity, intent in sorted(world.intents.items(), key=lambda kv: kv[1].where):
        name = f"{intent.where} {identity[0]}"
        n = counts.get(identity, 0)
        if intent.declared and n > 1:
            v.duplicates.append(f"{name}: {n} requests")
        elif intent.declared and n == 0:
            v.missing.append(f"{name}: no request")
        elif not intent.declared and n:
            v.not_pruned.append(f"{name}: {n} requests left")
        if intent.declared and n == 1 and approved[identity] != intent.approved:
            v.wrong_approval.append(f"{name}: approved={approved[identity]}")
        new = keys_now.get(identity, 0) - world.keys_before.get(identity, 0)
        issued += new
        intended += intent.new_keys
        if new > intent.new_keys:
            v.extra_keys.append(f"{name}: {new} keys issued, {intent.new_keys} needed")
        elif new < intent.new_keys:
            v.missing_keys.append(f"{name}: {new} keys issued, {intent.new_keys} needed")
    live = {r["id"]: r for r in sb.store.requests()}
    for request_id, before in world.untouched.items():
        if live.get(request_id) != before:
            v.touched.append(f"out-of-scope request {request_id} changed or deleted")
    return v, issued, intended


# ---- the journal ---------------------------------------------------------------------------


@dataclass
class JournalReport:
    lines: int = 0
    torn_last_line: bool = False
    errors: list[str] = field(default_factory=list)  # invalid lines other than a torn last
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    @property
    def phase(self) -> Phase:
        """Where the kill landed: before any mutation was sent, during, or after the end."""
        if self.of("apply.end"):
            return "after"
        if any(str(e.get("event", "")).endswith(".sent") for e in self.events):
            return "during"
        return "before"


def read_journal(path: Path, secrets_: Sequence[str]) -> JournalReport:
    """Every line must be a JSON object, except possibly the last: each entry is written
    with one write() and fsynced, so a kill can at worst leave the line being written
    partial, never an earlier one. No key (nor the secret) may appear anywhere in it."""
    report = JournalReport()
    if not path.exists():
        return report
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    for needle in secrets_:
        if needle and needle in text:
            report.errors.append("the journal holds a key or the secret")
            break
    chunks = raw.split(b"\n")
    complete, tail = chunks[:-1], chunks[-1]  # tail is b"" when the file ends with "\n"
    report.lines = len(complete) + (1 if tail else 0)
    for number, chunk in enumerate(complete, 1):
        try:
            entry = json.loads(chunk)
        except ValueError:
            report.errors.append(f"line {number} is not JSON: {chunk[:80]!r}")
            continue
        if not isinstance(entry, dict) or "event" not in entry or "run" not in entry:
            report.errors.append(f"line {number} is not a journal entry: {chunk[:80]!r}")
            continue
        report.events.append(entry)
    if tail:
        # A last line without its newline: the write the kill interrupted. Accepted if it
        # is a prefix of an entry, i.e. not valid JSON; a whole entry missing only its
        # newline is recorded too.
        try:
            report.events.append(json.loads(tail))
        except ValueError:
            report.torn_last_line = True
    return report


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
    return problems


# ---- running tyksync ------------------------------------------------------------------------


def secret_file(directory: Path) -> Path:
    path = directory / "secret"
    if not path.exists():
        path.write_text(SECRET + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path


def tyksync_in_process(argv: Sequence[str]) -> tuple[int, str]:
    """`tyksync ARGV` in this process; its exit code and what it printed (both streams)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli_run(list(argv))
    return code, out.getvalue()


def converge(world: World, work: Path, max_applies: int = 3) -> tuple[int, list[str]]:
    """Apply until `plan --detailed-exitcode` says no changes; the applies it took (or
    max_applies + 1 when it never got there) and the output of each run, for messages."""
    common = ["--dashboard", world.url, "--secret-file", str(secret_file(work))]
    outputs: list[str] = []
    for n in range(1, max_applies + 1):
        journal = work / f"journal-followup-{n}.jsonl"
        code, out = tyksync_in_process(
            ["apply", str(world.manifests), "--auto-approve", "--journal", str(journal), *common]
        )
        outputs.append(f"apply #{n} exited {code}:\n{out}")
        code, out = tyksync_in_process(
            ["plan", str(world.manifests), "--detailed-exitcode", *common]
        )
        outputs.append(f"plan after apply #{n} exited {code}:\n{out}")
        if code == 0:
            return n, outputs
    return max_applies + 1, outputs


def apply_command(world: World, journal: Path, parallelism: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tyksync",
        "apply",
        str(world.manifests),
        "--auto-approve",
        "--dashboard",
        world.url,
        "--journal",
        str(journal),
        "--parallelism",
        str(parallelism),
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYK_")}
    env["TYK_DASHBOARD_SECRET"] = SECRET
    env["NO_COLOR"] = "1"
    return env


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


def calibrate(work: Path, parallelism: int, spec: WorldSpec = WorldSpec(), runs: int = 2) -> Timing:
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
        keys = sb.store.issued_keys()
        journal = read_journal(journal_path, [SECRET, *keys])
        write_ahead = write_ahead_violations(world, journal)
        printed = output.read_text(encoding="utf-8", errors="replace")
        leaks = [f"killed apply printed {k[:6]}..." for k in [SECRET, *keys] if k in printed]
        applies, log = converge(world, work)
        violations, issued, intended = check_final_state(world)
        # The re-runs' journals must hold no key either, including the keys they issued.
        all_keys = [SECRET, *sb.store.issued_keys()]
        for path in sorted(work.glob("journal-followup-*.jsonl")):
            journal.errors += [f"{path.name}: {e}" for e in read_journal(path, all_keys).errors]
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
    trials: Sequence[int], seed: int, work: Path, spec: WorldSpec = WorldSpec()
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
        "applies_to_converge": dict(
            sorted(Counter(r.applies_to_converge for r in results).items())
        ),
        "keys_issued": sum(r.keys_issued for r in results),
        "keys_intended": sum(r.keys_intended for r in results),
        "trials_with_problems": sum(bool(r.problems) for r in results),
    }


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
