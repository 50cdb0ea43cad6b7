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
# Capitals: sorting by the email as written would put these before alice.
CAROL = Developer("64a000000000000000000a03", "Carol@example.com")
ALICE_TOO = Developer("64a000000000000000000a09", "ALICE@example.com")  # another developer
GOLD = Policy("64b000000000000000000b01", "gold", "Gold")
SILVER = Policy("64b000000000000000000b02", "silver", "Silver")
REPORTS = Policy("64b000000000000000000b03", "", "Reports")
SILVER_TOO = Policy("64b000000000000000000b04", "silver-2", "Silver")  # a second "Silver"
SILVER_3 = Policy("64b000000000000000000b05", "", "Silver")  # and a third
OWNER = "payments-team"


def want(
    dev: Developer = ALICE,
    policies: tuple[Policy, ...] = (GOLD,),
    *,
    approved: bool = True,
    fields: dict[str, str] | None = None,
    line: int = 5,
    file: str = "m.yaml",
) -> DesiredRequest:
    return DesiredRequest(
        developer=dev,
        policies=policies,
        approved=approved,
        fields=fields or {},
        owner=OWNER,
        file=file,
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
        developers=(ALICE, BOB, CAROL, ALICE_TOO),
        policies=(GOLD, SILVER, REPORTS, SILVER_TOO, SILVER_3),
        requests=tuple(live),
        legacy=legacy,
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


# ---- exact texts --------------------------------------------------------------------------


def test_fields_differ_names_each_change_in_sorted_order() -> None:
    # DeepDiff lists changed values, then added, then removed keys: the message sorts them.
    live = [live_req("1", fields={"z": "old", "m": "gone", "k": "same", "b": "x"})]
    wanted = want(fields={"z": "new", "a": "added", "k": "same", "b": "y"})
    (action,) = run([wanted], live).actions
    assert (action.action, action.request_id) == ("replace", "c" * 23 + "1")
    assert action.reason == (
        "fields differ: a added ('added'), b 'x' -> 'y', m removed (was 'gone'), z 'old' -> 'new'"
    )


def test_fields_differ_for_one_added_and_one_removed_field() -> None:
    (added,) = run([want(fields={"x": "v"})], [live_req("1")]).actions
    assert added.reason == "fields differ: x added ('v')"
    (removed,) = run([want()], [live_req("1", fields={"y": "v"})]).actions
    assert removed.reason == "fields differ: y removed (was 'v')"
    (changed,) = run(
        [want(fields={"ticket": "b"})], [live_req("1", fields={"ticket": "a"})]
    ).actions
    assert changed.reason == "fields differ: ticket 'a' -> 'b'"


def test_reasons_and_warnings_are_exact() -> None:
    (create,) = run([want()], []).actions
    assert create.reason == "declared, no live request"
    (approve,) = run([want()], [live_req("1")]).actions
    assert approve.reason == "declared approved, live request pending"
    approved_other = [live_req("1", approved=True, fields={"ticket": "OLD"})]
    (reissued,) = run([want(fields={"ticket": "NEW"})], approved_other, reissue=True).actions
    assert reissued.reason == "fields differ: ticket 'OLD' -> 'NEW'; --reissue issues a new key"
    (kept,) = run([want(fields={"ticket": "NEW"})], approved_other).warnings
    assert kept.message == (
        "approved request's fields differ: ticket 'OLD' -> 'NEW'; left as is: replacing it "
        "issues a new key (use --reissue)"
    )
    assert kept.request_id == "c" * 23 + "1"
    (undone,) = run([want(approved=False)], [live_req("1", approved=True)]).warnings
    assert undone.message == (
        "declared approved: false but already approved; approval cannot be undone"
    )
    (owned,) = run([], [live_req("2")]).actions
    assert owned.reason == f"not declared; owned by {OWNER} (prune: owned in m.yaml)"
    (listed,) = run([], [live_req("2", owner=None)], prune="developers").actions
    assert listed.reason == "not declared; its developer is listed in m.yaml (prune: developers)"


def test_a_single_policy_plan_against_a_legacy_dashboard_is_planned_as_any_other() -> None:
    # The planner plans what resolution let through; a pre-1.9.2 Dashboard changes nothing
    # for a single-policy declaration (test_manifest_resolve.py has the multi-policy refusal).
    plan = run([want(fields={"ticket": "T-1"})], [], legacy=True)
    assert [a.to_data() for a in plan.actions] == [
        {
            "action": "create",
            "developer": {"id": ALICE.id, "email": ALICE.email},
            "policies": [{"id": GOLD.db_id, "name": "Gold"}],
            "request_id": None,
            "approve": True,
            "fields": {"ticket": "T-1"},
            "owner": OWNER,
            "reason": "declared, no live request",
            "approved": False,
            "declared_at": "m.yaml:5",
            "revoke_key": None,
        }
    ]


# ---- orders -------------------------------------------------------------------------------


def test_warnings_are_ordered_by_email_policy_names_and_request_id() -> None:
    # Lines put the declarations in another order than the warnings', and each sort-key
    # component decides at least one pair: the lowercased email (Carol@ after alice@),
    # the sorted policy names ([Silver, Gold] is "Gold, Silver", before "Reports"), and the
    # request id (two policies named Silver; the message alone would order them the other
    # way round). Warnings only tie on all three when one declaration makes both of its
    # warnings, and it makes them in message order already.
    wanted = [
        want(CAROL, (GOLD,), approved=False, line=1),
        want(ALICE, (SILVER,), fields={"ticket": "NEW"}, line=2),
        want(ALICE, (SILVER_TOO,), approved=False, line=3),
        want(ALICE, (REPORTS,), approved=False, line=4),
        want(ALICE, (SILVER, GOLD), approved=False, line=5),
    ]
    live = [
        live_req("1", ALICE, (REPORTS.db_id,), approved=True),
        live_req("2", ALICE, (GOLD.db_id, SILVER.db_id), approved=True),
        live_req("3", ALICE, (SILVER_TOO.db_id,), approved=True),
        live_req("4", ALICE, (SILVER.db_id,), approved=True, fields={"ticket": "OLD"}),
        live_req("5", CAROL, (GOLD.db_id,), approved=True),
    ]
    plan = run(wanted, live)
    assert plan.actions == ()
    undone = "declared approved: false but already approved; approval cannot be undone"
    differs = (
        "approved request's fields differ: ticket 'OLD' -> 'NEW'; left as is: replacing it "
        "issues a new key (use --reissue)"
    )
    assert [
        (w.developer.email, [p.name for p in w.policies], w.request_id, w.message)
        for w in plan.warnings
    ] == [
        ("alice@example.com", ["Silver", "Gold"], "c" * 23 + "2", undone),
        ("alice@example.com", ["Reports"], "c" * 23 + "1", undone),
        ("alice@example.com", ["Silver"], "c" * 23 + "3", undone),
        ("alice@example.com", ["Silver"], "c" * 23 + "4", differs),
        ("Carol@example.com", ["Gold"], "c" * 23 + "5", undone),
    ]


def test_one_declaration_with_two_warnings_lists_them_by_message() -> None:
    live = [live_req("1", approved=True, fields={"ticket": "OLD"})]
    plan = run([want(approved=False, fields={"ticket": "NEW"})], live)
    assert [w.message.split(":")[0] for w in plan.warnings] == [
        "approved request's fields differ",
        "declared approved",
    ]


def test_actions_are_ordered_by_email_developer_policy_names_kind_and_request_id() -> None:
    # As above, each sort-key component decides at least one pair: the lowercased email
    # (ALICE@ and Carol@ after alice@), the developer id (ALICE@ is another developer than
    # alice@, with a greater id), the sorted policy names ([Silver, Gold] before
    # [Reports]), the kind (approve before delete) and the request id (the duplicates,
    # found newest last, deleted in id order).
    wanted = [
        want(CAROL, (GOLD,), line=1),
        want(ALICE_TOO, (GOLD,), line=2),
        want(ALICE, (REPORTS,), line=3),
        want(ALICE, (SILVER, GOLD), line=4),
        want(ALICE, (GOLD,), line=5),
    ]
    live = [
        live_req("8", date="2025-12-01T00:00:00Z"),  # the oldest: kept, and approved
        live_req("7", date="2026-01-01T00:00:00Z"),
        live_req("6", date="2026-01-02T00:00:00Z"),
    ]
    plan = run(wanted, live)
    assert [
        (a.action, a.developer.id, [p.name for p in a.policies], a.request_id) for a in plan.actions
    ] == [
        ("approve", ALICE.id, ["Gold"], "c" * 23 + "8"),
        ("delete", ALICE.id, ["Gold"], "c" * 23 + "6"),
        ("delete", ALICE.id, ["Gold"], "c" * 23 + "7"),
        ("create", ALICE.id, ["Silver", "Gold"], None),
        ("create", ALICE.id, ["Reports"], None),
        ("create", ALICE_TOO.id, ["Gold"], None),
        ("create", CAROL.id, ["Gold"], None),
    ]


def test_actions_that_tie_on_the_sort_key_keep_the_manifests_order() -> None:
    # Three policies named Silver: the creates tie on every sort-key component, and come
    # in the order of their declarations (file, then line), whatever order they arrive in.
    wanted = [
        want(policies=(SILVER,), file="b.yaml", line=1),
        want(policies=(SILVER_TOO,), file="a.yaml", line=9),
        want(policies=(SILVER_3,), file="a.yaml", line=2),
    ]
    plan = run(wanted, [])
    assert [a.declared_at for a in plan.actions] == ["a.yaml:2", "a.yaml:9", "b.yaml:1"]
    assert [a.policies[0].id for a in plan.actions] == [
        SILVER_3.db_id,
        SILVER_TOO.db_id,
        SILVER.db_id,
    ]


def test_several_pending_alike_keep_the_lowest_id() -> None:
    same = "2026-01-01T00:00:00Z"
    plan = run([want()], [live_req("2", date=same), live_req("1", date=same)])
    assert kinds(plan) == [("approve", "c" * 23 + "1"), ("delete", "c" * 23 + "2")]


def test_a_request_of_a_developer_gone_from_the_dashboard_is_deleted_without_an_email() -> None:
    gone = Developer("64a0000000000000000000ff", "gone@example.com")
    (action,) = run([], [live_req("1", dev=gone)]).actions
    assert (action.action, action.developer.id, action.developer.email) == (
        "delete",
        gone.id,
        "",
    )


def test_a_deleted_request_names_a_policy_the_dashboard_no_longer_has() -> None:
    (action,) = run([], [live_req("1", policies=(GOLD.db_id, "64b0000000000000000000ff"))]).actions
    assert [p.to_data() for p in action.policies] == [
        {"id": GOLD.db_id, "name": "Gold"},
        {"id": "64b0000000000000000000ff", "name": "(unknown policy)"},
    ]


def test_make_plan_defaults_to_no_dashboard_and_no_reissue() -> None:
    live = LiveState((ALICE,), (GOLD,), (live_req("1", approved=True, fields={"t": "old"}),))
    desired = Desired((want(fields={"t": "new"}),), (scope(),), "m" * 64)
    plan = make_plan(desired, live)
    assert plan.dashboard == ""
    assert plan.actions == () and len(plan.warnings) == 1  # no --reissue: a warning


def test_fields_differ_names_keys_that_hold_quotes_as_they_are() -> None:
    plan = run(
        [want(fields={"a'": "2", "plain": "x"}, approved=False)],
        [live_req("1", fields={"a'": "1", '"q"': "x", "plain": "x"})],
    )
    (action,) = plan.actions
    assert action.reason == "fields differ: \"q\" removed (was 'x'), a' '1' -> '2'"
