"""Secrets, measured: the Dashboard secret and every issued key never leave tyksync.

Every command runs at its most verbose (`-vv`) against a sandbox on 127.0.0.1 whose secret
is a fresh canary per test. After the run, the canaries are collected from the sandbox:
the secret, every key it issued (`store.issued_keys()`), and the sensitive members it
embeds in list answers (a developer's `password`, `nonce`, `sso_key` and `keys`). None may
appear in stdout, stderr, any log record (the root logger at DEBUG, urllib3's included),
any file the run wrote (saved plans, the journal, exported manifests) except the key sink,
or the text of any exception tyksync raises.

The canary values are fresh per test (the `dash` fixture's secret too) so that tyksync's
process-wide redaction registry, filled by earlier tests, cannot hide a leak that a code
path makes by itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness.capture import FORMAT, LogCapture
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ROOT, CliResult, Tyk, canary

from tyksync.client import DashboardClient, RetryPolicy
from tyksync.connection import ConnectionSettings, connect, read_secret
from tyksync.errors import AnswerLost, ApiError, ConfigError, NetworkError, TyksyncError
from tyksync.sandbox import CANARY_PREFIX, Faults, Sandbox
from tyksync.sandbox.store import key_id_of

SENSITIVE_MEMBERS = ("password", "nonce", "sso_key")
UNREADABLE_WARNING = "can be read by other users"

# Demo seed ids (tyksync/sandbox/seed.py).
BOB_PENDING = "64c000000000000000000c01"


# ---- fixtures ----------------------------------------------------------------------------


@dataclass
class Watched:
    """The `dash` sandbox, and what the scan reads besides it: every `tyk` run of the test,
    the log, and the files under the test's folder."""

    sb: Sandbox
    tyk: Tyk
    logs: LogCapture
    root: Path
    env: pytest.MonkeyPatch
    extra: dict[str, str] = field(default_factory=dict)  # more canaries: label -> value
    sinks: set[Path] = field(default_factory=set)  # the only files allowed to hold keys

    @property
    def secret(self) -> str:
        return self.sb.secret

    @property
    def runs(self) -> list[CliResult]:
        return self.tyk.runs


