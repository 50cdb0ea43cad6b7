"""Races: two applies of the same manifests at once, and saved plans gone stale.

Two applies at once (trials in tests/harness/race.py; scripts/race_trials.py runs more of
them and prints figures): a fresh
sandbox per trial, two threads each with its own DashboardClient, Applier and freshly made
plan; latency, jitter, fault seed, parallelism and start (both plans made before either
writes, or the second part-way through the first) drawn from a seeded RNG; a few trials as
two real `python -m tyksync apply` processes. After a further apply: exactly one request
per declared identity, none for pruned ones, out-of-scope requests untouched, and no more
keys issued per identity than its intent needs (counted from the developers' keys in the
store, which deleting a request does not take away).

Stale plans: `apply --plan` must refuse (exit 3, no mutating call) a plan after any change
in its scope, and apply it after a change out of its scope.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import race
from harness.world import SECRET, WorldSpec, build_world, check_final_state, converge
from support import Tyk

from tyksync.applier import Applier
from tyksync.client import DashboardClient
from tyksync.manifest import load_manifests
from tyksync.models import OWNER_FIELD, LiveState
from tyksync.pipeline import plan_for
from tyksync.plan import Plan
from tyksync.sandbox import Faults, Sandbox

SEED = 20240612
CHUNKS = 12
PER_CHUNK = 9  # 108 thread trials, ~0.3 s each
PROCESS_TRIALS = 4


# ---- two applies at once ------------------------------------------------------------------


def _assert_race_invariants(results: Sequence[race.RaceResult]) -> None:
    def which(failing: Sequence[race.RaceResult]) -> str:
        return "\n\n".join(r.describe() for r in failing)

    crashed = [r for r in results if any(s.error for s in r.sides)]
    assert not crashed, which(crashed)
    slow = [r for r in results if r.applies_to_converge > 2]
    assert not slow, which(slow)
    doubled = [r for r in results if r.violations.duplicates or r.violations.missing]
    assert not doubled, which(doubled)
    unpruned = [r for r in results if r.violations.not_pruned or r.violations.touched]
    assert not unpruned, which(unpruned)
    wrong = [r for r in results if r.violations.wrong_approval or r.violations.missing_keys]
    assert not wrong, which(wrong)
    extra = [r for r in results if r.violations.extra_keys]
    assert not extra, which(extra)
    # Both applies plan to revoke the pruned request's key: it is revoked, once, and no
    # other key is.
    revocations = [r for r in results if r.violations.revocations]
    assert not revocations, which(revocations)
    journals = [r for r in results if r.journal_errors]
    assert not journals, which(journals)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_two_applies_at_once_leave_one_request_and_one_key_per_identity(
    chunk: int, tmp_path: Path
) -> None:
    trials = range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK)
    results = [race.run_trial(t, SEED, tmp_path / f"t{t}") for t in trials]
    _assert_race_invariants(results)
    # The trials must race for real: some creates of one apply met the other's request
    # for the same identity, or approvals and deletes found the other had been first.
    contested = sum(
        r.count("appeared meanwhile") + r.count("already approved") + r.count("already gone")
        for r in results
    )
    assert contested > 0, [r.describe() for r in results]


@pytest.mark.parametrize("trial", range(PROCESS_TRIALS))
def test_two_apply_processes_at_once(trial: int, tmp_path: Path) -> None:
    result = race.run_trial(1000 + trial, SEED, tmp_path, mode="processes")
    _assert_race_invariants([result])
    # Both ran to their end (exit 0, or 1 for an action the other apply made moot, which
    # the further apply settles). On a loaded machine one may start after the other is
    # done and find nothing to do: the invariants above hold either way.
    assert any(any(line.startswith("Plan: ") for line in s.details) for s in result.sides)


def _plan(client: DashboardClient, manifests: Path) -> tuple[Plan, LiveState]:
    loaded = load_manifests([manifests])
    live = client.read_live()
    return plan_for(loaded, live), live


def _wait_for(probe: Callable[[], str | None], limit: float = 10.0) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.001)
    raise AssertionError("timed out")


def test_replace_racing_a_replace_issues_one_key(tmp_path: Path) -> None:
    # The interleaving the race trials hit in ~5% of staggered trials (and with two
    # processes), made deterministic: apply A replaces a pending request on a slow
    # Dashboard (every answer 300 ms, the sandbox waits before it commits); apply B reads
    # live state as soon as A's new request exists, so its snapshot is taken ~300 ms after
    # A's create and ~300 ms before A's approval commits. B applies once A is done.
    spec = WorldSpec(creates=0, pending_creates=0, approves=0, replaces=1, prunes=0, dups=0, kept=0)
    with Sandbox(SECRET) as sb:
        world = build_world(sb, tmp_path / "m", spec)
        with DashboardClient(sb.url, SECRET) as a, DashboardClient(sb.url, SECRET) as b:
            plan_a, _ = _plan(a, world.manifests)
            assert [x.action for x in plan_a.actions] == ["replace"]
            before = {r["id"] for r in sb.store.requests()}
            sb.faults = Faults(latency=0.3)
            done: list[bool] = []
            apply_a = threading.Thread(
                target=lambda: done.append(Applier(a, parallelism=1).apply(plan_a).ok)
            )
            apply_a.start()
            new_id = _wait_for(
                lambda: next((r["id"] for r in sb.store.requests() if r["id"] not in before), None)
            )
            plan_b, live_b = _plan(b, world.manifests)
            apply_a.join(timeout=30)
            sb.faults = Faults()
            assert done == [True]
            # The race happened as described: B saw A's new request, not yet approved.
            assert {r.id: r.approved for r in live_b.requests}.get(new_id) is False
            Applier(b).apply(plan_b)
        applies, log = converge(world, tmp_path)
        assert applies == 1, log
        violations, issued, intended = check_final_state(world)
        assert not violations.duplicates and not violations.missing
        assert issued == intended == 1, violations.extra_keys


# ---- saved plans gone stale ---------------------------------------------------------------

OWNER = "stale-team"
MANIFEST = f"""\
version: 1
owner: {OWNER}
developers:
  alice@example.com:
    - plan: Gold
      fields: {{ticket: A}}
  bob@example.com:
    - plan: Silver
