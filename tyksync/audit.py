"""Audit (SPEC section 12): who holds what now (`grants`), and what a change of the
manifests does to access (`access_diff`). Pure functions: data in, data out.

Grants are read from one read of live state. With manifests, where each request is
declared and whether it is wanted come from the planner itself: the manifests are resolved
and planned against that same read, and a request is declared where a declaration's
identity matches it and the plan keeps it (its duplicates and the undeclared requests the
plan prunes are deleted by that plan; whatever the plan leaves alone is unmanaged). No
second matching is written here.

The access diff is offline: two sets of manifests compared as written, with no Dashboard to
resolve emails or policy names, so a developer or a policy renamed shows as a loss and a
gain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from tyksync.manifest import DeclaredRequest, Manifests, resolve
from tyksync.models import DesiredRequest, Developer, KeyRequest, LiveState, PolicyIndex
from tyksync.plan import DevRef, Plan, PolicyRef
from tyksync.planner import make_plan
from tyksync.timefmt import normalize_date, parse_expiry, utc_text

GrantState = Literal["key", "pending"]
UNMANAGED: Final = "unmanaged"
UNDECLARED: Final = "undeclared"
_UNKNOWN_POLICY: Final = "(unknown policy)"
_DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # what the client normalizes dates to


# ---- grants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One live key request: the access it gives, and where it comes from."""

    developer: DevRef
    policies: tuple[PolicyRef, ...]  # empty for a legacy (v1, `for_api`) request
    state: GrantState
    request_id: str
    owner: str | None  # `fields.tyksync_owner`
    # `FILE:LINE`, `undeclared` or `unmanaged`; None when no manifests were given.
    declared_at: str | None
    created: str  # `date_created`, as the client normalized it
    age_days: int | None  # None when `date_created` is not a date
    expires: str | None  # the declaration's `expires` (access lifecycle), when it has one
    key_on_record: bool | None  # the developer's record holds its key; None: not read
    wanted: bool | None  # the manifests want it; None when no manifests were given
    for_api: str | None  # a legacy request's API, which it grants instead of policies

    @property
    def sort_key(self) -> tuple[str, str, tuple[str, ...], str, str]:
        return (
            self.developer.email.lower(),
            self.developer.id,
            tuple(sorted(p.name for p in self.policies)),
            self.created,
            self.request_id,
        )

    def to_data(self) -> dict[str, Any]:
        return {
            "developer": self.developer.to_data(),
            "policies": [p.to_data() for p in self.policies],
            "state": self.state,
            "request_id": self.request_id,
            "owner": self.owner,
            "declared_at": self.declared_at,
            "created": self.created,
            "age_days": self.age_days,
            "expires": self.expires,
            "key_on_record": self.key_on_record,
            "wanted": self.wanted,
            "for_api": self.for_api,
        }


@dataclass(frozen=True)
class GrantsReport:
    dashboard: str
    as_of: str  # the time ages are counted to, RFC 3339 UTC
    grants: tuple[Grant, ...]  # after filtering, sorted
    with_manifests: bool
    # With manifests: declarations that have no live request yet (the plan creates them).
    not_yet_live: int = 0
    filtered: bool = False  # some rows were left out by a filter
    notes: tuple[str, ...] = ()  # filters that name nothing the Dashboard holds

    def to_data(self) -> dict[str, Any]:
        return {
            "dashboard": self.dashboard,
            "as_of": self.as_of,
            "grants": [g.to_data() for g in self.grants],
        }


@dataclass(frozen=True)
class GrantFilter:
    """Each filter given narrows the rows; several values of one filter widen it again."""

    developers: tuple[str, ...] = ()  # emails (any case) or developer ids
    policies: tuple[str, ...] = ()  # names, explicit `id`s or `_id`s: any in the set
    owners: tuple[str, ...] = ()
    unmanaged: bool = False
    expiring_within: int | None = None  # days
    state: GrantState | None = None


