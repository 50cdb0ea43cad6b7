"""The Dashboard client: the only code in tyksync that talks HTTP.

Wire JSON is parsed here into `tyksync.models`; sensitive members the Dashboard embeds
(`portal_developer.keys`, `password`, ...) are dropped on read and never leave this module.
The one exception is the key ids of a developer read from the developer listing (SPEC
section 11): they are what revoking a key needs, so they are kept on `Developer.keys`,
registered as secrets with `tyksync.redact` as they are read, and never put in a message.

Retries: reads are idempotent and retried with exponential backoff and full jitter on
connection errors, 429 (honouring Retry-After, capped), 5xx and invalid JSON. Creates and
approvals are not idempotent and are never retried once they may have reached the Dashboard;
a lost answer raises `AnswerLost`, and the applier settles the outcome by reading live
state. Deletes are idempotent: retried, and a 404 means already gone. A revoke is a delete
too (404: already gone), but its lost answer is not retried blindly: it raises
`AnswerLost`, and the applier settles it by reading the developer again, so that the
journal shows it and no revoke is sent that the first one already did.

The Dashboard is an outside party (SPEC section 10): every answer is read as a stream under
a size cap and a deadline from connecting to its last byte, every member is type-checked,
and ids are checked before they are put in a path. A Dashboard on this machine is never
reached through a proxy; others honour the standard proxy variables.
"""

from __future__ import annotations

import contextvars
import functools
import heapq
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from tyksync import __version__, redact
from tyksync.errors import (
    AlreadyProcessed,
    AnswerLost,
    ApiError,
    ConfigError,
    IncompleteListing,
    MalformedAnswer,
    NetworkError,
    TyksyncError,
)
from tyksync.models import Developer, KeyRequest, LiveState, Policy, key_label
from tyksync.timefmt import normalize_date
from tyksync.urls import is_loopback, proxy_label, url_label
from tyksync.wire import (
    ListingReader,
    Unread,
    WireDeveloper,
    WireDeveloperKeyless,
    WireItem,
    WireListing,
    WireRequest,
    legacy_id,
    wire_id,
)

log = logging.getLogger("tyksync.client")
# urllib3 logs every request line at debug, path included; a revoke's path holds a key id.
logging.getLogger("urllib3.connectionpool").addFilter(redact.RedactingFilter())

PAGE_SIZE = 10
WALKS = 4  # page-by-page reads of one listing before giving up on a stable view
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 512 * 1024 * 1024
# Read size: a 200 MB listing in 1 MiB reads is 200 trips through urllib3, not 3,000.
CHUNK = 1024 * 1024
MIN_KEY_ID = 8  # the shortest key hash a Dashboard records (murmur32, hex)
# Connections kept open to the Dashboard: enough for apply's usual --parallelism, so that
# each worker keeps its own (see `use_connections`). Unused slots cost nothing.
POOL_SIZE = 32
# The Dashboard's only way to say an approval was refused because it happened before.
ALREADY_PROCESSED = "Key request has already been processed"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # total tries of one read
    backoff: float = 0.25  # first delay, doubled each try, with full jitter
    max_backoff: float = 8.0
    max_retry_after: float = 30.0  # a Dashboard asking for longer is not waited on blindly


@dataclass(frozen=True)
class _Answer:
    status: int
    body: Any
    retry_after: str | None = None
    location: str | None = None


