"""The `tyksync` command's entry point: `tyksync --version` answers without importing the
CLI (click, requests, pydantic, PyYAML and DeepDiff take ~0.3 s to import; the version
needs none of them). Everything else goes to `tyksync.cli.main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from tyksync import __version__

        # What click's version_option prints.
        sys.stdout.write(f"tyksync, version {__version__}\n")
        sys.exit(0)
    from tyksync import gcpause
    from tyksync.cli import main as cli_main

    gcpause.freeze_on_resume = True  # a short-lived process: see gcpause
    cli_main(argv)