"""


@dataclass
class Stale:
    """The `dash` sandbox (marked STALE_DASH: empty, its state in a file) holding this
    module's developers, policies and requests, and the manifest in ./stale."""

    sb: Sandbox
    ids: dict[str, str]  # names of developers, policies and requests -> ids

    @property
    def url(self) -> str:
        return self.sb.url

    def restart_with(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Stop, edit the state file, start again on the same port (the same Dashboard to
        a saved plan). The store has no call that changes a policy or a developer; this is
        how `tyksync sandbox serve --state FILE` would see such a change."""
        port, path = self.sb.port, self.sb.store.state_path
        assert path is not None
        self.sb.stop()
        state = json.loads(path.read_text(encoding="utf-8"))
        edit(state)
        path.write_text(json.dumps(state), encoding="utf-8")
        self.sb = Sandbox(self.sb.secret, state_path=path, port=port).start()


STALE_DASH = pytest.mark.dash(seed=None, state="state.json")
DEVELOPERS = ("alice", "bob", "erin", "zed")


def _stale(sb: Sandbox, with_requests: bool) -> Stale:
    store = sb.store
    with store.batch():
        ids = {name: store.add_developer(f"{name}@example.com")["id"] for name in DEVELOPERS}
        for name in ("Gold", "Silver", "Reports"):
            ids[name] = store.add_policy(name, id=name.lower())["_id"]
        if with_requests:
            owned = {OWNER_FIELD: OWNER}
            # alice's is approved by the plan; erin's is pruned (owned, not declared); zed's
            # is out of scope (unlisted developer, no owner mark).
            ids["alice-req"] = store.add_request(
                ids["alice"], [ids["Gold"]], fields={"ticket": "A", **owned}
            )["id"]
            ids["erin-req"] = store.add_request(
                ids["erin"], [ids["Reports"]], fields={"ticket": "E", **owned}
            )["id"]
            ids["zed-req"] = store.add_request(ids["zed"], [ids["Gold"]], fields={"ticket": "Z"})[
                "id"
            ]
    Path("stale").mkdir()
    Path("stale/stale.yaml").write_text(MANIFEST, encoding="utf-8")
    return Stale(sb, ids)


@pytest.fixture
def stale(dash: Sandbox) -> Iterator[Stale]:
    s = _stale(dash, with_requests=True)
    yield s
    s.sb.stop()  # after a restart, a sandbox that `dash` does not know of


def _owned_other_fields(d: Stale) -> None:
    """erin's owned request, same id and date, other fields: changed in place."""
    before = next(r for r in d.sb.store.requests() if r["id"] == d.ids["erin-req"])
    d.sb.store.delete_request(before["id"])
    d.sb.store.add_request(
        before["by_user"],
        before["apply_policies"],
        fields={**before["fields"], "ticket": "E2"},
        date_created=before["date_created"],
        id=before["id"],
    )


def _edit_policy(**changes: Any) -> Callable[[Stale], None]:
    def change(d: Stale) -> None:
        def edit(state: dict[str, Any]) -> None:
            for p in state["policies"]:
                if p["_id"] == d.ids["Gold"]:
                    p.update(changes)

        d.restart_with(edit)

    return change


def _edit_developer(**changes: Any) -> Callable[[Stale], None]:
    def change(d: Stale) -> None:
        def edit(state: dict[str, Any]) -> None:
            for dev in state["developers"]:
                if dev["id"] == d.ids["alice"]:
                    dev.update(changes)

        d.restart_with(edit)

    return change


def _add(developer: str, policy: str, **fields: str) -> Callable[[Stale], None]:
    def change(d: Stale) -> None:
        d.sb.store.add_request(d.ids[developer], [d.ids[policy]], fields=fields)

    return change


IN_SCOPE: dict[str, Callable[[Stale], object]] = {
    "create for a declared identity": _add("bob", "Silver"),
    "create for a declared developer, another policy": _add("alice", "Reports"),
    "create the plan's own create, as another apply would": _add(
        "bob", "Silver", **{OWNER_FIELD: OWNER}
    ),
    "approve a pending request of a declared developer": lambda d: d.sb.store.approve(
        d.ids["alice-req"]
    ),
    "delete a request of a declared developer": lambda d: d.sb.store.delete_request(
        d.ids["alice-req"]
    ),
    "change the fields of an owned request of an unlisted developer": _owned_other_fields,
    "approve an owned request of an unlisted developer": lambda d: d.sb.store.approve(
        d.ids["erin-req"]
    ),
    "delete an owned request of an unlisted developer": lambda d: d.sb.store.delete_request(
        d.ids["erin-req"]
    ),
    "create an owned request for an unlisted developer": _add(
        "zed", "Silver", **{OWNER_FIELD: OWNER}
    ),
    "deactivate a policy the plan uses": _edit_policy(active=False),
    "rename a policy the plan uses": _edit_policy(name="Platinum"),
    "deactivate a declared developer": _edit_developer(inactive=True),
    "change a declared developer's email": _edit_developer(email="alice2@example.com"),
}

OUT_OF_SCOPE: dict[str, Callable[[Stale], object]] = {
    "create for an unlisted developer, no owner mark": _add("zed", "Silver"),
    "create for an unlisted developer, another owner's mark": _add(
        "zed", "Silver", **{OWNER_FIELD: "another-team"}
    ),
    "approve an unowned request of an unlisted developer": lambda d: d.sb.store.approve(
        d.ids["zed-req"]
    ),
}


def _save_plan(d: Stale, tyk: Tyk, out: Path) -> None:
    r = tyk("plan", "stale", "--dashboard", d.url, "--out", str(out))
    assert r.code == 0, r.all
    assert json.loads(out.read_text())["actions"], "the plan must have something to apply"


def _assert_refused(d: Stale, tyk: Tyk, saved: Path) -> None:
    before = d.sb.store.requests()
    d.sb.reset_counts()
    r = tyk("apply", "--plan", str(saved), "--dashboard", d.url)
    assert r.code == 3, r.all
    assert "stale" in r.all
    assert d.sb.mutating_calls() == 0
    assert d.sb.store.requests() == before


@STALE_DASH
@pytest.mark.parametrize("kind", IN_SCOPE)
def test_saved_plan_refused_after_a_change_in_scope(
    kind: str, stale: Stale, tyk: Tyk, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    _save_plan(stale, tyk, saved)
    IN_SCOPE[kind](stale)
    _assert_refused(stale, tyk, saved)


@STALE_DASH
@pytest.mark.parametrize("kind", OUT_OF_SCOPE)
def test_saved_plan_applied_after_a_change_out_of_scope(
    kind: str, stale: Stale, tyk: Tyk, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    _save_plan(stale, tyk, saved)
    OUT_OF_SCOPE[kind](stale)
    stale.sb.reset_counts()
    r = tyk("apply", "--plan", str(saved), "--dashboard", stale.url)
    assert r.code == 0, r.all
    assert stale.sb.mutating_calls() > 0
    r = tyk("plan", "stale", "--dashboard", stale.url, "--detailed-exitcode")
    assert r.code == 0, r.all


@STALE_DASH
@pytest.mark.parametrize(
    ("change", "goes_stale"),
    [
        (_add("alice", "Gold", ticket="A", **{OWNER_FIELD: OWNER}), True),
        (_add("bob", "Silver"), True),
        (_add("zed", "Gold"), False),
    ],
    ids=["owned request for a declared identity", "portal request", "out of scope"],
)
def test_saved_plan_made_against_an_empty_dashboard(
    change: Callable[[Stale], None], goes_stale: bool, dash: Sandbox, tyk: Tyk, tmp_path: Path
) -> None:
    # No request at all when the plan is made: the fingerprint of "nothing" must still
    # be one that a first request in scope changes.
    d = _stale(dash, with_requests=False)
    saved = tmp_path / "plan.json"
    _save_plan(d, tyk, saved)
    change(d)
    if goes_stale:
        _assert_refused(d, tyk, saved)
    else:
        r = tyk("apply", "--plan", str(saved), "--dashboard", d.url)
        assert r.code == 0, r.all
