"""`apply` asks on a terminal: driven through a real pseudo-terminal in a subprocess."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tyksync.sandbox import Sandbox


def run_on_tty(sb: Sandbox, cwd: Path, answer: str, *args: str) -> tuple[int, str]:
    """Run tyksync with a pty as stdin/stdout, type `answer` at the prompt."""
    controller, terminal = pty.openpty()
    env = {
        **os.environ,
        "TYK_DASHBOARD_URL": sb.url,
        "TYK_DASHBOARD_SECRET": sb.secret,
        "NO_COLOR": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyksync", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"Only 'yes' will be accepted" in seen:
                os.write(controller, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(controller)
    return code, seen.decode(errors="replace")


def test_apply_asks_and_yes_applies(dash: Sandbox, tmp_path: Path) -> None:
    code, screen = run_on_tty(dash, tmp_path, "yes", "apply", "manifests")
    assert "Apply these 6 changes" in screen
    assert code == 0, screen
    assert "Apply complete: 6 done" in screen
    assert dash.mutating_calls() > 0
    assert dash.secret not in screen


def test_apply_asks_and_anything_else_cancels(dash: Sandbox, tmp_path: Path) -> None:
    code, screen = run_on_tty(dash, tmp_path, "y", "apply", "manifests")
    assert "Apply these 6 changes" in screen
    assert code == 3
    assert "cancelled" in screen
    assert dash.mutating_calls() == 0


def test_ctrl_c_during_apply_points_at_the_journal(dash: Sandbox, tmp_path: Path) -> None:
    import json
    import signal

    from tyksync.sandbox import Faults

    dash.faults = Faults(slow={"POST": 0.5, "PUT": 0.5, "DELETE": 0.5})
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyksync", "apply", "manifests", "--auto-approve"],
        cwd=tmp_path,
        env={**os.environ, "TYK_DASHBOARD_URL": dash.url, "TYK_DASHBOARD_SECRET": dash.secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background of a non-interactive shell inherits SIGINT
        # ignored, and so would the child: Ctrl-C is what this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    journal = tmp_path / ".tyksync" / "journal.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        journal.exists() and "create.sent" in journal.read_text()
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "interrupted" in err and "journal" in err
    assert "Traceback" not in err
    events = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert events[-1] == "apply.interrupted"