@pytest.fixture
def watched(
    logs: LogCapture, dash: Sandbox, tyk: Tyk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Watched:
    return Watched(dash, tyk, logs, tmp_path, monkeypatch)


# ---- the scan ----------------------------------------------------------------------------


def canaries(watched: Watched) -> dict[str, str]:
    """label -> value of everything that must not leak, read from the sandbox now."""
    found = {
        "the Dashboard secret": watched.secret,
        "the Dashboard secret's tail": watched.secret[-16:],
    }
    found["the sandbox's canary prefix"] = CANARY_PREFIX
    keys = watched.sb.store.issued_keys()
    for developer in watched.sb.store.developers():
        email = developer["email"]
        for member in SENSITIVE_MEMBERS:
            found[f"{email}'s {member}"] = developer[member]
        keys.extend(developer["keys"])
        keys.extend(developer["subscriptions"].values())
    for n, key in enumerate(dict.fromkeys(keys)):
        found[f"issued key #{n}"] = key
        # Keys start with the org id, which may be shown; the random tail may not.
        found[f"issued key #{n}'s tail"] = key[-16:]
    found.update(watched.extra)
    return found


def log_texts(logs: LogCapture) -> dict[str, str]:
    texts = {"the captured log (formatted)": logs.text}
    for n, record in enumerate(logs.records):
        where = f"log record #{n} ({record.name})"
        texts[where] = "\n".join(
            [record.getMessage(), FORMAT.format(record), record.exc_text or ""]
        )
    return texts


def written_files(watched: Watched) -> dict[str, str]:
    """Every file under the test's folder (plans, journal, exports), key sinks excepted."""
    allowed = {p.resolve() for p in watched.sinks}
    texts = {}
    for path in sorted(watched.root.rglob("*")):
        if path.is_file() and path.resolve() not in allowed:
            texts[f"file {path.relative_to(watched.root)}"] = path.read_bytes().decode(
                "utf-8", errors="replace"
            )
    return texts


def leaks(found: dict[str, str], texts: dict[str, str]) -> list[str]:
    """Where each canary was found, by label: the assertion never prints a secret itself."""
    return [
        f"{label} in {where}"
        for where, text in texts.items()
        for label, value in found.items()
        if value and value in text
    ]


def assert_nothing_leaked(watched: Watched) -> None:
    found = canaries(watched)
    texts: dict[str, str] = {}
    for n, r in enumerate(watched.runs):
        texts[f"stdout of run #{n} {' '.join(r.argv)}"] = r.out
        texts[f"stderr of run #{n} {' '.join(r.argv)}"] = r.err
        assert "Traceback" not in r.err, r.err
    texts.update(log_texts(watched.logs))
    texts.update(written_files(watched))
    assert not leaks(found, texts)


# ---- every command, at -vv ---------------------------------------------------------------


def new_keys(watched: Watched, before: list[str]) -> list[str]:
    return [k for k in watched.sb.store.issued_keys() if k not in before]


def s_validate_online(watched: Watched, tyk: Tyk) -> None:
    r = tyk("validate", "manifests", "--online", "-vv")
    assert r.code == 0, r.err
    assert "resolved against the Dashboard" in r.out


def s_plan_every_format(watched: Watched, tyk: Tyk) -> None:
    for fmt in ("text", "json", "markdown"):
        r = tyk("plan", "manifests", "--format", fmt, "--out", f"plans/{fmt}.json", "-vv")
        assert r.code == 0, r.err
        assert Path(f"plans/{fmt}.json").is_file()
        assert "GET /api/portal/requests" in r.err  # -vv logs every call


def s_apply_without_sink(watched: Watched, tyk: Tyk) -> None:
    before = watched.sb.store.issued_keys()
    r = tyk("apply", "manifests", "--auto-approve", "-vv", "--journal", "journal.jsonl")
    assert r.code == 0, r.out + r.err
    assert len(new_keys(watched, before)) == 4
    assert "4 key(s) issued and NOT captured" in r.out
    assert Path("journal.jsonl").stat().st_size > 0


def s_apply_with_sink(watched: Watched, tyk: Tyk) -> None:
    watched.sinks.add(Path("keys.jsonl"))
    before = watched.sb.store.issued_keys()
    r = tyk(
        "apply", "manifests", "--auto-approve", "-vv", "--key-sink", "keys.jsonl",
        "--journal", "journal.jsonl",
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    issued = new_keys(watched, before)
    assert len(issued) == 4
    assert {json.loads(x)["key"] for x in Path("keys.jsonl").read_text().splitlines()} == set(
        issued
    )


def s_apply_saved_plan(watched: Watched, tyk: Tyk) -> None:
    assert tyk("plan", "manifests", "--out", "plan.json", "-vv").code == 0
    watched.sinks.add(Path("keys.jsonl"))
    r = tyk(
        "apply", "--plan", "plan.json", "-vv", "--key-sink", "keys.jsonl",
        "--journal", "journal.jsonl",
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    assert "4 key(s) issued, 4 written to keys.jsonl" in r.out


def s_export(watched: Watched, tyk: Tyk) -> None:
    assert tyk("apply", "manifests", "--auto-approve").code == 0  # more keys embedded
    for name, extra in (
        ("all", ()),
        ("owner", ("--owner", "payments-team")),
        ("developer", ("--developer", "carol@example.com")),
    ):
        r = tyk("export", *extra, "-vv")
        assert r.code == 0, r.err
        assert "version: 1" in r.out
        Path(f"exported-{name}.yaml").write_text(r.out)
    assert tyk("plan", "exported-all.yaml", "--detailed-exitcode", "-vv").code == 0


def s_schema(watched: Watched, tyk: Tyk) -> None:
    r = tyk("schema")  # takes no -v: it talks to nothing
    assert r.code == 0
    json.loads(r.out)


def s_wrong_secret(watched: Watched, tyk: Tyk) -> None:
    wrong = canary("wrong-secret")
    watched.extra["the wrong secret"] = wrong
    watched.env.setenv("TYK_DASHBOARD_SECRET", wrong)
    for argv in (
        ("validate", "manifests", "--online"),
        ("plan", "manifests", "--format", "json"),
        ("apply", "manifests", "--auto-approve"),
        ("export",),
    ):
        r = tyk(*argv, "-vv")
        assert r.code == 1, r.out + r.err
        assert "401" in r.err
    assert watched.sb.mutating_calls() == 0


def s_5xx_storm_on_reads(watched: Watched, tyk: Tyk) -> None:
    watched.sb.faults = Faults(error_rates={"GET": 1.0})
    r = tyk("plan", "manifests", "-vv")
    assert r.code == 1
    assert "retrying" in r.err
    assert watched.sb.fault_counts()["error"] == RetryPolicy().attempts


def s_5xx_storm_on_writes(watched: Watched, tyk: Tyk) -> None:
    watched.sinks.add(Path("keys.jsonl"))
    watched.sb.faults = Faults(error_rates={"POST": 0.5, "PUT": 0.5, "DELETE": 0.5}, seed=11)
    argv = ("apply", "manifests", "--auto-approve", "-vv", "--key-sink", "keys.jsonl")
    r = tyk(*argv, "--parallelism", "1")
    assert r.code == 1, r.out
    assert "FAILED" in r.out
    assert watched.sb.store.issued_keys()  # some approvals went through: there is a key to leak
    watched.sb.faults = Faults()
    assert tyk(*argv).code == 0


def s_dropped_connection(watched: Watched, tyk: Tyk) -> None:
    watched.sinks.add(Path("keys.jsonl"))
    before = watched.sb.store.issued_keys()
    watched.sb.faults = Faults(drop_after_write=1.0)
    r = tyk("apply", "manifests", "--auto-approve", "-vv", "--key-sink", "keys.jsonl")
    assert "the answer was lost" in r.out or "their answer was lost" in r.out, r.out
    assert len(new_keys(watched, before)) == 4  # issued, and lost with their answers
    assert watched.sb.fault_counts()["drop_after_write"] > 0
    watched.sb.faults = Faults(reset_before=1.0)
    r = tyk("plan", "manifests", "-vv")
    assert r.code == 1
    assert "closed before an answer came" in r.err


def s_bad_manifests(watched: Watched, tyk: Tyk) -> None:
    Path("bad.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n    - plan: Gold\n"
        "      fields: {ticket: 42}\n"
    )
    for argv in (("validate", "--online"), ("plan",), ("apply", "--auto-approve")):
        r = tyk(*argv, "bad.yaml", "-vv")
        assert r.code == 1
        assert "bad.yaml:6:" in r.err
    # The secret pasted into a manifest by mistake, where errors name what was written.
    Path("pasted.yaml").write_text(
        f"version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n    - plan: {watched.secret}\n"
    )
    for argv in (("validate", "--online"), ("plan",), ("apply", "--auto-approve")):
        r = tyk(*argv, "pasted.yaml", "-vv")
        assert r.code == 1
        assert "pasted.yaml:5:" in r.err
    assert watched.sb.mutating_calls() == 0
    os.remove("pasted.yaml")  # the manifest itself holds the secret: not tyksync's output


SCENARIOS = {
    "validate --online": s_validate_online,
    "plan text/json/markdown --out": s_plan_every_format,
    "apply": s_apply_without_sink,
    "apply --key-sink": s_apply_with_sink,
    "apply --plan": s_apply_saved_plan,
    "export": s_export,
    "schema": s_schema,
    "wrong secret (401)": s_wrong_secret,
    "5xx storm on reads": s_5xx_storm_on_reads,
    "5xx storm on writes": s_5xx_storm_on_writes,
    "dropped connection": s_dropped_connection,
    "bad manifests": s_bad_manifests,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_secret_leaves_tyksync(scenario: str, watched: Watched, tyk: Tyk) -> None:
    SCENARIOS[scenario](watched, tyk)
    assert watched.runs
    if scenario != "schema":
        # The scan covers urllib3's records: the capture really is at DEBUG on the root.
        assert any(r.name.startswith("urllib3") for r in watched.logs.records)
        assert any(
            r.name.startswith("tyksync") and r.levelno == logging.DEBUG
            for r in watched.logs.records
        )
    assert_nothing_leaked(watched)


def test_the_scan_finds_a_leak(watched: Watched, tyk: Tyk) -> None:
    """The scan itself can fail: a key, a developer's password or the secret, written
    anywhere it looks, is reported."""
    tyk("apply", "manifests", "--auto-approve")
    found = canaries(watched)
    key = watched.sb.store.issued_keys()[-1]
    password = watched.sb.store.developers()[0]["password"]
    assert leaks(found, {"x": f"...{key}..."})
    assert leaks(found, {"x": password})
    assert leaks(found, {"x": f"authorization: {watched.secret}"})
    Path("oops.txt").write_text(key[-20:])
    assert any("oops.txt" in where for where in leaks(found, written_files(watched)))
    # (Not urllib3.connectionpool: tyksync masks the secrets it knows in that one's records,
    # since its request lines hold paths, and a revoke's path a key id.)
    logging.getLogger("urllib3.util.retry").debug("header %s", watched.secret)
    assert leaks(found, log_texts(watched.logs))


# ---- exception texts ---------------------------------------------------------------------


def exception_texts(error: BaseException) -> str:
    """str, repr and the formatted traceback of an exception and of its whole chain."""
    parts = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e), "".join(traceback.format_exception(e))]
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


def test_exception_texts_hold_no_secret(watched: Watched) -> None:
    errors: list[TyksyncError] = []
    no_wait = RetryPolicy(attempts=3)

    def client(secret: str) -> DashboardClient:
        return DashboardClient(watched.sb.url, secret, retry=no_wait, sleep=lambda _s: None)

    wrong = canary("wrong-secret")
    watched.extra["the wrong secret"] = wrong
    with client(wrong) as c, pytest.raises(ApiError) as unauthorised:
        c.read_live()
    assert unauthorised.value.status == 401
    errors.append(unauthorised.value)

    with client(watched.secret) as c:
        key = c.approve_request(BOB_PENDING)  # a key that tyksync holds
        assert key in watched.sb.store.issued_keys()
        with pytest.raises(ApiError) as processed:
            c.approve_request(BOB_PENDING)
        errors.append(processed.value)
        watched.sb.faults = Faults(error_rates={"GET": 1.0})
        with pytest.raises(TyksyncError) as storm:
            c.read_live()
        errors.append(storm.value)
        watched.sb.faults = Faults(reset_before=1.0)
        with pytest.raises(NetworkError) as reset:
            c.list_requests()
        errors.append(reset.value)
        watched.sb.faults = Faults(drop_after_write=1.0)
        with pytest.raises(AnswerLost) as lost:
            c.approve_request("64c000000000000000000c03")  # issued; its answer is lost
        errors.append(lost.value)
        watched.sb.faults = Faults(error_rates={"PUT": 1.0})
        with pytest.raises(AnswerLost) as lost_5xx:
            c.approve_request("64c000000000000000000c05")
        errors.append(lost_5xx.value)

    with pytest.raises(ConfigError) as no_secret:
        read_secret(None, {})
    errors.append(no_secret.value)

    found = canaries(watched)
    texts = {f"exception #{n} {type(e).__name__}": exception_texts(e) for n, e in enumerate(errors)}
    assert not leaks(found, texts)
    assert not leaks(found, log_texts(watched.logs))


# ---- a real process ----------------------------------------------------------------------


def test_plan_and_apply_as_a_subprocess(watched: Watched) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYK")}
    env.update(
        TYK_DASHBOARD_URL=watched.sb.url,
        TYK_DASHBOARD_SECRET=watched.secret,
        PYTHONPATH=str(ROOT),
    )

    def tyksync(*argv: str) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "tyksync", *argv],
            env=env,
            cwd=watched.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        result = CliResult(argv, done.returncode, done.stdout, done.stderr)
        watched.runs.append(result)
        return result

    plan = tyksync("plan", "manifests", "--out", "plan.json", "-vv")
    assert plan.code == 0, plan.err
    assert "tyksync: DEBUG: GET /api/portal/requests" in plan.err
    watched.sinks.add(watched.root / "keys.jsonl")
    applied = tyksync("apply", "--plan", "plan.json", "-vv", "--key-sink", "keys.jsonl")
    assert applied.code == 0, applied.out + applied.err
    assert "Apply complete: 6 done, 0 failed." in applied.out
    assert len((watched.root / "keys.jsonl").read_text().splitlines()) == 4
    found = canaries(watched)
    texts = {}
    for r in watched.runs:
        texts[f"stdout of {' '.join(r.argv)}"] = r.out
        texts[f"stderr of {' '.join(r.argv)}"] = r.err
    texts.update(written_files(watched))
    assert not leaks(found, texts)


# ---- the secret file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "warns"), [(0o600, False), (0o400, False), (0o644, True), (0o640, True), (0o604, True)]
)
def test_secret_file_mode_warning(
    watched: Watched, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, mode: int, warns: bool
) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_SECRET")
    path = Path("secret")
    path.write_text(watched.secret + "\n")
    os.chmod(path, mode)
    r = tyk("validate", "manifests", "--online", "--secret-file", "secret", "-vv")
    assert r.code == 0, r.err
    assert (UNREADABLE_WARNING in r.err) is warns
    if warns:
        assert f"chmod 600 {path}" in r.err
    path.unlink()  # holds the secret by design; everything else is scanned
    assert_nothing_leaked_here(watched)


