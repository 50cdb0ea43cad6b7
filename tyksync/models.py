"""Domain models of the live Dashboard, free of its wire format.

The client turns wire JSON (`id`/`_id`, `for_plan`/`apply_policies`, embedded developers
with their sensitive members) into these; nothing past the client sees raw JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from tyksync.lazy import Lazy

OWNER_FIELD = "tyksync_owner"
OP_FIELD = "tyksync_op"
RESERVED_PREFIX = "tyksync_"

Prune = Literal["owned", "developers", "none"]

# What a request is: (developer id, set of canonical policy `_id`s). Two requests with one
# identity grant the same access, so the Dashboard should hold at most one of them.
Identity = tuple[str, frozenset[str]]


# A key as the Dashboard records it on its developer: key id -> the policy ids it grants.
# Key ids are secrets (on an install without hashing they may be the raw key): never
# printed whole, only as `key_label`.
DeveloperKeys = Mapping[str, frozenset[str]]


def key_label(key_id: str) -> str:
    """How a key id is shown (SPEC section 11): `key#` and 8 hex of its sha256."""
    return "key#" + hashlib.sha256(key_id.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Developer:
    id: str
    email: str
    org_id: str = ""
    inactive: bool = False
    # None: not read (a plan reads them only to revoke), or the Dashboard did not list them
    # (or not in a form that can be trusted).
    # Kept out of repr, equality and hashing: a printed Developer never shows a key id.
    keys: DeveloperKeys | None = field(default=None, repr=False, compare=False)

    def keys_granting(self, policy_ids: frozenset[str], canonical: PolicyIndex) -> list[str]:
        """The ids of the keys whose policy set, canonicalised, is `policy_ids`."""
        return [
            key_id
            for key_id, granted in (self.keys or {}).items()
            if frozenset(canonical.canonical(p) for p in granted) == policy_ids
        ]


@dataclass(frozen=True)
class Policy:
    db_id: str  # the database `_id`
    id: str  # the explicit `id`, any string; "" when the policy has none
    name: str
    active: bool = True

    @property
    def refs(self) -> tuple[str, ...]:
        """Every string that names this policy in a manifest or a live request."""
        return tuple(r for r in (self.db_id, self.id, self.name) if r)


# The types there are 100k of in a plan are msgspec Structs, not dataclasses: immutable
# all the same, built ~20 times faster (a frozen dataclass sets each field through
# object.__setattr__), and left out of the collector (they hold no cycles).
class KeyRequest(msgspec.Struct, frozen=True, gc=False):
    id: str
    developer_id: str
    # Policy references as the Dashboard holds them (`apply_policies`, or `[for_plan]`);
    # each may be a policy's `_id` or its explicit `id`.
    policies: tuple[str, ...]
    approved: bool
    fields: Mapping[str, str] = msgspec.field(default_factory=dict)
    date_created: str = ""
    for_api: str = ""
    version: str = "v2"
    org_id: str = ""

    @property
    def owner(self) -> str | None:
        return self.fields.get(OWNER_FIELD)

    @property
    def op(self) -> str | None:
        return self.fields.get(OP_FIELD)

    @property
    def user_fields(self) -> dict[str, str]:
        """Fields a manifest can declare: everything but tyksync's reserved ones."""
        return {k: v for k, v in self.fields.items() if not k.startswith(RESERVED_PREFIX)}

    def has_user_fields(self, wanted: Mapping[str, str]) -> bool:
        """`user_fields == wanted`, for `wanted` without reserved keys, building nothing:
        the planner asks it of every declared request."""
        fields = self.fields
        if not wanted.items() <= fields.items():
            return False
        extra = len(fields) - len(wanted)
        if extra == 0 or (extra == 1 and OWNER_FIELD in fields):  # `wanted` holds no owner
            return True
        return all(key.startswith(RESERVED_PREFIX) for key in fields.keys() - wanted.keys())

    @property
    def is_v1(self) -> bool:
        """A v1 request for an API (`for_api`), naming no policy."""
        return not self.policies


@dataclass(frozen=True)
class LiveState:
    """What one read of the Dashboard saw."""

    developers: tuple[Developer, ...]
    policies: tuple[Policy, ...]
    requests: tuple[KeyRequest, ...]
    # The legacy dialect: a Dashboard before 1.9.2 (`_id` for ids, pages from 0). It keeps
    # only `for_plan`, so a request there names one policy.
    legacy: bool = False

    def developer_index(self) -> DeveloperIndex:
        return DeveloperIndex(self.developers)

    def policy_index(self) -> PolicyIndex:
        return PolicyIndex(self.policies)


