"""The planner: a pure function from (desired, live) to a Plan. No I/O, no printing.

Cost is linear in the number of requests: live requests are indexed by identity once, and
each declaration looks its identity up. DeepDiff is used only to describe a difference that
a plain comparison has already found.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from tyksync.models import (
    Desired,
    DesiredRequest,
    FileScope,
    Identity,
    KeyRequest,
    LiveState,
    Policy,
    PolicyIndex,
    survivor_order,
)
from tyksync.plan import (
    Action,
    DevRef,
    Plan,
    PlanWarning,
    PolicyRef,
    Scope,
    fingerprint,
    live_digest,
)


def make_plan(
    desired: Desired,
    live: LiveState,
    *,
    dashboard: str = "",
    reissue: bool = False,
    max_deletes: int | None = None,
) -> Plan:
    policies = live.policy_index()
    developers = {d.id: d for d in live.developers}
    by_identity: dict[Identity, list[KeyRequest]] = defaultdict(list)
    canonical: dict[str, str] = {}  # `policies.canonical`, once per reference
    for r in live.requests:
        if not r.is_v1:
            ids = []
            for ref in r.policies:
                db_id = canonical.get(ref)
                if db_id is None:
                    db_id = canonical[ref] = policies.canonical(ref)
                ids.append(db_id)
            # = policies.identity(r)
            by_identity[(r.developer_id, frozenset(ids))].append(r)

    actions: list[Action] = []
    warnings: list[PlanWarning] = []
    matched: set[str] = set()
    for d in sorted(desired.requests, key=lambda d: (d.file, d.line)):
        lives = by_identity.get(d.identity, [])
        matched.update(r.id for r in lives)
        a, w = _reconcile(d, lives, reissue)
        actions.extend(a)
        warnings.extend(w)

    unmanaged = 0
    for r in live.requests:
        if r.id in matched:
            continue
        reason = _prune_reason(r, desired.scopes)
        if reason is None:
            unmanaged += 1
            continue
        dev = developers.get(r.developer_id)
        actions.append(
            Action(
                action="delete",
                developer=DevRef(r.developer_id, dev.email if dev else ""),
                policies=_policy_refs(r.policies, policies),
                reason=reason,
                request_id=r.id,
                fields=r.user_fields,
                owner=r.owner,
                approved=r.approved,
            )
        )

    scope = Scope(
        developer_ids=frozenset(
            {d.developer.id for d in desired.requests}
            | {i for s in desired.scopes for i in s.developer_ids}
        ),
        owners=frozenset(s.owner for s in desired.scopes),
        policy_ids=frozenset(p.db_id for d in desired.requests for p in d.policies),
    )
    ordered = tuple(sorted(actions, key=lambda a: a.sort_key))
    # The digests are for saved plans and the JSON plan; a text plan never reads them.
    live_part = functools.cache(lambda: live_digest(live, scope))
    return Plan(
        actions=ordered,
        warnings=tuple(sorted(warnings, key=lambda w: w.sort_key)),
        unmanaged=unmanaged,
        managed=len(live.requests) - unmanaged,
        scope=scope,
        manifest_digest=lambda: desired.manifest_digest,
        fingerprint=lambda: fingerprint(live_part(), desired.manifest_digest, ordered),
        dashboard=dashboard,
        live_digest=live_part,
        max_deletes=max_deletes,
    )


def _keep_order(
    d: DesiredRequest,
) -> Callable[[KeyRequest], tuple[bool, bool, bool, str, str]]:
    """Which of several live requests for one identity to keep: `survivor_order` (approved,
    then oldest), refined by what the declaration says: after approval, one this owner
    made, then one whose fields already match. The fields rule matters when an apply races
    another apply's replace: it keeps the new request instead of replacing the old one a
    second time, which would issue a second key. (The applier and export have no
    declaration to refine with, and use `survivor_order` alone.)"""

    def key(r: KeyRequest) -> tuple[bool, bool, bool, str, str]:
        approved_last, date_created, rid = survivor_order(r)
        differs = r.user_fields != dict(d.fields)
        return (approved_last, r.owner != d.owner, differs, date_created, rid)

    return key


def _reconcile(
    d: DesiredRequest, lives: list[KeyRequest], reissue: bool
) -> tuple[list[Action], list[PlanWarning]]:
    if len(lives) == 1 and d.approved:
        # The usual case, and nothing to do: one approved request with the declared fields.
        only = lives[0]
        if only.approved and only.user_fields == dict(d.fields):
            return [], []
    dev = DevRef(d.developer.id, d.developer.email)
    pols = tuple(_ref(p) for p in d.policies)
    where = d.where

    def new(kind: str, reason: str, old: KeyRequest | None = None) -> Action:
        return Action(
            action=kind,
            developer=dev,
            policies=pols,
            reason=reason,
            request_id=old.id if old else None,
            approve=d.approved if kind != "approve" else True,
            fields=dict(d.fields),
            owner=d.owner,
            approved=old.approved if old else False,
            declared_at=where,
        )

    if not lives:
        return [new("create", "declared, no live request")], []

    ordered = sorted(lives, key=_keep_order(d)) if len(lives) > 1 else lives
    keep = ordered[0]
    # Duplicates are deleted whatever the prune mode (SPEC section 4): they are requests for
    # a declared identity, not undeclared ones. The prune mode governs the undeclared.
    duplicates = ordered[1:]
    actions = [
        Action(
            action="delete",
            developer=dev,
            policies=pols,
            reason=f"duplicate of {keep.id}",
            request_id=r.id,
            fields=r.user_fields,
            owner=r.owner,
            approved=r.approved,
            declared_at=where,
        )
        for r in duplicates
    ]
    warnings: list[PlanWarning] = []

    def warn(message: str) -> None:
        warnings.append(PlanWarning(dev, pols, message, keep.id))

    differs = keep.user_fields != dict(d.fields)
    if not keep.approved:
        if differs:
            actions.append(new("replace", _describe(keep.user_fields, d.fields), keep))
        elif d.approved:
            actions.append(new("approve", "declared approved, live request pending", keep))
        return actions, warnings

    if differs:
        change = _describe(keep.user_fields, d.fields)
        if reissue:
            actions.append(new("replace", f"{change}; --reissue issues a new key", keep))
        else:
            warn(
                f"approved request's {change}; left as is: replacing it issues a new key "
                "(use --reissue)"
            )
    if not d.approved:
        warn("declared approved: false but already approved; approval cannot be undone")
    return actions, warnings


def _describe(live: Mapping[str, str], wanted: Mapping[str, str]) -> str:
    from deepdiff import DeepDiff  # 0.1 s to import: only for plans with fields to describe

    diff = DeepDiff(dict(live), dict(wanted), verbose_level=2)
    parts: list[str] = []
    for path, change in diff.get("values_changed", {}).items():
        parts.append(f"{_key(path)} {change['old_value']!r} -> {change['new_value']!r}")
    for path, value in diff.get("dictionary_item_added", {}).items():
        parts.append(f"{_key(path)} added ({value!r})")
    for path, value in diff.get("dictionary_item_removed", {}).items():
        parts.append(f"{_key(path)} removed (was {value!r})")
    return "fields differ: " + ", ".join(sorted(parts))


def _key(path: str) -> str:
    # DeepDiff paths look like "root['ticket']"
    return path[len("root[") : -1].strip("'\"") if path.startswith("root[") else path


def _prune_reason(r: KeyRequest, scopes: Iterable[FileScope]) -> str | None:
    for s in scopes:
        if s.prune == "developers" and r.developer_id in s.developer_ids:
            return f"not declared; its developer is listed in {s.path} (prune: developers)"
        if s.prune == "owned" and not r.is_v1 and r.owner == s.owner:
            return f"not declared; owned by {s.owner} (prune: owned in {s.path})"
    return None


def _ref(p: Policy) -> PolicyRef:
    return PolicyRef(p.db_id, p.name)


def _policy_refs(refs: Iterable[str], policies: PolicyIndex) -> tuple[PolicyRef, ...]:
    out = []
    for ref in refs:
        found = policies.lookup(ref)
        out.append(_ref(found[0]) if len(found) == 1 else PolicyRef(ref, "(unknown policy)"))
    return tuple(out)
