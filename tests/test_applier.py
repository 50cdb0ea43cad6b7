"""The applier against the sandbox: lost answers settled without duplicates, order, results."""

from __future__ import annotations

import _thread
import dataclasses
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLES

from tyksync.applier import Applier, Outcome
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.errors import ManifestError
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import load_manifests
from tyksync.models import OP_FIELD, OWNER_FIELD
from tyksync.pipeline import plan_for, plan_live
from tyksync.plan import Action, DevRef, Plan, PolicyRef
from tyksync.sandbox import Faults, Sandbox

SECRET = "applier-secret-CANARY-93e1"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SECRET, seed="demo") as running:
        yield running


def client(sb: Sandbox) -> DashboardClient:
    return DashboardClient(sb.url, SECRET, retry=RetryPolicy(attempts=8), sleep=lambda s: None)


def plan_examples(c: DashboardClient) -> Plan:
    return plan_live(c, load_manifests([EXAMPLES]))


def identities(sb: Sandbox) -> Counter[tuple[str, tuple[str, ...]]]:
    return Counter(
        (r["by_user"], tuple(sorted(r.get("apply_policies") or [r["for_plan"]])))
        for r in sb.store.requests()
        if r.get("for_plan")
    )


def test_every_write_answer_lost_is_settled_without_duplicates(sb: Sandbox, tmp_path: Path) -> None:
    c = client(sb)
    plan = plan_examples(c)
    sb.faults = Faults(drop_after_write=1.0)
    journal = Journal(tmp_path / "journal.jsonl")
    result = Applier(c, journal=journal).apply(plan)
    journal.close()
    assert result.ok, [o.detail for o in result.outcomes]
    assert sb.counts()[("POST", "/api/portal/requests")] == 3  # one create per intent
    assert all(n == 1 for n in identities(sb).values())
    lost = [o for o in result.outcomes if "answer was lost" in o.detail]
    assert lost, "approvals whose answer was lost say so"
    assert result.keys_captured == 0
    sb.faults = Faults()
    assert not plan_examples(c).has_changes
    events = [json.loads(x)["event"] for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert "create.lost" in events and "approve.lost" in events


def test_create_5xx_settled_by_reading_then_retried_once(sb: Sandbox) -> None:
    c = client(sb)
    plan = plan_examples(c)
    # Every create fails before it is committed (503 with nothing stored): the applier reads
    # live state, finds no request with its mark, and tries again, up to its limit.
    sb.faults = Faults(error_rates={"POST": 1.0}, error_statuses=(503,))
    result = Applier(c).apply(plan)
    failed = result.by_status("failed")
    assert {o.action.action for o in failed} == {"create", "replace"}
    assert all("run apply again" in o.detail for o in failed)
    assert sb.counts()[("POST", "/api/portal/requests")] == 3 * 3
    assert not [r for r in sb.store.requests() if r["fields"].get(OP_FIELD)]
    # the replace's old request was kept, since its successor was never made
    assert any(r["id"] == "64c000000000000000000c03" for r in sb.store.requests())


def test_a_phase_announces_its_first_attempts_at_once_and_each_retry_on_its_own(
    sb: Sandbox, tmp_path: Path
) -> None:
    c = client(sb)
    plan = plan_examples(c)
    creates = [a for a in plan.actions if a.creates]
    path = tmp_path / "journal.jsonl"
    sb.faults = Faults(error_rates={"POST": 1.0}, error_statuses=(503,))
    journal = Journal(path)
    Applier(c, journal=journal, parallelism=4).apply(plan)
    journal.close()
    entries = [json.loads(x) for x in path.read_text().splitlines()]
    # The phase's announcements come first, one per create, each under its own mark...
    announced = entries[1 : 1 + len(creates)]
    assert [(e["event"], e["attempt"]) for e in announced] == [("create.sent", 1)] * len(creates)
    assert len({e["op"] for e in announced}) == len(creates)
    # ...and each retry after a lost answer is announced by its worker, under the same mark.
    attempts: dict[str, list[int]] = {}
    for e in entries:
        if e["event"] == "create.sent":
            attempts.setdefault(e["op"], []).append(e["attempt"])
    assert attempts == {e["op"]: [1, 2, 3] for e in announced}

    # Without faults: every approval and delete sent was announced once, before the first.
    sb.faults = Faults()
    plan = plan_examples(c)
    path.unlink()
    journal = Journal(path)
    result = Applier(c, journal=journal, parallelism=4).apply(plan)
    journal.close()
    assert result.ok
    events = [json.loads(x) for x in path.read_text().splitlines()]
    names = [e["event"] for e in events]
    approves = sorted(e["request_id"] for e in events if e["event"] == "approve.sent")
    assert len(approves) == len(set(approves)) == sum(1 for a in plan.actions if a.approve)
    deletes = [e["request_id"] for e in events if e["event"] == "delete.sent"]
    assert sorted(deletes) == sorted(a.request_id for a in plan.actions if a.deletes)
    assert names.index("approve.done") > max(i for i, n in enumerate(names) if n == "approve.sent")
    assert names.index("delete.done") > max(i for i, n in enumerate(names) if n == "delete.sent")


def test_second_approve_already_processed_is_settled(sb: Sandbox) -> None:
    c = client(sb)
    plan = plan_examples(c)
    sb.store.approve("64c000000000000000000c01")  # approved by a person meanwhile
    result = Applier(c).apply(plan)
    assert result.ok
    bob = next(o for o in result.outcomes if o.action.request_id == "64c000000000000000000c01")
    assert "already approved" in bob.detail
    assert not bob.key_issued


def test_keys_go_to_the_sink_only(sb: Sandbox, tmp_path: Path) -> None:
    c = client(sb)
    sink = KeySink(tmp_path / "keys.jsonl")
    journal = Journal(tmp_path / "journal.jsonl")
    result = Applier(c, key_sink=sink, journal=journal, parallelism=8).apply(plan_examples(c))
    sink.close()
    journal.close()
    assert result.keys_issued == result.keys_captured == 4
    written = [json.loads(x)["key"] for x in (tmp_path / "keys.jsonl").read_text().splitlines()]
    assert sorted(written) == sorted(set(written)) and set(written) <= set(sb.store.issued_keys())
    text = (tmp_path / "journal.jsonl").read_text() + repr(result)
    for key in sb.store.issued_keys():
        assert key not in text


def test_creates_carry_owner_and_one_time_mark(sb: Sandbox) -> None:
    c = client(sb)
    Applier(c).apply(plan_examples(c))
    created = [r for r in sb.store.requests() if r["fields"].get(OP_FIELD)]
    assert len(created) == 3
    assert len({r["fields"][OP_FIELD] for r in created}) == 3
    assert {r["fields"][OWNER_FIELD] for r in created} == {"payments-team"}
    for r in created:
        assert r["version"] == "v2"
        assert r["for_plan"] == r["apply_policies"][0]


def test_replace_deletes_old_only_after_new_exists(sb: Sandbox) -> None:
    c = client(sb)
    plan = plan_examples(c)
    sb.faults = Faults(error_rates={"POST": 1.0}, error_statuses=(500,))
    Applier(c).apply(plan)
    assert sb.counts().get(("DELETE", "/api/portal/requests/{id}"), 0) == 1  # erin's only
    assert any(r["id"] == "64c000000000000000000c03" for r in sb.store.requests())


def test_two_concurrent_applies_make_one_request_and_one_key_per_identity(sb: Sandbox) -> None:
    import threading

    sb.faults = Faults(latency=0.002, jitter=0.01, seed=11)
    plans = [plan_examples(client(sb)), plan_examples(client(sb))]
    results = []

    def go(p: Plan) -> None:
        results.append(Applier(client(sb), parallelism=4).apply(p))

    threads = [threading.Thread(target=go, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(n == 1 for n in identities(sb).values()), identities(sb)
    # four keys are wanted (alice Gold, bob, erin Reports, dave's replacement); never more
    assert sum(r.keys_issued for r in results) == 4
    sb.faults = Faults()
    assert not plan_examples(client(sb)).has_changes


def test_create_timed_out_in_flight_is_found_not_resent(sb: Sandbox) -> None:
    # The POST outlives the client's read timeout; the Dashboard commits it afterwards.
    c = DashboardClient(sb.url, SECRET, timeout=(2.0, 0.5), sleep=lambda s: None)
    plan = plan_examples(c)
    sb.faults = Faults(slow={"POST": 1.2})
    result = Applier(c).apply(plan)
    assert sb.counts()[("POST", "/api/portal/requests")] == 3  # never sent twice
    assert result.ok, [o.detail for o in result.outcomes]
    assert all(n == 1 for n in identities(sb).values())


def test_create_timed_out_and_never_seen_is_not_resent(sb: Sandbox) -> None:
    c = DashboardClient(sb.url, SECRET, timeout=(2.0, 0.3), sleep=lambda s: None)
    plan = plan_examples(c)
    sb.faults = Faults(slow={"POST": 30.0})  # still in flight when the applier gives up
    sleeps: list[float] = []
    result = Applier(c, sleep=sleeps.append).apply(plan)
    creates = [o for o in result.outcomes if o.action.action in ("create", "replace")]
    assert creates and all(o.status == "failed" for o in creates)
    assert all("not sent again" in o.detail for o in creates)
    assert sb.counts()[("POST", "/api/portal/requests")] == 3
    assert sum(sleeps) > 0  # it waited for the request to show up before giving up
    sb.faults = Faults()


MULTI = "version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n    - plans: [Gold, Reports]\n"


def legacy_without_requests() -> Sandbox:
    sb = Sandbox(SECRET, dialect="legacy")
    sb.store.add_developer("alice@example.com")
    sb.store.add_policy("Gold")
    sb.store.add_policy("Reports")
    return sb


def test_empty_legacy_dashboard_is_detected_and_multi_policy_refused(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MULTI)
    with legacy_without_requests() as legacy:
        live = client(legacy).read_live()
        assert live.requests == () and live.legacy  # told by the developer listing
        with pytest.raises(ManifestError, match="one policy per request"):
            plan_for(load_manifests([tmp_path]), live)
        assert legacy.mutating_calls() == 0


def test_request_stored_with_fewer_policies_is_deleted_not_approved(tmp_path: Path) -> None:
    # A Dashboard that keeps only for_plan without showing it in its listings (one between
    # 1.9.2 and 2.9, say): the applier checks what was stored before it approves.
    (tmp_path / "m.yaml").write_text(MULTI)
    with legacy_without_requests() as legacy:
        c = client(legacy)
        live = dataclasses.replace(c.read_live(), legacy=False)
        plan = plan_for(load_manifests([tmp_path]), live)
        result = Applier(c).apply(plan)
        assert not result.ok
        assert "kept 1 of the 2 policies" in result.outcomes[0].detail
        assert legacy.store.issued_keys() == []
        assert legacy.store.requests() == []


def test_key_sink_failure_stops_further_keys(sb: Sandbox, tmp_path: Path) -> None:
    import resource
    import subprocess
    import sys

    sink = tmp_path / "keys.jsonl"
    sink.write_text("x" * 1000 + "\n")
    sink.chmod(0o600)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1100, resource.RLIM_INFINITY))\n"
        "from tyksync.cli import run\n"
        f"sys.exit(run(['apply', {str(EXAMPLES)!r}, '--auto-approve', '--dashboard', "
        f"{sb.url!r}, '--key-sink', {str(sink)!r}, '--journal', '/dev/null', "
        "'--parallelism', '1']))\n"
    )
    assert resource.RLIMIT_FSIZE  # the platform has the limit this test relies on
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**__import__("os").environ, "TYK_DASHBOARD_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr
    assert "could not be captured" in done.stdout
    assert "not sent, since the key sink failed" in done.stdout
    assert len(sb.store.issued_keys()) == 3 + 1  # the demo's own, and the one lost
    for key in sb.store.issued_keys():
        assert key not in done.stdout + done.stderr


