"""Where a change comes from (SPEC section 11): the manifest line, the commit, the CI run.

Every request tyksync creates carries `tyksync_source` (`FILE:LINE` of its declaration,
relative to the repository's top level, or to the current directory outside a git work
tree) and, in a work tree, `tyksync_commit` (HEAD's full sha). Every journal entry carries
the commit and, when the environment names one, the CI run's URL.

Git is asked once per run (`detect`), with a timeout: no git, no work tree, a repository
without commits or a git that hangs all mean "no commit", never an error.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tyksync.models import RESERVED_PREFIX

SOURCE_FIELD = RESERVED_PREFIX + "source"
COMMIT_FIELD = RESERVED_PREFIX + "commit"
GIT_TIMEOUT = 3.0
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Provenance:
    root: str  # absolute: what `tyksync_source` paths are relative to
    commit: str | None = None
    ci_run: str | None = None  # the URL of the CI run applying

    @classmethod
    def here(cls) -> Provenance:
        """No git asked: sources relative to the current directory, no commit."""
        return cls(os.getcwd())

    def source(self, declared_at: str) -> str:
        """`FILE:LINE` (a path as the manifests were given) relative to the root."""
        path, sep, line = declared_at.rpartition(":")
        if not sep or not line.isdigit():
            return declared_at
        relative = os.path.relpath(os.path.abspath(path), self.root)
        return f"{Path(relative).as_posix()}:{line}"

    def fields(self, declared_at: str | None) -> dict[str, str]:
        """The reserved fields a create adds: never part of what makes a request differ."""
        found: dict[str, str] = {}
        if declared_at:
            found[SOURCE_FIELD] = self.source(declared_at)
        if self.commit:
            found[COMMIT_FIELD] = self.commit
        return found

    def journal_context(self) -> dict[str, str]:
        context: dict[str, str] = {}
        if self.commit:
            context["commit"] = self.commit
        if self.ci_run:
            context["ci_run"] = self.ci_run
        return context


def detect(env: Mapping[str, str], cwd: str | None = None) -> Provenance:
    """The provenance of a run started in `cwd` (default: the current directory)."""
    here = os.path.abspath(cwd or os.getcwd())
    top = _git(["rev-parse", "--show-toplevel"], here)
    commit = _git(["rev-parse", "--verify", "--quiet", "HEAD"], here) if top else None
    return Provenance(
        root=os.path.abspath(top) if top else here,
        commit=commit if commit and _SHA.fullmatch(commit) else None,
        ci_run=ci_run_url(env),
    )


def ci_run_url(env: Mapping[str, str]) -> str | None:
    """GitHub Actions' run URL, when the environment names all of its parts."""
    server = env.get("GITHUB_SERVER_URL", "").rstrip("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    run_id = env.get("GITHUB_RUN_ID", "")
    if not (server and repository and run_id.isdigit()):
        return None
    return f"{server}/{repository}/actions/runs/{run_id}"


def _git(args: list[str], cwd: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None
