"""Find, read and check every manifest file of a run; report all problems at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from tyksync.errors import ManifestError, Problem
from tyksync.gcpause import collector_paused
from tyksync.manifest.discovery import find_manifest_files
from tyksync.manifest.model import ManifestDoc
from tyksync.manifest.validate import validate_doc
from tyksync.manifest.yamlload import YamlDoc, read_yaml_file
from tyksync.models import Prune


@dataclass(frozen=True, slots=True)  # 100k of them: no __dict__ each
class DeclaredRequest:
    developer: str  # reference as written (email or id)
    plans: tuple[str, ...]  # policy references as written, declared order
    approved: bool  # the request's, else the defaults', else True
    fields: Mapping[str, str]  # defaults.fields overlaid with the request's fields
    owner: str
    file: str
    line: int
    # The environments of tyksync.toml this request is in: its own `environments`, else
    # its file's; None: all of them.
    environments: frozenset[str] | None = None
    environments_line: int = 0  # where they are written (FILE:LINE of a typo)
    expires: str | None = None  # as written: a date or an RFC 3339 time (checked)

    @property
    def textual_identity(self) -> tuple[str, frozenset[str]]:
        """Identity before resolution: emails compare case-insensitively."""
        return (self.developer.lower(), frozenset(self.plans))

    def in_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments


@dataclass(frozen=True)
class DeclaredDeveloper:
    """Every key under `developers:`, so that `bob: []` is kept (it matters for pruning)."""

    ref: str
    file: str
    line: int


@dataclass(frozen=True)
class ManifestFile:
    path: str
    owner: str
    prune: Prune
    developers: tuple[DeclaredDeveloper, ...]
    requests: tuple[DeclaredRequest, ...]
    sha256: str = ""  # of the file's bytes
    environments: frozenset[str] | None = None  # the file's `environments`; None: all
    environments_line: int = 0

    def in_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments

    revoke: bool = False
    reject_pending_after: str | None = None  # as written (`30d`; checked)


@dataclass(frozen=True)
class Manifests:
    files: tuple[ManifestFile, ...]

    @property
    def requests(self) -> tuple[DeclaredRequest, ...]:
        return tuple(r for f in self.files for r in f.requests)

    def to_data(self) -> dict[str, Any]:
        """Canonical plain data, for fingerprinting saved plans.

        Each file's bytes are in it through their digest: any edit, a comment included,
        makes a saved plan stale (SPEC section 9). Paths are kept as given.
        """
        return {
            "files": [
                {
                    "path": f.path,
                    "sha256": f.sha256,
                    "owner": f.owner,
                    "prune": f.prune,
                    "developers": [d.ref for d in f.developers],
                    "requests": [
                        {
                            "developer": r.developer,
                            "plans": list(r.plans),
                            "approved": r.approved,
                            "fields": dict(sorted(r.fields.items())),
                        }
                        for r in f.requests
                    ],
                }
                for f in self.files
            ]
        }


def load_manifests(paths: Sequence[str | Path]) -> Manifests:
    """Read every manifest under `paths`; raise one ManifestError with every problem."""
    problems: list[Problem] = []
    files = find_manifest_files(paths, problems)
    loaded: list[ManifestFile] = []
    with collector_paused():
        for display, path in files:
            doc, found = read_yaml_file(path, display)
            problems.extend(found)
            if doc is None:
                continue
            manifest, found = validate_doc(doc, display)
            problems.extend(found)
            if manifest is not None:
                declared = _declared(manifest, doc, display)
                problems.extend(_environments_outside_file(declared))
                loaded.append(declared)
        problems.extend(_identities_declared_twice(loaded))
    if problems:
        raise ManifestError(problems)
    return Manifests(tuple(loaded))


def _declared(manifest: ManifestDoc, doc: YamlDoc, file: str) -> ManifestFile:
    defaults_approved = manifest.defaults.approved if manifest.defaults else True
    defaults_fields = dict(manifest.defaults.fields) if manifest.defaults else {}
    file_environments = _environments(manifest.environments)
    file_environments_line = doc.line_of(("environments",)) if file_environments else 0
    developers: list[DeclaredDeveloper] = []
    requests: list[DeclaredRequest] = []
    for ref, decls in manifest.developers.items():
        developers.append(DeclaredDeveloper(ref, file, doc.line_of(("developers", ref))))
        for index, decl in enumerate(decls):
            fields = {**defaults_fields, **(decl.fields or {})}
            environments, environments_line = file_environments, file_environments_line
            if decl.environments is not None:
                environments = _environments(decl.environments)
                environments_line = doc.line_of(("developers", ref, index, "environments"))
            requests.append(
                DeclaredRequest(
                    developer=ref,
                    plans=decl.policy_refs,
                    approved=defaults_approved if decl.approved is None else decl.approved,
                    fields=MappingProxyType(fields),
                    owner=manifest.owner,
                    file=file,
                    line=doc.line_of(("developers", ref, index)),
                    environments=environments,
                    environments_line=environments_line,
                    expires=decl.expires,
                )
            )
    return ManifestFile(
        path=file,
        owner=manifest.owner,
        prune=manifest.prune,
        developers=tuple(developers),
        requests=tuple(requests),
        sha256=doc.sha256,
        environments=file_environments,
        environments_line=file_environments_line,
        revoke=manifest.revoke,
        reject_pending_after=manifest.reject_pending_after,
    )


def _environments(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


def _environments_outside_file(manifest: ManifestFile) -> list[Problem]:
    """A request limited to environments its file is not in would never apply: a slip."""
    if manifest.environments is None:
        return []
    problems = []
    for request in manifest.requests:
        assert request.environments is not None  # the file's, at least
        outside = sorted(request.environments - manifest.environments)
        if outside:
            problems.append(
                Problem(
                    manifest.path,
                    request.environments_line,
                    f"environments: {', '.join(outside)} not in this file's environments "
                    f"({', '.join(sorted(manifest.environments))}, line "
                    f"{manifest.environments_line})",
                )
            )
    return problems


def _identities_declared_twice(files: Sequence[ManifestFile]) -> list[Problem]:
    """Same developer reference and same set of policy references, anywhere in the run.

    Checked on the text, so that `validate` catches it offline; `resolve` checks again
    after resolution, where `Gold` and its `_id` turn out to be the same policy.
    """
    seen: dict[tuple[str, frozenset[str]], list[DeclaredRequest]] = {}
    problems: list[Problem] = []
    for request in (r for f in files for r in f.requests):
        earlier = seen.setdefault(request.textual_identity, [])
        # Declarations for environments that do not meet (`environments: [staging]` and
        # `environments: [prod]`) never plan together: each environment sees one of them.
        clash = next((e for e in earlier if _meet(e.environments, request.environments)), None)
        if clash is not None:
            problems.append(declared_twice(request, clash, request.developer, request.plans))
        earlier.append(request)
    return problems


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or bool(a & b)


class Located(Protocol):
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...


def declared_twice(
    request: Located, earlier: Located, developer: str, policies: Iterable[str]
) -> Problem:
    """The problem for a request whose identity `earlier` already declared."""
    where = f"{earlier.file}:{earlier.line}"
    names = ", ".join(sorted(policies))
    return Problem(
        request.file,
        request.line,
        f"request for developer '{developer}' with policies [{names}] declared twice: "
        f"here and at {where}",
    )