def test_rival_naming_the_policy_by_its_explicit_id_is_seen(tmp_path: Path, sb: Sandbox) -> None:
    """A request made between plan and apply that names Gold by its explicit `id` ("gold")
    is the same identity as ours, which names Gold's `_id`: the applier yields to it
    (it is older) instead of approving a second request for alice's Gold."""
    (tmp_path / "m.yaml").write_text(
        "version: 1\nowner: team\nprune: none\ndevelopers:\n"
        "  alice@example.com:\n    - plan: Gold\n"
    )
    c = client(sb)
    plan = plan_live(c, load_manifests([tmp_path]))
    assert [a.action for a in plan.actions] == ["create"]
    alice = "64a000000000000000000a01"
    rival = sb.store.add_request(alice, ["gold"], date_created="2026-01-01T00:00:00Z")
    keys_before = len(sb.store.issued_keys())
    result = Applier(c).apply(plan)
    assert result.ok, result.outcomes
    (outcome,) = result.outcomes
    assert "kept it and deleted the new" in outcome.detail
    golds = [
        r
        for r in sb.store.requests()
        if r["by_user"] == alice and r["for_plan"] in ("gold", "64b000000000000000000b01")
    ]
    assert [(r["id"], r["approved"]) for r in golds] == [(rival["id"], True)]
    assert outcome.key_issued and len(sb.store.issued_keys()) == keys_before + 1


