"""The pre-commit hook (SPEC 14), through `pre-commit try-repo` on a temporary git repo:
pre-commit clones this repository, installs it in a hook environment of its own (from
the package index) and runs `tyksync-validate` as a user's repository would.

Slow (the hook environment is built once per run, ~30 s), and run: it is the only proof
that the hook installs and runs at all.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import EXAMPLES, ROOT

pytestmark = pytest.mark.slow

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV, "HOME": str(repo.parent)}
    proc = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    return proc.stdout


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("pre_commit") is None:
        pytest.skip("pre-commit is not installed (it is in the test extra)")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout of tyksync (an unpacked sdist?): try-repo clones one")
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A manifests repository: the examples under manifests/, and YAML that is no
    manifest elsewhere (a CI workflow), all committed."""
    repo = tmp_path / "access"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copytree(EXAMPLES, repo / "manifests")
    workflows = repo / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text("on: push\njobs: {}\n")  # `version` and `owner` missing
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "manifests")
    return repo


def try_repo(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **GIT_ENV,
        "PRE_COMMIT_HOME": str(home),
        "HOME": str(repo.parent),
        "NO_COLOR": "1",
    }
    env.pop("TYK_DASHBOARD_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "tyksync-validate", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_good_manifests_pass_and_a_bad_one_fails_with_file_and_line(
    repo: Path, pre_commit_home: Path
) -> None:
    good = try_repo(repo, pre_commit_home, "--all-files", "--color", "never")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "tyksync validate" in good.stdout and "Passed" in good.stdout

    (repo / "manifests" / "bad.yaml").write_text(
        "version: 1\nowner: x\ndevelopers:\n  a@example.com:\n"
        "    - plan: Gold\n      fields: {n: 42}\n"  # line 6: a field value must be a string
    )
    git(repo, "add", "-A")
    bad = try_repo(repo, pre_commit_home, "--all-files", "--color", "never")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout
    assert "manifests/bad.yaml:6:" in bad.stdout, bad.stdout


def test_other_yaml_neither_triggers_nor_is_validated(repo: Path, pre_commit_home: Path) -> None:
    only_ci = try_repo(
        repo, pre_commit_home, "--files", ".github/workflows/ci.yml", "--color", "never"
    )
    assert only_ci.returncode == 0, only_ci.stdout + only_ci.stderr
    assert "(no files to check)Skipped" in only_ci.stdout.replace(".", "")


def test_validate_imports_no_http_client() -> None:
    """The hook runs on every commit that touches a manifest: `validate` makes no call, and
    importing requests and urllib3 was a third of its time."""
    probe = (
        "import sys\n"
        "from tyksync.cli import run\n"
        "code = run(['validate', sys.argv[1]])\n"
        "http = ('requests', 'urllib3', 'tyksync.client')\n"
        "print(code, *sorted(m for m in http if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe, str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert run.stdout.splitlines()[-1] == "0", run.stdout + run.stderr
