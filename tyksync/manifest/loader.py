"""Find, read and check every manifest file of a run; report all problems at once."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from tyksync.errors import ManifestError, Problem
from tyksync.manifest.model import ManifestDoc
from tyksync.manifest.validate import validate_doc
from tyksync.manifest.yamlload import YamlDoc, read_yaml_file
from tyksync.models import Prune

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
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


def find_manifest_files(
    paths: Sequence[str | Path], problems: list[Problem]
) -> list[tuple[str, Path]]:
    """(display path, path) of every manifest, sorted by display path, each file once.

    An explicitly named file is read whatever its suffix. Inside folders, only *.yaml and
    *.yml are read, and hidden entries (.git, .github, .tyksync, ...) are skipped: CI
    workflows are YAML too, and are not manifests. Symlinks are followed, but a folder
    is never entered twice, so a symlink loop ends.
    """
    if not paths:
        problems.append(Problem("<command line>", 1, "no manifest paths given"))
        return []
    found: dict[str, tuple[str, Path]] = {}  # real path -> (display, path)
    for given in paths:
        display = str(given)
        path = Path(given)
        if path.is_dir():
            in_folder = list(_walk(path, display, problems))
            if not in_folder:
                problems.append(Problem(display, 1, "no manifests (*.yaml, *.yml) in this folder"))
            for file in in_folder:
                found.setdefault(os.path.realpath(file), (str(file), file))
        elif path.is_file():
            found.setdefault(os.path.realpath(path), (display, path))
        elif path.exists():
            problems.append(Problem(display, 1, "not a regular file or folder"))
        else:
            problems.append(Problem(display, 1, "no such file or folder"))
    return sorted(found.values(), key=lambda item: item[0])


def _walk(root: Path, display: str, problems: list[Problem]) -> Iterable[Path]:
    def unreadable(exc: OSError) -> None:
        where = exc.filename if exc.filename else display
        problems.append(Problem(str(where), 1, f"cannot read folder: {exc.strerror}"))

    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, onerror=unreadable, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or not name.endswith(MANIFEST_SUFFIXES):
                continue
            file = Path(folder, name)
            if file.is_file():
                yield file


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
