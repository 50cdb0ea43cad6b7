"""The plan: small frozen value objects with a fixed order, and one `to_data()`.

`to_data()` feeds the JSON output, the saved plan file and the fingerprint, so the three can
never disagree. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tyksync import __version__
from tyksync.errors import Refused
from tyksync.lazy import Lazy
from tyksync.models import KeyRequest, LiveState, key_label

FORMAT_VERSION = 1
KINDS = ("create", "approve", "replace", "delete")
_KIND_RANK = {k: i for i, k in enumerate(KINDS)}
# What an action does to access (SPEC section 12), with the symbol every rendering shows:
# a key will be issued, an approved request goes, a key is issued anew, a request waits.
ACCESS_KINDS = ("gain", "new_key", "pending", "loss")
ACCESS_SYMBOL = {"gain": "+", "new_key": "~", "pending": "?", "loss": "-"}


@dataclass(frozen=True)
class DevRef:
    id: str
    email: str

    def to_data(self) -> dict[str, str]:
        return {"id": self.id, "email": self.email}


@dataclass(frozen=True)
class PolicyRef:
    id: str  # the policy's `_id`
    name: str

    def to_data(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class Action:
    action: str  # one of KINDS
    developer: DevRef
    policies: tuple[PolicyRef, ...]
    reason: str
    request_id: str | None = None  # the live request approved, deleted or replaced
    approve: bool = False  # create/replace: approve the new request; approve: always True
    fields: Mapping[str, str] = field(default_factory=dict)  # user fields (no tyksync_*)
    owner: str | None = None  # the owner written on a create, or the live request's
    approved: bool = False  # delete/replace: the live request was approved (its key stays)
    declared_at: str | None = None  # FILE:LINE of the declaration behind the action
    # delete/replace of an approved request under `revoke: true`: the label (`key#...`,
    # never the key id) of the key to revoke first. The applier finds the key id again.
    revoke_key: str | None = None

    @property
    def sort_key(self) -> tuple[str, str, tuple[str, ...], int, str]:
        return (
            self.developer.email.lower(),
            self.developer.id,
            tuple(sorted(p.name for p in self.policies)),
            _KIND_RANK[self.action],
            self.request_id or "",
        )

    @property
    def creates(self) -> bool:
        return self.action in ("create", "replace")

    @property
    def deletes(self) -> bool:
        return self.action in ("delete", "replace")

    def to_data(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "developer": self.developer.to_data(),
            "policies": [p.to_data() for p in self.policies],
            "request_id": self.request_id,
            "approve": self.approve,
            "fields": dict(sorted(self.fields.items())),
            "owner": self.owner,
            "reason": self.reason,
            "approved": self.approved,
            "declared_at": self.declared_at,
            "revoke_key": self.revoke_key,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Action:
        if data["action"] not in KINDS:
            raise ValueError(f"unknown action {data['action']!r}")
        if data["action"] != "create" and not isinstance(data.get("request_id"), str):
            raise ValueError(f"a {data['action']} action needs a request_id")
        if data["action"] != "delete" and not data["policies"]:
            raise ValueError(f"a {data['action']} action needs at least one policy")
        revoke = data.get("revoke_key")
        if revoke is not None and not (
            isinstance(revoke, str)
            and re.fullmatch(r"key#[0-9a-f]{8}", revoke)
            and data["action"] in ("delete", "replace")
        ):
            raise ValueError("revoke_key belongs to a delete or replace, as a key# label")
        return cls(
            action=data["action"],
            developer=DevRef(**data["developer"]),
            policies=tuple(PolicyRef(**p) for p in data["policies"]),
            reason=data["reason"],
            request_id=data.get("request_id"),
            approve=bool(data["approve"]),
            fields={str(k): str(v) for k, v in data["fields"].items()},
            owner=data.get("owner"),
            approved=bool(data.get("approved", False)),
            declared_at=data.get("declared_at"),
            revoke_key=revoke,
        )


@dataclass(frozen=True)
class AccessChange:
    """What one action does to a developer's access: a key issued (`gain`), a key issued
    in place of another (`new_key`), a pending request made (`pending`), an approved
    request deleted (`loss`; the key it issued stays valid, SPEC section 1)."""

    change: str  # one of ACCESS_KINDS
    developer: DevRef
    policies: tuple[PolicyRef, ...]
    request_id: str | None  # the live request approved, replaced or deleted
    declared_at: str | None

    @property
    def symbol(self) -> str:
        return ACCESS_SYMBOL[self.change]

    def to_data(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "developer": self.developer.to_data(),
            "policies": [p.to_data() for p in self.policies],
            "request_id": self.request_id,
            "declared_at": self.declared_at,
        }


def access_kinds(action: Action) -> tuple[str, ...]:
    """What one action does to access; the one place that says it (SPEC section 12):

    - create: `gain` when it approves (a key is issued), else `pending`;
    - approve: `gain`;
    - replace of a pending request: as a create;
    - replace of an approved request: `new_key` when it approves (`--reissue`); when it
      does not, the approved request goes (`loss`) and a pending one is made (`pending`);
    - delete of an approved request: `loss`; of a pending one: nothing (no key was issued).
    """
    if action.action == "approve":
        return ("gain",)
    if action.action == "delete":
        return ("loss",) if action.approved else ()
    if action.action == "replace" and action.approved:
        return ("new_key",) if action.approve else ("loss", "pending")
    return ("gain",) if action.approve else ("pending",)


def access_changes(actions: Iterable[Action]) -> tuple[AccessChange, ...]:
    """The access changes of a plan's actions, in the actions' order (so grouped by
    developer, as the actions are)."""
    return tuple(
        AccessChange(kind, a.developer, a.policies, a.request_id, a.declared_at)
        for a in actions
        for kind in access_kinds(a)
    )


@dataclass(frozen=True)
class PlanWarning:
    developer: DevRef
    policies: tuple[PolicyRef, ...]
    message: str
    request_id: str | None = None

    @property
    def sort_key(self) -> tuple[str, tuple[str, ...], str, str]:
        return (
            self.developer.email.lower(),
            tuple(sorted(p.name for p in self.policies)),
            self.request_id or "",
            self.message,
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "developer": self.developer.to_data(),
            "policies": [p.to_data() for p in self.policies],
            "request_id": self.request_id,
            "message": self.message,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PlanWarning:
        return cls(
            developer=DevRef(**data["developer"]),
            policies=tuple(PolicyRef(**p) for p in data["policies"]),
            message=data["message"],
            request_id=data.get("request_id"),
        )


@dataclass(frozen=True)
class PendingRequest:
    """An undeclared pending request, waiting for a person's decision (SPEC section 11)."""

    request_id: str
    developer: DevRef
    policies: tuple[PolicyRef, ...]
    date_created: str
    age_days: int | None  # None: no clock (a library caller) or no readable date

    def to_data(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "developer": self.developer.to_data(),
            "policies": [p.to_data() for p in self.policies],
            "date_created": self.date_created,
            "age_days": self.age_days,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PendingRequest:
        age = data.get("age_days")
        return cls(
            request_id=str(data["request_id"]),
            developer=DevRef(**data["developer"]),
            policies=tuple(PolicyRef(**p) for p in data["policies"]),
            date_created=str(data["date_created"]),
            age_days=None if age is None else int(age),
        )


@dataclass(frozen=True)
class Scope:
    """What a plan looked at: the live requests of these developers or these owners.

    Kept in a saved plan so that `apply --plan` can read the same slice of live state
    again and tell whether it changed.
    """

    developer_ids: frozenset[str]
    owners: frozenset[str]
    policy_ids: frozenset[str]

    def covers(self, request: KeyRequest) -> bool:
        return request.developer_id in self.developer_ids or (
            request.owner is not None and request.owner in self.owners
        )

    def to_data(self) -> dict[str, list[str]]:
        return {
            "developer_ids": sorted(self.developer_ids),
            "owners": sorted(self.owners),
            "policy_ids": sorted(self.policy_ids),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Scope:
        return cls(
            developer_ids=frozenset(data["developer_ids"]),
            owners=frozenset(data["owners"]),
            policy_ids=frozenset(data["policy_ids"]),
        )


@dataclass(frozen=True)
class Safety:
    """The verdict of the delete rules (SPEC sections 5 and 9) on one plan: apply refuses a
    plan that deletes more than 30% of the managed requests (when there are at least 10)
    unless --force, and one that deletes more than --max-deletes whatever else is said."""

    deletes: int  # a replace's delete is no loss: it has a successor
    managed: int
    max_deletes: int | None

    @property
    def over_cap(self) -> bool:
        return self.max_deletes is not None and self.deletes > self.max_deletes

    @property
    def over_ratio(self) -> bool:
        return self.managed >= 10 and self.deletes * 10 > self.managed * 3

    @property
    def refused(self) -> bool:
        """Whether apply refuses this plan without --force."""
        return self.over_cap or self.over_ratio

    @property
    def message(self) -> str:
        if self.over_cap:
            return (
                f"the plan deletes {self.deletes} requests, more than --max-deletes "
                f"{self.max_deletes}; review it and raise the cap if it is right"
            )
        if self.over_ratio:
            return (
                f"the plan deletes {self.deletes} of {self.managed} managed requests (over "
                "30%); review it, then use --force to apply anyway"
            )
        return f"the plan deletes {self.deletes} of {self.managed} managed requests"

    def to_data(self) -> dict[str, Any]:
        return {
            "deletes": self.deletes,
            "managed": self.managed,
            "max_deletes": self.max_deletes,
            "refused": self.refused,
            "message": self.message,
        }


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    warnings: tuple[PlanWarning, ...]
    unmanaged: int
    managed: int  # live requests the manifests govern (kept, replaced or deleted)
    scope: Scope
    # The digests: strings, or functions computing them when first read (`Lazy`).
    manifest_digest: Lazy = Lazy()  # noqa: RUF009 - a descriptor, shared on purpose
    fingerprint: Lazy = Lazy()  # noqa: RUF009
    dashboard: str = ""
    live_digest: Lazy = Lazy()  # noqa: RUF009 - of the live state in scope (`live_digest`)
    max_deletes: int | None = None  # the cap the safety verdict applies
    # Every undeclared pending request of the Dashboard, oldest first: information for a
    # person, not part of what a saved plan must match (it spans the whole Dashboard).
    pending: tuple[PendingRequest, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def safety(self) -> Safety:
        return Safety(self.count("delete"), self.managed, self.max_deletes)

    def count(self, kind: str) -> int:
        return sum(1 for a in self.actions if a.action == kind)

    @property
    def access_changes(self) -> tuple[AccessChange, ...]:
        return access_changes(self.actions)

    def summary(self) -> dict[str, int]:
        counts = {kind: self.count(kind) for kind in KINDS}
        counts["warnings"] = len(self.warnings)
        counts["unmanaged"] = self.unmanaged
        return counts

    def to_data(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "dashboard": self.dashboard,
            "fingerprint": self.fingerprint,
            "summary": self.summary(),
            "safety": self.safety.to_data(),
            "managed": self.managed,
            "access_changes": [c.to_data() for c in self.access_changes],
            "actions": [a.to_data() for a in self.actions],
            "warnings": [w.to_data() for w in self.warnings],
            "pending": [p.to_data() for p in self.pending],
            "scope": self.scope.to_data(),
            "manifest_digest": self.manifest_digest,
            "live_digest": self.live_digest,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Plan:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported plan format_version {data.get('format_version')!r}")
        return cls(
            actions=tuple(Action.from_data(a) for a in data["actions"]),
            warnings=tuple(PlanWarning.from_data(w) for w in data["warnings"]),
            unmanaged=int(data["summary"]["unmanaged"]),
            managed=int(data["managed"]),
            scope=Scope.from_data(data["scope"]),
            manifest_digest=str(data["manifest_digest"]),
            fingerprint=str(data["fingerprint"]),
            dashboard=str(data["dashboard"]),
            live_digest=str(data.get("live_digest", "")),
            max_deletes=data.get("safety", {}).get("max_deletes"),
            pending=tuple(PendingRequest.from_data(p) for p in data.get("pending", [])),
        )


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: Any) -> str:
    return hashlib.sha256(canonical_json(data)).hexdigest()


def _canonical_request(r: KeyRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "developer": r.developer_id,
        "policies": sorted(r.policies),
        "approved": r.approved,
        "fields": dict(sorted(r.fields.items())),
        "for_api": r.for_api,
        "date_created": r.date_created,
    }


def _canonical_keys(keys: Mapping[str, frozenset[str]] | None) -> dict[str, Any]:
    """A developer's keys as far as a plan depends on them (which key a delete revokes), by
    label: a digest in a plan file must not let anyone test a guess of a key id."""
    if keys is None:
        return {"keys": None}
    return {"keys": sorted([key_label(k), sorted(p)] for k, p in keys.items())}


def live_digest(live: LiveState, scope: Scope, *, keys: bool = False) -> str:
    """A digest of the live state a plan depends on: the requests in scope, and the
    developers and policies the manifests resolved to (a policy deactivated or a developer
    renamed makes a saved plan stale too). `keys`: the plan revokes keys, so it depends on
    the developers' keys too (which key a delete revokes, or why none)."""
    requests: Iterable[KeyRequest] = (r for r in live.requests if scope.covers(r))
    developers = [d for d in live.developers if d.id in scope.developer_ids]
    policies = [p for p in live.policies if p.db_id in scope.policy_ids]
    return digest(
        {
            "scope": scope.to_data(),
            "requests": sorted((_canonical_request(r) for r in requests), key=lambda r: r["id"]),
            "developers": sorted(
                (
                    {
                        "id": d.id,
                        "email": d.email,
                        "inactive": d.inactive,
                        **(_canonical_keys(d.keys) if keys else {}),
                    }
                    for d in developers
                ),
                key=lambda d: str(d["id"]),
            ),
            "policies": sorted(
                (
                    {"id": p.db_id, "explicit": p.id, "name": p.name, "active": p.active}
                    for p in policies
                ),
                key=lambda p: str(p["id"]),
            ),
        }
    )


def fingerprint(live_part: str, manifest_digest: str, actions: Iterable[Action]) -> str:
    """Binds a plan's actions to the live state and manifests they were computed from, so
    that a saved plan edited by hand is refused like a stale one."""
    actions_part = digest([a.to_data() for a in actions])
    return hashlib.sha256(f"{live_part}\n{manifest_digest}\n{actions_part}".encode()).hexdigest()


def check_safety(plan: Plan, *, force: bool) -> None:
    """Refuse (exit 3) what the plan's safety verdict refuses: --force lifts the 30% rule,
    not an explicit --max-deletes cap."""
    safety = plan.safety
    if safety.over_cap or (safety.over_ratio and not force):
        raise Refused(safety.message)
