"""The applier against the sandbox: lost answers settled without duplicates, order, results."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tyksync.applier import Applier
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import load_manifests, resolve
from tyksync.models import OP_FIELD, OWNER_FIELD
from tyksync.plan import Plan, digest
from tyksync.planner import make_plan
from tyksync.sandbox import Faults, Sandbox

SECRET = "applier-secret-CANARY-93e1"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "manifests"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SECRET, seed="demo") as running:
        yield running


def client(sb: Sandbox) -> DashboardClient:
    return DashboardClient(sb.url, SECRET, retry=RetryPolicy(attempts=8), sleep=lambda s: None)


def plan_examples(c: DashboardClient) -> Plan:
    manifests = load_manifests([EXAMPLES])
    live = c.read_live()
    return make_plan(resolve(manifests, live), live, manifest_digest=digest(manifests.to_data()))


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
