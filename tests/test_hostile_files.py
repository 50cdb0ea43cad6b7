"""The machine as an attacker sets it up (SPEC 10): files tyksync writes, manifest folders,
and two processes sharing one sandbox state file. Everything runs through the real CLI.

- Key sink, journal, saved plan and sandbox state: a symlink planted where tyksync will
  write, a FIFO, a file others can read or write, a file another user owns. Each is refused,
  exit 1, with a message naming the file, the planted file left as it was, and no mutating
  call (so no key issued). Files tyksync creates are 0600.
- A key sink inside a git work tree that does not ignore it gets a warning.
- A manifest folder holding a symlink out of the paths given (to `/`, to a file elsewhere)
  or back into itself: a problem naming the link, before any call to the Dashboard.
- Two `--sandbox` applies at once on one state file lose no write.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import pytest
from conftest import SANDBOX_SECRET
from support import ROOT, CliResult, Tyk

from tyksync.sandbox import Sandbox

EXAMPLES = ROOT / "examples" / "manifests"
CHILD_TIMEOUT = 60  # seconds: a child that blocked on a FIFO fails the test, not the suite


@pytest.fixture
def dash(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """The demo sandbox as the configured Dashboard, run from tmp_path with ./manifests."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    for name in [n for n in os.environ if n.startswith("TYK")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TYK_DASHBOARD_URL", sandbox.url)
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", SANDBOX_SECRET)
    monkeypatch.setenv("NO_COLOR", "1")
    return sandbox


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}


