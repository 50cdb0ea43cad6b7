"""The plan's value objects and checks, data in and data out: `from_data` refuses what the
planner never makes; the digests see exactly the live state in scope; a saved plan is
refused when stale, and any plan when it deletes too much."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

import msgspec
import pytest

from tyksync.errors import Refused
from tyksync.models import Developer, KeyRequest, LiveState, Policy
from tyksync.plan import (
    Action,
    Plan,
    PlanWarning,
    Scope,
    canonical_json,
    check_safety,
    digest,
    fingerprint,
    live_digest,
)


def action_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": "approve",
        "developer": {"id": "64a000000000000000000a01", "email": "alice@example.com"},
        "policies": [{"id": "64b000000000000000000b01", "name": "Gold"}],
        "request_id": "64c000000000000000000c01",
        "approve": True,
        "fields": {"ticket": "T-1"},
        "owner": "payments-team",
        "reason": "declared approved, live request pending",
        "approved": False,
        "declared_at": "m.yaml:5",
        "revoke_key": None,
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("kind", ["create", "approve", "replace", "delete"])
def test_every_kind_reads_back_as_written(kind: str) -> None:
    data = action_data(action=kind, request_id=None if kind == "create" else "r1")
    action = Action.from_data(data)
    assert action.to_data() == data
    if kind in ("delete", "replace"):
        data["revoke_key"] = "key#ab12cd34"
        assert Action.from_data(data).to_data() == data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"action": "frobnicate"}, "unknown action 'frobnicate'"),
        ({"action": "Create"}, "unknown action 'Create'"),
        ({"action": "approve", "request_id": None}, "a approve action needs a request_id"),
        ({"action": "replace", "request_id": None}, "a replace action needs a request_id"),
        ({"action": "delete", "request_id": None}, "a delete action needs a request_id"),
        ({"action": "delete", "request_id": 7}, "a delete action needs a request_id"),
        ({"action": "create", "policies": []}, "a create action needs at least one policy"),
        ({"action": "approve", "policies": []}, "a approve action needs at least one policy"),
        ({"action": "replace", "policies": []}, "a replace action needs at least one policy"),
        (
            {"action": "approve", "revoke_key": "key#ab12cd34"},
            "revoke_key belongs to a delete or replace, as a key# label",
        ),
        (
            {"action": "delete", "revoke_key": 7},
            "revoke_key belongs to a delete or replace, as a key# label",
        ),
    ],
)
def test_an_action_the_planner_never_makes_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Action.from_data(action_data(**changes))


def test_a_create_needs_no_request_id_and_a_delete_no_policy() -> None:
    # A delete of a request whose policies are all gone has none left to name.
    create = Action.from_data(action_data(action="create", request_id=None))
    assert (create.action, create.request_id) == ("create", None)
    delete = Action.from_data(action_data(action="delete", policies=[]))
    assert (delete.action, delete.policies) == ("delete", ())


def test_missing_optional_members_read_as_their_defaults() -> None:
    data = action_data()
    for name in ("owner", "approved", "declared_at", "revoke_key"):
        del data[name]
    action = Action.from_data(data)
    assert (action.owner, action.approved, action.declared_at) == (None, False, None)
    assert action.revoke_key is None
    assert dict(Action.from_data(action_data(fields={"n": 1})).fields) == {"n": "1"}


def test_a_warning_reads_back_as_written() -> None:
    data = {
        "developer": {"id": "64a000000000000000000a01", "email": "alice@example.com"},
        "policies": [{"id": "64b000000000000000000b01", "name": "Gold"}],
        "request_id": "64c000000000000000000c01",
        "message": "declared approved: false but already approved; approval cannot be undone",
    }
    assert PlanWarning.from_data(data).to_data() == data


def test_an_unknown_plan_format_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^unsupported plan format_version 2$"):
        Plan.from_data({"format_version": 2})
    with pytest.raises(ValueError, match=r"^unsupported plan format_version None$"):
        Plan.from_data({})


@pytest.mark.parametrize(
    ("kind", "creates", "deletes"),
    [
        ("create", True, False),
        ("approve", False, False),
        ("replace", True, True),
        ("delete", False, True),
    ],
)
def test_what_each_kind_creates_and_deletes(kind: str, creates: bool, deletes: bool) -> None:
    action = Action.from_data(action_data(action=kind))
    assert (action.creates, action.deletes) == (creates, deletes)


def test_the_value_objects_are_frozen() -> None:
    action = Action.from_data(action_data())
    values: list[Any] = [
        action,
        action.developer,
        action.policies[0],
        PlanWarning(action.developer, action.policies, "m"),
        SCOPE,
        plan_with(),
    ]
    for value in values:
        name = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)


# ---- the digests ------------------------------------------------------------------------------

ALICE = Developer("64a000000000000000000a01", "alice@example.com")
BOB = Developer("64a000000000000000000a02", "bob@example.com")
GOLD = Policy("64b000000000000000000b01", "gold", "Gold")
SILVER = Policy("64b000000000000000000b02", "", "Silver")
SCOPE = Scope(
    developer_ids=frozenset({ALICE.id}),
    owners=frozenset({"team"}),
    policy_ids=frozenset({GOLD.db_id}),
)
REQUEST = KeyRequest(
    id="64c000000000000000000c01",
    developer_id=ALICE.id,
    policies=(GOLD.db_id, SILVER.db_id),
    approved=False,
    fields={"ticket": "T-1", "tyksync_owner": "team"},
    date_created="2026-01-01T00:00:00Z",
)
LIVE = LiveState((ALICE, BOB), (GOLD, SILVER), (REQUEST,))


def test_canonical_json_is_sorted_compact_utf8() -> None:
    data = {"b": [1, {"z": None, "é": "ü"}], "a": True}
    assert canonical_json(data) == '{"a":true,"b":[1,{"z":null,"é":"ü"}]}'.encode()
    assert digest(data) == hashlib.sha256(canonical_json(data)).hexdigest()


def test_scope_covers_its_developers_and_its_owners_requests() -> None:
    def request(developer: str, owner: str | None) -> KeyRequest:
        fields = {"tyksync_owner": owner} if owner else {}
        return KeyRequest("r", developer, (GOLD.db_id,), False, fields)

    assert SCOPE.covers(request(ALICE.id, None))
    assert SCOPE.covers(request(BOB.id, "team"))
    assert not SCOPE.covers(request(BOB.id, "other"))
    assert not SCOPE.covers(request(BOB.id, None))


@pytest.mark.parametrize(
    "change",
    [
        {"id": "64c000000000000000000c09"},
        {"policies": (GOLD.db_id,)},
        {"approved": True},
        {"fields": {"ticket": "T-2", "tyksync_owner": "team"}},
        {"for_api": "api1"},
        {"date_created": "2026-01-02T00:00:00Z"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_the_live_digest_sees_every_member_of_a_request_in_scope(change: dict[str, Any]) -> None:
    changed = dataclasses.replace(LIVE, requests=(msgspec.structs.replace(REQUEST, **change),))
    assert live_digest(changed, SCOPE) != live_digest(LIVE, SCOPE)


def test_the_live_digest_ignores_the_order_things_come_in() -> None:
    both = Scope(
        frozenset({ALICE.id, BOB.id}), frozenset({"team"}), frozenset({GOLD.db_id, SILVER.db_id})
    )
    other = KeyRequest("64c000000000000000000c02", BOB.id, (GOLD.db_id,), True)
    live = dataclasses.replace(LIVE, requests=(REQUEST, other))
    reordered = LiveState(
        developers=(BOB, ALICE),
        policies=(SILVER, GOLD),
        requests=(other, msgspec.structs.replace(REQUEST, policies=(SILVER.db_id, GOLD.db_id))),
    )
    assert live_digest(reordered, both) == live_digest(live, both)
    # The value itself: saved plans carry fingerprints made from it, so its canonical form
    # (orders included) changes only on purpose, as the golden demo plan's fingerprint.
    assert live_digest(live, both) == (
        "4f404ebf467537540cb78fe07bee6a614a73b821ea29c94f729aa7a595314c89"
    )


def test_the_live_digest_ignores_what_is_out_of_scope() -> None:
    unrelated = [
        # bob's request without this scope's owner, bob renamed, Silver renamed
        dataclasses.replace(
            LIVE, requests=(*LIVE.requests, KeyRequest("x", BOB.id, (GOLD.db_id,), True))
        ),
        dataclasses.replace(LIVE, developers=(ALICE, dataclasses.replace(BOB, email="b@x"))),
        dataclasses.replace(LIVE, policies=(GOLD, dataclasses.replace(SILVER, name="Tin"))),
    ]
    for live in unrelated:
        assert live_digest(live, SCOPE) == live_digest(LIVE, SCOPE)


@pytest.mark.parametrize(
    "change",
    [
        {"developers": (dataclasses.replace(ALICE, email="alice2@example.com"), BOB)},
        {"developers": (dataclasses.replace(ALICE, inactive=True), BOB)},
        {"policies": (dataclasses.replace(GOLD, name="Platinum"), SILVER)},
        {"policies": (dataclasses.replace(GOLD, id="gold-2"), SILVER)},
        {"policies": (dataclasses.replace(GOLD, active=False), SILVER)},
    ],
    ids=["email", "inactive", "name", "explicit id", "active"],
)
def test_the_live_digest_sees_the_developers_and_policies_in_scope(
    change: dict[str, Any],
) -> None:
    assert live_digest(dataclasses.replace(LIVE, **change), SCOPE) != live_digest(LIVE, SCOPE)


def test_the_live_digest_sees_the_scope_itself() -> None:
    wider = dataclasses.replace(SCOPE, owners=frozenset({"team", "other"}))
    assert live_digest(LIVE, wider) != live_digest(LIVE, SCOPE)


def test_the_fingerprint_binds_live_state_manifests_and_actions() -> None:
    action = Action.from_data(action_data())
    base = fingerprint("live", "manifests", [action])
    assert (
        base
        == hashlib.sha256(f"live\nmanifests\n{digest([action.to_data()])}".encode()).hexdigest()
    )
    assert fingerprint("live2", "manifests", [action]) != base
    assert fingerprint("live", "manifests2", [action]) != base
    assert fingerprint("live", "manifests", []) != base


# ---- before an apply ------------------------------------------------------------------------


def plan_with(
    deletes: int = 0, replaces: int = 0, managed: int = 0, dashboard: str = "", **more: Any
) -> Plan:
    actions = [
        Action.from_data(action_data(action="delete", request_id=f"d{n}")) for n in range(deletes)
    ]
    actions += [
        Action.from_data(action_data(action="replace", request_id=f"r{n}")) for n in range(replaces)
    ]
    fields: dict[str, Any] = {
        "actions": tuple(actions),
        "warnings": (),
        "unmanaged": 0,
        "managed": managed,
        "scope": SCOPE,
        "manifest_digest": "m" * 64,
        "fingerprint": "f" * 64,
        **more,
    }
    if dashboard:
        fields["dashboard"] = dashboard
    return Plan(**fields)


@pytest.mark.parametrize(
    ("deletes", "managed", "refused"),
    [
        (3, 10, False),  # 30% is allowed
        (4, 10, True),
        (9, 9, False),  # under 10 managed requests, no share is checked
        (10, 10, True),
        (30, 100, False),
        (31, 100, True),
        (0, 0, False),
    ],
)
def test_the_thirty_percent_rule(deletes: int, managed: int, refused: bool) -> None:
    plan = plan_with(deletes, replaces=5, managed=managed)  # a replace's delete is no loss
    if refused:
        with pytest.raises(Refused) as caught:
            check_safety(plan, force=False)
        assert plan.safety.refused and plan.safety.over_ratio
        assert str(caught.value) == (
            f"the plan deletes {deletes} of {managed} managed requests (over 30%); "
            "review it, then use --force to apply anyway"
        )
        assert caught.value.exit_code == 3
    else:
        check_safety(plan, force=False)
        assert not plan.safety.refused
    check_safety(plan, force=True)  # --force lifts it


@pytest.mark.parametrize("force", [False, True])
def test_max_deletes_is_a_hard_cap(force: bool) -> None:
    plan = plan_with(3, replaces=5, managed=100)
    check_safety(dataclasses.replace(plan, max_deletes=3), force=force)
    with pytest.raises(Refused) as caught:
        check_safety(dataclasses.replace(plan, max_deletes=2), force=force)
    assert str(caught.value) == (
        "the plan deletes 3 requests, more than --max-deletes 2; review it and raise the cap "
        "if it is right"
    )
    check_safety(plan_with(0, replaces=5, managed=100, max_deletes=0), force=force)