# ---- progress: each final outcome reported once, as it is known ------------------------


@pytest.mark.parametrize("parallelism", [1, 4])
def test_each_final_outcome_is_reported_once(sb: Sandbox, parallelism: int) -> None:
    c = client(sb)
    plan = plan_examples(c)
    heard: list[Outcome] = []
    result = Applier(c, parallelism=parallelism, on_outcome=heard.append).apply(plan)
    assert result.ok
    assert len(heard) == len(plan.actions) == len(result.outcomes)
    # The same outcomes, final ones: a replace is heard after its delete, with both halves.
    assert sorted(map(repr, heard)) == sorted(map(repr, result.outcomes))
    (replace,) = [o for o in heard if o.action.action == "replace"]
    assert "created and approved request" in replace.detail
    assert "deleted request 64c000000000000000000c03" in replace.detail
    # Phases keep their order: creates before approvals before deletes.
    kinds = [o.action.action for o in heard]
    assert kinds.index("approve") > max(i for i, k in enumerate(kinds) if k == "create")
    assert kinds.index("delete") > max(i for i, k in enumerate(kinds) if k == "approve")


def test_failed_outcomes_and_kept_replaces_are_reported_too(sb: Sandbox) -> None:
    c = client(sb)
    plan = plan_examples(c)
    sb.faults = Faults(error_rates={"POST": 1.0}, error_statuses=(503,))
    heard: list[Outcome] = []
    result = Applier(c, on_outcome=heard.append).apply(plan)
    assert sorted(map(repr, heard)) == sorted(map(repr, result.outcomes))
    assert {o.status for o in heard} == {"done", "failed"}
    kept = [o for o in heard if o.action.action == "replace"]
    assert kept[0].detail.endswith("the old request was kept")