def child(*argv: str, cwd: Path) -> CliResult:
    """`python -m tyksync ARGV` in a child process, with the environment of this test."""
    done = subprocess.run(
        [sys.executable, "-m", "tyksync", *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    return CliResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def spawn(*argv: str, cwd: Path) -> subprocess.Popen[str]:
    """`python -m tyksync ARGV` started in the background, stderr with stdout."""
    env = {k: v for k, v in child_env().items() if not k.startswith("TYK")}
    return subprocess.Popen(
        [sys.executable, "-m", "tyksync", *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# ---- files tyksync writes ---------------------------------------------------------------

# The option that names the file, and the command that writes it.
WRITERS: dict[str, tuple[str, ...]] = {
    "--key-sink": ("apply", "manifests", "--auto-approve", "--key-sink"),
    "--journal": ("apply", "manifests", "--auto-approve", "--journal"),
    "--out": ("plan", "manifests", "--out"),
    "--sandbox-state": ("plan", "manifests", "--sandbox", "--sandbox-state"),
}
OTHER_UID = 65534  # nobody


def plant(hazard: str, path: Path, elsewhere: Path) -> None:
    """What an attacker (or a careless setup) leaves where tyksync will write."""
    if hazard in ("symlink", "dangling symlink"):
        if hazard == "symlink":
            elsewhere.write_text("")
            elsewhere.chmod(0o600)
        path.symlink_to(elsewhere)
    elif hazard == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.write_text("")
        path.chmod({"readable by others": 0o644, "writable by group": 0o620}.get(hazard, 0o600))
        if hazard == "owned by another user":
            os.chown(path, OTHER_UID, OTHER_UID)


HAZARDS = {
    "symlink": "is a symbolic link; refusing to follow it",
    "dangling symlink": "is a symbolic link; refusing to follow it",
    "readable by others": "can be read or written by others (mode 644); run chmod 600",
    "writable by group": "can be read or written by others (mode 620); run chmod 600",
    "owned by another user": f"belongs to another user (uid {OTHER_UID})",
    "fifo": "named pipe (FIFO)",
}
IS_ROOT = hasattr(os, "getuid") and os.getuid() == 0


@pytest.mark.parametrize("hazard", list(HAZARDS))
@pytest.mark.parametrize("option", list(WRITERS))
def test_unsafe_files_are_refused(
    dash: Sandbox, tyk: Tyk, tmp_path: Path, option: str, hazard: str
) -> None:
    if hazard == "owned by another user" and not IS_ROOT:
        pytest.skip("needs root to give a file to another user")
    (tmp_path / "elsewhere").mkdir()
    path, elsewhere = tmp_path / "target", tmp_path / "elsewhere" / "file"
    plant(hazard, path, elsewhere)
    before = path.lstat()
    argv = (*WRITERS[option], "target")
    # Opening a FIFO blocks until someone reads it: in a child with a timeout, so that
    # losing this defence fails the test instead of hanging the suite.
    r = child(*argv, cwd=tmp_path) if hazard == "fifo" else tyk(*argv)
    assert r.code == 1, r.all
    error = r.err.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "target: " in error, error
    assert HAZARDS[hazard] in error
    assert "Traceback" not in r.err and "internal error" not in r.err
    assert dash.mutating_calls() == 0
    # What was planted is left as it was; nothing was written where a link pointed.
    after = path.lstat()
    assert (after.st_mode, after.st_ino, after.st_size) == (
        before.st_mode,
        before.st_ino,
        before.st_size,
    )
    if hazard == "symlink":
        assert elsewhere.read_text() == ""
    if hazard == "dangling symlink":
        assert not elsewhere.exists()


def test_unsafe_key_sink_is_refused_before_any_call(dash: Sandbox, tyk: Tyk) -> None:
    Path("keys.jsonl").write_text("")
    Path("keys.jsonl").chmod(0o644)
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", "keys.jsonl")
    assert r.code == 1 and "keys.jsonl" in r.err
    assert dash.counts() == {}


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """022, under which a plain open() makes files 0644."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.mark.usefixtures("usual_umask")
def test_files_tyksync_creates_are_0600(
    tmp_path: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state, sink, journal, saved = (tmp_path / n for n in ("s.json", "k", "j", "plan.json"))
    common = ("--sandbox", "--sandbox-state", str(state))
    assert tyk("plan", str(EXAMPLES), *common, "--out", str(saved)).code == 0
    r = tyk(
        "apply", str(EXAMPLES), *common, "--auto-approve", "--key-sink", str(sink),
        "--journal", str(journal),
    )  # fmt: skip
    assert r.code == 0, r.all
    for path in (state, sink, journal, saved, tmp_path / ".s.json.lock"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len(sink.read_text().splitlines()) == 4


def test_a_journal_sent_to_dev_null(dash: Sandbox, tyk: Tyk) -> None:
    # A character device is how a person turns the journal off; it never holds a key.
    r = tyk("apply", "manifests", "--auto-approve", "--journal", os.devnull)
    assert r.code == 0, r.all
    assert dash.mutating_calls() > 0


# ---- a key sink git would commit ----------------------------------------------------------


def git(*argv: str, cwd: Path) -> None:
    subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_key_sink_git_would_commit_gets_a_warning(
    dash: Sandbox, tyk: Tyk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing above tmp_path counts as a work tree, whatever the machine running this.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    apply = ("apply", "manifests", "--auto-approve")
    warning = "keys.jsonl is inside a git work tree that does not ignore it"

    r = tyk(*apply, "--key-sink", "keys.jsonl")  # not a work tree
    assert r.code == 0, r.all
    assert warning not in r.err

    git("init", "-q", ".", cwd=tmp_path)
    Path("manifests/dave.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  dave@example.com:\n    - plan: Gold\n"
    )
    r = tyk(*apply, "--key-sink", "keys.jsonl")
    assert r.code == 0, r.all
    assert f"tyksync: WARNING: --key-sink {warning}" in r.err
    assert r.err.count(warning) == 1

    Path(".gitignore").write_text("keys.jsonl\n")
    Path("manifests/dave.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  dave@example.com:\n    - plan: Silver\n"
    )
    r = tyk(*apply, "--key-sink", "keys.jsonl")
    assert r.code == 0, r.all
    assert "git work tree" not in r.err
    assert len(Path("keys.jsonl").read_text().splitlines()) == 6  # 4, then 1 and 1


# ---- manifest folders that lead elsewhere --------------------------------------------------


def test_a_link_to_the_root_of_the_machine_is_refused(dash: Sandbox, tmp_path: Path) -> None:
    # Once walked the whole filesystem (reading every *.yaml on the machine into the plan).
    # In a child with a timeout, so that losing this defence fails instead of hanging.
    os.symlink("/", "manifests/everything")
    r = child("plan", "manifests", cwd=tmp_path)
    assert r.code == 1, r.all
    refusal = "symbolic link to /, outside the paths given; refusing to follow it"
    assert f"manifests/everything:1: {refusal}" in r.err
    assert dash.counts() == {}


def test_links_out_of_the_paths_given_or_into_a_loop(
    dash: Sandbox, tyk: Tyk, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "theirs.yaml").write_text(
        "version: 1\nowner: t\nprune: developers\ndevelopers:\n  alice@example.com: []\n"
    )
    os.symlink(outside / "theirs.yaml", "manifests/theirs.yaml")  # a file elsewhere
    os.symlink(outside, "manifests/more")  # a folder elsewhere
    os.mkdir("manifests/sub")
    os.symlink("..", "manifests/sub/up")  # a loop
    r = tyk("plan", "manifests")
    assert r.code == 1, r.all
    real = Path(os.path.realpath(tmp_path))
    assert r.err.splitlines()[1:] == [
        f"manifests/more:1: symbolic link to {real / 'outside'}, outside the paths given; "
        "refusing to follow it",
        f"manifests/sub/up:1: symbolic link loop: leads back to {real / 'manifests'}, "
        "a folder that contains it",
        f"manifests/theirs.yaml:1: symbolic link to {real / 'outside' / 'theirs.yaml'}, "
        "outside the paths given; refusing to follow it",
    ]
    assert dash.counts() == {}
    # Once the place they lead to is given too, the links stay inside the paths given.
    os.unlink("manifests/sub/up")
    r = tyk("plan", "manifests", str(outside))
    assert r.code == 0, r.all


# ---- two processes on one sandbox state file -------------------------------------------------

DEVELOPERS = ("alice", "bob", "carol", "dave", "erin")
POLICIES = ("Gold", "Silver", "Reports")
SETS = [list(c) for n in range(1, len(POLICIES) + 1) for c in combinations(POLICIES, n)]
SEEDED_KEYS = 3  # the demo's approved requests


def race_manifest() -> str:
    """Every developer of the demo with every set of its policies: 35 identities, so that
    the two applies overlap for a good part of their run."""
    lines = ["version: 1", "owner: race", "prune: none", "developers:"]
    for name in DEVELOPERS:
        lines.append(f"  {name}@example.com:")
        lines.extend(f"    - plans: [{', '.join(s)}]" for s in SETS)
    return "\n".join(lines) + "\n"


@pytest.fixture
def race_dir(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "race.yaml").write_text(race_manifest())
    yield tmp_path


def test_two_sandbox_applies_on_one_state_file_lose_no_write(
    race_dir: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before the lock, each process loaded the state once and wrote its own view over the
    # other's: requests and keys one of them made vanished (8 keys for 4 intents, and a
    # further apply made them again). The state file is new, so both also race to seed it.
    state = race_dir / "same.json"

    def apply(n: int) -> subprocess.Popen[str]:
        sink, journal = f"keys{n}.jsonl", f"journal{n}.jsonl"
        return spawn(
            "apply", "m", "--sandbox", "--sandbox-state", str(state), "--auto-approve",
            "--key-sink", sink, "--journal", journal, cwd=race_dir,
        )  # fmt: skip

    processes = [apply(1), apply(2)]
    outputs = [p.communicate(timeout=CHILD_TIMEOUT)[0] for p in processes]
    # Exit 1 is fair for an action the other apply made moot; the next apply settles it.
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode in (0, 1), out
        # A late one may find the other's work done: nothing to apply, still a clean end.
        ended = ("Apply complete", "Apply INCOMPLETE", "Nothing will be applied", "No changes")
        assert any(words in out for words in ended), out
    # On a loaded machine one may finish before the other starts (then the second finds
    # nothing to create); the invariants below hold either way.
    assert any("ok      create" in out for out in outputs), outputs

    monkeypatch.chdir(race_dir)
    common = ("m", "--sandbox", "--sandbox-state", str(state))
    third = tyk("apply", *common, "--auto-approve", "--key-sink", str(race_dir / "keys3.jsonl"))
    assert third.code == 0, third.all
    assert tyk("plan", *common, "--detailed-exitcode").code == 0

    saved = json.loads(state.read_text())
    emails = {d["id"]: d["email"] for d in saved["developers"]}
    names = {p["_id"]: p["name"] for p in saved["policies"]}
    identities = Counter(
        (emails[r["by_user"]], frozenset(names[p] for p in r["apply_policies"]))
        for r in saved["requests"]
        if r["apply_policies"]
    )
    declared = {(f"{d}@example.com", frozenset(s)) for d in DEVELOPERS for s in SETS}
    assert set(identities) == declared
    assert [i for i, n in identities.items() if n > 1] == []
    # Every key a process was handed is in the state: no process wrote over another's.
    sinks = [race_dir / f"keys{n}.jsonl" for n in (1, 2, 3)]
    handed = [
        json.loads(line)["key"]
        for sink in sinks
        if sink.exists()  # the third apply, with nothing to do, opens none
        for line in sink.read_text().splitlines()
    ]
    recorded = {k["key"] for k in saved["issued_keys"]}
    assert sum(key not in recorded for key in handed) == 0
    assert len(recorded) == len(handed) + SEEDED_KEYS


def waiting_for(lock: Path) -> int:
    """How many processes wait to flock `lock`, from Linux's /proc/locks."""
    inode = f":{lock.stat().st_ino} "
    return sum("-> FLOCK" in line and inode in line for line in LOCKS.read_text().splitlines())


LOCKS = Path("/proc/locks")


@pytest.mark.skipif(not LOCKS.exists(), reason="needs /proc/locks to see the children wait")
def test_two_first_runs_at_once_seed_a_new_state_file_once(tmp_path: Path) -> None:
    # Unless loading and seeding are one step under the lock, two runs on a state file
    # that does not exist yet both find it empty and both seed it; the second seed meets
    # the first's developers, fails, and empties the state for both. Here both are made
    # to wait for the lock, then start together.
    state = tmp_path / "new.json"
    lock = tmp_path / ".new.json.lock"
    held = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        plan = ("plan", str(EXAMPLES), "--sandbox", "--sandbox-state", str(state))
        runs = [spawn(*plan, cwd=tmp_path) for _ in range(2)]
        deadline = time.monotonic() + CHILD_TIMEOUT
        while waiting_for(lock) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert waiting_for(lock) == 2  # both wait on the lock: their race is real
    finally:
        os.close(held)  # both start now
    outputs = [p.communicate(timeout=CHILD_TIMEOUT)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    saved = json.loads(state.read_text())
    assert (len(saved["developers"]), len(saved["requests"])) == (5, 6)


@pytest.mark.parametrize("option", ["--config", "--plan"])
def test_a_fifo_read_as_config_or_saved_plan_is_refused_not_waited_on(
    dash: Sandbox, tmp_path: Path, option: str
) -> None:
    # In a child with a timeout: without the defence, opening the FIFO waits for a writer.
    os.mkfifo(tmp_path / "trap")
    argv = ("apply", "--plan", "trap") if option == "--plan" else ("plan", "manifests")
    extra = ("--config", "trap", "--env", "x") if option == "--config" else ()
    r = child(*argv, *extra, cwd=tmp_path)
    assert r.code == 1, r.all
    assert "trap: cannot read it: not a regular file" in r.err
    assert dash.counts() == {}