def grants(
    live: LiveState,
    *,
    now: dt.datetime,
    manifests: Manifests | None = None,
    dashboard: str = "",
    where: GrantFilter | None = None,
) -> GrantsReport:
    """The grants of one read of live state. Raises ManifestError when the manifests do
    not resolve against it (as plan would)."""
    policies = live.policy_index()
    developers = {d.id: d for d in live.developers}
    placed: Mapping[str, tuple[str, bool, DesiredRequest | None]] = {}
    not_yet_live = 0
    if manifests is not None:
        desired = resolve(manifests, live)
        plan = make_plan(desired, live, dashboard=dashboard)
        placed = _placement(live, policies, desired.requests, plan)
        not_yet_live = plan.count("create")
    rows = []
    for r in live.requests:
        dev = developers.get(r.developer_id)
        declared_at, wanted, declaration = placed.get(r.id, (None, None, None))
        rows.append(
            Grant(
                developer=DevRef(r.developer_id, dev.email if dev else ""),
                policies=policy_refs(r.policies, policies),
                state="key" if r.approved else "pending",
                request_id=r.id,
                owner=r.owner,
                declared_at=declared_at,
                created=r.date_created,
                age_days=_age_days(r.date_created, now),
                expires=declaration.expires_text or None if declaration else None,
                key_on_record=_key_on_record(r, dev, policies),
                wanted=wanted,
                for_api=r.for_api if r.is_v1 else None,
            )
        )
    kept = _filtered(rows, where or GrantFilter(), live, now)
    return GrantsReport(
        dashboard=dashboard,
        as_of=utc_text(now),
        grants=tuple(sorted(kept, key=lambda g: g.sort_key)),
        with_manifests=manifests is not None,
        not_yet_live=not_yet_live,
        filtered=len(kept) < len(rows),
        notes=_unknown_filters(where or GrantFilter(), live),
    )


def _placement(
    live: LiveState,
    policies: PolicyIndex,
    declarations: Iterable[DesiredRequest],
    plan: Plan,
) -> dict[str, tuple[str, bool, DesiredRequest | None]]:
    """Request id -> (declared_at, wanted, its declaration), read off the plan: of the
    requests of a declared identity, the plan deletes all but the one it keeps; of the
    undeclared ones, it deletes those a manifest prunes and leaves the rest alone."""
    by_identity = {d.identity: d for d in declarations}
    deleted = {a.request_id for a in plan.actions if a.action == "delete"}
    placed: dict[str, tuple[str, bool, DesiredRequest | None]] = {}
    for r in live.requests:
        declaration = None if r.is_v1 else by_identity.get(policies.identity(r))
        if declaration is not None and r.id not in deleted:
            placed[r.id] = (declaration.where, True, declaration)
        elif declaration is not None or r.id in deleted:
            placed[r.id] = (UNDECLARED, False, None)  # a duplicate, or pruned
        else:
            placed[r.id] = (UNMANAGED, False, None)
    return placed


def policy_refs(refs: Iterable[str], policies: PolicyIndex) -> tuple[PolicyRef, ...]:
    """A live request's policy references as (`_id`, name), as the plan names them."""
    out = []
    for ref in refs:
        found = policies.lookup(ref)
        out.append(
            PolicyRef(found[0].db_id, found[0].name)
            if len(found) == 1
            else PolicyRef(ref, _UNKNOWN_POLICY)
        )
    return tuple(out)


def parse_time(value: str) -> dt.datetime | None:
    """An RFC 3339 time, or a date meaning the end of that day (UTC); None otherwise."""
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        pass
    else:
        end = dt.datetime.combine(day, dt.time(23, 59, 59, 999999))
        return end.replace(tzinfo=dt.timezone.utc)
    try:
        parsed = dt.datetime.strptime(normalize_date(value), _DATE_FORMAT)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.timezone.utc)


def _age_days(created: str, now: dt.datetime) -> int | None:
    when = parse_time(created) if "T" in created else None
    if when is None:
        return None
    return max(0, (now - when).days)


def _expiry(written: str | None) -> dt.datetime | None:
    """When an `expires` as written takes effect (the manifest loader checked it)."""
    try:
        return parse_expiry(written) if written else None
    except ValueError:
        return None