class DashboardClient:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        verify: bool | str = True,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """`timeout`: seconds to connect, and for a whole answer (connect to last byte)."""
        if not secret:
            raise ConfigError("no Dashboard secret: set TYK_DASHBOARD_SECRET or --secret-file")
        if not secret.isprintable() or not _latin1(secret):
            # Refused here, before any call: http.client would refuse the header later
            # with a message that quotes its value, the secret.
            raise ConfigError(
                "the Dashboard secret holds characters an HTTP header cannot carry "
                "(a line break, or non-Latin-1 text); check how it was stored"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError(
                "the Dashboard URL is not a valid http(s)://host[:port] URL"
            ) from None
        if parts.username is not None or parts.password is not None:
            # requests would turn them into Basic auth in place of the secret header.
            raise ConfigError(
                "the Dashboard URL carries credentials (user:password@); remove them: "
                "the secret comes from TYK_DASHBOARD_SECRET or --secret-file"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # Not quoted, not even in part: a mistyped URL ("http//user:pass@host",
            # "user:pass@host") can hold a password anywhere.
            raise ConfigError("the Dashboard URL must be http(s)://host[:port]")
        redact.register(secret)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        connect, seconds = timeout
        self._timeouts = urllib3.Timeout(connect=min(connect, seconds), read=seconds)
        # What requests would take from the environment is taken here instead, so that a
        # loopback Dashboard never goes through a proxy (requests would send it there
        # unless NO_PROXY says otherwise), and no ~/.netrc entry replaces the secret.
        if verify is True:
            # As requests does with trust_env: the environment's CA bundle, unless
            # --ca-bundle or --insecure said otherwise.
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
        self._verify = verify
        self._proxies = {} if is_loopback(parts.hostname or "") else _environ_proxies(url)
        self.proxy = requests.utils.select_proxy(self.url, self._proxies)
        if self.proxy:
            log.info(
                "reaching the Dashboard through the proxy %s (HTTPS_PROXY, HTTP_PROXY or "
                "ALL_PROXY; NO_PROXY lists hosts reached directly)",
                proxy_label(self.proxy),
            )
        # The headers a requests Session sends (compression, keep-alive), and the secret.
        self._headers = {
            **requests.utils.default_headers(),
            "User-Agent": f"tyksync/{__version__}",
            "Accept": "application/json",
            "authorization": secret,
        }
        self._pool_size = POOL_SIZE
        self._adapter = _WatchedAdapter(pool_maxsize=POOL_SIZE)
        self._route: _Route | None = None

    def use_connections(self, count: int) -> None:
        """Keep up to `count` connections to the Dashboard open, for `count` calls at once.
        The pool holds POOL_SIZE from the start (requests' default, 10, made a call past
        the tenth open a connection and drop it); a larger count gets a larger pool."""
        if count <= self._pool_size:
            return
        self._pool_size = count
        old, self._adapter = self._adapter, _WatchedAdapter(pool_maxsize=count)
        self._route = None
        old.close()

    def close(self) -> None:
        self._adapter.close()
        self._route = None

    def __enter__(self) -> DashboardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads -------------------------------------------------------------------------

    def read_live(self, *, keys: bool = True) -> LiveState:
        """Everything a plan needs, in three list calls. Without `keys`, the developers'
        keys (100k at scale, and only revoking needs them) are skipped unread: every
        `Developer.keys` is None."""
        raw_requests = self._list(REQUESTS)
        raw_developers = self._list(DEVELOPERS, WireDeveloper if keys else WireDeveloperKeyless)
        raw_policies = self._list(POLICIES)
        with _parsing("GET", DEVELOPERS):
            developers = tuple(_developer_any(d, keys) for d in raw_developers)
        with _parsing("GET", POLICIES):
            policies = tuple(_policy(p) for p in raw_policies)
        with _parsing("GET", REQUESTS):
            key_requests = _key_requests(raw_requests)
        # Before 1.9.2 the Dashboard listed `_id` for requests and developers alike; an
        # empty request list must not hide that.
        legacy = any(_legacy_id(r) for r in raw_requests) or any(
            _legacy_id(d) for d in raw_developers
        )
        del raw_requests, raw_developers, raw_policies
        return LiveState(
            developers=developers, policies=policies, requests=key_requests, legacy=legacy
        )

    def list_policies(self) -> list[Policy]:
        raw = self._list(POLICIES)
        with _parsing("GET", POLICIES):
            return [_policy(p) for p in raw]

    def list_requests(self) -> list[KeyRequest]:
        raw = self._list(REQUESTS)
        with _parsing("GET", REQUESTS):
            return list(_key_requests(raw))

    def get_request(self, request_id: str) -> KeyRequest | None:
        """One request, or None when the Dashboard says it does not exist."""
        path = f"{REQUESTS}/{_seg(request_id)}"
        answer = self._read(path, missing_ok=True)
        with _parsing("GET", path):
            return None if answer is None else _key_request(_object(answer))

    def developer(self, developer_id: str) -> Developer | None:
        path = f"{DEVELOPERS}/{_seg(developer_id)}"
        answer = self._read(path, missing_ok=True)
        with _parsing("GET", path):
            return None if answer is None else _developer(_object(answer))

    # ---- writes ------------------------------------------------------------------------

    def create_request(
        self, developer_id: str, policy_ids: Sequence[str], fields: Mapping[str, str]
    ) -> str:
        """Create a key request; return its id. Raises AnswerLost when the outcome is unknown."""
        if not policy_ids:
            raise ValueError("a key request needs at least one policy")
        body = {
            "by_user": developer_id,
            "version": "v2",
            "fields": dict(fields),
            "apply_policies": list(policy_ids),
            "for_plan": policy_ids[0],
            "approved": False,
        }
        answer = self._write("POST", REQUESTS, body)
        # The Dashboard answered 200: the request was most likely created, under an id
        # that cannot be read, so its outcome is settled by reading live state.
        with _parsing("POST", REQUESTS, lost=True):
            new_id = _object(answer).get("Message")
            if not isinstance(new_id, str) or not new_id:
                raise _Malformed("the answer held no request id")
            return _safe_id(new_id, "the new request's id")

    def approve_request(self, request_id: str) -> str:
        """Approve; return the RawKey (a live credential: never log or print it)."""
        path = f"{REQUESTS}/approve/{_seg(request_id)}"
        try:
            answer = self._write("PUT", path, None)
        except ApiError as e:
            if e.status == 400 and ALREADY_PROCESSED in e.dashboard_message:
                raise AlreadyProcessed(e.method, e.path, e.status, e.dashboard_message) from None
            raise
        # Answered 200 without a readable key: approved, most likely, and the key lost.
        with _parsing("PUT", path, lost=True):
            key = _object(answer).get("RawKey")
            if not isinstance(key, str) or not key:
                raise _Malformed("the approval answer held no key")
        redact.register(key)
        return key

    def delete_request(self, request_id: str) -> bool:
        """Delete; False when the request was already gone."""
        path = f"{REQUESTS}/{_seg(request_id)}"
        return self._send("DELETE", path, None, retry_lost=True, missing_ok=True) is not None

    def revoke_key(self, developer_id: str, key_id: str) -> bool:
        """Revoke a developer's key; False when the Dashboard no longer knows it (404).
        Raises AnswerLost when the outcome is unknown: read the developer to settle it.

        The key id is a secret: it goes into the path (percent-encoded, after the same
        checks as every other id) and nowhere else; messages and logs name the call with
        the key's label."""
        try:
            _safe_id(key_id, "the key id")
        except _Malformed as e:
            raise TyksyncError(f"refusing to revoke a key: {e}") from None
        path = f"{DEVELOPERS}/{_seg(developer_id)}/keys/{_seg(key_id)}"
        shown = f"{DEVELOPERS}/{_seg(developer_id)}/keys/{key_label(key_id)}"
        answer = self._send("DELETE", path, None, retry_lost=False, missing_ok=True, label=shown)
        return answer is not None

    # ---- transport ---------------------------------------------------------------------

    def _list(self, path: str, item: type[WireItem] | None = None) -> list[Any]:
        """Every item of a listing in one request (`p=-1`), checked for completeness.

        A Dashboard that refuses `p=-1`, or answers it with fewer items than `Pages`
        promises, is read page by page instead. The requests and developers listings are
        read as they arrive by a `ListingReader` (items as `WireItem`s, `item` or the
        listing's own); what it cannot read is read as plain JSON, and those items are dicts.
        """
        item = item or _ITEMS.get(path)
        read = None if item is None else functools.partial(ListingReader, item)
        try:
            answer = self._read(path, params={"p": "-1"}, decode=read)
        except ApiError as e:
            if e.status == 404:
                raise ApiError(
                    e.method,
                    e.path,
                    404,
                    "not found: --dashboard/TYK_DASHBOARD_URL should be the Dashboard's base "
                    "URL, without /api",
                ) from None
            if e.status != 400:
                raise
            log.info("GET %s?p=-1 refused (%s); reading page by page", path, e.status)
            return self._walk(path)
        with _parsing("GET", f"{path}?p=-1"):
            if isinstance(answer, WireListing):
                count, pages = len(answer.items), answer.pages
                if pages < 0:
                    _envelope({"Data": [], "Pages": pages})  # raises as for any answer
                if _complete(count, pages):
                    return _dedupe(answer.items)
            else:
                items, pages = _envelope(answer)
                count = len(items)
                if _complete(count, pages):
                    return _dedupe(items)
        log.info("GET %s?p=-1 gave %d items for %d pages; reading page by page", path, count, pages)
        return self._walk(path)

    def _walk(self, path: str) -> list[dict[str, Any]]:
        """Every item, page by page. Pages are no snapshot: a delete between two page reads
        shifts an item onto a page already read. So the walk is repeated until two walks
        in a row agree."""
        previous: list[dict[str, Any]] | None = None
        for _ in range(WALKS):
            items = self._walk_once(path)
            if previous is not None and _ids(items) == _ids(previous):
                return items
            previous = items
        raise IncompleteListing(
            f"GET {path}: the listing kept changing while it was read page by page; "
            "try again when the Dashboard is quieter"
        )

    def _walk_once(self, path: str) -> list[dict[str, Any]]:
        """One walk. Dashboards before 1.9.2 count pages from 0, later ones from 1 (and take
        p=0 as "everything"), so p=1 and p=0 are read first, then p=2, 3, ...

        `Pages` is the Dashboard's word, not a number of calls to make: the walk stops at the
        first page that adds nothing, never reads a page past what the items seen so far can
        fill (plus one), and the pages together are held to the size cap of one answer.
        """
        budget = _Budget(self.max_response_bytes)
        items: dict[str, dict[str, Any]] = {}

        def read(p: int) -> tuple[int, int]:
            """The new items page `p` added, and the Dashboard's page count."""
            shown = f"{path}?p={p}"
            answer = self._read(path, params={"p": str(p)}, budget=budget)
            with _parsing("GET", shown):
                page, pages = _envelope(answer)
                before = len(items)
                for item in page:
                    items.setdefault(_item_id(item), item)
            return len(items) - before, pages

        _, pages = read(1)
        try:
            read(0)
        except ApiError as e:
            if e.status != 400:
                raise
        p = 2
        while p <= min(pages, _pages_for(len(items)) + 1):
            added, _ = read(p)
            if not added:
                break
            p += 1
        if not _complete(len(items), pages):
            raise IncompleteListing(
                f"GET {path}: the Dashboard reported {pages} pages of {PAGE_SIZE} but "
                f"{len(items)} distinct items could be read; refusing to plan on a partial view"
            )
        return list(items.values())

    def _read(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        budget: _Budget | None = None,
        decode: Callable[[], ListingReader] | None = None,
    ) -> Any:
        return self._send(
            "GET",
            path,
            None,
            params=params,
            retry_lost=True,
            missing_ok=missing_ok,
            budget=budget,
            decode=decode,
        )

    def _write(self, method: str, path: str, body: Any) -> Any:
        return self._send(method, path, body, retry_lost=False)

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        params: Mapping[str, str] | None = None,
        retry_lost: bool,
        missing_ok: bool = False,
        budget: _Budget | None = None,
        label: str | None = None,
        decode: Callable[[], ListingReader] | None = None,
    ) -> Any:
        """One call with the retry rules of its kind.

        `retry_lost`: the call is idempotent, so a lost answer or a 5xx may be retried.
        Otherwise only failures that prove the call was not processed (connection refused,
        429) are retried, and anything else raises AnswerLost. `label`: how messages and
        logs name the call, when its path holds a secret.
        """
        shown = path if not params else f"{path}?" + "&".join(f"{k}={v}" for k, v in params.items())
        call = _Call(method, label or shown, retry_lost, missing_ok, budget, label or path, decode)
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.retry.attempts
            delay = self._backoff(attempt)
            try:
                answer = self._once(call, path, body, params)
            except requests.exceptions.RequestException as e:
                retry = _judge_failure(call, e, last)
            else:
                verdict = self._judge(call, answer, last)
                if not isinstance(verdict, _Retry):
                    return verdict.body
                retry = verdict
            wait = delay if retry.wait is None else retry.wait
            # call.shown, not the path: a revoke's path holds a key id (a secret).
            log.warning("%s %s: %s; retrying in %.1fs", method, call.shown, retry.reason, wait)
            self._sleep(wait)

    def _judge(self, call: _Call, answer: _Answer, last: bool) -> _Answer | _Retry:
        """An answer to return (its body), one to try again, or an error raised."""
        status = answer.status
        if 300 <= status < 400:
            raise ApiError(
                call.method,
                call.shown,
                status,
                "the Dashboard redirected; tyksync does not follow redirects (a write "
                "would be lost): use the URL it points to"
                + (f" ({url_label(answer.location)})" if answer.location else ""),
            )
        if status < 300:
            if answer.body is not _INVALID:
                return answer
            if call.retry_lost and not last:
                return _Retry("invalid JSON")
            error = f"the Dashboard answered {status} with a body that is not valid JSON"
            if call.retry_lost:
                raise NetworkError(call.method, call.shown, error)
            raise AnswerLost(call.method, call.shown, error + "; the outcome is unknown")
        if status == 404 and call.missing_ok:
            return _Answer(status, None)
        if status in RETRY_STATUSES and (call.retry_lost or status == 429) and not last:
            wait = self._retry_after(answer) if status == 429 else None
            return _Retry(f"answered {status}", wait)
        if status >= 500 and not call.retry_lost:
            raise AnswerLost(
                call.method, call.shown, f"the Dashboard answered {status}; the outcome is unknown"
            )
        raise ApiError(call.method, call.shown, status, redact.redact(_message(answer.body)))

    def _once(self, call: _Call, path: str, body: Any, params: Mapping[str, str] | None) -> _Answer:
        """One try on the wire: the status and the parsed body, or requests' exception."""
        started = time.monotonic()
        seconds = self.timeout[1]
        data = None if body is None else json.dumps(body).encode()
        with _Watch(seconds) as watch:
            try:
                response = self._urlopen(call.method, path, params, data)
                reader = None
                if call.decode is not None and 200 <= response.status < 300:
                    reader = call.decode()
                try:
                    content, size = self._content(call, response, watch, reader)
                except BaseException:
                    response.close()  # not read to its end: the connection is done for
                    raise
                finally:
                    response.release_conn()  # after a whole answer, it stays pooled
            except requests.exceptions.RequestException as e:
                if watch.cut:
                    # The watch cut the connection: a timeout, whatever urllib3 made of it;
                    # before the request went out (a TLS handshake, a proxy's CONNECT), one
                    # that cannot have been processed.
                    raise (_Deadline if watch.sent else _ConnectDeadline)(seconds) from None
                if not watch.sent and isinstance(e, requests.exceptions.ReadTimeout):
                    # urllib3 reports a socket timeout in a TLS handshake or a proxy's
                    # CONNECT as a read timeout; nothing had gone out.
                    raise requests.exceptions.ConnectTimeout(*e.args) from None
                raise
        log.debug(
            "%s %s -> %d (%.0f ms, %d bytes)",
            call.method,
            call.logged,
            response.status,
            (time.monotonic() - started) * 1000,
            size,
        )
        parsed: Any
        if reader is not None:
            # A listing read for its few members: what the reader could not read is read
            # below as plain JSON, and judged (and reported) as every answer is.
            parsed = reader.finish()
            if isinstance(parsed, Unread):
                parsed = _plain_json(parsed.body, before=parsed.items)
        else:
            parsed = _plain_json(content)
        del content
        return _Answer(
            response.status,
            parsed,
            response.headers.get("Retry-After"),
            response.headers.get("Location"),
        )

    def _urlopen(
        self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None
    ) -> urllib3.BaseHTTPResponse:
        """Send one call through the pool requests' adapter chose (`_routed`), as the
        adapter would send it, and raise what the adapter would raise.

        A call used to go through a requests Session: preparing, merging settings, cookies,
        hooks, choosing the pool again and building a Response cost more CPU than the rest
        of a call (issue 14: ~0.3 ms a call, on the cores the apply shares with the
        Dashboard). No cookie was ever wanted: the secret header is the only credential."""
        headers = self._headers
        if method not in ("GET", "HEAD"):
            # As requests prepares a body: a JSON text, and its length (0 for none).
            headers = {**headers, "Content-Length": str(len(body or b""))}
            if body is not None:
                headers["Content-Type"] = "application/json"
        try:
            route = self._routed()
            target = route.prefix + path + (f"?{urlencode(params)}" if params else "")
            return route.pool.urlopen(
                method,
                target,
                body=body,
                headers=headers,
                # A redirect would turn a PUT or DELETE into a GET and report it done.
                redirect=False,
                assert_same_host=False,
                # Read by `_content`, under the size cap and the deadline.
                preload_content=False,
                decode_content=False,
                retries=_NO_RETRIES,
                timeout=self._timeouts,
                chunked=False,
            )
        except Exception as e:
            error = _adapter_error(e)
            if error is e:
                raise
            raise error from e

    def _routed(self) -> _Route:
        """The connection pool (proxy and TLS included) and the target's prefix that
        requests' adapter chooses for the Dashboard's URL: the same for every call, so
        chosen once rather than on every call (a `stat` of the CA bundle each time)."""
        route = self._route
        if route is None:
            adapter = self._adapter
            probe = requests.PreparedRequest()
            probe.prepare_url(self.url, None)
            try:
                pool = adapter.get_connection_with_tls_context(
                    probe, self._verify, proxies=self._proxies
                )
            except urllib3.exceptions.LocationValueError as e:
                raise requests.exceptions.InvalidURL(e) from None
            # A PoolManager's pools are HTTP(S)ConnectionPools (the stubs say less).
            assert isinstance(pool, urllib3.connectionpool.HTTPConnectionPool)
            adapter.cert_verify(pool, self.url, self._verify, None)  # type: ignore[no-untyped-call]
            # The URL's path, or the whole URL for a plain http Dashboard behind a proxy.
            prefix = adapter.request_url(probe, self._proxies).rstrip("/")
            route = self._route = _Route(pool, prefix)
        return route

    def _content(
        self,
        call: _Call,
        response: urllib3.BaseHTTPResponse,
        watch: _Watch,
        reader: ListingReader | None,
    ) -> tuple[bytearray, int]:
        """The body and its size, read in chunks: never more than the cap, never past the
        deadline (socket timeouts only bound the gap between two bytes). With a `reader`,
        the chunks go to it, and the body returned is empty."""
        budget = call.budget
        cap = self.max_response_bytes if budget is None else budget.left
        content = bytearray()
        size = 0
        for chunk in _chunks(response):
            size += len(chunk)
            if size > cap:
                raise self._too_large(call)
            if reader is not None:
                reader.feed(chunk)
            else:
                content += chunk
            if watch.expired:
                raise _Deadline(watch.seconds)
        if budget is not None:
            budget.left -= size
        return content, size

    def _too_large(self, call: _Call) -> NetworkError:
        size = _size(self.max_response_bytes)
        if call.budget is not None:
            reason = f"the pages of this listing add up to more than {size} (--max-response-mb)"
        else:
            reason = f"the answer is larger than {size} (--max-response-mb)"
        if call.retry_lost:
            return NetworkError(call.method, call.shown, reason)
        return AnswerLost(call.method, call.shown, f"{reason}; the outcome is unknown")

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.max_backoff, self.retry.backoff * 2 ** (attempt - 1))
        return self._rng.uniform(0, cap)

    def _retry_after(self, answer: _Answer) -> float | None:
        raw = answer.retry_after
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            return None
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return min(seconds, self.retry.max_retry_after)


