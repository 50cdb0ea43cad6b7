"""A hostile Dashboard (SPEC section 10), over real HTTP on 127.0.0.1: answers without end,
answers a byte at a time, malformed answers, ids that are not ids, page counts no listing
can fill, proxies in the environment.

Each test reproduces the attack against a small server written here, and fails if the
defence it names is taken away.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import shutil
import socket
import ssl
import stat
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from support import Tyk, self_signed_cert

from tyksync import redact, wire
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.connection import ConnectionSettings, connect, read_secret
from tyksync.errors import (
    AnswerLost,
    ApiError,
    IncompleteListing,
    MalformedAnswer,
    NetworkError,
    TyksyncError,
)
from tyksync.models import key_label
from tyksync.sandbox import Sandbox

SECRET = "hostile-secret-CANARY-9d41"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "manifests"
MIB = 1024 * 1024
LIST = "/api/portal/requests"

DEV = {"id": "64a000000000000000000a01", "email": "alice@example.com", "inactive": False}
POL = {"_id": "64b000000000000000000b01", "id": "gold", "name": "Gold", "active": True}
REQ = {
    "id": "64c000000000000000000c01",
    "by_user": DEV["id"],
    "apply_policies": [POL["_id"]],
    "for_plan": POL["_id"],
    "fields": {"ticket": "OPS-1"},
    "approved": False,
    "date_created": "2026-01-05T10:00:00Z",
    "version": "v2",
}


# ---- a Dashboard that answers what a test tells it to --------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:
        self.server.serve(self)

    do_POST = do_PUT = do_DELETE = do_CONNECT = do_GET

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    def body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def trickle(self, data: bytes, every: float) -> None:
        """`data` one byte at a time, until the client hangs up or the test ends."""
        for i in range(len(data)):
            if self.server.stopping.wait(every):
                return
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, respond: Callable[[Handler], None]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.respond = respond
        self.calls: list[tuple[str, str]] = []
        self.stopping = threading.Event()

    def serve(self, handler: Handler) -> None:
        self.calls.append((handler.command, handler.path))
        try:
            self.respond(handler)
        except OSError:
            handler.close_connection = True  # the client hung up: what these tests expect

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Handler], None]], Server]]:
    servers: list[Server] = []

    def start(respond: Callable[[Handler], None]) -> Server:
        server = Server(respond)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stopping.set()
        server.shutdown()
        server.server_close()


def client(url: str, *, attempts: int = 1, timeout: float = 5.0, **kw: Any) -> DashboardClient:
    return DashboardClient(
        url,
        SECRET,
        retry=RetryPolicy(attempts=attempts),
        sleep=lambda _s: None,
        timeout=(2.0, timeout),
        **kw,
    )


def listing(*items: Any, pages: int = 1) -> dict[str, Any]:
    return {"Data": list(items), "Pages": pages}


def portal(requests: Any = None, developers: Any = None, policies: Any = None) -> Any:
    """A Dashboard with one developer, one policy and one request, each replaceable."""
    answers = {
        "/api/portal/requests": listing(REQ) if requests is None else requests,
        "/api/portal/developers": listing(DEV) if developers is None else developers,
        "/api/portal/policies": listing(POL) if policies is None else policies,
    }

    def respond(h: Handler) -> None:
        body = answers.get(h.route)
        if body is None:
            h.answer(404, {"Status": "Error", "Message": "Not found", "Meta": None})
        else:
            h.answer(200, body)

    return respond


# ---- every answer has a size cap, read as a stream ----------------------------------------


def endless_listing(h: Handler) -> None:
    """A 200 whose chunked body goes on (up to 64 MiB, so that a client without a cap
    fails the test rather than hanging it)."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    piece = json.dumps(REQ).encode() + b", "
    piece *= (64 * 1024) // len(piece)
    first = b'{"Pages": 1, "Data": ['
    h.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
    sent = 0
    while sent < 64 * MIB and not h.server.stopping.is_set():
        h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        sent += len(piece)
    h.wfile.write(b"0\r\n\r\n")


def test_an_endless_answer_stops_at_the_cap_with_memory_bounded(serve: Any) -> None:
    server = serve(endless_listing)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(NetworkError) as e:
            client(server.url, max_response_bytes=MIB).list_requests()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(e.value) == (
        "GET /api/portal/requests?p=-1: the answer is larger than 1 MiB (--max-response-mb)"
    )
    assert time.monotonic() - started < 5
    assert peak < 8 * MIB, peak
    assert server.count("GET") == 1  # too large is not retried: it would be as large again