def _key_on_record(r: KeyRequest, dev: Developer | None, policies: PolicyIndex) -> bool | None:
    """Whether the developer's record still holds a key granting exactly this request's
    policies (SPEC section 11: `keys`); None when it does not apply (a pending or v1
    request) or the Dashboard did not say (no `keys` member)."""
    if not r.approved or r.is_v1 or dev is None or dev.keys is None:
        return None
    return bool(dev.keys_granting(policies.identity(r)[1], policies))


def _filtered(
    rows: Iterable[Grant], where: GrantFilter, live: LiveState, now: dt.datetime
) -> list[Grant]:
    developer_ids = _developer_ids(where.developers, live)
    policy_ids = _policy_ids(where.policies, live)
    horizon = (
        None if where.expiring_within is None else now + dt.timedelta(days=where.expiring_within)
    )

    def keep(g: Grant) -> bool:
        if developer_ids is not None and g.developer.id not in developer_ids:
            return False
        if policy_ids is not None and not any(p.id in policy_ids for p in g.policies):
            return False
        if where.owners and g.owner not in where.owners:
            return False
        if where.state is not None and g.state != where.state:
            return False
        if where.unmanaged and not _unmanaged(g):
            return False
        if horizon is not None:
            expires = _expiry(g.expires)
            if expires is None or expires > horizon:
                return False
        return True

    return [g for g in rows if keep(g)]


def _unknown_filters(where: GrantFilter, live: LiveState) -> tuple[str, ...]:
    """A filter naming no developer or policy is most likely a typo: say so, rather than
    let an empty report read as "nobody holds it"."""
    developers, policies = live.developer_index(), live.policy_index()
    notes = [
        f"--developer {ref!r}: no developer with this email or id on the Dashboard"
        for ref in where.developers
        if not developers.lookup(ref)
    ]
    notes += [
        f"--policy {ref!r}: no policy with this name, id or _id on the Dashboard"
        for ref in where.policies
        if not policies.lookup(ref)
    ]
    return tuple(notes)


def _unmanaged(g: Grant) -> bool:
    """No manifest governs it; without manifests to ask, no owner mark is the best sign."""
    if g.declared_at is None:
        return g.owner is None
    return g.declared_at == UNMANAGED


def _developer_ids(refs: Sequence[str], live: LiveState) -> set[str] | None:
    if not refs:
        return None
    index = live.developer_index()
    return {d.id for ref in refs for d in index.lookup(ref)} | set(refs)


def _policy_ids(refs: Sequence[str], live: LiveState) -> set[str] | None:
    """Every `_id` a filter's references name, and the references themselves (so that a
    request naming a policy the Dashboard no longer has can still be found by it)."""
    if not refs:
        return None
    index = live.policy_index()
    return {p.db_id for ref in refs for p in index.lookup(ref)} | set(refs)


# ---- access diff -----------------------------------------------------------------------

DiffKind = Literal["gain", "loss", "approve", "unapprove", "expiry", "owner"]
DIFF_KINDS: Final[tuple[DiffKind, ...]] = (
    "gain",
    "loss",
    "approve",
    "unapprove",
    "expiry",
    "owner",
)
_DIFF_RANK: Final = {k: i for i, k in enumerate(DIFF_KINDS)}


@dataclass(frozen=True)
class Declared:
    """One declaration as written, what the diff compares."""

    developer: str  # as written (email or id)
    policies: tuple[str, ...]  # as written, declared order
    approved: bool
    owner: str
    expires: str | None
    declared_at: str  # FILE:LINE
    environments: tuple[str, ...] | None = None  # the environments it is in; None: all

    def to_data(self) -> dict[str, Any]:
        return {
            "approved": self.approved,
            "owner": self.owner,
            "expires": self.expires,
            "declared_at": self.declared_at,
            "environments": None if self.environments is None else list(self.environments),
        }


@dataclass(frozen=True)
class AccessDiff:
    """One difference in access between two sets of manifests.

    `before`/`after`: for `gain` and `loss`, the declaration (`approved`, `owner`,
    `expires`, `declared_at`) or None on the side where there is none; for `approve` and
    `unapprove` the `approved` values; for `expiry` the `expires` values; for `owner` the
    owners.
    """

    change: DiffKind
    developer: str
    policies: tuple[str, ...]
    before: Any
    after: Any
    declared_at: str  # where the change shows: the new declaration, or the old for a loss
    note: str | None = None

    @property
    def sort_key(self) -> tuple[str, tuple[str, ...], int]:
        return (self.developer.lower(), tuple(sorted(self.policies)), _DIFF_RANK[self.change])

    def to_data(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "developer": self.developer,
            "policies": list(self.policies),
            "before": self.before,
            "after": self.after,
            "declared_at": self.declared_at,
            "note": self.note,
        }


