"""TLS: verified by default, --ca-bundle for a private CA, --insecure explicit and loud."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from support import self_signed_cert

from tyksync.cli import run
from tyksync.sandbox import Sandbox

SECRET = "tls-secret-CANARY-2b7c"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "manifests"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Sandbox, Path]]:
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", SECRET)
    # requests lets this variable override a session's own `verify`; tyksync must not.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with Sandbox(SECRET, seed="demo", tls=context) as sb:
        monkeypatch.setenv("TYK_DASHBOARD_URL", sb.url)
        yield sb, cert


def test_unknown_ca_is_refused_by_default(
    https: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sb, _ = https
    assert sb.url.startswith("https://")
    assert run(["plan", "manifests"]) == 1
    err = capsys.readouterr().err
    assert "TLS verification failed" in err and "--ca-bundle" in err
    assert SECRET not in err


def test_ca_bundle_verifies(
    https: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, cert = https
    assert run(["plan", "manifests", "--ca-bundle", str(cert)]) == 0
    assert "Plan: 2 to create" in capsys.readouterr().out


def test_insecure_works_and_says_so(
    https: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "manifests", "--insecure"]) == 0
    assert "NOT verified" in capsys.readouterr().err


def test_missing_ca_bundle_is_a_clear_error(
    https: tuple[Sandbox, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", "manifests", "--ca-bundle", "nope.pem"]) == 1
    assert "--ca-bundle nope.pem: no such file" in capsys.readouterr().err
