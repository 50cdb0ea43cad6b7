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

    @property
    def textual_identity(self) -> tuple[str, frozenset[str]]:
        """Identity before resolution: emails compare case-insensitively."""
        return (self.developer.lower(), frozenset(self.plans))


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
                loaded.append(_declared(manifest, doc, display))
        problems.extend(_identities_declared_twice(loaded))
    if problems:
        raise ManifestError(problems)
    return Manifests(tuple(loaded))


def _declared(manifest: ManifestDoc, doc: YamlDoc, file: str) -> ManifestFile:
    defaults_approved = manifest.defaults.approved if manifest.defaults else True
    defaults_fields = dict(manifest.defaults.fields) if manifest.defaults else {}
    developers: list[DeclaredDeveloper] = []
    requests: list[DeclaredRequest] = []
    for ref, decls in manifest.developers.items():
        developers.append(DeclaredDeveloper(ref, file, doc.line_of(("developers", ref))))
        for index, decl in enumerate(decls):
            fields = {**defaults_fields, **(decl.fields or {})}
            requests.append(
                DeclaredRequest(
                    developer=ref,
                    plans=decl.policy_refs,
                    approved=defaults_approved if decl.approved is None else decl.approved,
                    fields=MappingProxyType(fields),
                    owner=manifest.owner,
                    file=file,
                    line=doc.line_of(("developers", ref, index)),
                )
            )
    return ManifestFile(
        path=file,
        owner=manifest.owner,
        prune=manifest.prune,
        developers=tuple(developers),
        requests=tuple(requests),
        sha256=doc.sha256,
    )


def _identities_declared_twice(files: Sequence[ManifestFile]) -> list[Problem]:
    """Same developer reference and same set of policy references, anywhere in the run.

    Checked on the text, so that `validate` catches it offline; `resolve` checks again
    after resolution, where `Gold` and its `_id` turn out to be the same policy.
    """
    first: dict[tuple[str, frozenset[str]], DeclaredRequest] = {}
    problems: list[Problem] = []
    for request in (r for f in files for r in f.requests):
        earlier = first.setdefault(request.textual_identity, request)
        if earlier is not request:
            problems.append(declared_twice(request, earlier, request.developer, request.plans))
    return problems


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
