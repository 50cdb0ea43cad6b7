"""`tyksync sandbox serve` as a user runs it: a foreground process, stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from tyksync.sandbox.cli import sandbox
from tyksync.urls import is_loopback

SECRET = "cli-secret-canary-5678"


class Served:
    def __init__(self, process: subprocess.Popen[str], announcement: str) -> None:
        self.process = process
        self.announcement = announcement
        found = re.search(r"listening on (http://\S+)", announcement)
        assert found, announcement
        self.url = found.group(1)

    def stop(self) -> tuple[int, str, str]:
        """Ctrl-C, then the exit code and the rest of stdout and stderr."""
        self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=10)
        return self.process.returncode, out, err


def _read_announcement(process: subprocess.Popen[str], deadline: float) -> str:
    """stdout up to the 'Ctrl-C' line, without blocking past the deadline.

    Reads the pipe's file descriptor directly: a buffered readline could swallow lines
    that select() then never reports.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"Ctrl-C" not in data and time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


@contextmanager
def serve(*args: str, secret: str | None = SECRET) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if k != "TYKSYNC_SANDBOX_SECRET"}
    if secret is not None:
        env["TYKSYNC_SANDBOX_SECRET"] = secret
    process = subprocess.Popen(
        [sys.executable, "-m", "tyksync.sandbox.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        announcement = _read_announcement(process, time.monotonic() + 20)
        if "Ctrl-C" not in announcement:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the sandbox did not start:\n{announcement}{out}\n{err}")
        yield Served(process, announcement)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_serve_answers_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with serve("--state", str(state)) as served:
        answer = requests.get(
            served.url + "/api/portal/requests?p=-1", headers={"authorization": SECRET}, timeout=5
        )
        assert answer.status_code == 200
        assert len(answer.json()["Data"]) == 6  # the demo
        assert SECRET not in served.announcement  # it came from the environment
        code, out, err = served.stop()
    assert code == 0
    assert "Traceback" not in err
    assert "Warning" not in err
    assert "GET /api/portal/requests?p=-1 200" in err  # the access log
    assert SECRET not in out + err
    assert len(json.loads(state.read_text())["requests"]) == 6


def test_serve_stops_cleanly_on_sigterm() -> None:
    with serve("--quiet") as served:
        served.process.send_signal(signal.SIGTERM)
        _, err = served.process.communicate(timeout=10)
        assert served.process.returncode == 0
        assert "Traceback" not in err


def test_serve_makes_up_a_secret_and_prints_it_once() -> None:
    with serve("--quiet", secret=None) as served:
        found = re.search(r"secret \(generated.*\): (\S+)", served.announcement)
        assert found
        secret = found.group(1)
        answer = requests.get(
            served.url + "/api/portal/policies", headers={"authorization": secret}, timeout=5
        )
        assert answer.status_code == 200
        code, out, err = served.stop()
    assert code == 0
    assert secret not in out + err


def test_serve_with_a_seed_a_dialect_and_faults(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("developers: [{email: solo@example.com}]\n")
    with serve(
        "--quiet", "--seed", str(seed), "--dialect", "legacy", "--rate-limit", "get=1",
        "--retry-after", "7",
    ) as served:  # fmt: skip
        answer = requests.get(
            served.url + "/api/portal/developers?p=-1",
            headers={"authorization": SECRET},
            timeout=5,
        )
        assert answer.status_code == 429
        assert answer.headers["Retry-After"] == "7"
        assert "legacy dialect" in served.announcement
        assert served.stop()[0] == 0


def test_serve_warns_when_reachable_from_other_machines() -> None:
    with serve("--quiet", "--host", "0.0.0.0") as served:
        code, _, err = served.stop()
    assert code == 0
    assert "warning: listening on 0.0.0.0" in err


def test_a_taken_port_is_an_error_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(sandbox, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_state_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{nope")
    state.chmod(0o600)  # as tyksync makes it: one that others can read is refused
    result = CliRunner().invoke(sandbox, ["serve", "--state", str(state)])
    assert result.exit_code == 1
    assert "not a valid sandbox state file" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "args",
    [
        ["--error-rate", "GET"],
        ["--error-rate", "GET=2"],
        ["--error-rate", "FETCH=0.1"],
        ["--rate-limit", "POST=lots"],
        ["--drop-after-write", "1.5"],
        ["--latency", "-1"],
        ["--dialect", "ancient"],
        ["--port", "70000"],
        ["--seed", "/no/such/seed.yaml"],
    ],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(sandbox, ["serve", *args])
    assert result.exit_code == 2
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---- sandbox reset ---------------------------------------------------------------------


def test_reset_forgets_the_state_so_the_demo_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from support import EXAMPLES, Tyk

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYK_DASHBOARD_URL", raising=False)
    tyk = Tyk()
    assert tyk("apply", str(EXAMPLES), "--sandbox", "--auto-approve").code == 0
    assert "No changes" in tyk("plan", str(EXAMPLES), "--sandbox").out
    reset = tyk("sandbox", "reset")
    assert reset.code == 0, reset.err
    assert (
        reset.out
        == ".tyksync/sandbox.json removed: the next --sandbox run starts from the demo data\n"
    )
    assert not (tmp_path / ".tyksync" / "sandbox.json").exists()
    assert (
        "Plan: 2 to create, 2 to approve, 1 to replace, 1 to delete."
        in tyk("plan", str(EXAMPLES), "--sandbox").out
    )
    again = tyk("sandbox", "reset", "--state", "elsewhere.json")
    assert again.code == 0
    assert again.out == "elsewhere.json: no sandbox state here; nothing to reset\n"
    assert not (tmp_path / "elsewhere.json").exists()
