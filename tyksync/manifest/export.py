"""Live key requests written back as a manifest: resolution's inverse.

Export then plan shows no changes: every reference written is one that `resolve` maps back
to the same developer or policy, and every request exported is one the planner would keep.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from tyksync import __version__
from tyksync.manifest.dump import dump_manifest
from tyksync.manifest.model import DEVELOPER_PATTERN
from tyksync.models import Developer, Identity, KeyRequest, LiveState, Policy, survivor_order

DEFAULT_OWNER = "exported"
PENDING_OWNER = "pending"


@dataclass
class _Picked:
    """The requests to export, one per identity, and why others were left out."""

    chosen: dict[Identity, tuple[KeyRequest, list[Policy]]]
    notes: list[str]
    partial: bool  # a request in scope could not be expressed


def export_manifest(
    live: LiveState, *, owner: str | None = None, developer: str | None = None
) -> tuple[str, list[str]]:
    """The manifest text and notes about requests that could not be expressed."""
    picked = _pick(live, owner=owner, developer=developer)
    return _build(live, picked, owner=owner, developer=developer), picked.notes


def export_pending(
    live: LiveState, *, owner: str | None = None, developer: str | None = None
) -> tuple[str, list[str]]:
    """The pending requests waiting for a decision as a manifest of `approved: true`
    entries (SPEC section 11), and notes. Declaring an entry approves that very request:
    its identity and fields are the request's, so the planner approves rather than
    replaces or creates. `prune: none`: adopting deletes nothing undeclared. Requests that
    carry a tyksync owner mark are left out: a manifest made them, pending on purpose."""
    picked = _pick(live, owner=None, developer=developer, pending=True)
    text = _build(live, picked, owner=owner or PENDING_OWNER, developer=developer, pending=True)
    return text, picked.notes


def _pick(
    live: LiveState, *, owner: str | None, developer: str | None, pending: bool = False
) -> _Picked:
    developers = {d.id: d for d in live.developers}
    policies = live.policy_index()
    picked = _Picked({}, [], partial=False)
    # `survivor_order` is what a plan keeps when it has no declaration to go by: the
    # request exported is the one a plan of the exported manifest keeps.
    for r in sorted(live.requests, key=survivor_order):
        dev = developers.get(r.developer_id)
        if developer and (dev is None or dev.email.lower() != developer.lower()):
            continue
        if owner is not None and r.owner != owner:
            continue
        if pending and r.approved:
            continue
        if pending and r.owner is not None:
            picked.notes.append(
                f"request {r.id}: pending, made by tyksync for owner {r.owner!r}; not exported"
            )
            continue
        if r.is_v1:
            picked.notes.append(f"request {r.id}: a legacy request (for_api), not exported")
            continue
        resolved = [policies.lookup(ref) for ref in r.policies]
        if dev is None or dev.inactive:
            picked.notes.append(
                f"request {r.id}: its developer is unknown or inactive, not exported"
            )
            picked.partial = True
            continue
        if any(len(found) != 1 or not found[0].active for found in resolved):
            picked.notes.append(
                f"request {r.id}: names an unknown or inactive policy, not exported"
            )
            picked.partial = True
            continue
        identity = policies.identity(r)
        if identity in picked.chosen:
            kept = picked.chosen[identity][0]
            picked.notes.append(f"request {r.id}: a duplicate of {kept.id}, not exported")
            continue
        picked.chosen[identity] = (r, [found[0] for found in resolved])
    if developer and not any(d.email.lower() == developer.lower() for d in live.developers):
        picked.notes.append(f"no developer with the email {developer!r}: nothing exported")
    return picked


def _build(
    live: LiveState,
    picked: _Picked,
    *,
    owner: str | None,
    developer: str | None,
    pending: bool = False,
) -> str:
    developers = {d.id: d for d in live.developers}
    email_count = Counter(d.email.lower() for d in live.developers)
    policies = live.policy_index()
    developers_index = live.developer_index()

    def policy_ref(p: Policy) -> str:
        # The most readable reference that the resolver maps back to this policy alone.
        for ref in (p.name, p.id):
            if ref and policies.lookup(ref) == [p]:
                return ref
        return p.db_id

    def developer_ref(d: Developer) -> str:
        unique = d.email and email_count[d.email.lower()] == 1
        if (
            unique
            and re.match(DEVELOPER_PATTERN, d.email)
            and developers_index.lookup(d.email) == [d]
        ):
            return d.email
        return d.id

    by_developer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r, request_policies in picked.chosen.values():
        plans = [policy_ref(p) for p in request_policies]
        entry: dict[str, Any] = {"plan": plans[0]} if len(plans) == 1 else {"plans": plans}
        if pending:
            entry["approved"] = True  # said, not left to a default: this is the decision
        elif not r.approved:
            entry["approved"] = False
        if r.user_fields:
            entry["fields"] = dict(sorted(r.user_fields.items()))
        by_developer[developer_ref(developers[r.developer_id])].append(entry)

    # A partial export must not prune: the requests it left out would be deleted.
    prune = (
        "owned"
        if owner is not None and not picked.partial and not developer and not pending
        else "none"
    )
    doc: dict[str, Any] = {
        "version": 1,
        "owner": owner or DEFAULT_OWNER,
        "prune": prune,
        "developers": {
            k: sorted(v, key=lambda e: str(e.get("plan") or e.get("plans")))
            for k, v in sorted(by_developer.items(), key=lambda kv: kv[0].lower())
        },
    }
    header = f"# Exported by tyksync {__version__}: {len(picked.chosen)} request(s).\n"
    if pending:
        header += (
            "# Pending requests waiting for a decision: declaring an entry approves that\n"
            "# request (its key is issued); remove the entries you do not grant.\n"
        )
    elif prune == "none":
        header += (
            "# prune: none: applying this file deletes no undeclared request (duplicates of a\n"
            "# declared one are still reduced to one). Review before changing it.\n"
        )
    return header + dump_manifest(doc)