@dataclass(frozen=True)
class AccessDiffReport:
    old: str  # what was compared, in words: paths, or paths at a revision
    new: str
    changes: tuple[AccessDiff, ...]

    @property
    def differs(self) -> bool:
        return bool(self.changes)

    def count(self, kind: DiffKind) -> int:
        return sum(1 for c in self.changes if c.change == kind)

    def to_data(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "changes": [c.to_data() for c in self.changes]}


_UNAPPROVE_NOTE: Final = (
    "approval cannot be undone: a key already issued stays valid (plan warns about it)"
)
_NOT_PRUNED_NOTE: Final = (
    "no manifest prunes it any more (prune: owned by this owner, or prune: developers "
    "listing this developer): a live request stays on the Dashboard"
)


def access_diff(
    old: Manifests, new: Manifests, *, old_label: str, new_label: str
) -> AccessDiffReport:
    """The access difference between two sets of manifests, compared as written: a
    request's identity is the developer as written (emails in any case) and the set of
    policies as written."""
    before = _declarations(old)
    after = _declarations(new)
    changes: list[AccessDiff] = []
    for key, was in before.items():
        if key not in after:
            note = None if _still_pruned(was, new) else _NOT_PRUNED_NOTE
            changes.append(
                AccessDiff(
                    "loss", was.developer, was.policies, was.to_data(), None, was.declared_at, note
                )
            )
    for key, now in after.items():
        was_or_none = before.get(key)
        if was_or_none is None:
            changes.append(
                AccessDiff(
                    "gain", now.developer, now.policies, None, now.to_data(), now.declared_at
                )
            )
            continue
        changes.extend(_differences(was_or_none, now))
    return AccessDiffReport(
        old=old_label, new=new_label, changes=tuple(sorted(changes, key=lambda c: c.sort_key))
    )


def _differences(was: Declared, now: Declared) -> list[AccessDiff]:
    def diff(kind: DiffKind, a: Any, b: Any, note: str | None = None) -> AccessDiff:
        return AccessDiff(kind, now.developer, now.policies, a, b, now.declared_at, note)

    out = []
    if was.approved != now.approved:
        if now.approved:
            out.append(diff("approve", False, True))
        else:
            out.append(diff("unapprove", True, False, _UNAPPROVE_NOTE))
    if was.expires != now.expires:
        out.append(diff("expiry", was.expires, now.expires))
    if was.owner != now.owner:
        out.append(diff("owner", was.owner, now.owner))
    return out


_DeclaredKey = tuple[str, frozenset[str], tuple[str, ...] | None]


def _declarations(manifests: Manifests) -> dict[_DeclaredKey, Declared]:
    """Declarations by identity as written and the environments they are in: one identity
    may be declared once per environment (the loader refuses environments that meet)."""
    out: dict[_DeclaredKey, Declared] = {}
    for r in manifests.requests:
        declared = _declared(r)
        out[(*r.textual_identity, declared.environments)] = declared
    return out


def _declared(r: DeclaredRequest) -> Declared:
    return Declared(
        developer=r.developer,
        policies=r.plans,
        approved=r.approved,
        owner=r.owner,
        expires=r.expires,
        declared_at=f"{r.file}:{r.line}",
        environments=None if r.environments is None else tuple(sorted(r.environments)),
    )


def _still_pruned(was: Declared, new: Manifests) -> bool:
    """Whether the new manifests would still delete a live request of a declaration
    removed from them: a file of its owner with prune: owned, or a file listing its
    developer with prune: developers (as written: offline, an id and an email of one
    developer cannot be told to be the same)."""
    developer = was.developer.lower()
    for f in new.files:
        if f.prune == "owned" and f.owner == was.owner:
            return True
        if f.prune == "developers" and any(d.ref.lower() == developer for d in f.developers):
            return True
    return False
