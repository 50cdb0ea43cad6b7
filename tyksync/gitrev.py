"""Manifests as committed at a git revision, read with git itself (`diff --base REV`).

Nothing is checked out and the work tree is left exactly as it was, no new file either:
git is asked which files lie under the paths at that revision (`ls-tree`) and for their
bytes (`cat-file --batch`), which are written to a temporary folder outside the work tree
and read there by the one manifest loader. Every git call has a timeout and no shell.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Final

import msgspec

from tyksync.errors import ManifestError, Problem, TyksyncError
from tyksync.escape import printable
from tyksync.manifest import Manifests, load_manifests
from tyksync.manifest.discovery import MANIFEST_SUFFIXES
from tyksync.manifest.yamlload import MAX_FILE_BYTES, too_big

GIT_TIMEOUT: Final = 60.0
_SYMLINK_MODE: Final = "120000"
MAX_FILES: Final = 10_000  # manifest files at one revision: far past any real repository


class GitError(TyksyncError):
    """git cannot give what was asked: no repository, an unknown revision, a failure."""


def manifests_at(rev: str, paths: Sequence[Path], *, timeout: float = GIT_TIMEOUT) -> Manifests:
    """The manifests under `paths` (as given, relative to the current directory) as
    committed at `rev`. A path that does not exist at `rev` holds no manifest there (a
    folder a pull request adds). Files are named `REV:PATH` (PATH from the repository's
    root), the way git names them, in every problem and declaration."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n"):
        raise GitError(f"--base {printable(rev)!r}: not a git revision")
    top = _toplevel(timeout)
    commit = _commit(rev, top, timeout)
    wanted = [_in_repo(p, top) for p in paths]
    entries = _ls_tree(commit, wanted, top, timeout, rev)
    with tempfile.TemporaryDirectory(prefix="tyksync-base-") as tmp:
        root = Path(tmp)
        blobs = _cat_blobs([sha for sha, _ in entries], top, timeout)
        for (_, name), data in zip(entries, blobs, strict=True):
            target = root.joinpath(*PurePosixPath(name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        present = [rel for rel in wanted if any(_under(name, rel) for _, name in entries)]
        if not present:
            return Manifests(())
        prefix = str(root) + os.sep
        try:
            loaded = load_manifests([root / rel for rel in present])
        except ManifestError as e:
            raise ManifestError(
                [dataclasses.replace(p, file=_relabel(p.file, prefix, rev)) for p in e.problems]
            ) from None
    return _relabelled(loaded, prefix, rev)


def _git(args: list[str], cwd: Path, timeout: float, *, what: str, stdin: bytes = b"") -> str:
    return _git_bytes(args, cwd, timeout, what=what, stdin=stdin).decode("utf-8", "replace")


def _git_bytes(
    args: list[str], cwd: Path, timeout: float, *, what: str, stdin: bytes = b""
) -> bytes:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    command = ["git", "--literal-pathspecs", *args]
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("--base needs git, and no `git` command was found") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {timeout:g} s; gave up") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = printable(message[-1]) if message else f"exit {done.returncode}"
        raise GitError(f"{what}: {detail}")
    return done.stdout


def _toplevel(timeout: float) -> Path:
    try:
        out = _git(["rev-parse", "--show-toplevel"], Path.cwd(), timeout, what="git rev-parse")
    except GitError as e:
        raise GitError(
            f"--base reads git history, and this is not inside a git work tree ({e})"
        ) from None
    return Path(out.rstrip("\n"))


def _under(name: str, rel: str) -> bool:
    return rel == "." or name == rel or name.startswith(rel.rstrip("/") + "/")


def _commit(rev: str, top: Path, timeout: float) -> str:
    try:
        out = _git(
            ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top, timeout, what="rev"
        )
    except GitError:
        raise GitError(
            f"--base {printable(rev)!r}: unknown git revision (fetch it first, e.g. "
            "`git fetch origin main`)"
        ) from None
    return out.strip()


def _in_repo(path: Path, top: Path) -> str:
    """`path` relative to the repository's root, in git's spelling (`/`, `.` for the root)."""
    real_top = os.path.realpath(top)
    rel = os.path.relpath(os.path.realpath(path), real_top)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise GitError(
            f"{printable(str(path))}: outside the git work tree {printable(real_top)}, so "
            "--base cannot read it at a revision"
        )
    return PurePosixPath(*Path(rel).parts).as_posix() if rel != os.curdir else "."


def _ls_tree(
    commit: str, wanted: Sequence[str], top: Path, timeout: float, rev: str
) -> list[tuple[str, str]]:
    """(blob id, path from the root) of every manifest under `wanted` at `commit`: files
    named *.yaml or *.yml, and any file named itself (as the loader reads them)."""
    out = _git_bytes(
        ["ls-tree", "-r", "-z", "-l", "--full-tree", commit, "--", *wanted],
        top,
        timeout,
        what="git ls-tree",
    )
    entries: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_name = record.partition(b"\t")
        mode, kind, sha, size = meta.decode("ascii", "replace").split()
        name = raw_name.decode("utf-8", "surrogateescape")
        if kind != "blob":
            continue  # a submodule
        if name not in wanted and not (name.endswith(MANIFEST_SUFFIXES) and _shown(name, wanted)):
            continue
        if len(entries) >= MAX_FILES:
            raise GitError(f"git ls-tree: more than {MAX_FILES} manifest files; gave up")
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or any(p in ("", ".", "..") for p in parts):
            problems.append(
                Problem(f"{rev}:{name}", 1, "a path git should never hold; refusing it")
            )
        elif int(size) > MAX_FILE_BYTES:
            # Refused before it is read: git would hand over the whole blob.
            problems.append(Problem(f"{rev}:{name}", 1, too_big()))
        elif mode == _SYMLINK_MODE:
            problems.append(
                Problem(
                    f"{rev}:{name}",
                    1,
                    "a symbolic link at this revision; --base reads regular files",
                )
            )
        else:
            entries.append((sha, name))
    if problems:
        raise ManifestError(problems)
    return entries


def _shown(name: str, wanted: Sequence[str]) -> bool:
    """Whether discovery would read `name` in a folder given: hidden entries below it
    (.github, .tyksync, ...) are skipped, as in `manifest.discovery`."""
    for rel in wanted:
        if _under(name, rel):
            below = name if rel == "." else name[len(rel.rstrip("/")) + 1 :]
            if not any(part.startswith(".") for part in PurePosixPath(below).parts):
                return True
    return False


def _cat_blobs(shas: Sequence[str], top: Path, timeout: float) -> list[bytes]:
    """The bytes of each blob, in order, from one `git cat-file --batch`."""
    if not shas:
        return []
    out = _git_bytes(
        ["cat-file", "--batch"],
        top,
        timeout,
        what="git cat-file",
        stdin="".join(f"{sha}\n" for sha in shas).encode("ascii"),
    )
    blobs: list[bytes] = []
    at = 0
    for sha in shas:
        end = out.index(b"\n", at)
        header = out[at:end].decode("ascii", "replace").split(" ")
        if len(header) != 3 or header[0] != sha or header[1] != "blob":
            raise GitError(f"git cat-file: unexpected answer for {sha}")
        size = int(header[2])
        blobs.append(out[end + 1 : end + 1 + size])
        at = end + 1 + size + 1  # the content is followed by a newline
    return blobs


def _relabel(file: str, prefix: str, rev: str) -> str:
    if file.startswith(prefix):
        return f"{rev}:{Path(file[len(prefix) :]).as_posix()}"
    return file


def _relabelled(manifests: Manifests, prefix: str, rev: str) -> Manifests:
    def name(file: str) -> str:
        return _relabel(file, prefix, rev)

    return Manifests(
        tuple(
            dataclasses.replace(
                f,
                path=name(f.path),
                developers=tuple(dataclasses.replace(d, file=name(d.file)) for d in f.developers),
                requests=tuple(msgspec.structs.replace(r, file=name(r.file)) for r in f.requests),
            )
            for f in manifests.files
        )
    )