def test_a_failing_listener_does_not_stop_the_apply(sb: Sandbox) -> None:
    c = client(sb)
    plan = plan_examples(c)

    def broken(_outcome: object) -> None:
        raise BrokenPipeError("stdout closed")

    result = Applier(c, on_outcome=broken).apply(plan)
    assert result.ok
    assert not plan_examples(c).has_changes


# ---- the workers of a phase, interrupted ----------------------------------------------------


def _interruptible_phase(sb: Sandbox) -> tuple[Applier, list[Action], list[int]]:
    """An applier and 200 actions, for steps that take 20 ms each and record their start:
    1 s on 4 workers, ample time for an interrupt to land in, even on a busy machine."""
    applier = Applier(client(sb), parallelism=4)
    actions = [
        Action("create", DevRef(f"dev-{n}", f"d{n}@example.com"), (PolicyRef("p", "P"),), "x")
        for n in range(200)
    ]
    return applier, actions, []


def test_an_interrupt_among_the_submits_of_a_phase_starts_no_further_call(sb: Sandbox) -> None:
    applier, actions, started = _interruptible_phase(sb)

    def step(action: Action) -> Outcome:
        started.append(1)
        time.sleep(0.02)
        return Outcome(action, "done", "")

    class InterruptedPool(ThreadPoolExecutor):
        submits = 0

        def submit(self, *args: Any, **kwargs: Any) -> Any:
            InterruptedPool.submits += 1
            if InterruptedPool.submits == 2:
                raise KeyboardInterrupt  # Ctrl-C lands between the first two workers
            return super().submit(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt), InterruptedPool(4) as applier._pool:
        applier._run(step, actions)
    assert len(started) <= 2, f"{len(started)} calls started after the interrupt"


def test_an_interrupt_that_does_not_wake_the_main_thread_stops_the_phase_soon(
    sb: Sandbox,
) -> None:
    """`interrupt_main` (or a SIGINT a worker takes) raises in the main thread only when it
    runs Python: the phase's wait must wake for it, not only when the phase ends."""
    applier, actions, started = _interruptible_phase(sb)

    def step(action: Action) -> Outcome:
        started.append(1)
        time.sleep(0.02)
        return Outcome(action, "done", "")

    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt), ThreadPoolExecutor(4) as applier._pool:
        applier._run(step, actions)
    # 200 steps of 20 ms on 4 workers take 1 s; the interrupt came at 0.05 s.
    assert len(started) < 160, f"{len(started)} of 200 calls started: the interrupt waited"


def test_a_phase_runs_every_item_once_and_keeps_their_order(sb: Sandbox) -> None:
    """Workers take items as they free up, in any order; the outcomes come back in the
    order of the items, each item's step having run once."""
    applier, actions, _ = _interruptible_phase(sb)
    ran: Counter[int] = Counter()
    lock = threading.Lock()
    delays = [(n * 7919) % 5 / 1000 for n in range(len(actions))]  # 0-4 ms, uneven

    def step(action: Action) -> Outcome:
        n = actions.index(action)
        with lock:
            ran[n] += 1
        time.sleep(delays[n])
        return Outcome(action, "done", str(n))

    with ThreadPoolExecutor(4) as applier._pool:
        outcomes = applier._run(step, actions)
    assert [o.detail for o in outcomes] == [str(n) for n in range(len(actions))]
    assert ran == Counter(range(len(actions)))
