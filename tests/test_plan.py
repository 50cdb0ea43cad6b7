"""The plan's value objects, read back from a saved plan file: `from_data` refuses what the
planner never makes, with a message naming what is wrong."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tyksync.plan import Action, PlanWarning


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
