"""The planner: a pure function from (desired, live) to a Plan. No I/O, no printing.

Cost is linear in the number of requests: live requests are indexed by identity once, and
each declaration looks its identity up. DeepDiff is used only to describe a difference that
a plain comparison has already found.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from tyksync.models import (
    Desired,
    DesiredRequest,
    Developer,
    FileScope,
    Identity,
    KeyRequest,
    LiveState,
    Policy,
    PolicyIndex,
    key_label,
    survivor_order,
)
from tyksync.plan import (
    Action,
    DevRef,
    PendingRequest,
    Plan,
    PlanWarning,
    PolicyRef,
    Scope,
    fingerprint,
    live_digest,
)

EXPIRY_WARNING = timedelta(days=14)
# A century: past it a timedelta overflows, and no warning that early means anything.
MAX_EXPIRY_WARNING_DAYS = 36500


def make_plan(
    desired: Desired,
    live: LiveState,
    *,
    dashboard: str = "",
    reissue: bool = False,
    max_deletes: int | None = None,
    now: datetime | None = None,
    expiry_warning: timedelta = EXPIRY_WARNING,
) -> Plan:
    """`now` is the moment the plan is for (SPEC section 11: expiry, the age of pending
    requests); the caller reads the clock, or takes `--as-of`. Without it, nothing
    expires, no pending request is old enough to reject, and ages are unknown."""
    policies = live.policy_index()
    developers = {d.id: d for d in live.developers}
    by_identity: dict[Identity, list[KeyRequest]] = defaultdict(list)
    identity = policies.identity
    for r in live.requests:
        if r.policies:  # a v1 request (no policy) has no identity
            by_identity[identity(r)].append(r)
    scopes = {s.path: s for s in desired.scopes}

    actions: list[Action] = []
    warnings: list[PlanWarning] = []
    matched: set[str] = set()
    # Deletes of live requests, with the file that governs each (for `revoke`).
    governed: list[tuple[Action, KeyRequest, FileScope | None]] = []
    nothing: list[KeyRequest] = []
    for d in sorted(desired.requests, key=_where):
        lives = by_identity.get(d.identity, nothing)
        if len(lives) == 1:
            only = lives[0]
            matched.add(only.id)
            as_declared = d.approved and only.approved and only.has_user_fields(d.fields)
            if as_declared and d.expires is None:
                continue  # the usual case: nothing to do or say
        else:
            matched.update(r.id for r in lives)
        declaring = scopes.get(d.file)
        if d.expires is not None and now is not None and now >= d.expires:
            governed.extend((a, r, declaring) for a, r in _expired(d, lives))
            continue
        a, w = _reconcile(d, lives, reissue)
        by_id = {r.id: r for r in lives}
        for action in a:
            if action.deletes and action.request_id in by_id:
                governed.append((action, by_id[action.request_id], declaring))
            else:
                actions.append(action)
        warnings.extend(w)
        if d.expires is not None and now is not None and now >= d.expires - expiry_warning:
            warnings.append(_expiry_warning(d, declaring))

    unmanaged = 0
    for r in live.requests:
        if r.id in matched:
            continue
        pruned = _prune_reason(r, desired.scopes) or _rejected(r, desired.scopes, now)
        if pruned is None:
            unmanaged += 1
            continue
        reason, pruning = pruned
        dev = developers.get(r.developer_id)
        who = DevRef(r.developer_id, dev.email if dev else "")
        action = _delete(r, who, _policy_refs(r.policies, policies), reason)
        governed.append((action, r, pruning))

    approved_by_identity: dict[Identity, list[KeyRequest]] = {}
    for action, r, governing in governed:
        if not (r.approved and governing is not None and governing.revoke):
            actions.append(action)
            continue
        if not approved_by_identity:  # only revocations ask: built on the first
            for o in live.requests:
                if o.approved:
                    approved_by_identity.setdefault(identity(o), []).append(o)
        label, why = _revocation(r, developers.get(r.developer_id), policies, approved_by_identity)
        actions.append(dataclasses.replace(action, revoke_key=label))
        if why is not None:
            warnings.append(PlanWarning(action.developer, action.policies, why, r.id))

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
    revokes = any(s.revoke for s in desired.scopes)
    live_part = functools.cache(lambda: live_digest(live, scope, keys=revokes))
    deleted = {a.request_id for a in ordered if a.deletes}
    pending = sorted(
        (r for r in live.requests if not (r.approved or r.id in matched or r.id in deleted)),
        key=lambda r: (r.date_created, r.id),
    )
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
        pending=tuple(_pending(r, developers, policies, now) for r in pending),
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


def _where(d: DesiredRequest) -> tuple[str, int]:
    return (d.file, d.line)


def _reconcile(
    d: DesiredRequest, lives: list[KeyRequest], reissue: bool
) -> tuple[list[Action], list[PlanWarning]]:
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
    actions = [_delete(r, dev, pols, f"duplicate of {keep.id}", where) for r in duplicates]
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
    # DeepDiff paths look like "root['ticket']" (or root["it's"] for a key holding a
    # quote): remove the one quote on each side, never quotes of the key itself.
    inner = path[len("root[") : -1] if path.startswith("root[") else path
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return inner[1:-1]
    return inner


def _prune_reason(r: KeyRequest, scopes: Iterable[FileScope]) -> tuple[str, FileScope] | None:
    for s in scopes:
        if s.prune == "developers" and r.developer_id in s.developer_ids:
            return f"not declared; its developer is listed in {s.path} (prune: developers)", s
        if s.prune == "owned" and not r.is_v1 and r.owner == s.owner:
            return f"not declared; owned by {s.owner} (prune: owned in {s.path})", s
    return None


# ---- lifecycle (SPEC section 11) -----------------------------------------------------------


def _expired(d: DesiredRequest, lives: list[KeyRequest]) -> list[tuple[Action, KeyRequest]]:
    """An expired declaration counts as absent: no create, and every live request of its
    identity is deleted (whatever the prune mode: the declaration governed them)."""
    dev = DevRef(d.developer.id, d.developer.email)
    pols = tuple(_ref(p) for p in d.policies)
    reason = f"expired on {d.expires_text} ({d.where})"
    return [(_delete(r, dev, pols, reason, d.where), r) for r in sorted(lives, key=survivor_order)]


def _expiry_warning(d: DesiredRequest, scope: FileScope | None) -> PlanWarning:
    # The date as written, never "in N days": a saved plan must not go stale overnight.
    then = "its request is deleted"
    if scope is not None and scope.revoke:
        then += " and its key revoked"
    return PlanWarning(
        DevRef(d.developer.id, d.developer.email),
        tuple(_ref(p) for p in d.policies),
        f"expires on {d.expires_text} ({d.where}): from then on it counts as undeclared, and "
        f"{then}; extend `expires` to keep it",
    )


def _rejected(
    r: KeyRequest, scopes: Iterable[FileScope], now: datetime | None
) -> tuple[str, FileScope] | None:
    """`reject_pending_after`: an undeclared pending request of a developer listed in the
    file, older than the age it gives."""
    if r.approved or r.is_v1 or now is None:
        return None
    age = _age(r.date_created, now)
    if age is None:
        return None
    for s in scopes:
        limit = s.reject_pending_after
        if limit is not None and r.developer_id in s.developer_ids and age > limit:
            return (
                f"pending for {age.days} days (reject_pending_after: {s.reject_pending_text} "
                f"in {s.path})",
                s,
            )
    return None


def _revocation(
    r: KeyRequest,
    developer: Developer | None,
    policies: PolicyIndex,
    approved_by_identity: Mapping[Identity, list[KeyRequest]],
) -> tuple[str | None, str | None]:
    """The label of the key that deleting approved request `r` revokes, or why none can be
    told apart: (label, None) or (None, the warning's message)."""
    stays = "nothing is revoked, and the key it issued stays valid"
    if developer is None or developer.keys is None:
        return None, f"the Dashboard does not list this developer's keys: {stays}"
    identity = policies.identity(r)
    others = sorted(o.id for o in approved_by_identity.get(identity, []) if o.id != r.id)
    if others:
        return None, (
            f"another approved request of this developer ({', '.join(others)}) holds the same "
            f"policies, so their keys cannot be told apart: {stays}"
        )
    found = developer.keys_granting(identity[1], policies)
    if not found:
        return None, (
            "no key on the developer's record grants exactly these policies (revoked "
            f"already, or never recorded): {stays}, if there is one"
        )
    if len(found) > 1:
        return None, (
            f"{len(found)} keys on the developer's record grant exactly these policies, so "
            f"the one this request issued cannot be told apart: {stays}"
        )
    return key_label(found[0]), None


def _age(date_created: str, now: datetime) -> timedelta | None:
    try:
        created = datetime.fromisoformat(date_created.replace("Z", "+00:00"))
    except ValueError:
        return None
    if created.tzinfo is None:
        return None
    return now - created


def _pending(
    r: KeyRequest, developers: Mapping[str, Developer], policies: PolicyIndex, now: datetime | None
) -> PendingRequest:
    dev = developers.get(r.developer_id)
    age = None if now is None else _age(r.date_created, now)
    return PendingRequest(
        request_id=r.id,
        developer=DevRef(r.developer_id, dev.email if dev else ""),
        policies=_policy_refs(r.policies, policies),
        date_created=r.date_created,
        age_days=None if age is None else max(0, age.days),
    )


def _delete(
    r: KeyRequest,
    dev: DevRef,
    pols: tuple[PolicyRef, ...],
    reason: str,
    declared_at: str | None = None,
) -> Action:
    """The delete of live request `r`: what it holds (fields, owner, approval) as it is."""
    return Action(
        action="delete",
        developer=dev,
        policies=pols,
        reason=reason,
        request_id=r.id,
        fields=r.user_fields,
        owner=r.owner,
        approved=r.approved,
        declared_at=declared_at,
    )


def _ref(p: Policy) -> PolicyRef:
    return PolicyRef(p.db_id, p.name)


def _policy_refs(refs: Iterable[str], policies: PolicyIndex) -> tuple[PolicyRef, ...]:
    out = []
    for ref in refs:
        found = policies.lookup(ref)
        out.append(_ref(found[0]) if len(found) == 1 else PolicyRef(ref, "(unknown policy)"))
    return tuple(out)
