"""Sandbox fixtures: an emulated Dashboard over real HTTP on 127.0.0.1, per test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support import CliResult, Tyk

from tyksync.cli import run
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


@pytest.fixture
def tyk(capsys: pytest.CaptureFixture[str]) -> Tyk:
    """`tyksync ARGS...` in-process (`tyksync.cli.run`), its output captured."""

    def invoke(*argv: str) -> CliResult:
        capsys.readouterr()
        started = time.perf_counter()
        code = run(list(argv))
        seconds = time.perf_counter() - started
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, seconds)

    return invoke
