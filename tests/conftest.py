"""Shared fixtures: sandbox Dashboards over real HTTP on 127.0.0.1 (`sandbox`,
`dialect_sandbox`, `portal`, and `dash`, configured as tyksync's Dashboard), the
in-process CLI (`tyk`) and the log capture (`logs`)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from harness.capture import LogCapture, capture_logs
from support import EXAMPLES, Tyk, canary

from tyksync.sandbox import DIALECTS, Sandbox

SANDBOX_SECRET = "test-secret-canary-1234"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The modern dialect, seeded with the demo data."""
    with Sandbox(SANDBOX_SECRET, seed="demo") as running:
        yield running


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dialect_sandbox(dialect: str) -> Iterator[Sandbox]:
    """The demo data in each dialect in turn."""
    with Sandbox(SANDBOX_SECRET, dialect=dialect, seed="demo") as running:  # type: ignore[arg-type]
        yield running


class Portal:
    """Plain `requests` calls to a sandbox, authorised with the test secret."""

    def __init__(self, sandbox: Sandbox, secret: str = SANDBOX_SECRET) -> None:
        self.sandbox = sandbox
        self.id_key = "id" if sandbox.dialect == "modern" else "_id"
        self.session = requests.Session()
        self.session.headers["authorization"] = secret

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.sandbox.url + path, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def create(self, **body: Any) -> str:
        answer = self.call("POST", "/api/portal/requests", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["Message"])

    def approve(self, request_id: str) -> requests.Response:
        return self.call("PUT", f"/api/portal/requests/approve/{request_id}")

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def portal(dialect_sandbox: Sandbox) -> Iterator[Portal]:
    """A client of `dialect_sandbox`, so tests using it run in both dialects."""
    client = Portal(dialect_sandbox)
    yield client
    client.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "dash(dialect='modern', seed='demo', state=None): how the `dash` fixture's sandbox "
        "is made: its wire dialect, its seed (None: empty) and a state file under tmp_path",
    )


@pytest.fixture
def dash(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """A sandbox configured as tyksync's Dashboard, as a user would configure it.

    TYK_DASHBOARD_URL and TYK_DASHBOARD_SECRET are set (the secret is a fresh canary per
    test, `dash.secret`), TYK_DASHBOARD_SECRET_FILE and NO_COLOR unset, and the test runs
    in tmp_path with examples/manifests copied to ./manifests. By default the sandbox
    speaks the modern dialect, holds the demo data and keeps its state in memory;
    `@pytest.mark.dash(dialect=..., seed=..., state=...)` changes that (`seed=None`: an
    empty Dashboard; `state="NAME"`: its state in tmp_path/NAME).
    """
    marker = request.node.get_closest_marker("dash")
    options: dict[str, Any] = {"dialect": "modern", "seed": "demo", "state": None}
    if marker is not None:
        unknown = set(marker.kwargs) - set(options)
        assert not unknown and not marker.args, f"unknown dash options: {marker}"
        options.update(marker.kwargs)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    for name in ("TYK_DASHBOARD_SECRET_FILE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / options["state"] if options["state"] else None
    sb = Sandbox(
        canary("dash-secret"), dialect=options["dialect"], seed=options["seed"], state_path=state
    )
    sb.start()
    try:
        monkeypatch.setenv("TYK_DASHBOARD_URL", sb.url)
        monkeypatch.setenv("TYK_DASHBOARD_SECRET", sb.secret)
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def tyk() -> Tyk:
    """`tyksync ARGS...` in-process, its stdout and stderr captured; `tyk.runs` keeps every
    run of the test."""
    return Tyk()


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every log record while the test runs, debug included: the root logger at DEBUG, so
    tyksync's records and urllib3's alike."""
    with capture_logs("") as capture:
        yield capture
