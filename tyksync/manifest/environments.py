"""What each environment of tyksync.toml sees of the manifests (`environments:`).

`for_environment` is the one place that drops what an environment does not see, before
resolution, so that every environment resolves names against its own Dashboard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from tyksync.errors import ManifestError, Problem
from tyksync.manifest.loader import ManifestFile, Manifests


def for_environment(manifests: Manifests, name: str) -> Manifests:
    """The manifests as environment `name` sees them.

    A file limited to other environments is left out whole (nothing of it is managed
    there: no request, no prune). Within a file, a request limited to other environments
    is left out, and so is a developer whose every request is: that developer may not
    exist on this environment's Dashboard. A developer declared with no request at all
    (`bob: []`) stays, since that says something about every environment.
    """
    files: list[ManifestFile] = []
    for file in manifests.files:
        if not file.in_environment(name):
            continue
        requests = tuple(r for r in file.requests if r.in_environment(name))
        elsewhere = {r.developer for r in file.requests} - {r.developer for r in requests}
        developers = tuple(d for d in file.developers if d.ref not in elsewhere)
        files.append(dataclasses.replace(file, developers=developers, requests=requests))
    return Manifests(tuple(files))


def check_environment_names(manifests: Manifests, known: Collection[str], config: str) -> None:
    """Every `environments:` value names an environment of the config: a typo would
    otherwise quietly keep a request out of every Dashboard."""
    problems: set[Problem] = set()
    known_list = ", ".join(known)
    for file in manifests.files:
        places = [(file.environments, file.environments_line)]
        places += [(r.environments, r.environments_line) for r in file.requests]
        for names, line in places:
            for unknown in sorted((names or frozenset()) - set(known)):
                problems.add(
                    Problem(
                        file.path,
                        line,
                        f"environments: unknown environment '{unknown}' ({config} defines: "
                        f"{known_list})",
                    )
                )
    if problems:
        raise ManifestError(list(problems))


def check_no_environments(manifests: Manifests) -> None:
    """No environment is selected, so nothing says which Dashboard this is: a manifest
    limited to some environments cannot be planned (applying it everywhere, or nowhere,
    would both be a guess that creates or deletes access)."""
    problems: set[Problem] = set()
    for file in manifests.files:
        places = [(file.environments, file.environments_line)]
        places += [(r.environments, r.environments_line) for r in file.requests]
        for names, line in places:
            if names is not None:
                problems.add(
                    Problem(
                        file.path,
                        line,
                        "environments: limited to environments of tyksync.toml, and none is "
                        "selected; pass --env NAME or --all-envs (or set TYKSYNC_ENV)",
                    )
                )
    if problems:
        raise ManifestError(list(problems))
