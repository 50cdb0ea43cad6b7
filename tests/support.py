"""Helpers shared by the test modules: paths, canary values and the in-process CLI."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from harness.capture import CliResult, run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "manifests"

__all__ = ["EXAMPLES", "ROOT", "CliResult", "Tyk", "canary"]


def canary(kind: str) -> str:
    """A fresh value that must never be printed, logged or written: `KIND-CANARY-<hex>`.
    Fresh per test, so that tyksync's process-wide redaction registry, filled by earlier
    tests, cannot hide a leak that a code path makes by itself."""
    return f"{kind}-CANARY-{secrets.token_hex(12)}"


class Tyk:
    """`tyksync ARGS...` in-process (`harness.capture.run_cli`); every run kept in `runs`."""

    def __init__(self) -> None:
        self.runs: list[CliResult] = []

    def __call__(self, *argv: str) -> CliResult:
        result = run_cli(argv)
        self.runs.append(result)
        return result


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl (tests using it skip
    without: `shutil.which("openssl")`)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
