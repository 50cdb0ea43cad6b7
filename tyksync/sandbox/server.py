"""The sandbox's HTTP server: an emulated Tyk Dashboard (classic portal API).

`Sandbox` runs a stdlib ThreadingHTTPServer on a daemon thread. Each call is counted by
route, passes through the configured faults, is authorised, then answered from the store
in the configured dialect.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from tyksync.fileutil import DEFAULT_SANDBOX_STATE
from tyksync.sandbox import wire
from tyksync.sandbox.faults import WRITE_METHODS, Faults
from tyksync.sandbox.seed import SeedSource, apply_seed, load_seed
from tyksync.sandbox.store import SandboxError, Store, StoreError, state_lock
from tyksync.sandbox.wire import Dialect

MAX_BODY = 10 * 1024 * 1024
UNKNOWN_ROUTE = "<unknown>"

# What calls are counted by: (method, path template), e.g. ("GET", "/api/portal/requests/{id}").
RouteKey = tuple[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Call:
    """One parsed HTTP call, as the route handlers see it."""

    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    faults: Faults  # as read when the call arrived

    def page(self, dialect: Dialect) -> wire.Page:
        values = self.query.get("p")
        return wire.parse_page(values[0] if values else None, dialect)


def _error(status: int, message: str) -> Answer:
    return Answer(status, wire.envelope("Error", message))


def _json(payload: Any) -> Answer:
    return Answer(200, json.dumps(payload).encode())


Handlers = dict[str, Callable[[Call], Answer]]  # by method


class PortalApi:
    """The routes of the classic portal API, answered from a store in one dialect."""

    def __init__(self, store: Store, dialect: Dialect) -> None:
        self.store = store
        self.dialect = dialect
        # Rendered listings, by (route, page): (store generation, body). A 100k listing
        # takes seconds to render; it is rendered again only when the store has changed.
        self._rendered: dict[tuple[str, wire.Page], tuple[int, bytes]] = {}
        self._rendered_lock = threading.Lock()

    def routes(self) -> list[tuple[str, Handlers]]:
        # More specific templates first: "approve/{id}" before "{id}".
        return [
            ("/api/portal/requests", {"GET": self.list_requests, "POST": self.create_request}),
            ("/api/portal/requests/approve/{id}", {"PUT": self.approve_request}),
            ("/api/portal/requests/{id}", {"GET": self.get_request, "DELETE": self.delete}),
            ("/api/portal/developers", {"GET": self.list_developers}),
            ("/api/portal/developers/email/{email}", {"GET": self.developer_by_email}),
            ("/api/portal/developers/{id}/keys/{key_id}", {"DELETE": self.revoke_key}),
            ("/api/portal/developers/{id}", {"GET": self.get_developer}),
            ("/api/portal/policies", {"GET": self.list_policies}),
            ("/api/portal/policies/{id}", {"GET": self.get_policy}),
        ]

    # -- key requests ---------------------------------------------------------------------

    def list_requests(self, call: Call) -> Answer:
        def snapshot() -> tuple[list[Any], Callable[[list[Any]], str]]:
            requests, developers = self.store.request_snapshot()
            return requests, lambda part: wire.request_list_json(part, developers, self.dialect)

        return self._listing(call, "requests", snapshot)

    def get_request(self, call: Call) -> Answer:
        request = self.store.get_request(call.params["id"])
        return _json(wire.render_request(request, self.dialect))

    def create_request(self, call: Call) -> Answer:
        args = wire.parse_create(call.body, self.dialect)
        record = self.store.create_request(
            by_user=args.by_user,
            for_plan=args.for_plan,
            apply_policies=args.apply_policies,
            fields=args.fields,
            version=args.version,
            for_api=args.for_api,
        )
        return Answer(200, wire.envelope("OK", record["id"]))

    def approve_request(self, call: Call) -> Answer:
        # Legacy Dashboards know no explicit policy ids: only `_id` names a policy there.
        key = self.store.approve(call.params["id"], explicit_ids=self.dialect == "modern")
        return _json({"RawKey": key})

    def delete(self, call: Call) -> Answer:
        self.store.delete_request(call.params["id"])
        return Answer(200, wire.envelope("OK", "Data deleted"))

    # -- developers and policies ------------------------------------------------------------

    def list_developers(self, call: Call) -> Answer:
        return self._listing(
            call,
            "developers",
            lambda: (
                self.store.developer_snapshot(),
                lambda part: json.dumps([wire.render_developer(d, self.dialect) for d in part]),
            ),
        )

    def get_developer(self, call: Call) -> Answer:
        developer = self.store.get_developer(call.params["id"])
        return _json(wire.render_developer(developer, self.dialect))

    def revoke_key(self, call: Call) -> Answer:
        self.store.revoke_key(call.params["id"], call.params["key_id"])
        return Answer(200, wire.envelope("OK", "Key revoked"))

    def developer_by_email(self, call: Call) -> Answer:
        developer = self.store.developer_by_email(call.params["email"])
        return _json(wire.render_developer(developer, self.dialect))

    def list_policies(self, call: Call) -> Answer:
        return self._listing(
            call,
            "policies",
            lambda: (
                self.store.policy_snapshot(),
                lambda part: json.dumps([wire.render_policy(p, self.dialect) for p in part]),
            ),
        )

    def get_policy(self, call: Call) -> Answer:
        policy = self.store.get_policy(call.params["id"], explicit_ids=self.dialect == "modern")
        return _json(wire.render_policy(policy, self.dialect))

    # -- paging -----------------------------------------------------------------------------

    def _listing(
        self,
        call: Call,
        route: str,
        snapshot: Callable[[], tuple[list[Any], Callable[[list[Any]], str]]],
    ) -> Answer:
        """One page (or everything) of a listing. `snapshot` gives the items and how to
        render a part of them; it is called only when no rendering of the store's current
        generation is at hand."""
        page = call.page(self.dialect)
        if page.everything and call.faults.refuse_everything():
            return _error(400, "Invalid page number")
        if page.everything and call.faults.cap_everything():
            # A Dashboard that caps "everything" at one page but still counts every page.
            page = wire.Page(everything=False, index=0)
        # Read before the snapshot: a change after this read makes the next call render anew.
        generation = self.store.generation()
        key = (route, page)
        with self._rendered_lock:
            cached = self._rendered.get(key)
        if cached is not None and cached[0] == generation:
            return Answer(200, cached[1])
        items, render = snapshot()
        part = list(wire.page_items(items, page))
        body = wire.listing(render(part), wire.page_count(len(items)))
        with self._rendered_lock:
            # Renderings of older generations are never served again: drop them.
            self._rendered = {k: v for k, v in self._rendered.items() if v[0] == generation}
            self._rendered[key] = (generation, body)
        return Answer(200, body)


class _Router:
    """Maps a path to a route template, its parameters and its handlers by method."""

    def __init__(self, routes: list[tuple[str, Handlers]]) -> None:
        self._routes = [(template, _compile(template), handlers) for template, handlers in routes]

    def match(self, path: str) -> tuple[str, dict[str, str], Handlers] | None:
        if len(path) > 1:
            path = path.rstrip("/")
        for template, pattern, handlers in self._routes:
            found = pattern.fullmatch(path)
            if found:
                params = {k: unquote(v) for k, v in found.groupdict().items()}
                return template, params, handlers
        return None


_KEY_IN_PATH = re.compile(r"(/keys/)[^/?#]+")


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries a Content-Length
    timeout = 120  # an idle keep-alive connection must not hold its thread for ever
    # A large body goes out in more writes than one; with Nagle on, a write waits for the
    # client's delayed ACK (~40 ms a call).
    disable_nagle_algorithm = True
    # Headers and a small body in one write (sent when the handler returns): two writes
    # cost a system call and, on the client, a wake-up more per call.
    wbufsize = 64 * 1024
    server: _Server
    _injected_answer = False  # for the access log
    _arrived = 0.0  # when the call's request line was read: see `parse_request`

    def parse_request(self) -> bool:
        # A Dashboard's latency is the time from a call's arrival to its answer, its own
        # work included: the sandbox's parsing (and waiting for its turn on a busy machine)
        # runs within the latency rather than after it.
        self._arrived = time.monotonic()
        return bool(super().parse_request())

    def handle_expect_100(self) -> bool:
        ok = bool(super().handle_expect_100())
        self.wfile.flush()  # buffered, and the client waits for it before sending the body
        return ok

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self._injected_answer = False
        sandbox = self.server.sandbox
        method = self.command
        url = urlsplit(self.path)
        matched = sandbox.router.match(url.path)
        template = matched[0] if matched else UNKNOWN_ROUTE
        sandbox.count(method, template)
        faults = sandbox.faults  # one read: a swap mid-call applies from the next call
        if faults.reset():
            self._hang_up(abortive=True)
            return
        body = self._read_body()
        if body is None:
            return
        left = self._arrived + faults.delay(method) - time.monotonic()
        if left > 0:
            time.sleep(left)
        injected = self._injected(faults, method, template)
        answer = injected or self._answer(method, url, matched, body, faults)
        if answer.status < 300 and faults.drop_answer(method, template):
            self._hang_up(abortive=False)  # the write was committed; its answer is lost
            return
        if answer.status == 200 and faults.corrupt(method):
            injected = answer = Answer(200, answer.body[: max(1, len(answer.body) // 2)])
        self._injected_answer = injected is not None
        self._send(answer)

    def _injected(self, faults: Faults, method: str, template: str) -> Answer | None:
        if faults.rate_limited(method):
            retry = (("Retry-After", str(faults.retry_after)),)
            return Answer(429, wire.envelope("Error", "Too Many Requests"), headers=retry)
        status = faults.error_status(method, template)
        if status is None:
            return None
        if status == 500:
            return _error(500, "Internal server error")
        # What a proxy in front of the Dashboard answers: HTML, not the Dashboard's JSON.
        reason = self.responses.get(status, ("Error",))[0]
        page = f"<html><body><h1>{status} {reason}</h1></body></html>".encode()
        return Answer(status, page, content_type="text/html")

    def _answer(
        self,
        method: str,
        url: SplitResult,
        matched: tuple[str, dict[str, str], Handlers] | None,
        body: bytes,
        faults: Faults,
    ) -> Answer:
        if not self.server.sandbox.authorised(self.headers.get("authorization")):
            return _error(401, "Not authorised")
        if matched is None:
            return _error(404, "Not found")
        template, params, handlers = matched
        handler = handlers.get(method)
        if handler is None:
            return _error(405, "Method not allowed")
        call = Call(params, parse_qs(url.query), body, faults)
        try:
            return handler(call)
        except StoreError as e:
            return _error(e.status, e.message)
        except Exception as e:  # a bug here must answer 500, not kill the connection
            self.server.sandbox.log(f"internal error on {method} {template}: {e!r}")
            return _error(500, "Internal server error")

    def _read_body(self) -> bytes | None:
        """The request body, or None when the call was refused for its framing."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._send(_error(411, "Length required"), close=True)
            return None
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(_error(400, "Invalid Content-Length"), close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, answer: Answer, close: bool = False) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)

    def _hang_up(self, abortive: bool) -> None:
        """Close the connection without answering: abortive sends a reset (RST)."""
        what = "reset before handling" if abortive else "hung up after commit"
        self.server.sandbox.log(f"{self.command} {self._logged_path} {what} (injected)")
        self.close_connection = True
        with suppress(OSError):
            if abortive:
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The path and status only: headers (the secret) and bodies (keys) are never logged.
        status = int(code) if isinstance(code, int) else code
        note = " (injected)" if self._injected_answer else ""
        self.server.sandbox.log(f"{self.command} {self._logged_path} {status}{note}")

    @property
    def _logged_path(self) -> str:
        """The path as the log shows it: a revoke's key id is a secret, so it is masked."""
        return _KEY_IN_PATH.sub(r"\1(key id)", self.path)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.sandbox.log(f"{self.address_string()} {format % args}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's backlog is 5: sixteen clients connecting at once (an apply at
    # --parallelism 16) overflowed it, and the kernel made the late ones retransmit, a
    # stall of 0.2 to 1 s. A real Dashboard listens with the system's maximum.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up with getfqdn, which can stall on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.sandbox.connected(client_address)
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Hang up on kept-alive clients, so a stopped sandbox answers nothing more."""
        with self._open_lock:
            open_now = list(self._open)
        for conn in open_now:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer is not worth a traceback on the console.
        self.sandbox.log(f"connection from {client_address[0]} ended abruptly")


class Sandbox:
    """An emulated Tyk Dashboard over real HTTP on a local port."""

    def __init__(
        self,
        secret: str,
        dialect: Dialect = "modern",
        state_path: Path | None = None,
        seed: SeedSource | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log: Callable[[str], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the sandbox needs a non-empty secret")
        self.secret = secret
        self.dialect = wire.parse_dialect(dialect)
        self.faults = faults or Faults()
        self.host = host
        self.requested_port = port
        self.tls = tls  # serve https with this server context (tests of TLS verification)
        self._log = log
        self._seed = seed
        self.store = Store(state_path)
        if seed is not None and self.store.is_empty():
            apply_seed(self.store, load_seed(seed))
        self.api = PortalApi(self.store, self.dialect)
        self.router = _Router(self.api.routes())
        self._counts: Counter[RouteKey] = Counter()
        self._connections: set[tuple[str, int]] = set()  # client (host, port) accepted
        self._counts_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never the secret
        where = self.url if self._server else "stopped"
        return f"<Sandbox {self.dialect} {where}>"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            return self
        try:
            self._server = _Server((self.host, self.requested_port), self)
        except OSError as e:
            raise SandboxError(
                f"cannot listen on {self.host}:{self.requested_port}: {e.strerror or e}"
            ) from e
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # How often serve_forever checks for shutdown: stop() waits up to this long.
            kwargs={"poll_interval": 0.02},
            name=f"tyksync-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def reset(self) -> None:
        """Back to the seed data (or empty, without a seed); counters are kept."""
        with self.store.batch():
            self.store.reset()
            if self._seed is not None:
                apply_seed(self.store, load_seed(self._seed))

    # -- what the handler needs ---------------------------------------------------------------

    def authorised(self, header: str | None) -> bool:
        if header is None:
            return False
        # http.server decodes headers as latin-1: encode back to the bytes that were sent.
        sent = header.encode("latin-1", errors="replace")
        return hmac.compare_digest(sent, self.secret.encode("utf-8"))

    def count(self, method: str, template: str) -> None:
        with self._counts_lock:
            self._counts[(method, template)] += 1

    def connected(self, client_address: Any) -> None:
        with self._counts_lock:
            self._connections.add((str(client_address[0]), int(client_address[1])))

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    # -- what tests and reports read ------------------------------------------------------------

    def counts(self) -> dict[RouteKey, int]:
        """Calls received per (method, route template), faulted ones included."""
        with self._counts_lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()
            self._connections.clear()

    def connections(self) -> int:
        """TCP connections accepted (distinct client addresses) since the last reset."""
        with self._counts_lock:
            return len(self._connections)

    def mutating_calls(self) -> int:
        """POST, PUT and DELETE calls received, whatever became of them."""
        with self._counts_lock:
            return sum(n for (method, _), n in self._counts.items() if method in WRITE_METHODS)

    def fault_counts(self) -> dict[str, int]:
        return self.faults.counts()


@contextmanager
def embedded_sandbox(
    state_path: Path = DEFAULT_SANDBOX_STATE, dialect: Dialect = "modern"
) -> Iterator[Sandbox]:
    """A sandbox for `--sandbox`: in-process, on a free loopback port, with a new random
    secret each run, its state kept in `state_path` and seeded with the demo on first use."""
    with state_lock(state_path):  # so that of two first runs at once, one seeds, not both
        sandbox = Sandbox(
            secrets.token_urlsafe(32), dialect=dialect, state_path=state_path, seed="demo"
        )
    with sandbox:
        yield sandbox
