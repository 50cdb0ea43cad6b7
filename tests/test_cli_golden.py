"""Golden files for the demo plan in each format, end to end through the CLI and sandbox.

Regenerate after an intended change with: TYKSYNC_UPDATE_GOLDEN=1 pytest tests/test_cli_golden.py
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import EXAMPLES, Tyk

from tyksync import __version__

GOLDEN = Path(__file__).parent / "golden" / "cli"


@pytest.mark.parametrize("fmt,suffix", [("text", "txt"), ("json", "json"), ("markdown", "md")])
def test_demo_plan_golden(
    fmt: str,
    suffix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tyk: Tyk,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYK_DASHBOARD_URL", raising=False)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    args = ["plan", "manifests", "--sandbox", "--sandbox-state", "state.json", "--format", fmt]
    r = tyk(*args)
    assert r.code == 0, r.err
    out = r.out.replace(__version__, "<version>")
    golden = GOLDEN / f"demo_plan.{suffix}"
    if os.environ.get("TYKSYNC_UPDATE_GOLDEN"):
        golden.write_text(out)
    assert out == golden.read_text()
