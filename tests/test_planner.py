"""The planner, data in and data out: one test per row of SPEC section 4 and per prune mode."""

from __future__ import annotations

from tyksync.models import (
    Desired,
    DesiredRequest,
    Developer,
    FileScope,
    KeyRequest,
    LiveState,
    Policy,
    Prune,
)
from tyksync.planner import make_plan

ALICE = Developer("64a000000000000000000a01", "alice@example.com")
BOB = Developer("64a000000000000000000a02", "bob@example.com")
GOLD = Policy("64b000000000000000000b01", "gold", "Gold")
SILVER = Policy("64b000000000000000000b02", "silver", "Silver")
OWNER = "payments-team"


def want(
    dev: Developer = ALICE,
    policies: tuple[Policy, ...] = (GOLD,),
    *,
    approved: bool = True,
    fields: dict[str, str] | None = None,
    line: int = 5,
) -> DesiredRequest:
    return DesiredRequest(
        developer=dev,
        policies=policies,
        approved=approved,
        fields=fields or {},
        owner=OWNER,
        file="m.yaml",
        line=line,
    )


def live_req(
    rid: str,
    dev: Developer = ALICE,
    policies: tuple[str, ...] = (GOLD.db_id,),
    *,
    approved: bool = False,
    fields: dict[str, str] | None = None,
    owner: str | None = OWNER,
    date: str = "2026-01-01T00:00:00Z",
) -> KeyRequest:
    f = dict(fields or {})
    if owner:
        f["tyksync_owner"] = owner
    return KeyRequest(
        id=rid.rjust(24, "c"),
        developer_id=dev.id,
        policies=policies,
        approved=approved,
        fields=f,
        date_created=date,
    )


def scope(prune: Prune = "owned", developers: tuple[Developer, ...] = (ALICE,)) -> FileScope:
    return FileScope(
        path="m.yaml", owner=OWNER, prune=prune, developer_ids=frozenset(d.id for d in developers)
    )


def run(
    wanted: list[DesiredRequest],
    live: list[KeyRequest],
    *,
    prune: Prune = "owned",
    reissue: bool = False,
    legacy: bool = False,
    developers: tuple[Developer, ...] = (ALICE,),
):  # type: ignore[no-untyped-def]
    state = LiveState(
        developers=(ALICE, BOB), policies=(GOLD, SILVER), requests=tuple(live), legacy=legacy
    )
    desired = Desired(
        requests=tuple(wanted), scopes=(scope(prune, developers),), manifest_digest="m" * 64
    )
    return make_plan(desired, state, dashboard="test", reissue=reissue)


def kinds(plan) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    return [(a.action, a.request_id) for a in plan.actions]


def test_none_live_creates_and_approves() -> None:
    plan = run([want(fields={"ticket": "T-1"})], [])
    assert kinds(plan) == [("create", None)]
    action = plan.actions[0]
    assert action.approve is True
    assert action.owner == OWNER
    assert dict(action.fields) == {"ticket": "T-1"}
    assert action.declared_at == "m.yaml:5"


def test_none_live_declared_unapproved_creates_without_approval() -> None:
    plan = run([want(approved=False)], [])
    assert kinds(plan) == [("create", None)]
    assert plan.actions[0].approve is False


def test_pending_declared_approved_is_approved() -> None:
    plan = run([want()], [live_req("1")])
    assert kinds(plan) == [("approve", "c" * 23 + "1")]


def test_pending_declared_unapproved_is_left_alone() -> None:
    plan = run([want(approved=False)], [live_req("1")])
    assert plan.actions == ()
    assert plan.warnings == ()


def test_approved_declared_unapproved_warns_only() -> None:
    plan = run([want(approved=False)], [live_req("1", approved=True)])
    assert plan.actions == ()
    assert len(plan.warnings) == 1
    assert "approval cannot be undone" in plan.warnings[0].message


def test_pending_with_other_fields_is_replaced() -> None:
    plan = run([want(fields={"ticket": "NEW"})], [live_req("1", fields={"ticket": "OLD"})])
    assert kinds(plan) == [("replace", "c" * 23 + "1")]
    action = plan.actions[0]
    assert action.approve is True
    assert "ticket 'OLD' -> 'NEW'" in action.reason


def test_approved_with_other_fields_warns_without_reissue() -> None:
    live = [live_req("1", approved=True, fields={"ticket": "OLD"})]
    plan = run([want(fields={"ticket": "NEW"})], live)
    assert plan.actions == ()
    assert "--reissue" in plan.warnings[0].message
    assert "ticket" in plan.warnings[0].message


def test_approved_with_other_fields_replaced_with_reissue() -> None:
    live = [live_req("1", approved=True, fields={"ticket": "OLD"})]
    plan = run([want(fields={"ticket": "NEW"})], live, reissue=True)
    assert kinds(plan) == [("replace", "c" * 23 + "1")]
    assert plan.actions[0].approved is True
    assert plan.warnings == ()


def test_approved_matching_is_no_change() -> None:
    plan = run([want(fields={"a": "b"})], [live_req("1", approved=True, fields={"a": "b"})])
    assert plan.actions == () and plan.warnings == ()
    assert plan.managed == 1 and plan.unmanaged == 0


def test_several_live_keep_approved_first_rest_duplicates() -> None:
    live = [
        live_req("1", date="2026-01-01T00:00:00Z"),
        live_req("2", approved=True, date="2026-01-03T00:00:00Z"),
        live_req("3", owner=None, date="2026-01-02T00:00:00Z"),
    ]
    plan = run([want()], live)
    deleted = sorted(a.request_id for a in plan.actions if a.action == "delete")
    assert deleted == ["c" * 23 + "1", "c" * 23 + "3"]
    assert all(a.reason == "duplicate of " + "c" * 23 + "2" for a in plan.actions)
    assert not any(a.action == "approve" for a in plan.actions)