class DeveloperIndex:
    def __init__(self, developers: Iterable[Developer]) -> None:
        self.by_id: dict[str, Developer] = {}
        self.by_email: dict[str, list[Developer]] = {}
        for d in developers:
            self.by_id[d.id] = d
            self.by_email.setdefault(d.email.lower(), []).append(d)

    def lookup(self, ref: str) -> list[Developer]:
        """Developers a manifest reference could mean: by id first, then by email."""
        if ref in self.by_id:
            return [self.by_id[ref]]
        return list(self.by_email.get(ref.lower(), []))


class PolicyIndex:
    def __init__(self, policies: Iterable[Policy]) -> None:
        self.by_db_id: dict[str, Policy] = {}
        self.by_ref: dict[str, list[Policy]] = {}
        for p in policies:
            self.by_db_id[p.db_id] = p
            for ref in set(p.refs):
                self.by_ref.setdefault(ref, []).append(p)
        # A 100k listing names a few dozen policies: each reference, and each combination
        # of references a request holds, is resolved once.
        self._canonical: dict[str, str] = {}
        self._sets: dict[tuple[str, ...], frozenset[str]] = {}

    def lookup(self, ref: str) -> list[Policy]:
        """Policies a reference could mean: `_id` first, then explicit `id`, then name."""
        if ref in self.by_db_id:
            return [self.by_db_id[ref]]
        exact_id = [p for p in self.by_ref.get(ref, []) if p.id == ref]
        if exact_id:
            return exact_id
        return list(self.by_ref.get(ref, []))

    def canonical(self, ref: str) -> str:
        """The `_id` that a live request's reference means, or the reference itself."""
        known = self._canonical.get(ref)
        if known is None:
            found = self.lookup(ref)
            known = self._canonical[ref] = found[0].db_id if len(found) == 1 else ref
        return known

    def identity(self, request: KeyRequest) -> Identity:
        """A live request's identity: its policies may be named by `_id` or explicit `id`."""
        refs = request.policies
        ids = self._sets.get(refs)
        if ids is None:
            ids = self._sets[refs] = frozenset(self.canonical(p) for p in refs)
        return (request.developer_id, ids)


def survivor_order(request: KeyRequest) -> tuple[bool, str, str]:
    """Which of several live requests of one identity survives when nothing else decides:
    approved first (it holds a key), then the oldest. Every reader of the same live state
    picks the same one, whatever it declares: concurrent applies rely on that to agree."""
    return (not request.approved, request.date_created, request.id)


# ---- desired state: what the manifests want, resolved against one read of live state ----


class DesiredRequest(msgspec.Struct, frozen=True, gc=False):
    developer: Developer
    policies: tuple[Policy, ...]  # declared order (the first one becomes for_plan)
    approved: bool
    fields: Mapping[str, str]  # user fields only (no tyksync_*)
    owner: str
    file: str
    line: int
    # From this moment on the declaration counts as absent (SPEC section 11); `expires_text`
    # is how the manifest wrote it, for reasons and warnings.
    expires: datetime | None = None
    expires_text: str = ""
    # The `_id`s of `policies`, when the resolver gives them: it builds each combination once.
    policy_ids: frozenset[str] = frozenset()

    @property
    def identity(self) -> Identity:
        return (self.developer.id, self.policy_ids or frozenset(p.db_id for p in self.policies))

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class FileScope:
    """What one manifest file manages, for pruning."""

    path: str
    owner: str
    prune: Prune
    developer_ids: frozenset[str]  # every developer listed, `bob: []` included
    revoke: bool = False  # deleting an approved request also revokes its key
    reject_pending_after: timedelta | None = None
    reject_pending_text: str = ""  # as written (`30d`), for reasons


@dataclass(frozen=True)
class Desired:
    requests: tuple[DesiredRequest, ...]
    scopes: tuple[FileScope, ...]
    # Digest of the manifests these came from: a saved plan is bound to it. A string, or a
    # function computing it when first read (`Lazy`).
    manifest_digest: Lazy = Lazy()  # noqa: RUF009 - a descriptor, shared on purpose
