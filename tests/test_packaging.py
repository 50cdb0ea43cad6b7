"""Packaging (SPEC 14): the sdist holds what its tests need, installs into a fresh venv,
and its tests pass there against the installed tyksync; the metadata carries an SPDX
license, the LICENSE file and the project URLs.

Slow (~60 s: building, then installing with the dependencies from the package index), and
run by default.
"""

from __future__ import annotations

import email.parser
import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support import ROOT

pytestmark = pytest.mark.slow

# A smoke subset: the pure planner, the CLI against the sandbox, resolution; fast ones.
SMOKE = ["tests/test_planner.py", "tests/test_cli_golden.py", "tests/test_manifest_resolve.py"]


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("`build` is not installed (it is in the test extra)")
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--outdir", out, ROOT)
    (tarball,) = out.glob("tyksync-*.tar.gz")
    return tarball


def test_the_sdist_holds_what_its_tests_need(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "README.md",
        "pyproject.toml",
        "action.yml",
        ".pre-commit-hooks.yaml",
        "tests/conftest.py",
        "tests/support.py",
        "tests/harness/capture.py",
        "tests/golden/cli/demo_plan.txt",
        "examples/manifests/payments.yaml",
        "examples/ci/github-actions.yml",
        "docs/plan-format.md",
        "scripts/action/plan.sh",
        "tyksync/sandbox/demo.yaml",
    ):
        assert needed in names, needed
    tracked = run("git", "ls-files", "tests", "examples", "scripts", cwd=ROOT).split()
    if tracked:  # a git checkout: every tracked test, example and script file is in it
        assert set(tracked) <= names, set(tracked) - names
    assert not [n for n in names if "__pycache__" in n or n.startswith((".venv", "node_modules"))]


def test_the_metadata_has_a_license_and_urls(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))
        extracted = tar.extractfile(member)
        assert extracted is not None
        metadata = email.parser.Parser().parsestr(extracted.read().decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Repository", "Issues", "Documentation"}
    assert any(
        c.startswith("Programming Language :: Python :: 3")
        for c in metadata.get_all("Classifier") or []
    )
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_installed_from_the_sdist_its_tests_pass(sdist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", sdist, "pytest")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (source,) = (tmp_path / "src").iterdir()
    # The tests import the installed tyksync, not the unpacked sources beside them.
    where = run(python, "-c", "import tyksync; print(tyksync.__file__)", cwd=tmp_path)
    assert "site-packages" in where
    assert (venv / "bin" / "tyksync").is_file()
    out = run(venv / "bin" / "pytest", "-q", "-p", "no:cacheprovider", *SMOKE, cwd=source)
    assert " passed" in out and "failed" not in out