def test_duplicates_are_deleted_whatever_the_prune_mode() -> None:
    live = [
        live_req("1", approved=True, date="2026-01-01T00:00:00Z"),
        live_req("2", owner=None, date="2026-01-02T00:00:00Z"),
        live_req("3", owner="other-team", date="2026-01-03T00:00:00Z"),
    ]
    for prune in ("owned", "developers", "none"):
        plan = run([want()], live, prune=prune)
        assert sorted(r for _, r in kinds(plan)) == ["c" * 23 + "2", "c" * 23 + "3"]


def test_prune_developers_deletes_unowned_duplicates_too() -> None:
    live = [
        live_req("1", approved=True),
        live_req("2", owner=None),
        live_req("3", owner="other-team"),
    ]
    plan = run([want()], live, prune="developers")
    assert sorted(r for k, r in kinds(plan) if k == "delete") == ["c" * 23 + "2", "c" * 23 + "3"]
    assert plan.warnings == ()


def test_several_pending_keep_owned_then_oldest() -> None:
    live = [
        live_req("1", owner=None, date="2026-01-01T00:00:00Z"),
        live_req("2", date="2026-01-03T00:00:00Z"),
        live_req("3", date="2026-01-02T00:00:00Z"),
    ]
    plan = run([want()], live)
    assert ("approve", "c" * 23 + "3") in kinds(plan)
    assert sorted(r for k, r in kinds(plan) if k == "delete") == ["c" * 23 + "1", "c" * 23 + "2"]


def test_several_pending_keep_one_whose_fields_already_match() -> None:
    # A concurrent apply's replace left the old request and its new one: keep the new one
    # rather than replacing the old a second time (which would issue a second key).
    live = [
        live_req("1", fields={"ticket": "OLD"}, date="2026-01-01T00:00:00Z"),
        live_req("2", fields={"ticket": "NEW"}, date="2026-01-02T00:00:00Z"),
    ]
    plan = run([want(fields={"ticket": "NEW"})], live)
    assert kinds(plan) == [("approve", "c" * 23 + "2"), ("delete", "c" * 23 + "1")]


def test_policy_named_by_explicit_id_is_the_same_identity() -> None:
    plan = run([want()], [live_req("1", policies=("gold",), approved=True)])
    assert plan.actions == ()


def test_for_plan_only_request_is_single_policy() -> None:
    # apply_policies null with for_plan set: the client gives policies=(for_plan,)
    plan = run([want(policies=(GOLD, SILVER))], [live_req("1", policies=(GOLD.db_id,))])
    assert sorted(a.action for a in plan.actions) == ["create", "delete"]


def test_prune_owned_deletes_only_this_owners_undeclared() -> None:
    live = [
        live_req("1", approved=True),
        live_req("2", owner="other-team", policies=(SILVER.db_id,)),
        live_req("3", owner=None, policies=(SILVER.db_id,)),
    ]
    plan = run([], live, prune="owned")
    assert kinds(plan) == [("delete", "c" * 23 + "1")]
    assert plan.actions[0].approved is True  # renderers say the key it issued stays valid
    assert plan.unmanaged == 2


def test_prune_developers_deletes_every_undeclared_request_of_listed_developers() -> None:
    live = [
        live_req("1", owner="other-team"),
        live_req("2", owner=None, policies=(SILVER.db_id,)),
        live_req("3", dev=BOB, owner=None),
    ]
    plan = run([], live, prune="developers", developers=(ALICE,))
    assert sorted(r for _, r in kinds(plan)) == ["c" * 23 + "1", "c" * 23 + "2"]
    assert plan.unmanaged == 1


def test_prune_none_deletes_nothing() -> None:
    plan = run([], [live_req("1"), live_req("2", dev=BOB)], prune="none")
    assert plan.actions == ()
    assert plan.unmanaged == 2


def test_legacy_requests_are_unmanaged_unless_prune_developers() -> None:
    legacy = KeyRequest(
        id="d" * 24, developer_id=ALICE.id, policies=(), approved=True, for_api="api1"
    )
    assert run([], [legacy], prune="owned").actions == ()
    assert run([], [legacy], prune="owned").unmanaged == 1
    assert kinds(run([], [legacy], prune="developers")) == [("delete", "d" * 24)]


def test_actions_are_in_stable_order_and_fingerprint_is_deterministic() -> None:
    wanted = [want(BOB, line=3), want(ALICE, (SILVER,), line=4), want(ALICE, line=5)]
    live = [live_req("9", dev=BOB, policies=(SILVER.db_id,))]
    a = run(wanted, live)
    b = run(list(reversed(wanted)), list(reversed(live)))
    assert a.to_data() == b.to_data()
    emails = [x.developer.email for x in a.actions]
    assert emails == sorted(emails)


def test_fingerprint_changes_with_live_state_in_scope_even_from_empty() -> None:
    empty = run([want()], [])
    one = run([want()], [live_req("1", dev=BOB, owner=OWNER)])
    assert empty.fingerprint != one.fingerprint
    unrelated = run([want()], [live_req("1", dev=BOB, owner="elsewhere")])
    assert unrelated.fingerprint == empty.fingerprint


def test_summary_counts() -> None:
    live = [live_req("1"), live_req("2", policies=(SILVER.db_id,), approved=True)]
    plan = run([want(), want(BOB)], live)
    assert plan.summary() == {
        "create": 1,
        "approve": 1,
        "replace": 0,
        "delete": 1,
        "warnings": 0,
        "unmanaged": 0,
    }
