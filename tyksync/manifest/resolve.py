"""Resolve manifest references (emails, policy names) against one read of live state."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from tyksync.errors import ManifestError, Problem
from tyksync.manifest.loader import (
    DeclaredDeveloper,
    DeclaredRequest,
    ManifestFile,
    Manifests,
    declared_twice,
)
from tyksync.models import (
    Desired,
    DesiredRequest,
    Developer,
    DeveloperIndex,
    FileScope,
    Identity,
    LiveState,
    Policy,
    PolicyIndex,
)
from tyksync.plan import digest
from tyksync.timefmt import parse_age, parse_expiry


def resolve(manifests: Manifests, live: LiveState) -> Desired:
    """Every declared request with live developers and policies; raises one ManifestError
    with every unresolvable reference and every identity declared twice."""
    resolver = _Resolver(live)
    scopes: list[FileScope] = []
    requests: list[DesiredRequest] = []
    for manifest in manifests.files:
        # Developer problems are reported once, at the developer's key line, however
        # many requests that developer has.
        developers = {d.ref: resolver.developer(d) for d in manifest.developers}
        scopes.append(_scope(manifest, developers))
        for declared in manifest.requests:
            desired = resolver.request(declared, developers[declared.developer], live.legacy)
            if desired is not None:
                requests.append(desired)
    resolver.problems.extend(_declared_twice(requests))
    if resolver.problems:
        raise ManifestError(resolver.problems)
    # Only a saved plan and the JSON plan read the digest.
    return Desired(tuple(requests), tuple(scopes), lambda: digest(manifests.to_data()))


def _scope(manifest: ManifestFile, developers: Mapping[str, Developer | None]) -> FileScope:
    ids = frozenset(d.id for d in developers.values() if d is not None)
    reject = manifest.reject_pending_after
    return FileScope(
        manifest.path,
        manifest.owner,
        manifest.prune,
        ids,
        revoke=manifest.revoke,
        reject_pending_after=parse_age(reject) if reject else None,
        reject_pending_text=reject or "",
    )


class _Resolver:
    def __init__(self, live: LiveState) -> None:
        self.developers: DeveloperIndex = live.developer_index()
        self.policies: PolicyIndex = live.policy_index()
        self.problems: list[Problem] = []
        # What a suggestion may name: only what a manifest could use without an error.
        self._active_developers = [d for d in live.developers if not d.inactive]
        self._active_policies = [p for p in live.policies if p.active]
        self._resolved: dict[str, Policy] = {}  # references that resolved (no problem)
        self._combinations: dict[tuple[str, ...], tuple[tuple[Policy, ...], frozenset[str]]] = {}
        # Each suggestion compares against every name of the Dashboard: manifests pointed
        # at the wrong Dashboard (everything unknown) would take minutes without a bound.
        self._hints_left = HINTED_PROBLEMS

    def _did_you_mean(self, ref: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
        if self._hints_left <= 0:
            return ""
        self._hints_left -= 1
        return _did_you_mean(ref, known, cutoff=cutoff)

    def developer(self, declared: DeclaredDeveloper) -> Developer | None:
        ref = declared.ref
        found = self.developers.lookup(ref)
        if not found:
            hint = self._did_you_mean(ref, (d.email for d in self._active_developers), cutoff=0.8)
            self._problem(declared.file, declared.line, f"unknown developer '{ref}'{hint}")
            return None
        if len(found) > 1:
            ids = ", ".join(sorted(d.id for d in found))
            self._problem(
                declared.file,
                declared.line,
                f"ambiguous developer '{ref}': {len(found)} developers have this email "
                f"({ids}); use the developer id",
            )
            return None
        developer = found[0]
        if developer.inactive:
            self._problem(
                declared.file, declared.line, f"developer '{ref}' is inactive on the Dashboard"
            )
            return None
        return developer

    def request(
        self, declared: DeclaredRequest, developer: Developer | None, legacy: bool
    ) -> DesiredRequest | None:
        combination = self._combinations.get(declared.plans)
        if combination is None:
            combination = self._combination(declared, legacy)
        if combination is None or developer is None:
            return None
        policies, policy_ids = combination
        return DesiredRequest(
            developer=developer,
            policies=policies,
            approved=declared.approved,
            fields=declared.fields,
            owner=declared.owner,
            file=declared.file,
            line=declared.line,
            expires=parse_expiry(declared.expires) if declared.expires else None,
            expires_text=declared.expires or "",
            policy_ids=policy_ids,
        )

    def _combination(
        self, declared: DeclaredRequest, legacy: bool
    ) -> tuple[tuple[Policy, ...], frozenset[str]] | None:
        """The policies `declared.plans` name, or None after reporting why not. Remembered
        when there is no problem: 100k declarations name a few dozen combinations."""
        policies: list[Policy] = []
        ok = True
        for ref in declared.plans:
            policy = self._policy(ref, declared)
            if policy is None:
                ok = False
            elif any(p.db_id == policy.db_id for p in policies):
                self._problem(
                    declared.file,
                    declared.line,
                    f"policy '{ref}' names a policy already listed in this request "
                    f"(_id {policy.db_id})",
                )
                ok = False
            else:
                policies.append(policy)
        if ok and legacy and len(policies) > 1:
            self._problem(
                declared.file,
                declared.line,
                "this Dashboard predates 1.9.2 and keeps one policy per request (for_plan); "
                "declare one request per plan",
            )
            ok = False
        if not ok:
            return None
        combination = (tuple(policies), frozenset(p.db_id for p in policies))
        self._combinations[declared.plans] = combination
        return combination

    def _policy(self, ref: str, declared: DeclaredRequest) -> Policy | None:
        resolved = self._resolved.get(ref)
        if resolved is not None:
            return resolved
        found = self.policies.lookup(ref)
        if not found:
            hint = self._did_you_mean(ref, (p.name for p in self._active_policies))
            self._problem(declared.file, declared.line, f"unknown policy '{ref}'{hint}")
            return None
        if len(found) > 1:
            ids = ", ".join(sorted(p.db_id for p in found))
            self._problem(
                declared.file,
                declared.line,
                f"ambiguous policy '{ref}': {len(found)} policies match it (_id {ids}); "
                "use the policy's `id` or `_id` instead",
            )
            return None
        policy = found[0]
        if not policy.active:
            self._problem(
                declared.file, declared.line, f"policy '{ref}' is inactive on the Dashboard"
            )
            return None
        self._resolved[ref] = policy
        return policy

    def _problem(self, file: str, line: int, message: str) -> None:
        self.problems.append(Problem(file, line, message))


SUGGESTIONS = 3
HINTED_PROBLEMS = 20  # unknown names that get a suggestion; the rest are listed alone


def _did_you_mean(ref: str, known: Iterable[str], *, cutoff: float = 0.6) -> str:
    """` (did you mean 'Gold'?)`: the closest known names, case-insensitively, or "".

    Emails get a higher `cutoff`: their common `@example.com` tail alone makes any two
    alike. The names come from the Dashboard: each is quoted, its quotes and backslashes escaped
    (control characters are escaped where the problem is printed)."""
    by_folded: dict[str, str] = {}
    for name in sorted(known):
        if name:
            by_folded.setdefault(name.casefold(), name)
    close = difflib.get_close_matches(ref.casefold(), by_folded, n=SUGGESTIONS, cutoff=cutoff)
    if not close:
        return ""
    names = " or ".join(_quoted(by_folded[c]) for c in close)
    return f" (did you mean {names}?)"


def _quoted(name: str) -> str:
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _declared_twice(requests: list[DesiredRequest]) -> list[Problem]:
    """Identities that only coincide after resolution: `Gold` and its `_id`, or an email
    and the id of the same developer. Textual duplicates were refused when loading."""
    first: dict[Identity, DesiredRequest] = {}
    problems: list[Problem] = []
    for request in requests:
        earlier = first.setdefault(request.identity, request)
        if earlier is not request:
            label = request.developer.email or request.developer.id
            names = [p.name or p.id or p.db_id for p in request.policies]
            problems.append(declared_twice(request, earlier, label, names))
    return problems