def test_a_compressed_answer_is_capped_as_it_is_unpacked(serve: Any) -> None:
    bomb = gzip.compress(b" " * (64 * MIB), compresslevel=9)  # about 64 KiB on the wire

    def respond(h: Handler) -> None:
        h.answer(200, bomb, {"Content-Encoding": "gzip"})

    server = serve(respond)
    tracemalloc.start()
    try:
        with pytest.raises(NetworkError, match="larger than 1 MiB"):
            client(server.url, max_response_bytes=MIB).list_requests()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB, peak


def test_a_write_whose_answer_is_too_large_is_lost_not_failed(serve: Any) -> None:
    server = serve(endless_listing)
    with pytest.raises(AnswerLost, match=r"larger than 1 MiB.*outcome is unknown"):
        client(server.url, max_response_bytes=MIB).approve_request(REQ["id"])
    assert server.count("PUT") == 1


@pytest.fixture
def manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", SECRET)
    for name in ("TYK_DASHBOARD_URL", "TYK_DASHBOARD_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "manifests"


def test_max_response_mb_reaches_the_client(serve: Any, manifests: Path, tyk: Tyk) -> None:
    big = listing(*[dict(REQ, id=f"64c0000000000000000{n:05x}") for n in range(8000)], pages=800)
    server = serve(portal(requests=big))  # about 2 MiB
    r = tyk("plan", "manifests", "--dashboard", server.url, "--max-response-mb", "1")
    assert r.code == 1
    assert "GET /api/portal/requests?p=-1: the answer is larger than 1 MiB" in r.err
    r = tyk("plan", "manifests", "--dashboard", server.url, "--max-response-mb", "3")
    assert "larger than" not in r.err


# ---- --timeout bounds the whole answer --------------------------------------------------


# Both end after a few seconds, so that a client without a deadline fails the tests that
# use them rather than hanging them.


def slow_body(every: float) -> Callable[[Handler], None]:
    def respond(h: Handler) -> None:
        body = json.dumps(listing()).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.flush()
        h.trickle(body, every)

    return respond


def slow_headers(every: float) -> Callable[[Handler], None]:
    def respond(h: Handler) -> None:
        h.close_connection = True
        h.trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", every)

    return respond


@pytest.mark.parametrize("respond", [slow_body(0.25), slow_headers(0.25)], ids=["body", "headers"])
def test_a_trickled_answer_ends_at_the_timeout(serve: Any, respond: Any) -> None:
    # A byte every 0.25 s never trips a 1 s socket timeout: only a deadline ends this.
    server = serve(respond)
    started = time.monotonic()
    with pytest.raises(NetworkError) as e:
        client(server.url, timeout=1.0).list_requests()
    took = time.monotonic() - started
    assert str(e.value) == "GET /api/portal/requests?p=-1: no whole answer within 1s (--timeout)"
    # At least the deadline (it exists), well under a trickle's end (it bites).
    assert 0.9 < took < 10, took


def test_a_read_past_the_deadline_is_retried(serve: Any) -> None:
    server = serve(slow_body(0.25))
    with pytest.raises(NetworkError, match=r"within 0\.5s"):
        client(server.url, attempts=2, timeout=0.5).list_requests()
    assert server.count("GET") == 2


def test_a_write_past_the_deadline_is_lost_and_not_resent(serve: Any) -> None:
    server = serve(slow_body(0.25))
    started = time.monotonic()
    with pytest.raises(AnswerLost) as e:
        client(server.url, attempts=5, timeout=1.0).create_request(DEV["id"], ["gold"], {})
    assert time.monotonic() - started < 3
    assert "POST /api/portal/requests: no whole answer within 1s" in str(e.value)
    assert e.value.in_flight
    assert server.count("POST") == 1


def test_timeout_option_bounds_each_answer(serve: Any, manifests: Path, tyk: Tyk) -> None:
    server = serve(slow_body(1.0))  # one byte a second
    r = tyk("plan", "manifests", "--dashboard", server.url, "--timeout", "1")
    assert r.code == 1
    assert "GET /api/portal/requests?p=-1: no whole answer within 1s (--timeout)" in r.err
    # Five tries of about a second each, and the backoff between them.
    assert server.count("GET") == 5
    assert r.seconds < 14, r.seconds


@pytest.fixture
def tls_trickle() -> Iterator[tuple[str, list[int]]]:
    """A server that takes a TLS ClientHello and answers with a handshake record one byte
    at a time, 0.25 s apart: a handshake no socket timeout ends. It stops after 8 s, so
    that a client without a deadline fails the tests rather than hangs them."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    accepted: list[int] = []

    def drip(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the ClientHello
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 27  # promises 16 KiB
            for i in range(len(record)):
                if stop.wait(0.25):
                    return
                try:
                    conn.sendall(record[i : i + 1])
                except OSError:
                    return

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(1)
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    listener.close()


def test_a_trickled_tls_handshake_is_a_connect_timeout_not_a_lost_write(
    tls_trickle: Any,
) -> None:
    """A TLS handshake has its own deadline, the connect timeout (here 0.5 s, under the
    whole call's 5 s); urllib3 reports it as a read timeout, but nothing had gone out: the
    create cannot have been processed, so it is tried again rather than reported lost."""
    url, accepted = tls_trickle
    started = time.monotonic()
    slow = DashboardClient(
        url, SECRET, retry=RetryPolicy(attempts=2), sleep=lambda _s: None, timeout=(0.5, 5.0)
    )
    with pytest.raises(NetworkError) as e:
        slow.create_request(DEV["id"], ["gold"], {})
    assert not isinstance(e.value, AnswerLost)
    assert str(e.value) == "POST /api/portal/requests: timed out connecting to the Dashboard"
    assert len(accepted) == 2
    assert time.monotonic() - started < 4


def test_a_connection_refused_after_the_deadline_is_not_a_lost_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name lookup outlasts the deadline, then the connection is refused: nothing went
    out, and the watch cut nothing, so the failure is what it is."""
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    real = socket.getaddrinfo

    def slow_lookup(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    with pytest.raises(NetworkError) as e:
        client(f"http://127.0.0.1:{port}", timeout=1.0).create_request(DEV["id"], ["gold"], {})
    assert not isinstance(e.value, AnswerLost)
    assert "connection refused" in str(e.value)


def test_a_proxy_trickling_its_answer_to_connect_ends_at_the_timeout(
    serve: Any, proxy_env: Any, only_loopback: list[str]
) -> None:
    def trickle_connect(h: Handler) -> None:
        h.close_connection = True
        h.trickle(b"HTTP/1.1 200 Connection established\r\n\r\n", 0.25)

    proxy = serve(trickle_connect)
    proxy_env(f"http://127.0.0.1:{proxy.server_address[1]}")
    started = time.monotonic()
    with pytest.raises(NetworkError, match=r"no connection within 1s \(--timeout\)"):
        client("https://dashboard.example.invalid", timeout=1.0).list_requests()
    assert time.monotonic() - started < 5
    assert [m for m, _ in proxy.calls] == ["CONNECT"]
    assert only_loopback == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_an_https_proxy_trickling_its_answer_to_connect_ends_at_the_timeout(
    tmp_path: Path, proxy_env: Any, only_loopback: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS to the proxy, then CONNECT inside it: the socket the watch was given is the one
    TLS detached, and the answer is read on the TLS socket, byte by byte within the socket
    timeout. Only the deadline ends it."""
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(4096)
            for byte in b"HTTP/1.1 200 Connection established\r\nX-Pad: aaaaaaaa\r\n\r\n":
                if stop.wait(0.25):
                    return
                tls.sendall(bytes([byte]))

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    proxy_env(f"https://127.0.0.1:{listener.getsockname()[1]}")
    started = time.monotonic()
    try:
        with pytest.raises(NetworkError, match=r"no connection within 1s \(--timeout\)"):
            client("https://dashboard.example.invalid", timeout=1.0).list_requests()
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        listener.close()
    assert only_loopback == []


def test_a_deadline_cuts_only_a_connection_its_call_still_uses() -> None:
    """A pooled connection goes back to the pool as its answer's last byte is read; the
    call that takes it next owns it, and the first call's deadline must not cut it."""
    from tyksync.client import _Watch, _WatchedHTTPConnection

    mine, theirs = socket.socketpair()
    conn = _WatchedHTTPConnection("127.0.0.1", 1)
    conn.sock = mine
    first, second = _Watch(30.0), _Watch(30.0)
    first.using(conn)
    second.using(conn)  # taken from the pool by the next call
    first.expire()
    assert not first.cut
    theirs.sendall(b"x")
    assert mine.recv(1) == b"x"  # still open
    second.expire()
    assert second.cut
    assert mine.recv(1) == b""  # shut down
    mine.close()
    theirs.close()


# ---- malformed answers are errors naming the call ----------------------------------------


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def tampered(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**item, **changes}


NESTED = json.loads(deep(900))  # parses, and is deeper than anything should walk

MALFORMED = {
    "fields not a map": ("requests", tampered(REQ, fields="ticket=OPS-1")),
    "field value a number": ("requests", tampered(REQ, fields={"ticket": 1})),
    "field value nested": ("requests", tampered(REQ, fields={"ticket": NESTED})),
    "approved a string": ("requests", tampered(REQ, approved="true")),
    "id a number": ("requests", tampered(REQ, id=7)),
    "id empty": ("requests", tampered(REQ, id="")),
    "id dot": ("requests", tampered(REQ, id=".")),
    "id dot dot": ("requests", tampered(REQ, id="..")),
    "id with a slash": ("requests", tampered(REQ, id="64c0/../../developers")),
    "id with a space": ("requests", tampered(REQ, id="64c0 1")),
    "id with an escape": ("requests", tampered(REQ, id="\x1b[2J")),
    "id percent-encoded dots": ("requests", tampered(REQ, id="%2e%2e")),
    "id too long": ("requests", tampered(REQ, id="a" * 300)),
    "by_user a list": ("requests", tampered(REQ, by_user=[DEV["id"]])),
    "by_user dot dot": ("requests", tampered(REQ, by_user="..")),
    "apply_policies a string": ("requests", tampered(REQ, apply_policies="gold")),
    "apply_policies numbers": ("requests", tampered(REQ, apply_policies=[1])),
    "for_plan an object": ("requests", tampered(REQ, apply_policies=None, for_plan={})),
    "date a number": ("requests", tampered(REQ, date_created=20260105)),
    "developer email a number": ("developers", tampered(DEV, email=5)),
    "developer inactive a string": ("developers", tampered(DEV, inactive="no")),
    "developer id with a slash": ("developers", tampered(DEV, id="a/b")),
    "policy active a string": ("policies", tampered(POL, active="false")),
    "policy name an object": ("policies", tampered(POL, name={})),
    "policy without an id": ("policies", tampered(POL, _id=None, id=None)),
    "item not an object": ("requests", "64c000000000000000000c01"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_item_is_an_error_naming_the_call(serve: Any, case: str) -> None:
    which, item = MALFORMED[case]
    server = serve(portal(**{which: listing(item)}))
    with pytest.raises(NetworkError) as e:
        client(server.url).read_live()
    assert str(e.value).startswith(f"GET /api/portal/{which}"), e.value
    assert "malformed answer" in str(e.value) or "Data was not" in str(e.value)
    assert str(e.value).isprintable()


@pytest.mark.parametrize("case", ["approved a string", "id with a slash", "field value nested"])
def test_a_malformed_item_after_items_read_as_they_came_names_the_call(
    serve: Any, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing reader decodes items as they arrive and hands the rest back, from the
    item msgspec refuses on, as plain JSON: the items it holds are msgspec's, the others
    dicts, and the checks judge both as one listing."""
    monkeypatch.setattr(wire, "PIECE", 512)
    _, item = MALFORMED[case]
    good = [dict(REQ, id=f"64c00000000000000000{n:04x}") for n in range(200)]
    server = serve(portal(requests=listing(*good, item, pages=21)))
    with pytest.raises(NetworkError) as e:
        client(server.url).read_live()
    # The message the whole listing read as plain JSON gives: the item's, not the list's.
    with pytest.raises(NetworkError) as whole:
        client(serve(portal(requests=listing(item))).url).read_live()
    assert str(e.value) == str(whole.value)


@pytest.mark.parametrize(
    "body",
    [
        {"Data": {"a": REQ}, "Pages": 1},
        {"Data": [REQ], "Pages": "1"},
        {"Data": [REQ], "Pages": True},
        [REQ],
        "everything",
    ],
    ids=["data a map", "pages a string", "pages a bool", "a bare list", "a string"],
)
def test_a_malformed_listing_is_an_error_naming_the_call(serve: Any, body: Any) -> None:
    server = serve(portal(requests=body))
    with pytest.raises(MalformedAnswer, match=r"^GET /api/portal/requests\?p=-1: malformed"):
        client(server.url).list_requests()


def test_deeply_nested_json_is_invalid_json(serve: Any) -> None:
    server = serve(lambda h: h.answer(200, deep(100_000)))
    with pytest.raises(NetworkError, match="not valid JSON"):
        client(server.url, attempts=2).list_requests()
    assert server.count("GET") == 2  # retried, as any invalid answer to a read


@pytest.mark.parametrize(
    "body",
    [deep(100_000), json.dumps({"RawKey": NESTED}).encode(), b'{"RawKey": ""}', b"[]"],
    ids=["nested past the parser", "nested key", "empty key", "a list"],
)
def test_a_malformed_approve_answer_is_an_answer_lost(serve: Any, body: bytes) -> None:
    # Answered 200: approved, most likely, and the key with it; the applier settles it.
    server = serve(lambda h: h.answer(200, body))
    with pytest.raises(AnswerLost) as e:
        client(server.url).approve_request(REQ["id"])
    assert str(e.value).startswith(f"PUT /api/portal/requests/approve/{REQ['id']}: ")
    assert "outcome is unknown" in str(e.value)
    assert server.count("PUT") == 1


@pytest.mark.parametrize("new_id", ["..", "a/b", "", 42])
def test_a_create_answer_without_a_usable_id_is_an_answer_lost(serve: Any, new_id: Any) -> None:
    server = serve(lambda h: h.answer(200, {"Status": "OK", "Message": new_id, "Meta": None}))
    with pytest.raises(AnswerLost, match=r"^POST /api/portal/requests: malformed answer"):
        client(server.url).create_request(DEV["id"], ["gold"], {})
    assert server.count("POST") == 1


def test_a_single_item_answer_that_is_no_object_is_an_error(serve: Any) -> None:
    server = serve(lambda h: h.answer(200, [REQ]))
    with pytest.raises(MalformedAnswer, match=f"^GET /api/portal/requests/{REQ['id']}: "):
        client(server.url).get_request(REQ["id"])
    with pytest.raises(MalformedAnswer, match=f"^GET /api/portal/developers/{DEV['id']}: "):
        client(server.url).developer(DEV["id"])


KEY_ID = "0123456789abcdef"
ODD_KEYS = {
    "missing": ...,
    "null": None,
    "a string": "k",
    "a list": [KEY_ID],
    "a number": 3,
    "policies a string": {KEY_ID: "gold"},
    "policies holding a number": {KEY_ID: [1]},
    "policies holding an empty id": {KEY_ID: [""]},
    "a key id with a slash": {"0123456789/bcdef": ["gold"]},
    "a key id `..`": {"..": ["gold"]},
    "a key id too short to be a hash": {"Gold": ["gold"]},
    "one good, one bad": {KEY_ID: ["gold"], "x y z 1 2 3": ["gold"]},
}


@pytest.mark.parametrize("case", ODD_KEYS, ids=list(ODD_KEYS))
def test_a_developer_s_odd_keys_are_unknown_never_an_error(serve: Any, case: str) -> None:
    """SPEC section 11: `keys` may be missing or anything else; tyksync then cannot tell a
    key apart (so revokes none) but still plans. A bad key id is never registered as a
    secret either (a short one would mask ordinary words everywhere)."""
    developer: dict[str, Any] = dict(DEV)
    if ODD_KEYS[case] is not ...:
        developer["keys"] = ODD_KEYS[case]
    server = serve(portal(developers=listing(developer)))
    (read,) = client(server.url).read_live().developers
    assert read.keys is None
    assert redact.redact("Gold x y z 1 2 3") == "Gold x y z 1 2 3"


def test_well_formed_keys_are_read_and_a_revoke_is_sent_with_its_id_only_in_the_path(
    serve: Any,
) -> None:
    deletes = [0]

    def respond(h: Handler) -> None:
        if h.command == "DELETE":
            deletes[0] += 1
            status = 200 if deletes[0] == 1 else 404
            h.answer(status, {"Status": "OK" if status == 200 else "Error", "Message": "x"})
        else:
            portal(developers=listing({**DEV, "keys": {KEY_ID: ["gold"]}}))(h)

    server = serve(respond)
    c = client(server.url)
    (read,) = c.read_live().developers
    assert read.keys == {KEY_ID: frozenset({"gold"})}
    assert c.revoke_key(DEV["id"], KEY_ID) is True
    assert c.revoke_key(DEV["id"], KEY_ID) is False  # 404: gone already
    assert server.calls[-1] == ("DELETE", f"/api/portal/developers/{DEV['id']}/keys/{KEY_ID}")
    for bad in ("..", "a/b", "", "k#1"):
        with pytest.raises(TyksyncError, match="refusing to revoke a key"):
            c.revoke_key(DEV["id"], bad)
    assert server.count("DELETE") == 2


def test_a_revoke_that_fails_names_the_key_by_its_label(serve: Any) -> None:
    server = serve(lambda h: h.answer(400, {"Status": "Error", "Message": "nope"}))
    with pytest.raises(ApiError) as e:
        client(server.url).revoke_key(DEV["id"], KEY_ID)
    assert KEY_ID not in str(e.value)
    assert f"/keys/{key_label(KEY_ID)}" in str(e.value)
    server_5xx = serve(lambda h: h.answer(503, {"Status": "Error", "Message": "busy"}))
    with pytest.raises(AnswerLost) as lost:  # not retried blindly: the applier settles it
        client(server_5xx.url, attempts=3).revoke_key(DEV["id"], KEY_ID)
    assert KEY_ID not in str(lost.value)
    assert server_5xx.count("DELETE") == 1


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_dot_segments_and_empty_ids_are_never_sent(serve: Any, bad: str) -> None:
    server = serve(portal())
    c = client(server.url)
    for call in (c.delete_request, c.approve_request, c.get_request, c.developer):
        with pytest.raises(TyksyncError, match="not one"):
            call(bad)  # type: ignore[operator]
    assert server.calls == []


def test_an_id_is_sent_as_one_percent_encoded_segment(serve: Any) -> None:
    server = serve(lambda h: h.answer(404, {"Status": "Error", "Message": "Not found"}))
    c = client(server.url)
    assert c.delete_request("a/../b?c#d") is False
    assert c.get_request("a b%") is None
    assert server.calls == [
        ("DELETE", "/api/portal/requests/a%2F..%2Fb%3Fc%23d"),
        ("GET", "/api/portal/requests/a%20b%25"),
    ]


def tamper_proxy(sb: Sandbox, tamper: Callable[[str, Any], Any]) -> Callable[[Handler], None]:
    """A Dashboard that answers as the sandbox does, with `tamper(route, answer)` applied."""

    def respond(h: Handler) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=10)
        try:
            headers = {"authorization": h.headers.get("authorization", "")}
            conn.request(h.command, h.path, body=h.body() or None, headers=headers)
            got = conn.getresponse()
            status, raw = got.status, got.read()
        finally:
            conn.close()
        h.answer(status, json.dumps(tamper(h.route, json.loads(raw))).encode())

    return respond


def test_a_listed_dot_dot_id_is_refused_and_nothing_is_deleted(
    serve: Any, manifests: Path, tyk: Tyk
) -> None:
    # The examples delete erin's Silver request; listed as "..", its DELETE would go to
    # DELETE /api/portal/, another endpoint, once urllib3 resolved the dot segment.
    def rename(route: str, answer: Any) -> Any:
        if route == LIST:
            for item in answer["Data"]:
                if item["id"] == "64c000000000000000000c04":
                    item["id"] = ".."
        return answer

    with Sandbox(SECRET, seed="demo") as sb:
        server = serve(tamper_proxy(sb, rename))
        r = tyk("apply", "manifests", "--auto-approve", "--dashboard", server.url)
        assert r.code == 1
        assert "GET /api/portal/requests: malformed answer: a key request's id" in r.err
        assert server.count("DELETE") == 0
        assert sb.mutating_calls() == 0


# ---- page walks are bounded -----------------------------------------------------------------


def refuses_everything(page: Callable[[int], Any]) -> Callable[[Handler], None]:
    def respond(h: Handler) -> None:
        p = int(h.query["p"])
        if p < 0:
            h.answer(400, {"Status": "Error", "Message": "Invalid page number", "Meta": None})
        else:
            h.answer(200, page(p))

    return respond


def request(n: int) -> dict[str, Any]:
    return tampered(REQ, id=f"64c0000000000000{n:08x}")


@pytest.mark.parametrize(
    "page",
    [
        lambda p: listing(request(1), request(2), request(3), pages=10**12),
        lambda p: listing(pages=10**12),
        # One new item a page, for ever (for 50 pages, so that a walk without a bound
        # fails the test rather than hanging it).
        lambda p: listing(*([request(p)] if p <= 50 else []), pages=10**12),
    ],
    ids=["same page again", "empty pages", "one new item a page"],
)
def test_pages_the_items_cannot_fill_end_the_walk(serve: Any, page: Any) -> None:
    server = serve(refuses_everything(page))
    started = time.monotonic()
    with pytest.raises(IncompleteListing, match=r"^GET /api/portal/requests: .*10{12} pages"):
        client(server.url).list_requests()
    # The GET count is the proof (an unbounded walk would read 10**12 pages); the time
    # bound only catches a hang, generously, for a machine busy with a parallel suite.
    assert time.monotonic() - started < 20
    assert server.count("GET") <= 5, server.calls


def full_page(p: int) -> dict[str, Any]:
    """Ten new items a page, for ever (for 200 pages: a client without a bound fails the
    test rather than hanging it)."""
    return listing(*[request(p * 10 + i) for i in range(10 if p < 200 else 0)], pages=10**12)


def test_a_walk_of_endless_full_pages_is_held_to_the_size_cap(serve: Any) -> None:
    server = serve(refuses_everything(full_page))
    with pytest.raises(NetworkError, match=r"add up to more than 65536 bytes \(--max-response"):
        client(server.url, max_response_bytes=64 * 1024).list_requests()
    assert server.count("GET") < 50


def test_a_walk_stops_at_the_first_page_that_adds_nothing(serve: Any) -> None:
    # A Dashboard that refuses p=-1 but reads p=0 as everything: nothing after it is new.
    items = [request(n) for n in range(25)]
    server = serve(
        refuses_everything(
            lambda p: listing(*(items if p == 0 else items[(p - 1) * 10 : p * 10]), pages=3)
        )
    )
    assert len(client(server.url).list_requests()) == 25
    walk = [1, 0, 2]  # twice: two walks in a row must agree
    assert [q for _, q in server.calls] == [f"{LIST}?p={p}" for p in [-1, *walk, *walk]]


def test_a_walk_of_a_real_listing_still_reads_every_page(serve: Any) -> None:
    items = [request(n) for n in range(25)]
    server = serve(refuses_everything(lambda p: listing(*items[(p - 1) * 10 : p * 10], pages=3)))
    assert len(client(server.url).list_requests()) == 25


# ---- proxies ----------------------------------------------------------------------------------


def forwarding_proxy(sb: Sandbox) -> Callable[[Handler], None]:
    """An HTTP proxy that hands absolute-URI calls to the sandbox and refuses CONNECT."""

    def respond(h: Handler) -> None:
        if h.command == "CONNECT":
            h.close_connection = True
            h.answer(502, b"")
            return
        url = urlsplit(h.path)
        path = url.path + (f"?{url.query}" if url.query else "")
        forward = tamper_proxy(sb, lambda _route, answer: answer)
        h.path = path
        forward(h)

    return respond


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    for name in (*PROXY_VARIABLES, "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def point_at(proxy: str) -> None:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, proxy)
            monkeypatch.setenv(name.lower(), proxy)

    return point_at


@pytest.fixture
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Name lookups for anything but this machine fail (recorded) instead of going out."""
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", "::1"):
            looked_up.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, "not looked up in tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.parametrize("how", ["127.0.0.1", "localhost", "--sandbox"])
def test_a_loopback_dashboard_never_goes_through_a_proxy(
    serve: Any, manifests: Path, tyk: Tyk, proxy_env: Any, how: str
) -> None:
    proxy = serve(lambda h: h.answer(502, b""))
    proxy_env(f"http://127.0.0.1:{proxy.server_address[1]}")
    with Sandbox(SECRET, seed="demo") as sb:
        url = sb.url.replace("127.0.0.1", how)
        r = tyk(
            "plan",
            "manifests",
            *(["--sandbox"] if how == "--sandbox" else ["--dashboard", url]),
            "-v",
        )
    assert r.code == 0, r.err
    assert proxy.calls == []
    assert "proxy" not in r.err


def test_another_dashboard_goes_through_the_proxy_named_without_credentials(
    serve: Any, manifests: Path, tyk: Tyk, proxy_env: Any, only_loopback: list[str]
) -> None:
    password = "proxy-password-CANARY-77"
    with Sandbox(SECRET, seed="demo") as sb:
        proxy = serve(forwarding_proxy(sb))
        port = proxy.server_address[1]
        proxy_env(f"http://ops:{password}@127.0.0.1:{port}")
        url = "http://dashboard.example.invalid:3000"
        r = tyk("plan", "manifests", "--dashboard", url, "--insecure", "-v")
    assert r.code == 0, r.err
    assert f"through the proxy http://127.0.0.1:{port}" in r.err
    assert ("GET", f"{url}/api/portal/requests?p=-1") in proxy.calls
    assert password not in r.all and SECRET not in r.all
    assert only_loopback == []


def test_no_proxy_is_honoured(
    serve: Any, proxy_env: Any, only_loopback: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = serve(lambda h: h.answer(502, b""))
    proxy_env(f"http://127.0.0.1:{proxy.server_address[1]}")
    url = "https://dashboard.example.invalid"
    with pytest.raises(NetworkError):
        client(url).list_requests()
    assert [m for m, _ in proxy.calls] == ["CONNECT"]
    monkeypatch.setenv("NO_PROXY", "dashboard.example.invalid")
    with pytest.raises(NetworkError):
        client(url).list_requests()
    assert len(proxy.calls) == 1  # straight to the (unresolvable) host this time
    assert set(only_loopback) == {"dashboard.example.invalid"}


@pytest.mark.parametrize(
    "url",
    [
        "http://dashboard.example.invalid",
        "http://10.1.2.3:3000",
        "HTTP://Dashboard.Example.Invalid:3000/",
        "http://[2001:db8::1]:3000",
    ],
)
def test_plain_http_to_another_host_is_refused_before_any_call(
    url: str, manifests: Path, tyk: Tyk, only_loopback: list[str]
) -> None:
    r = tyk("plan", "manifests", "--dashboard", url)
    assert r.code == 1
    assert "plain http://" in r.err and "--insecure" in r.err
    assert only_loopback == []
    # --insecure lets it through, loudly; nothing is called before a read (none here).
    with connect(
        ConnectionSettings(dashboard=url, insecure=True), {"TYK_DASHBOARD_SECRET": SECRET}
    ) as conn:
        assert conn.client.url == url.rstrip("/")
    assert only_loopback == []


def test_plain_http_to_another_host_is_loud_with_insecure(
    manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    settings = ConnectionSettings(dashboard="http://dashboard.example.invalid", insecure=True)
    with connect(settings, {"TYK_DASHBOARD_SECRET": SECRET}):
        pass
    assert "travel in clear" in caplog.text


# ---- the secret file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "warning"),
    [
        (0o600, None),
        (0o640, "can be read by other users"),
        (0o620, "can be changed by other users"),
        (0o602, "can be changed by other users"),
        (0o666, "can be read and changed by other users"),
    ],
)
def test_secret_file_others_can_read_or_change_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warning: str | None
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, mode)
    caplog.set_level(logging.WARNING)
    assert read_secret(path, {}) == SECRET
    warnings = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warning in warnings[0]
        assert f"mode {stat.S_IMODE(mode):o}" in warnings[0]
    assert SECRET not in caplog.text


# ---- a URL with credentials is never echoed ----------------------------------------------


PASSWORD = "url-password-CANARY-31"


@pytest.mark.parametrize(
    "url",
    [
        f"http//ops:{PASSWORD}@dash.example.invalid",
        f"ops:{PASSWORD}@dash.example.invalid",
        f"ftp://ops:{PASSWORD}@dash.example.invalid",
        f"http://ops:{PASSWORD}@dash.example.invalid:port",
        f"http:///ops:{PASSWORD}@dash.example.invalid",
        f"https://ops:{PASSWORD}@dash.example.invalid",
        f"{PASSWORD}://dash.example.invalid",
        f"http://dash.example.invalid:{PASSWORD}",
    ],
)
def test_a_bad_url_is_never_echoed(
    url: str, manifests: Path, tyk: Tyk, only_loopback: list[str]
) -> None:
    r = tyk("plan", "manifests", "--dashboard", url, "-vv")
    assert r.code == 1
    assert r.err.startswith("Error: the Dashboard URL"), r.err
    assert PASSWORD not in r.all
    assert only_loopback == []


# ---- the Dashboard's own words stay bounded -------------------------------------------------


def test_a_huge_error_message_is_cut(serve: Any) -> None:
    message = "no " * MIB
    server = serve(lambda h: h.answer(403, {"Status": "Error", "Message": message}))
    with pytest.raises(ApiError) as e:
        client(server.url).list_requests()
    assert len(str(e.value)) < 700
