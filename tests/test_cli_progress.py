"""Apply's progress (SPEC 14): outcome lines on stdout as each action completes, a counter
on stderr on a terminal, and `-v` logs each phase and each action's start and end."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from support import Tyk

from tyksync.sandbox import Faults, Sandbox

OUTCOME = re.compile(r"^  (ok|FAILED|skipped) +(create|approve|replace|delete) ")


def env_for(dash: Sandbox) -> dict[str, str]:
    return {
        **os.environ,
        "TYK_DASHBOARD_URL": dash.url,
        "TYK_DASHBOARD_SECRET": dash.secret,
        "NO_COLOR": "1",
    }


def test_outcome_lines_stream_as_actions_complete(dash: Sandbox, tmp_path: Path) -> None:
    # Every write takes a while: six actions one at a time last seconds, and the first
    # outcome line must be readable while the others are still being sent.
    dash.faults = Faults(slow={"POST": 0.4, "PUT": 0.4, "DELETE": 0.4})
    started = time.monotonic()
    argv = ["apply", "manifests", "--auto-approve", "--parallelism", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyksync", *argv],
        cwd=tmp_path,
        env=env_for(dash),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen: list[tuple[float, str, bool]] = []  # (when, line, process still running)
    for line in proc.stdout:
        seen.append((time.monotonic() - started, line.rstrip("\n"), proc.poll() is None))
    _, err = proc.communicate(timeout=60)
    ended = time.monotonic() - started
    assert proc.returncode == 0, err
    outcomes = [(when, line, running) for when, line, running in seen if OUTCOME.match(line)]
    assert len(outcomes) == 6, seen
    first_when, first_line, first_running = outcomes[0]
    assert first_line.startswith("  ok      create "), first_line
    # The first line came while the process was still at work, well before its end (the
    # five other actions each wait 0.4 s or more), and the summary came after every line.
    assert first_running
    assert first_when < ended - 1.0, (first_when, ended)
    assert [when for when, _, _ in outcomes] == sorted(when for when, _, _ in outcomes)
    summary = next(i for i, (_, line, _) in enumerate(seen) if line.startswith("Apply complete"))
    assert summary > max(i for i, (_, line, _) in enumerate(seen) if OUTCOME.match(line))
    assert not [line for _, line, _ in seen if "/6 actions" in line]  # no counter on a pipe
    assert dash.secret not in err


def test_verbose_logs_phases_and_each_action(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests", "--auto-approve", "-v")
    assert r.code == 0, r.err
    assert "tyksync: INFO: phase 1/3: create 3 request(s), then approve" in r.err
    assert "tyksync: INFO: phase 2/3: approve 2 pending request(s)" in r.err
    assert "tyksync: INFO: phase 3/3: delete 2 request(s)" in r.err
    assert "tyksync: INFO: start: create alice@example.com [Gold]" in r.err
    assert (
        "tyksync: INFO: end: create alice@example.com [Gold]: done: created and approved request"
        in r.err
    )
    # One start and one end per action, the end once its outcome is final; a replace
    # starts again in the last phase, to delete the request it replaced.
    assert r.err.count("INFO: end: ") == 6
    assert r.err.count("INFO: start: ") == 7
    assert "INFO: start: replace dave@example.com [Reports]: deleting the old request" in r.err
    replace_end = r.err.index("INFO: end: replace dave@example.com [Reports]")
    assert replace_end > r.err.index("INFO: phase 3/3")
    assert "tyksync: INFO: start: delete erin@example.com [Silver]" in r.err
    assert "tyksync: INFO: end: delete erin@example.com [Silver]: done: deleted request" in r.err
    # Log lines on stderr; stdout holds the plan, the outcome lines and the summary.
    assert "INFO" not in r.out
    assert len([line for line in r.out.splitlines() if OUTCOME.match(line)]) == 6
    assert dash.secret not in r.all


def test_without_verbose_no_progress_logs(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests", "--auto-approve")
    assert r.code == 0, r.err
    assert "phase" not in r.err and "start:" not in r.err


def test_json_apply_prints_the_json_alone(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests", "--auto-approve", "--format", "json", "-v")
    assert r.code == 0, r.err
    data = json.loads(r.out)  # nothing else on stdout: no outcome line, no log
    assert data["counts"]["done"] == 6
    assert "phase 1/3" in r.err


def read_all(*fds: int, timeout: float = 60) -> dict[int, bytes]:
    """Everything written to `fds` until each is at its end (a pty's end is an EIO)."""
    seen = {fd: b"" for fd in fds}
    open_fds = set(fds)
    deadline = time.monotonic() + timeout
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_fds), [], [], 0.2)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if chunk:
                seen[fd] += chunk
            else:
                open_fds.discard(fd)
    return seen


def run_on_terminal(
    dash: Sandbox, cwd: Path, *args: str, stdout_too: bool = False
) -> tuple[int, str, str]:
    """tyksync with stderr on a pseudo-terminal, and stdout on it too or on a pipe:
    (exit code, stdout, what the terminal received)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyksync", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal if stdout_too else subprocess.PIPE,
        stderr=terminal,
        cwd=cwd,
        env=env_for(dash),
        close_fds=True,
    )
    os.close(terminal)
    fds = [controller]
    if proc.stdout is not None:
        fds.append(proc.stdout.fileno())
    seen = read_all(*fds)
    code = proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()
    os.close(controller)
    out = b"" if stdout_too else seen[fds[1]]
    return code, out.decode(), seen[controller].decode(errors="replace")


def test_a_counter_on_a_terminal(dash: Sandbox, tmp_path: Path) -> None:
    code, out, screen = run_on_terminal(dash, tmp_path, "apply", "manifests", "--auto-approve")
    assert code == 0, screen
    assert "\r[........................] 0/6 actions" in screen
    assert "\r[########################] 6/6 actions" in screen
    # Wiped at the end (spaces, then back to the line's start); never on stdout.
    assert screen.split("6/6 actions")[-1].strip(" \r") == ""
    assert "actions" not in out
    assert len([line for line in out.splitlines() if OUTCOME.match(line)]) == 6


def test_no_counter_with_verbose(dash: Sandbox, tmp_path: Path) -> None:
    code, _, screen = run_on_terminal(dash, tmp_path, "apply", "manifests", "--auto-approve", "-v")
    assert code == 0, screen
    assert "/6 actions" not in screen
    assert "phase 1/3" in screen


def test_counter_and_lines_never_share_a_line(dash: Sandbox, tmp_path: Path) -> None:
    # stdout and stderr on one terminal, as in an interactive shell.
    code, _, screen = run_on_terminal(
        dash, tmp_path, "apply", "manifests", "--auto-approve", stdout_too=True
    )
    assert code == 0, screen
    # What a terminal shows of each line once every \r has moved back to its start.
    lines = [line.split("\r")[-1] for line in screen.replace("\r\n", "\n").split("\n")]
    shown = [line for line in lines if "ok      " in line]
    assert len(shown) == 6, screen
    assert all(line.startswith("  ok      ") for line in shown), shown
    assert "6/6 actions" in screen
