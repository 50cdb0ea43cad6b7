"""Live key requests written back as a manifest, so that export-then-plan shows no changes."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from tyksync import __version__
from tyksync.manifest.dump import dump_manifest
from tyksync.manifest.model import DEVELOPER_PATTERN
from tyksync.models import Developer, KeyRequest, LiveState, Policy

DEFAULT_OWNER = "exported"


def export_manifest(
    live: LiveState, *, owner: str | None = None, developer: str | None = None
) -> tuple[str, list[str]]:
    """The manifest text and notes about requests that could not be expressed."""
    notes: list[str] = []
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

    chosen: dict[tuple[str, frozenset[str]], KeyRequest] = {}
    refs: dict[tuple[str, frozenset[str]], list[str]] = {}
    skipped = False
    for r in sorted(live.requests, key=lambda r: (not r.approved, r.date_created, r.id)):
        dev = developers.get(r.developer_id)
        if developer and (dev is None or dev.email.lower() != developer.lower()):
            continue
        if owner is not None and r.owner != owner:
            continue
        if not r.policies:
            notes.append(f"request {r.id}: a legacy request (for_api), not exported")
            continue
        resolved = [policies.lookup(ref) for ref in r.policies]
        if dev is None or dev.inactive:
            notes.append(f"request {r.id}: its developer is unknown or inactive, not exported")
            skipped = True
            continue
        if any(len(found) != 1 or not found[0].active for found in resolved):
            notes.append(f"request {r.id}: names an unknown or inactive policy, not exported")
            skipped = True
            continue
        identity = (r.developer_id, frozenset(found[0].db_id for found in resolved))
        if identity in chosen:
            notes.append(f"request {r.id}: a duplicate of {chosen[identity].id}, not exported")
            continue
        chosen[identity] = r
        refs[identity] = [policy_ref(found[0]) for found in resolved]

    by_developer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for identity, r in chosen.items():
        key = developer_ref(developers[r.developer_id])
        plans = refs[identity]
        entry: dict[str, Any] = {"plan": plans[0]} if len(plans) == 1 else {"plans": plans}
        if not r.approved:
            entry["approved"] = False
        if r.user_fields:
            entry["fields"] = dict(sorted(r.user_fields.items()))
        by_developer[key].append(entry)

    # A partial export must not prune: the requests it left out would be deleted.
    prune = "owned" if owner is not None and not skipped and not developer else "none"
    if developer and not any(d.email.lower() == developer.lower() for d in live.developers):
        notes.append(f"no developer with the email {developer!r}: nothing exported")
    doc: dict[str, Any] = {
        "version": 1,
        "owner": owner or DEFAULT_OWNER,
        "prune": prune,
        "developers": {
            k: sorted(v, key=lambda e: str(e.get("plan") or e.get("plans")))
            for k, v in sorted(by_developer.items(), key=lambda kv: kv[0].lower())
        },
    }
    header = f"# Exported by tyksync {__version__}: {len(chosen)} request(s).\n"
    if prune == "none":
        header += (
            "# prune: none: applying this file deletes no undeclared request (duplicates of a\n"
            "# declared one are still reduced to one). Review before changing it.\n"
        )
    body = dump_manifest(doc)
    return header + body, notes
