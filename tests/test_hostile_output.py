"""Hostile Dashboard text reaching a person (SPEC section 10), replayed as an attacker would:
developers choose their own emails, and a Dashboard (or something in the middle) can answer
anything. Nothing printed carries a raw control character; Markdown keeps it all inert;
a malformed answer in apply fails one action, and the run still ends with its summary and
the journal's end record."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Tyk

from tyksync.sandbox import Sandbox

# An OSC sequence that retitles the terminal, a CR/LF that would forge a result line, a
# bidi override and a C1 control.
FORGED = "\x1b]0;pwned\x07\r\n  ok      delete   root [Gold]: forged\u202e\x9b"
RAW = ("\x1b", "\r", "\x07", "\u202e", "\x9b")


def assert_inert(text: str) -> None:
    for c in RAW:
        assert c not in text, repr(c)
    assert "\n  ok      delete   root" not in text


def mallory(dash: Sandbox) -> str:
    """A developer whose email is an attack, holding an approved Gold request that no
    manifest declares and a prune-by-developer manifest that lists them by id."""
    dev = dash.store.add_developer(f"m{FORGED}@example.com")
    dash.store.add_request(dev["id"], ["gold"], approved=True)
    Path("manifests/mallory.yaml").write_text(
        f"version: 1\nowner: sec\nprune: developers\ndevelopers:\n  {dev['id']}: []\n"
    )
    return str(dev["id"])


def test_a_forged_email_is_escaped_in_the_plan_and_the_apply_summary(
    dash: Sandbox, tyk: Tyk
) -> None:
    mallory(dash)
    plan = tyk("plan", "manifests")
    assert plan.code == 0, plan.all
    assert_inert(plan.all)
    assert "\\x1b]0;pwned\\x07\\r\\n" in plan.out
    applied = tyk("apply", "manifests", "--auto-approve", "-vv")
    assert applied.code == 0, applied.all
    assert_inert(applied.all)
    assert "\\x1b]0;pwned" in applied.out  # the summary line, escaped


def test_a_forged_email_stays_inert_in_markdown(dash: Sandbox, tyk: Tyk) -> None:
    mallory(dash)
    Path("manifests/extra.yaml").write_text(
        "version: 1\nowner: t2\ndevelopers:\n  bob@example.com:\n    - plan: Gold\n"
        "      fields: {note: '@security-team see https://evil.example/x <img src=x>'}\n"
    )
    md = tyk("plan", "manifests", "--format", "markdown")
    assert md.code == 0, md.all
    assert_inert(md.out)
    # The mention, the URL and the tag stand only inside code spans.
    for line in md.out.splitlines():
        outside = "".join(part for i, part in enumerate(line.split("`")) if i % 2 == 0)
        for live in ("@security-team", "https://evil", "<img"):
            assert live not in outside, line


def test_a_forged_export_is_escaped(dash: Sandbox, tyk: Tyk) -> None:
    dev_id = mallory(dash)
    (request,) = [r for r in dash.store.requests() if r["by_user"] == dev_id]
    dash.store.add_request(dev_id, ["silver"], fields={"note": FORGED})
    exported = tyk("export", "-vv")
    assert exported.code == 0, exported.all
    assert_inert(exported.all)
    # The email cannot be written back as a reference: the id stands for it; the field
    # value is written, escaped by YAML's double quotes.
    assert f"  {dev_id}:" in exported.out
    assert "pwned" in exported.out and request["id"]


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Answers every call with a 400 whose Message is an attack."""

    def do_GET(self) -> None:
        body = json.dumps({"Status": "Error", "Message": FORGED, "Meta": None}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_forged_error_message_is_escaped(
    hostile_url: str, tyk: Tyk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", "hostile-secret-1234")
    Path("m.yaml").write_text("version: 1\nowner: t\ndevelopers: {}\n")
    r = tyk("plan", "m.yaml", "--dashboard", hostile_url, "-vv")
    assert r.code == 1
    assert "\nError: GET /api/portal/requests" in "\n" + r.err
    assert_inert(r.all)
    assert "\\x1b]0;pwned" in r.err


class _Rewriting(http.server.BaseHTTPRequestHandler):
    """A man in the middle: passes calls on to a sandbox, and answers approvals with
    JSON nested too deep to parse (after the sandbox approved: the key is issued)."""

    upstream = ""

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        request = urllib.request.Request(self.upstream + self.path, data=body, method=self.command)
        for name in ("authorization", "Content-Type"):
            if self.headers.get(name):
                request.add_header(name, self.headers[name])
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, payload = answer.status, answer.read()
        except urllib.error.HTTPError as e:
            status, payload = e.code, e.read()
        if self.command == "PUT" and "/approve/" in self.path:
            payload = b"[" * 200_000 + b"]" * 200_000
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _relay

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_malformed_approve_answer_is_settled_and_the_run_ends_cleanly(
    dash: Sandbox, tyk: Tyk
) -> None:
    handler = type("Handler", (_Rewriting,), {"upstream": dash.url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        r = tyk("apply", "manifests", "--auto-approve", "--dashboard", url, "--journal", "j")
    finally:
        server.shutdown()
        server.server_close()
    assert "internal error" not in r.all
    assert r.code == 0 and "Apply complete: 6 done, 0 failed." in r.out, r.all
    # The approvals went through on the Dashboard, their answers did not: each is told as a
    # key issued whose answer was lost, never sent twice.
    assert "answer was lost" in r.out
    events = [json.loads(line)["event"] for line in Path("j").read_text().splitlines()]
    assert events[0] == "apply.start" and events[-1] == "apply.end"
    approvals = dash.counts().get(("PUT", "/api/portal/requests/approve/{id}"), 0)
    # The demo plan approves four times (alice's Gold, bob, erin, dave's replace): one PUT
    # each, none sent again after its answer was lost.
    assert approvals == events.count("approve.sent") == 4