REQUESTS = "/api/portal/requests"
DEVELOPERS = "/api/portal/developers"
POLICIES = "/api/portal/policies"
_INVALID = object()
# requests' adapter's own: no retry inside urllib3, whose errors then say what happened.
_NO_RETRIES = urllib3.util.Retry(0, read=False)


@dataclass(frozen=True)
class _Route:
    """Where every call to one Dashboard goes."""

    pool: urllib3.connectionpool.HTTPConnectionPool
    prefix: str  # what the request target starts with, before the call's path


class _Budget:
    """Bytes the pages of one walk may still take: together they are one answer."""

    def __init__(self, size: int) -> None:
        self.left = size


@dataclass(frozen=True)
class _Call:
    """What the retry rules need to know of one call."""

    method: str
    shown: str  # the path and query, as messages name the call
    retry_lost: bool  # idempotent: a lost answer or a 5xx may be retried
    missing_ok: bool  # a 404 is an answer (None), not an error
    budget: _Budget | None = None  # a page of a walk, held to what the walk has left
    logged: str = ""  # the path as the debug log shows it
    decode: Callable[[], ListingReader] | None = None  # a 2xx body's reader, before json.loads


@dataclass(frozen=True)
class _Retry:
    reason: str
    wait: float | None = None  # None: the backoff delay