def assert_nothing_leaked_here(watched: Watched) -> None:
    texts = {}
    for n, r in enumerate(watched.runs):
        texts[f"stdout #{n}"], texts[f"stderr #{n}"] = r.out, r.err
    assert not leaks(canaries(watched), texts)


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_secret_file_trailing_newline_is_stripped(
    watched: Watched, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_SECRET")
    path = Path("secret")
    path.write_text(watched.secret + ending, newline="")
    os.chmod(path, 0o600)
    assert read_secret(path, {}) == watched.secret
    monkeypatch.setenv("TYK_DASHBOARD_SECRET_FILE", "secret")
    r = tyk("plan", "manifests", "-vv")
    assert r.code == 0, r.err  # the sandbox accepted exactly the secret
    assert UNREADABLE_WARNING not in r.err
    assert_nothing_leaked_here(watched)


def test_secret_file_keeps_inner_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(" a b \n\n")
    os.chmod(path, 0o600)
    assert read_secret(path, {}) == " a b "  # only the line ending goes


def test_empty_or_missing_secret_file_is_an_error_without_the_environment_secret(
    tmp_path: Path,
) -> None:
    path = tmp_path / "secret"
    path.write_text("\n")
    os.chmod(path, 0o600)
    env = {"TYK_DASHBOARD_SECRET": "env-secret-not-used"}
    with pytest.raises(ConfigError, match="is empty"):
        read_secret(path, env)
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret(tmp_path / "missing", env)


# ---- http:// to another host -------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to resolve a name or open a connection fails the test (and goes nowhere)."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args))
        raise AssertionError(f"a network call was attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


CLEARTEXT = "travel in clear"


@pytest.mark.parametrize(
    ("url", "warns"),
    [
        ("http://dashboard.example.invalid:3000", True),
        ("http://10.1.2.3:3000/", True),
        ("http://[2001:db8::1]:3000", True),
        ("HTTP://Dashboard.Example.Invalid", True),
        ("https://dashboard.example.invalid", False),
        ("http://127.0.0.1:3000", False),
        ("http://127.9.9.9:3000", False),
        ("http://localhost:3000", False),
        ("http://[::1]:3000", False),
    ],
)
def test_cleartext_http_to_another_host_warns_before_any_connection(
    url: str,
    warns: bool,
    no_network: list[str],
    logs: LogCapture,
) -> None:
    # connect() reads the secret, warns, and builds a client: nothing touches the network
    # until a call is made, and none is made here (no_network would fail the test).
    secret = canary("watched-secret")
    env = {"TYK_DASHBOARD_SECRET": secret}
    settings = ConnectionSettings(dashboard=url)
    if warns:  # refused unless --insecure (SPEC section 10), and loud with it
        with pytest.raises(ConfigError, match="plain http://"), connect(settings, env):
            pass  # pragma: no cover
        settings = ConnectionSettings(dashboard=url, insecure=True)
    with connect(settings, env) as conn:
        assert conn.client.url == url.rstrip("/")
    warnings = logs.at(logging.WARNING)
    assert any(CLEARTEXT in w for w in warnings) is warns, warnings
    assert no_network == []
    assert not leaks({"secret": secret}, log_texts(logs))


def test_cleartext_warning_never_shows_url_credentials(
    no_network: list[str], logs: LogCapture
) -> None:
    password = canary("url-password")
    url = f"http://ops:{password}@dashboard.example.invalid:3000/?token={password}#{password}"
    # A URL with credentials is refused (they would replace the secret header), and
    # neither the warning nor the refusal repeats them.
    with (
        pytest.raises(ConfigError, match="carries credentials") as refused,
        connect(ConnectionSettings(dashboard=url), {"TYK_DASHBOARD_SECRET": canary("s")}),
    ):
        pass  # pragma: no cover
    assert password not in logs.text
    assert password not in str(refused.value)


def test_no_secret_means_no_warning_and_no_client(no_network: list[str]) -> None:
    with (
        pytest.raises(ConfigError, match="TYK_DASHBOARD_SECRET"),
        connect(ConnectionSettings(dashboard="http://dashboard.example.invalid"), {}),
    ):
        pass  # pragma: no cover


def test_url_credentials_do_not_replace_the_secret(watched: Watched, tyk: Tyk) -> None:
    url = watched.sb.url.replace("http://", f"http://ops:{canary('url-password')}@")
    r = tyk("plan", "manifests", "--dashboard", url)
    # Either the secret is sent as the contract says, or the URL is refused up front.
    assert r.code == 0 or (r.code == 1 and watched.sb.counts() == {}), r.err


def test_a_netrc_entry_does_not_replace_the_secret(
    watched: Watched, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = watched.root / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login ops password {canary('netrc-password')}\n")
    os.chmod(netrc, 0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    r = tyk("plan", "manifests")
    assert r.code == 0, r.err


# ---- the key sink ------------------------------------------------------------------------


def sink_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_sink_holds_exactly(watched: Watched, path: Path, issued: list[str]) -> None:
    lines = sink_lines(path)
    assert sorted(str(x["key"]) for x in lines) == sorted(issued)  # each once, nothing else
    requests = {r["id"]: r for r in watched.sb.store.requests()}
    developers = {d["id"]: d for d in watched.sb.store.developers()}
    for line in lines:
        assert set(line) >= {"developer", "policies", "request_id", "key"}
        request = requests[str(line["request_id"])]
        assert request["approved"] is True
        assert line["developer"] == developers[request["by_user"]]["email"]
        assert line["policies"] == request["apply_policies"]
        assert key_id_of(str(line["key"])) in developers[request["by_user"]]["keys"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_sink_holds_exactly_the_issued_keys(watched: Watched, tyk: Tyk) -> None:
    sink = Path("keys.jsonl")
    watched.sinks.add(sink)
    before = watched.sb.store.issued_keys()
    old_umask = os.umask(0)  # the sink must be 0600 whatever the umask
    try:
        r = tyk("apply", "manifests", "--auto-approve", "--key-sink", str(sink))
    finally:
        os.umask(old_umask)
    assert r.code == 0, r.out + r.err
    issued = new_keys(watched, before)
    assert len(issued) == 4
    assert_sink_holds_exactly(watched, sink, issued)
    assert stat.S_IMODE(Path(".tyksync/journal.jsonl").stat().st_mode) == 0o600

    # A later apply appends its keys and keeps the earlier ones.
    Path("manifests/more.yaml").write_text(
        "version: 1\nowner: more\ndevelopers:\n  erin@example.com:\n    - plan: Gold\n"
    )
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", str(sink))
    assert r.code == 0, r.out + r.err
    assert "1 key(s) issued, 1 written to keys.jsonl" in r.out
    assert_sink_holds_exactly(watched, sink, new_keys(watched, before))


def test_key_sink_leaves_out_keys_whose_answer_was_lost(watched: Watched, tyk: Tyk) -> None:
    sink = Path("keys.jsonl")
    watched.sinks.add(sink)
    before = watched.sb.store.issued_keys()
    watched.sb.faults = Faults(drop_after_write=1.0)
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", str(sink))
    assert "4 key(s) issued, 0 written to keys.jsonl" in r.out, r.out
    assert "rotate them" in r.out
    assert len(new_keys(watched, before)) == 4
    assert sink.read_text() == ""
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600


def test_redaction_masks_any_of_many_secrets_anywhere_in_a_line() -> None:
    # Thousands of issued keys of one length are looked up by window, not one by one: the
    # answer must be what testing each secret in turn gives, wherever a secret stands.
    from tyksync import redact

    keys = [canary(f"many-keys-{i:05d}") for i in range(3000)]
    for key in keys:
        redact.register(key)
    line = json.dumps({"event": "approve.done", "developer": "dev@example.com"})
    assert redact.redact(line) == line
    for key in (keys[0], keys[1234], keys[-1]):
        for text in (key, f"{line}{key}", f"{key}{line}", f"{line[:20]}{key}{line[20:]}"):
            masked = redact.redact(text)
            assert key not in masked and redact.MASK in masked
    assert redact.redact(keys[7][:-1]) == keys[7][:-1]  # a part of a secret is no secret


# Characters a character class treats specially, letters, digits and text outside ASCII:
# the runs the redactor looks in are found by a class built from the secrets' characters.
_SECRET_CHARS = "ab01-]^\\[.é☃"


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(st.text(_SECRET_CHARS, min_size=6, max_size=9), min_size=1, max_size=40),
    pieces=st.lists(
        st.one_of(st.text(_SECRET_CHARS + ' "{}:,x', max_size=12), st.integers(0, 39)),
        max_size=12,
    ),
)
def test_redaction_finds_what_testing_every_secret_in_turn_finds(
    secrets: list[str], pieces: list[str | int]
) -> None:
    """Secrets are looked for only in runs of their characters: the answer must be what
    `in` over every secret gives, for texts made of secrets, parts of them and other text."""
    from tyksync import redact

    prefix = "rx" + os.urandom(4).hex()  # secrets of this example only: registration is global
    mine = [prefix + s for s in secrets]
    for s in mine:
        redact.register(s)
    text = "".join(
        p
        if isinstance(p, str)
        else mine[p % len(mine)][: 3 + p % 7 + len(prefix)]
        if p % 3 == 0
        else mine[p % len(mine)]
        for p in pieces
    )
    masked = redact.redact(text)
    everyone = sorted(redact._secrets, key=len, reverse=True)
    expected = text
    for _ in range(4):  # until no secret is left: a mask can complete one (its '[')
        if not any(s in expected for s in everyone):
            break
        for s in everyone:
            expected = expected.replace(s, redact.MASK)
    else:
        expected = redact.MASK
    assert masked == expected
    assert not any(s in masked for s in everyone)


def test_a_mask_that_completes_a_secret_is_masked_too() -> None:
    """A secret's beginning before another secret: the mask's '[' completes the first."""
    from tyksync import redact

    prefix = "mk" + os.urandom(4).hex()
    # Longer, so looked for first, before the mask that completes it exists.
    first, second = prefix + "-abcd[", prefix + "-zz"
    redact.register(first)
    redact.register(second)
    masked = redact.redact(f"x {first[:-1]}{second} y")
    assert first not in masked and second not in masked
    assert masked.startswith("x ") and masked.endswith(" y")


def test_registering_the_keys_of_a_large_dashboard_stays_linear() -> None:
    """A plan that revokes registers every key its developers hold: 100k at scale. Each
    registration once copied every key of its length (minutes at 100k); 50k take
    milliseconds now. The bound is two orders of magnitude above that: it catches the
    quadratic, not a busy machine."""
    from tyksync import redact

    keys = [f"{i:016x}{'k' * 8}" for i in range(50_000)]
    started = time.monotonic()
    for key in keys:
        redact.register(key)
    assert time.monotonic() - started < 5.0
    assert redact.redact(f"x {keys[-1]} y") == f"x {redact.MASK} y"
