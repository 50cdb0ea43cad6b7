"""Finding the manifest files of a run, without leaving the paths it was given."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tyksync.errors import Problem
from tyksync.escape import printable

MANIFEST_SUFFIXES = (".yaml", ".yml")


def find_manifest_files(
    paths: Sequence[str | Path], problems: list[Problem]
) -> list[tuple[str, Path]]:
    """(display path, path) of every manifest, sorted by display path, each file once.

    An explicitly named file is read whatever its suffix. Inside folders, only *.yaml and
    *.yml are read, and hidden entries (.git, .github, .tyksync, ...) are skipped: CI
    workflows are YAML too, and are not manifests.

    A symlink inside a folder is followed only when it stays within the paths given: one
    that leads elsewhere (a link to `/` would walk the whole machine, a link to a file
    outside the repo would feed it to the plan) is a problem naming it, and so is one that
    leads back to a folder that contains it (a loop). The paths given may be links.
    """
    if not paths:
        problems.append(Problem("<command line>", 1, "no manifest paths given"))
        return []
    roots = [os.path.realpath(p) for p in paths if os.path.exists(p)]
    found: dict[str, tuple[str, Path]] = {}  # real path -> (display, path)
    for given in paths:
        display = str(given)
        path = Path(given)
        if path.is_dir():
            in_folder = list(_walk(path, roots, (), set(), problems))
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


def _walk(
    folder: Path,
    roots: Sequence[str],
    ancestors: tuple[str, ...],
    entered: set[str],
    problems: list[Problem],
) -> Iterator[Path]:
    """The manifests under `folder`, in sorted order. `ancestors`: the real paths of the
    folders walked through to get here; `entered`: every real folder walked, so that two
    links to one folder do not read it twice."""
    real = os.path.realpath(folder)
    if real in entered:
        return
    entered.add(real)
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as e:
        problems.append(Problem(str(folder), 1, f"cannot read folder: {e.strerror}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(folder, entry.name)
        is_dir = entry.is_dir()
        if not (is_dir or entry.name.endswith(MANIFEST_SUFFIXES)):
            continue  # not read, so wherever it leads does not matter
        if entry.is_symlink():
            target = os.path.realpath(path)
            if not any(_within(target, root) for root in roots):
                problems.append(
                    Problem(
                        str(path),
                        1,
                        f"symbolic link to {printable(target)}, outside the paths given; "
                        "refusing to follow it",
                    )
                )
                continue
            if is_dir and any(_within(a, target) for a in (*ancestors, real)):
                problems.append(
                    Problem(
                        str(path),
                        1,
                        f"symbolic link loop: leads back to {printable(target)}, "
                        "a folder that contains it",
                    )
                )
                continue
        if is_dir:
            yield from _walk(path, roots, (*ancestors, real), entered, problems)
        elif entry.is_file():
            yield path


def _within(path: str, folder: str) -> bool:
    """`path` is `folder` or lies under it (both real paths)."""
    return os.path.commonpath([path, folder]) == folder