def _adapter_error(e: Exception) -> Exception:
    """What requests' `HTTPAdapter.send` raises for urllib3's `e` (the same tests, in the
    same order), so that the retry rules read one vocabulary; `e` itself when the adapter
    lets it through."""
    u3, rx = urllib3.exceptions, requests.exceptions
    if isinstance(e, (u3.ProtocolError, OSError)):
        return rx.ConnectionError(e)
    if isinstance(e, u3.MaxRetryError):
        reason = e.reason
        if isinstance(reason, u3.ConnectTimeoutError) and not isinstance(
            reason, u3.NewConnectionError
        ):
            return rx.ConnectTimeout(e)
        if isinstance(reason, u3.ResponseError):
            return rx.RetryError(e)
        if isinstance(reason, u3.ProxyError):
            return rx.ProxyError(e)
        if isinstance(reason, u3.SSLError):
            return rx.SSLError(e)
        return rx.ConnectionError(e)
    if isinstance(e, u3.ClosedPoolError):
        return rx.ConnectionError(e)
    if isinstance(e, u3.ProxyError):
        return rx.ProxyError(e)
    if isinstance(e, u3.SSLError):
        return rx.SSLError(e)
    if isinstance(e, u3.ReadTimeoutError):
        return rx.ReadTimeout(e)
    if isinstance(e, u3.InvalidHeader):
        return rx.InvalidHeader(e)
    return e


