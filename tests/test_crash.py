"""Crash safety: an apply killed with SIGKILL at a random point, then the next apply.

The trials themselves live in tests/harness/crash.py (scripts/crash_trials.py runs more of
them and prints figures): a sandbox
in this process on 127.0.0.1, slowed down (5-20 ms an answer) so that an apply of ~45 actions
lasts about a second; `python -m tyksync apply` as a real subprocess, killed with SIGKILL
after a delay drawn from a seeded RNG: mostly over the span of its mutations (measured once
per worker, and timed from the apply.start journal line so that Python's varying start-up
does not skew it), sometimes during start-up; then applies in this process until the plan
is empty. Here 100 trials run in chunks (pytest -n 2 shares
them) and each property a crash must keep is asserted on every trial:

- the next apply converges: the plan is empty after at most 2 more applies;
- exactly one request per declared identity, none left for pruned ones, and requests out of
  scope untouched;
- no key issued beyond what the manifests ask for (keys are counted per identity from the
  store, where deleting a request does not take its key away);
- the journal is JSON lines, but for possibly a torn last line (each entry is one write(),
  so a kill can only cut the line being written), with no key or secret in it, and every
  mutation the Dashboard saw was journaled (and fsynced) before it was sent.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from harness import crash
from harness.world import (
    SECRET,
    JournalReport,
    WorldSpec,
    build_world,
    check_final_state,
    converge,
    read_journal,
)
from support import Tyk

from tyksync.sandbox import Sandbox

SEED = 20240611
CHUNKS = 10
PER_CHUNK = 10  # 100 trials; each ~0.7 s alone (start-up, part of the apply, the re-run)
# The share of kills that must land between the first mutation and the last. ~80% are aimed
# there (see harness.crash.Timing.draw), so missing 30% in a chunk of 10 is a ~1e-4 chance,
# while a harness that only killed before or after the writes fails it.
MIN_MID_APPLY_SHARE = 0.3
# One identity of each kind: under 10 managed requests, so the 30% delete limit is off.
SMALL = WorldSpec(creates=2, pending_creates=1, approves=1, replaces=1, prunes=1, dups=1, kept=1)


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory: pytest.TempPathFactory) -> crash.Calibrations:
    """How long an uncut apply takes, measured once per parallelism on this machine."""
    return crash.Calibrations(tmp_path_factory.mktemp("calibrate"), WorldSpec())


def _which(results: Sequence[crash.TrialResult], failing: Sequence[crash.TrialResult]) -> str:
    return "\n\n".join(r.describe() for r in failing) or f"{len(results)} trials"


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_apply_killed_at_a_random_point_then_next_apply_converges(
    chunk: int, calibrations: crash.Calibrations, tmp_path: Path
) -> None:
    trials = range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK)
    results = []
    for trial in trials:
        p = crash.parallelism_of(trial)
        results.append(
            crash.run_trial(trial, SEED, p, calibrations(p), tmp_path / f"t{trial}", WorldSpec())
        )

    slow = [r for r in results if r.applies_to_converge > 2]
    assert not slow, _which(results, slow)
    duplicated = [r for r in results if r.violations.duplicates or r.violations.missing]
    assert not duplicated, _which(results, duplicated)
    unpruned = [r for r in results if r.violations.not_pruned or r.violations.touched]
    assert not unpruned, _which(results, unpruned)
    wrong = [r for r in results if r.violations.wrong_approval]
    assert not wrong, _which(results, wrong)
    extra = [r for r in results if r.violations.extra_keys or r.violations.missing_keys]
    assert not extra, _which(results, extra)
    assert all(r.keys_issued == r.keys_intended for r in results)
    # `revoke: true` in every world: the pruned approved request's key is revoked, killed
    # mid-way or not, and no other key is.
    revocations = [r for r in results if r.violations.revocations]
    assert not revocations, _which(results, revocations)
    bad_journal = [r for r in results if r.journal_errors]
    assert not bad_journal, _which(results, bad_journal)
    unjournaled = [r for r in results if r.write_ahead]
    assert not unjournaled, _which(results, unjournaled)
    leaked = [r for r in results if r.leaks]
    assert not leaked, _which(results, leaked)

    # The trials must be what they claim: real kills, most of them in the middle of the
    # mutations (not all before the first write, nor after the last).
    phases = Counter(r.phase for r in results)
    figures = f"phases {dict(phases)}, delays {[round(r.delay, 2) for r in results]}"
    assert phases["during"] >= MIN_MID_APPLY_SHARE * len(results), figures
    for r in results:
        if r.phase != "after":
            assert r.exit_code == -signal.SIGKILL, r.describe()
    assert any(r.mutations_before_kill > 0 for r in results if r.phase == "during")


def test_checks_of_the_trials_catch_what_they_look_for(tmp_path: Path) -> None:
    """The trial checks are not vacuous: each catches a state that breaks its rule."""
    with Sandbox(SECRET) as sb:
        world = build_world(sb, tmp_path / "m", SMALL)
        violations, _, _ = check_final_state(world)
        assert violations.missing and violations.not_pruned  # nothing applied yet
        assert [v for v in violations.revocations if v.endswith("still valid")]
        assert converge(world, tmp_path)[0] == 1
        violations, issued, intended = check_final_state(world)
        assert violations.all() == [] and issued == intended > 0
        assert world.to_revoke and not any(map(sb.store.key_valid, world.to_revoke))

        # A key revoked that no delete called for, and without a journal line.
        kept = next(k for k in sb.store.issued() if not k["revoked"])
        sb.store.revoke_key(kept["developer_id"], kept["key_id"])
        violations, _, _ = check_final_state(world)
        assert violations.revocations == [
            f"key of request {kept['request_id']} revoked, not meant to be"
        ]
        assert f"key of request {kept['request_id']} revoked without a revoke.sent" in (
            crash.write_ahead_violations(world, JournalReport())
        )

        # A second request for a declared identity, then a second key for it.
        created = next(i for i, intent in world.intents.items() if intent.where == "create")
        extra = sb.store.add_request(created[0], sorted(created[1]))
        violations, _, _ = check_final_state(world)
        assert violations.duplicates
        sb.store.approve(extra["id"])
        sb.store.delete_request(extra["id"])
        violations, issued, intended = check_final_state(world)
        assert violations.extra_keys and not violations.duplicates
        assert issued == intended + 1
        # A mutation no journal line announced.
        assert crash.write_ahead_violations(world, JournalReport())

    key = "5e9d9544a1dcd60001d0ed20deadbeefdeadbeefdeadbeefdeadbeef"
    journal = tmp_path / "j.jsonl"
    good = json.dumps({"event": "apply.start", "run": "r"})
    journal.write_text(f"{good}\n{good[:9]}\n{good}\n{good[:12]}", encoding="utf-8")
    report = read_journal(journal, [key])
    assert report.torn_last_line
    assert report.errors == [f"line 2 is not JSON: {good[:9].encode()!r}"]
    journal.write_text(f"{good}\n{json.dumps({'event': 'x', 'run': 'r', 'k': key})}\n")
    assert read_journal(journal, [key]).errors == ["the journal holds a key or the secret"]


@pytest.mark.dash(seed=None)
def test_apply_after_a_torn_journal_line_starts_on_a_new_line(
    dash: Sandbox, tyk: Tyk, tmp_path: Path
) -> None:
    # A kill cannot cut a small fsynced write() on Linux, but a power cut or a full disk
    # can leave the journal's last line partial; the default journal path is shared by
    # every run, so the next apply appends to exactly that file. (Found by this test: the
    # first entry of the next run used to be glued to the fragment.)
    journal = tmp_path / "journal.jsonl"
    entry = json.dumps({"event": "create.sent", "run": "dead", "op": "x"})
    journal.write_text(entry + "\n" + entry[:20], encoding="utf-8")
    journal.chmod(0o600)  # as tyksync made it: it refuses a journal others can read
    world = build_world(dash, tmp_path / "m", SMALL)
    r = tyk("apply", str(world.manifests), "--auto-approve", "--journal", str(journal))
    assert r.code == 0, r.all
    # Whether the fragment is kept as is or dropped, every other line must be an entry,
    # the new run's apply.start among them.
    entries, unreadable = [], []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            unreadable.append(line)
    assert unreadable in ([], [entry[:20]]), unreadable
    assert any(e["event"] == "apply.start" and e["run"] != "dead" for e in entries)