def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body, unpacked, in pieces of up to CHUNK bytes (a compressed answer is capped as
    it is unpacked); urllib3's errors as requests' `iter_content` raises them."""
    u3, rx = urllib3.exceptions, requests.exceptions
    try:
        yield from response.stream(CHUNK, decode_content=True)
    except u3.ProtocolError as e:
        raise rx.ChunkedEncodingError(e) from None
    except u3.DecodeError as e:
        raise rx.ContentDecodingError(e) from None
    except u3.ReadTimeoutError as e:
        raise rx.ConnectionError(e) from None
    except u3.SSLError as e:
        raise rx.SSLError(e) from None


def _judge_failure(call: _Call, e: requests.exceptions.RequestException, last: bool) -> _Retry:
    """No answer came: try again, or raise."""
    if isinstance(e, requests.exceptions.SSLError):
        # A certificate that does not verify will not verify on a second try.
        raise NetworkError(call.method, call.shown, _describe(e)) from None
    if not isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        raise NetworkError(call.method, call.shown, _describe(e)) from None
    if not (call.retry_lost or _not_sent(e)):
        raise AnswerLost(
            call.method,
            call.shown,
            f"{_describe(e)}; the outcome is unknown",
            in_flight=isinstance(e, requests.exceptions.ReadTimeout),
        ) from None
    if last:
        raise NetworkError(call.method, call.shown, _describe(e)) from None
    return _Retry(_describe(e))


class _Deadline(requests.exceptions.ReadTimeout):
    """The whole answer took longer than the timeout; retried or lost as any timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no whole answer within {seconds:g}s")
        self.seconds = seconds


class _ConnectDeadline(requests.exceptions.ConnectTimeout):
    """The connection (a TLS handshake, a proxy's CONNECT) was not made within the timeout:
    nothing was sent, so any call may be tried again."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no connection within {seconds:g}s")
        self.seconds = seconds


# ---- the deadline of a call ----------------------------------------------------------------

_current_watch: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "tyksync_watch", default=None
)


class _Watch:
    """The deadline of one call, from connecting to the last byte.

    Socket timeouts bound each wait for a byte, not the answer: a Dashboard sending one
    byte a second, in its headers or its body, would hold a call open for ever, and so
    would a proxy's answer to CONNECT sent that way. At the deadline the call's connection
    is shut down under the blocked read:
    - while it is being made, through a duplicate of its socket: TLS detaches the socket
      object it wraps, and a shutdown of any descriptor of a connection cuts it;
    - once its request goes out, through the connection, as long as this call is the one
      using it: a pooled connection goes back to the pool as the last byte of its answer
      is read, and another call may take it before this one has ended.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._connecting: list[tuple[_WatchedHTTPConnection, socket.socket]] = []  # a dup each
        self._using: list[_WatchedHTTPConnection] = []  # a request went out on each
        self._cut = False
        self._done = False
        self._token: contextvars.Token[_Watch | None] | None = None

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    @property
    def sent(self) -> bool:
        """The request may have reached the Dashboard (it began to go out)."""
        with self._lock:
            return bool(self._using)

    @property
    def cut(self) -> bool:
        """The deadline passed and the call's connection was shut down."""
        with self._lock:
            return self._cut

    def __enter__(self) -> _Watch:
        self._token = _current_watch.set(self)
        _WATCHDOG.arm(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._done = True  # the connection may go back to the pool: never cut it now
            duplicates = [dup for _, dup in self._connecting]
            self._connecting = []
        for dup in duplicates:
            dup.close()
        if self._token is not None:
            _current_watch.reset(self._token)

    def connecting(self, conn: _WatchedHTTPConnection, sock: socket.socket) -> None:
        """`conn` is being made on `sock` (TLS and a proxy's CONNECT are still to come)."""
        dup = sock.dup()
        with self._lock:
            self._connecting.append((conn, dup))

    def using(self, conn: _WatchedHTTPConnection) -> None:
        """This call's request goes out on `conn`, connected, now."""
        with self._lock:
            duplicates = [dup for c, dup in self._connecting if c is conn]
            self._connecting = [(c, dup) for c, dup in self._connecting if c is not conn]
            if all(c is not conn for c in self._using):
                self._using.append(conn)
            conn.watch = self
        for dup in duplicates:
            dup.close()

    def expire(self) -> None:
        with self._lock:
            if self._done:
                return
            targets = [dup for _, dup in self._connecting]
            targets += [c.sock for c in self._using if c.watch is self]
            for sock in targets:
                self._cut = _shut_down(sock) or self._cut


class _Watchdog:
    """One thread for the deadlines of every call, started on first use. (A timer thread
    a call costs a thread start a call, which two busy processes feel.)"""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._ready = threading.Condition()
        self._due: list[tuple[float, int, _Watch]] = []  # a heap, earliest first
        self._count = itertools.count()  # ties broken by arrival, never by comparing watches
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch) -> None:
        with self._ready:
            heapq.heappush(self._due, (watch.deadline, next(self._count), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tyksync-deadlines", daemon=True
                )
                self._thread.start()
            elif self._due[0][2] is watch:
                self._ready.notify()  # earlier than what the thread sleeps until

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._due or self._due[0][0] > time.monotonic():
                    left = self._due[0][0] - time.monotonic() if self._due else None
                    self._ready.wait(None if left is None else max(left, 0.0))
                _, _, watch = heapq.heappop(self._due)
            watch.expire()  # a no-op for the calls that ended in time


_WATCHDOG = _Watchdog()
# A forked child has the watchdog's state but not its thread.
os.register_at_fork(after_in_child=_WATCHDOG.reset)


def _shut_down(sock: Any) -> bool:
    """Whether `sock` was shut down (False: it was closed, or never connected)."""
    # socket.socket's own shutdown, also for a TLS socket: SSLSocket.shutdown would drop
    # its TLS state under the thread reading from it.
    while not isinstance(sock, socket.socket) and hasattr(sock, "socket"):
        sock = sock.socket  # urllib3's TLS-in-TLS transport
    if not isinstance(sock, socket.socket):
        return False
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        return False
    return True


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """A connection the current call's `_Watch` can cut, from the moment it exists."""

    watch: _Watch | None = None  # the call whose request went out on it last

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        watch = _current_watch.get()
        if watch is not None:
            watch.connecting(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _current_watch.get()
        if watch is not None:
            if self.sock is None:
                # Here rather than in http.client's first send: a failure while connecting
                # must not count as a request that may have gone out.
                self.connect()
            watch.using(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, urllib3.connection.HTTPSConnection):
    """The same, over TLS: its methods come first, then urllib3's HTTPS connection's."""


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections a `_Watch` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are classes of their own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


# ---- proxies -------------------------------------------------------------------------------


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _environ_proxies(url: str) -> dict[str, str]:
    """The proxies HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY give for `url`."""
    return {k: v for k, v in requests.utils.get_environ_proxies(url).items() if k != "no"}


# ---- wire helpers --------------------------------------------------------------------------


def _seg(value: str) -> str:
    """An id as one path segment: `/` and everything else outside the unreserved set
    percent-encoded. A `.` or `..` segment would be resolved on the way (a DELETE of `..`
    would reach another endpoint), so those are refused, as an empty id is."""
    if value in ("", ".", ".."):
        raise TyksyncError(f"refusing to send {value!r} as an id: it is not one")
    return quote(value, safe="")


def _not_sent(e: requests.exceptions.RequestException) -> bool:
    """True when the connection was never made, so the request cannot have been processed."""
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return True
    text = repr(e)
    return "NewConnectionError" in text or "Connection refused" in text


def _describe(e: requests.exceptions.RequestException) -> str:
    if isinstance(e, _Deadline):
        return f"no whole answer within {e.seconds:g}s (--timeout)"
    if isinstance(e, _ConnectDeadline):
        return (
            f"no connection within {e.seconds:g}s (--timeout): the TLS handshake or the "
            "proxy's answer to CONNECT did not finish"
        )
    if isinstance(e, requests.exceptions.ConnectTimeout):
        return "timed out connecting to the Dashboard"
    if isinstance(e, requests.exceptions.Timeout):
        return "timed out waiting for the Dashboard's answer"
    if isinstance(e, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in repr(e) or "hostname" in repr(e).lower():
            return "TLS verification failed (use --ca-bundle for a private CA)"
        return "the TLS handshake failed: does the Dashboard serve https on that port?"
    text = repr(e)
    if "Connection refused" in text or "NewConnectionError" in text:
        return "connection refused: is the Dashboard URL right and the Dashboard up?"
    if "RemoteDisconnected" in text or "reset" in text.lower() or "Aborted" in text:
        return "the connection was closed before an answer came"
    return "connection failed"


def _message(body: Any) -> str:
    if isinstance(body, dict):
        message = body.get("Message")
        if isinstance(message, str):
            return message[:500]
    return ""


def _size(n: int) -> str:
    mib = 1024 * 1024
    return f"{n // mib} MiB" if n % mib == 0 else f"{n} bytes"


# ---- parsing answers -----------------------------------------------------------------------


class _Malformed(Exception):
    """A member of an answer of the wrong type or value; `_parsing` names the call."""


@contextmanager
def _parsing(method: str, shown: str, *, lost: bool = False) -> Iterator[None]:
    """Parse errors as errors of the call `method shown`. `lost`: the call was a write the
    Dashboard accepted, so its outcome is unknown rather than failed."""
    try:
        yield
    except _Malformed as e:
        if lost:
            raise AnswerLost(
                method, shown, f"malformed answer: {e}; the outcome is unknown"
            ) from None
        raise MalformedAnswer(method, shown, f"malformed answer: {e}") from None


def _envelope(answer: Any) -> tuple[list[Any], int]:
    """A listing's items and page count. Items are dicts, or `WireItem`s a `ListingReader`
    read before handing the rest back as plain JSON."""
    if not isinstance(answer, dict):
        raise _Malformed("the list answer was not a {Data, Pages} object")
    data = answer.get("Data")
    if data is None:
        data = []
    pages = answer.get("Pages", 0)
    if not isinstance(data, list) or not all(isinstance(d, (dict, WireItem)) for d in data):
        raise _Malformed("the list answer's Data was not a list of objects")
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 0:
        raise _Malformed("the list answer's Pages was not a count")
    return data, pages


def _complete(count: int, pages: int) -> bool:
    if pages == 0:
        return count == 0
    return (pages - 1) * PAGE_SIZE < count <= pages * PAGE_SIZE


def _pages_for(count: int) -> int:
    return -(-count // PAGE_SIZE)


def _item_id(item: Mapping[str, Any] | WireItem) -> str:
    """`id`, or `_id` as Dashboards before 1.9.2 list it."""
    value = wire_id(item) if isinstance(item, WireItem) else item.get("id") or item.get("_id")
    if value is None:
        raise _Malformed("a listed item had no id")
    if not isinstance(value, str):
        raise _Malformed("a listed item's id was not a string")
    return value


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {_item_id(i) for i in items}


def _dedupe(items: Sequence[Any]) -> list[Any]:
    """The first of the items listed under one id (dicts, or `WireItem`s when read so)."""
    seen: dict[str, Any] = {}
    for item in items:
        # A decoded item's id is a string when present: only an absent one needs a look.
        key = (item.id or item.db_id) if isinstance(item, WireItem) else None
        seen.setdefault(key or _item_id(item), item)
    return list(seen.values())


# The listings read by a `ListingReader`, and the items they hold.
_ITEMS: dict[str, type[WireItem]] = {REQUESTS: WireRequest, DEVELOPERS: WireDeveloper}


def _legacy_id(item: Any) -> bool:
    if isinstance(item, WireItem):
        return legacy_id(item)
    return "_id" in item and "id" not in item


def _plain_json(content: bytearray, before: Sequence[WireItem] = ()) -> Any:
    """An answer read as plain JSON; `_INVALID` if it is not. `before`: items a
    `ListingReader` read from the start of this listing's `Data`, put back in front."""
    if not content:
        return None
    try:
        answer = json.loads(content)
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack.
        return _INVALID
    if before and isinstance(answer, dict) and isinstance(answer.get("Data"), list):
        answer["Data"][:0] = before
    return answer


def _object(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise _Malformed("the answer was not an object")
    return answer


# Ids the Dashboard makes are 24-hex ObjectIds. Anything else that is to go into a path is
# held to characters no path, query, terminal or shell reads as more than text.
_SAFE_ID = re.compile(r"[A-Za-z0-9_~:@+=.-]{1,256}")


def _safe_id(value: str, what: str) -> str:
    if value in (".", "..") or not _SAFE_ID.fullmatch(value):
        raise _Malformed(
            f"{what} is not an id (empty, `.`, `..`, too long, or holding `/` or another "
            "character no id holds)"
        )
    return value


def _text(raw: Mapping[str, Any], name: str, what: str) -> str:
    """A string member; absent or null is "" (Go's zero value)."""
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{what}'s `{name}` was not a string")
    return value


def _flag(raw: Mapping[str, Any], name: str, what: str, *, default: bool) -> bool:
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _Malformed(f"{what}'s `{name}` was not true or false")
    return value


def _key_requests(items: list[Any]) -> tuple[KeyRequest, ...]:
    """A listing's requests: decoded by msgspec (`WireRequest`), plain JSON, or the first
    then the second (what a `ListingReader` read before an item it could not)."""
    wire = 0
    while wire < len(items) and isinstance(items[wire], WireRequest):
        wire += 1
    rest = (_key_request(r) for r in items[wire:])
    return (*_wire_key_requests(items[:wire]), *rest)


def _key_request(raw: Mapping[str, Any]) -> KeyRequest:
    what = "a key request"
    rid = _safe_id(_item_id(raw), "a key request's id")
    developer_id = _text(raw, "by_user", what)
    if developer_id:
        _safe_id(developer_id, "a key request's `by_user`")
    apply_policies = raw.get("apply_policies")
    if apply_policies is not None and not (
        isinstance(apply_policies, list) and all(isinstance(p, str) for p in apply_policies)
    ):
        raise _Malformed(f"{what}'s `apply_policies` was not a list of strings")
    for_plan = _text(raw, "for_plan", what)
    policies: tuple[str, ...]
    if apply_policies:
        policies = tuple(p for p in apply_policies if p)
    elif for_plan:
        policies = (for_plan,)
    else:
        policies = ()
    fields = raw.get("fields")
    if fields is None:
        fields = {}
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise _Malformed(f"{what}'s `fields` was not a map of strings")
    return KeyRequest(
        id=rid,
        developer_id=developer_id,
        policies=policies,
        approved=_flag(raw, "approved", what, default=False),
        fields=dict(fields),
        date_created=normalize_date(_text(raw, "date_created", what)),
        for_api=_text(raw, "for_api", what),
        version=_text(raw, "version", what),
        org_id=_text(raw, "org_id", what),
    )


def _wire_key_requests(items: list[WireRequest]) -> tuple[KeyRequest, ...]:
    """`_key_request` of each decoded item: the same checks, in the same order."""
    checked: set[str] = set()  # developer ids: a developer holds several requests
    out = []
    for raw in items:
        value = wire_id(raw)
        if value is None:
            raise _Malformed("a listed item had no id")
        _safe_id(value, "a key request's id")
        developer_id = raw.by_user or ""
        if developer_id and developer_id not in checked:
            _safe_id(developer_id, "a key request's `by_user`")
            checked.add(developer_id)
        apply_policies = raw.apply_policies
        policies: tuple[str, ...]
        if apply_policies:
            policies = tuple(filter(None, apply_policies))
        elif raw.for_plan:
            policies = (raw.for_plan,)
        else:
            policies = ()
        approved = raw.approved
        out.append(
            KeyRequest(
                id=value,
                developer_id=developer_id,
                policies=policies,
                approved=False if approved is None else approved,
                fields={} if raw.fields is None else raw.fields,
                date_created=normalize_date(raw.date_created or ""),
                for_api=raw.for_api or "",
                version=raw.version or "",
                org_id=raw.org_id or "",
            )
        )
    return tuple(out)


def _developer_any(raw: Any, keys: bool = True) -> Developer:
    if isinstance(raw, WireDeveloperKeyless):
        return _wire_developer(raw, keys)
    return _developer(raw, keys)


def _wire_developer(raw: WireDeveloperKeyless, keys: bool) -> Developer:
    """`_developer` of a decoded item: the same checks, in the same order."""
    value = wire_id(raw)
    if value is None:
        raise _Malformed("a listed item had no id")
    return Developer(
        id=_safe_id(value, "a developer's id"),
        email=raw.email or "",
        org_id=raw.org_id or "",
        inactive=bool(raw.inactive),
        keys=_developer_keys(raw.keys) if keys and isinstance(raw, WireDeveloper) else None,
    )


def _developer(raw: Mapping[str, Any], keys: bool = True) -> Developer:
    what = "a developer"
    return Developer(
        id=_safe_id(_item_id(raw), "a developer's id"),
        email=_text(raw, "email", what),
        org_id=_text(raw, "org_id", what),
        inactive=_flag(raw, "inactive", what, default=False),
        keys=_developer_keys(raw.get("keys")) if keys else None,
    )


def _developer_keys(raw: Any) -> dict[str, frozenset[str]] | None:
    """`keys` ({key id: [policy ids]}) as the Dashboard records them, or None when it did
    not say, or said something tyksync cannot trust: a developer's keys are read only to
    revoke one, and a partial view could make another key look like the only one. Never
    an error: a Dashboard that does not list keys can still be planned against.

    Each key id kept is registered as a secret. One shorter than any key hash (8) is not
    taken for one: registered, a hostile `keys` member could mask ordinary words."""
    if not isinstance(raw, dict):
        return None
    keys: dict[str, frozenset[str]] = {}
    for key_id, granted in raw.items():
        if not (isinstance(granted, list) and all(isinstance(p, str) and p for p in granted)):
            return None
        if len(key_id) < MIN_KEY_ID or not _SAFE_ID.fullmatch(key_id) or key_id in (".", ".."):
            return None
        keys[key_id] = frozenset(granted)
    for key_id in keys:
        redact.register(key_id)
    return keys


def _policy(raw: Mapping[str, Any]) -> Policy:
    # Policies are never put in a path: an explicit id may be any string (SPEC section 1).
    what = "a policy"
    db_id = _text(raw, "_id", what)
    explicit = _text(raw, "id", what)
    if not db_id and not explicit:
        raise _Malformed("a policy had no id")
    return Policy(
        db_id=db_id or explicit,
        id=explicit,
        name=_text(raw, "name", what),
        active=_flag(raw, "active", what, default=True),
    )
