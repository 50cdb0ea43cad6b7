"""The sandbox's data: one org's developers, policies, key requests and issued keys.

Records are plain dicts in one dialect-neutral shape (`id` for requests and developers,
`_id` and `id` for policies); the HTTP layer renders them per dialect. A stored record is
never changed in place: a change replaces it. So the server can take a snapshot under the
lock and serialise it outside, while writes go on.

With a state path, every mutation is written to disk atomically, so the file is always a
whole, valid state that a restarted sandbox loads. Several processes may share one state
file (two `--sandbox` applies at once, or one beside `sandbox serve`): every operation holds
a lock on the file, reads it again if another process wrote it, and writes it before letting
go, so that no process's write is lost.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tyksync.errors import TyksyncError
from tyksync.fileutil import UnsafeFileError, atomic_write, ensure_state_dir, open_private

Record = dict[str, Any]

DEFAULT_ORG_ID = "5e9d9544a1dcd60001d0ed20"
# Marks the sensitive developer members the sandbox makes up, so that tests can search
# any output for leaks.
CANARY_PREFIX = "SANDBOX-CANARY-"
STATE_FORMAT = 1

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
_ONE_MICROSECOND = timedelta(microseconds=1)


class StoreError(Exception):
    """A call the Dashboard refuses; `status` is the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SandboxError(TyksyncError):
    """The sandbox cannot run: an unusable state or seed file, a port it cannot bind, ..."""


class StateFileError(SandboxError):
    """The state file exists but cannot be loaded."""


def is_object_id(value: str) -> bool:
    return bool(_OBJECT_ID.fullmatch(value))


def new_object_id() -> str:
    """A MongoDB-style ObjectId: 8 hex digits of unix time, then 16 random ones."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def format_date(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_date(value: str | datetime) -> datetime:
    """An RFC 3339 date (YAML may already have made it a datetime); naive means UTC."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def key_id_of(raw_key: str) -> str:
    """The id under which approving records a key on its developer (SPEC section 11): the
    first 16 hex characters of the sha256 of the raw key, as a hashed install does."""
    return hashlib.sha256(raw_key.encode()).hexdigest()[:16]


def request_policies(request: Mapping[str, Any]) -> list[str]:
    """The policy references of a request: `apply_policies`, else `[for_plan]`."""
    applied = request.get("apply_policies") or []
    if applied:
        return list(applied)
    return [request["for_plan"]] if request.get("for_plan") else []


class StateLock:
    """The lock of one state file, for the threads of this process and for other processes
    alike: an RLock and, while it is held, flock on `.NAME.lock` beside the state (not on
    the state itself, which every write replaces with a new file). Re-entrant: Store
    operations call each other, and `embedded_sandbox` holds it across loading and seeding.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(f".{state_path.name}.lock")
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd = -1

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                self._fd = _lock_file(self.path)
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            os.close(self._fd)  # which releases the flock
            self._fd = -1
        self._thread_lock.release()


def _lock_file(path: Path) -> int:
    try:
        ensure_state_dir(path.parent)
    except OSError as e:
        raise StateFileError(f"{path.parent}: cannot create: {e.strerror}") from e
    try:
        fd = open_private(path, os.O_RDWR | os.O_CREAT, what="sandbox lock")
    except UnsafeFileError as e:
        raise StateFileError(str(e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


_state_locks: weakref.WeakValueDictionary[str, StateLock] = weakref.WeakValueDictionary()
_state_locks_guard = threading.Lock()


def state_lock(state_path: Path) -> StateLock:
    """The one StateLock of this process for `state_path`: two locks of one process on one
    file would each wait for the other if nested (flock does not know they are ours)."""
    key = os.path.abspath(state_path)
    with _state_locks_guard:
        lock = _state_locks.get(key)
        if lock is None:
            lock = _state_locks[key] = StateLock(Path(key))
        return lock


# What tells that a state file changed: a write replaces the file, so its inode changes.
_Version = tuple[int, int, int, int, int]


def _version(info: os.stat_result) -> _Version:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class _Held:
    """What every Store operation holds: `lock`, then `on_enter()` (loading the state file
    when another process changed it)."""

    def __init__(
        self, lock: AbstractContextManager[Any], on_enter: Callable[[], None] | None
    ) -> None:
        self._lock = lock
        self._on_enter = on_enter

    def __enter__(self) -> None:
        self._lock.__enter__()
        if self._on_enter is not None:
            try:
                self._on_enter()
            except BaseException:
                self._lock.__exit__(None, None, None)
                raise

    def __exit__(self, *exc_info: object) -> None:
        self._lock.__exit__(None, None, None)


class Store:
    """Thread-safe (and, with a state file, process-safe) state of one emulated Dashboard."""

    def __init__(self, state_path: Path | None = None, org_id: str = DEFAULT_ORG_ID) -> None:
        self._batch_depth = 0
        self._generation = 0  # bumped by every change: what answers rendered from it may cache
        self.state_path = state_path
        self.org_id = org_id
        self._clear()
        self._loaded: _Version | None = None  # the state file as this store last saw it
        # Re-entrant: public methods call each other, and `batch()` holds it throughout.
        if state_path is None:
            self._lock = _Held(threading.RLock(), None)
        else:
            self._lock = _Held(state_lock(state_path), self._refresh)
            with self._lock:
                pass  # entering loads the file

    # -- reading --------------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self._lock:
            return not (self._developers or self._policies or self._requests or self._keys)

    def requests(self) -> list[Record]:
        with self._lock:
            return copy.deepcopy(list(self._requests.values()))

    def developers(self) -> list[Record]:
        with self._lock:
            return copy.deepcopy(list(self._developers.values()))

    def policies(self) -> list[Record]:
        with self._lock:
            return copy.deepcopy(list(self._policies.values()))

    def issued_keys(self) -> list[str]:
        """Every RawKey ever issued, oldest first (deleting a request keeps its key, and a
        revoked key stays listed here: see `key_valid`)."""
        with self._lock:
            return [k["key"] for k in self._keys]

    def issued(self) -> list[Record]:
        """Every key ever issued, oldest first: `key` (raw), `key_id`, `request_id`,
        `developer_id`, `policies` and `revoked`. For tests and reports."""
        with self._lock:
            return copy.deepcopy(self._keys)

    def key_valid(self, raw_key: str) -> bool:
        """Whether `raw_key` still grants access: issued, and its id still on its
        developer's record (revoking removes it; deleting the request does not)."""
        with self._lock:
            issued = next((k for k in self._keys if k["key"] == raw_key), None)
            if issued is None:
                return False
            developer = self._developers.get(issued["developer_id"])
            return developer is not None and issued["key_id"] in developer["keys"]

    def generation(self) -> int:
        """A number that changes whenever the state does (a write here, or another process's
        write to the state file). Read it before a snapshot: what is rendered from the
        snapshot is then at least as new as the number says."""
        with self._lock:
            return self._generation

    def request_snapshot(self) -> tuple[list[Record], dict[str, Record]]:
        """Every request and the developers by id, for rendering outside the lock.

        The records are shared, not copied: callers must not change them.
        """
        with self._lock:
            return list(self._requests.values()), dict(self._developers)

    def developer_snapshot(self) -> list[Record]:
        with self._lock:
            return list(self._developers.values())

    def policy_snapshot(self) -> list[Record]:
        with self._lock:
            return list(self._policies.values())

    def get_request(self, request_id: str) -> Record:
        with self._lock:
            return self._request(request_id)

    def get_developer(self, developer_id: str) -> Record:
        with self._lock:
            if not is_object_id(developer_id):
                raise StoreError(400, "Invalid developer id")
            found = self._developers.get(developer_id)
            if found is None:
                raise StoreError(404, "Developer not found")
            return found

    def developer_by_email(self, email: str) -> Record:
        with self._lock:
            found = self._developers.get(self._emails.get(email.lower(), ""))
            if found is None:
                raise StoreError(404, "Developer not found")
            return found

    def get_policy(self, ref: str, explicit_ids: bool = True) -> Record:
        """A policy by `_id`, or by explicit `id` where the dialect has them."""
        with self._lock:
            found = self._policy(ref, explicit_ids)
            if found is None:
                raise StoreError(404, "Policy not found")
            return found

    # -- out-of-band setup (tests, seeding) ------------------------------------------------

    def set_org_id(self, org_id: str) -> None:
        with self._lock:
            self.org_id = org_id
            self._committed()

    def add_developer(
        self,
        email: str,
        id: str | None = None,
        inactive: bool = False,
        fields: Mapping[str, str] | None = None,
    ) -> Record:
        with self._lock:
            developer_id = id or self._fresh_id()
            if developer_id in self._developers:
                raise ValueError(f"a developer with id {developer_id} already exists")
            if email.lower() in self._emails:
                raise ValueError(f"a developer with email {email} already exists")
            record: Record = {
                "id": developer_id,
                "email": email,
                "org_id": self.org_id,
                "inactive": inactive,
                "fields": dict(fields or {}),
                "date_created": self._created(None),
                "keys": {},
                "subscriptions": {},
                "sso_key": f"{CANARY_PREFIX}sso-{secrets.token_hex(8)}",
                "nonce": f"{CANARY_PREFIX}nonce-{secrets.token_hex(8)}",
                "password": f"{CANARY_PREFIX}password-{secrets.token_hex(8)}",
            }
            self._put_developer(record)
            self._committed()
            return copy.deepcopy(record)

    def add_policy(
        self, name: str, id: str = "", db_id: str | None = None, active: bool = True
    ) -> Record:
        with self._lock:
            policy_id = db_id or self._fresh_id()
            if policy_id in self._policies:
                raise ValueError(f"a policy with _id {policy_id} already exists")
            if id and id in self._explicit_ids:
                raise ValueError(f"a policy with id {id!r} already exists")
            record: Record = {
                "_id": policy_id,
                "id": id,
                "name": name,
                "active": active,
                "org_id": self.org_id,
                "rate": 1000,
                "per": 60,
                "quota_max": -1,
                "access_rights": {},
            }
            self._put_policy(record)
            self._committed()
            return copy.deepcopy(record)

    def add_request(
        self,
        developer_id: str,
        policies: Sequence[str] = (),
        approved: bool = False,
        fields: Mapping[str, str] | None = None,
        for_api: str = "",
        date_created: str | datetime | None = None,
        *,
        id: str | None = None,
        version: str | None = None,
        for_plan_only: bool = False,
    ) -> Record:
        """Store a request as given, without the checks of the HTTP create.

        `policies` are kept as written (an `_id`, an explicit `id`, or nothing that exists);
        `for_plan_only` stores `apply_policies: null` like a Dashboard before 2.9; the
        developer need not exist. `approved=True` issues a key as approving does.
        """
        with self._lock:
            if version is None:
                version = "" if for_api and not policies else "v2"
            record = self._new_request(
                request_id=id,
                developer_id=developer_id,
                for_plan=policies[0] if policies else "",
                apply_policies=None if for_plan_only else list(policies),
                fields=fields or {},
                version=version,
                for_api=for_api,
                date_created=date_created,
            )
            if approved:
                try:
                    self._approve(record["id"], explicit_ids=True)
                except StoreError as e:
                    del self._requests[record["id"]]
                    raise ValueError(e.message) from e
            self._committed()
            return copy.deepcopy(self._requests[record["id"]])

    def add_requests(self, specs: Iterable[Mapping[str, Any]]) -> list[Record]:
        """`add_request(**spec)` for each spec, writing the state file once."""
        with self.batch():
            return [self.add_request(**spec) for spec in specs]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the lock and write the state file once, at the end, for many changes."""
        with self._lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                self._committed()

    def reset(self) -> None:
        """Forget everything: developers, policies, requests and issued keys."""
        with self._lock:
            self._clear()
            self._committed()

    # -- the Dashboard's own operations -----------------------------------------------------

    def create_request(
        self,
        by_user: str,
        for_plan: str,
        apply_policies: list[str] | None,
        fields: Mapping[str, str],
        version: str,
        for_api: str,
    ) -> Record:
        """A create as the Dashboard does it: the developer must exist, policies need not."""
        with self._lock:
            if not is_object_id(by_user) or by_user not in self._developers:
                raise StoreError(400, "Key request must name an existing developer in by_user")
            record = self._new_request(
                request_id=None,
                developer_id=by_user,
                for_plan=for_plan,
                apply_policies=apply_policies,
                fields=fields,
                version=version,
                for_api=for_api,
                date_created=None,
            )
            self._committed()
            return record

    def approve(self, request_id: str, explicit_ids: bool = True) -> str:
        """Approve a pending request and return the RawKey it issues."""
        with self._lock:
            key = self._approve(request_id, explicit_ids)
            self._committed()
            return key

    def delete_request(self, request_id: str) -> None:
        """Delete a request; the key approving it issued stays with its developer."""
        with self._lock:
            self._request(request_id)
            del self._requests[request_id]
            self._committed()

    def revoke_key(self, developer_id: str, key_id: str) -> None:
        """`DELETE /api/portal/developers/{id}/keys/{key id}`: the key stops being valid;
        its entry leaves the developer's `keys`, and its `subscriptions` go to another key
        of the developer granting that policy, or away."""
        with self._lock:
            developer = self.get_developer(developer_id)
            keys: dict[str, list[str]] = dict(developer["keys"])
            if key_id not in keys:
                raise StoreError(404, "Key not found")
            del keys[key_id]
            subscriptions = {}
            for policy, subscribed in developer["subscriptions"].items():
                if subscribed != key_id:
                    subscriptions[policy] = subscribed
                    continue
                others = [k for k, granted in keys.items() if policy in granted]
                if others:
                    subscriptions[policy] = others[-1]  # the latest issued
            self._put_developer({**developer, "keys": keys, "subscriptions": subscriptions})
            for index, issued in enumerate(self._keys):
                if issued["key_id"] == key_id:
                    self._keys[index] = {**issued, "revoked": True}
            self._committed()

    # -- internals ----------------------------------------------------------------------------

    def _clear(self) -> None:
        self._generation = getattr(self, "_generation", 0) + 1
        self._developers: dict[str, Record] = {}
        self._emails: dict[str, str] = {}  # lower-cased email -> developer id
        self._policies: dict[str, Record] = {}  # by `_id`
        self._explicit_ids: dict[str, str] = {}  # explicit `id` -> `_id`
        self._requests: dict[str, Record] = {}  # in creation order, like Mongo's natural order
        self._keys: list[Record] = []
        self._last_created: datetime | None = None

    def _put_developer(self, record: Record) -> None:
        self._developers[record["id"]] = record
        self._emails[record["email"].lower()] = record["id"]

    def _put_policy(self, record: Record) -> None:
        self._policies[record["_id"]] = record
        if record.get("id"):
            self._explicit_ids[record["id"]] = record["_id"]

    def _policy(self, ref: str, explicit_ids: bool) -> Record | None:
        found = self._policies.get(ref)
        if found is None and explicit_ids and ref in self._explicit_ids:
            found = self._policies[self._explicit_ids[ref]]
        return found

    def _request(self, request_id: str) -> Record:
        if not is_object_id(request_id):
            raise StoreError(400, "Invalid key request id")
        found = self._requests.get(request_id)
        if found is None:
            raise StoreError(404, "Key request not found")
        return found

    def _fresh_id(self) -> str:
        while True:
            candidate = new_object_id()
            taken = (self._developers, self._policies, self._requests)
            if not any(candidate in records for records in taken):
                return candidate

    def _created(self, explicit: str | datetime | None) -> str:
        """`date_created`: explicit, or now but strictly after every earlier creation."""
        if explicit is not None:
            moment = parse_date(explicit)
        else:
            moment = datetime.now(timezone.utc)
            if self._last_created is not None and moment <= self._last_created:
                moment = self._last_created + _ONE_MICROSECOND
        if self._last_created is None or moment > self._last_created:
            self._last_created = moment
        return format_date(moment)

    def _new_request(
        self,
        *,
        request_id: str | None,
        developer_id: str,
        for_plan: str,
        apply_policies: list[str] | None,
        fields: Mapping[str, str],
        version: str,
        for_api: str,
        date_created: str | datetime | None,
    ) -> Record:
        request_id = request_id or self._fresh_id()
        if request_id in self._requests:
            raise ValueError(f"a key request with id {request_id} already exists")
        record: Record = {
            "id": request_id,
            "org_id": self.org_id,
            "by_user": developer_id,
            "for_plan": for_plan,
            "apply_policies": apply_policies,
            "for_api": for_api,
            "fields": dict(fields),
            "approved": False,
            "date_created": self._created(date_created),
            "version": version,
        }
        self._requests[request_id] = record
        return record

    def _approve(self, request_id: str, explicit_ids: bool) -> str:
        request = self._request(request_id)
        if request["approved"]:
            raise StoreError(400, "Key request has already been processed.")
        developer = self._developers.get(request["by_user"])
        if developer is None:
            raise StoreError(400, "Could not approve key request: its developer does not exist")
        policy_ids = self._approvable_policies(request, explicit_ids)
        key = self.org_id + secrets.token_hex(16)  # the shape of a Tyk key
        key_id = key_id_of(key)
        # Replace, never mutate: snapshots being rendered elsewhere stay consistent.
        subscribed = policy_ids or ([request["for_api"]] if request["for_api"] else [])
        self._put_developer(
            {
                **developer,
                "keys": {**developer["keys"], key_id: policy_ids},
                "subscriptions": {
                    **developer["subscriptions"],
                    **dict.fromkeys(subscribed, key_id),
                },
            }
        )
        self._requests[request_id] = {**request, "approved": True}
        self._keys.append(
            {
                "key": key,
                "key_id": key_id,
                "request_id": request_id,
                "developer_id": developer["id"],
                "policies": policy_ids,
                "revoked": False,
            }
        )
        return key

    def _approvable_policies(self, request: Record, explicit_ids: bool) -> list[str]:
        """The `_id`s of the request's policies; every one must exist."""
        refs = request_policies(request)
        if not refs and not request["for_api"]:
            raise StoreError(400, "Could not approve key request: it names no policy")
        policy_ids = []
        for ref in refs:
            policy = self._policy(ref, explicit_ids)
            if policy is None:
                raise StoreError(
                    400, f"Could not approve key request: policy {ref!r} does not exist"
                )
            policy_ids.append(policy["_id"])
        return policy_ids

    # -- persistence ------------------------------------------------------------------------

    def _committed(self) -> None:
        self._generation += 1
        if self.state_path is not None and self._batch_depth == 0:
            self._save(self.state_path)

    def _state(self) -> Record:
        return {
            "format": STATE_FORMAT,
            "org_id": self.org_id,
            "developers": list(self._developers.values()),
            "policies": list(self._policies.values()),
            "requests": list(self._requests.values()),
            "issued_keys": self._keys,
        }

    def _save(self, path: Path) -> None:
        """Write the whole state atomically: a reader sees the old file or the new one."""
        text = json.dumps(self._state(), separators=(",", ":"))
        try:
            atomic_write(path, text)  # mode 0600: the state holds issued keys
            self._loaded = _version(os.lstat(path))
        except UnsafeFileError as e:
            raise StateFileError(str(e)) from None
        except OSError as e:
            raise StateFileError(f"{path}: cannot write the sandbox state: {e.strerror}") from e
        _fsync_dir(path.parent)

    def _refresh(self) -> None:
        """Load the state file if it changed since this store last read or wrote it: another
        process wrote it, and the lock now held keeps it from writing again meanwhile."""
        path = self.state_path
        assert path is not None
        try:
            if _version(os.lstat(path)) == self._loaded:
                return
            with os.fdopen(open_private(path, os.O_RDONLY, what="sandbox state"), "rb") as f:
                version = _version(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return  # nothing written yet: what this store holds is the state
        except UnsafeFileError as e:
            raise StateFileError(str(e)) from None
        except OSError as e:
            raise StateFileError(f"{path}: cannot read the sandbox state: {e.strerror}") from e
        self._clear()
        if data.strip():  # an empty file is a new store, to be seeded
            try:
                self._restore(json.loads(data.decode("utf-8")))
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                self._clear()
                raise StateFileError(f"{path}: not a valid sandbox state file ({e})") from e
        self._loaded = version

    def _restore(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"expected an object with format {STATE_FORMAT}")
        self.org_id = str(state["org_id"])
        for developer in state["developers"]:
            self._put_developer(dict(developer))
        for policy in state["policies"]:
            self._put_policy(dict(policy))
        for request in state["requests"]:
            self._requests[request["id"]] = dict(request)
        self._keys = [dict(k) for k in state["issued_keys"]]
        _upgrade_key_records(self._keys, self._developers)
        dates = [r["date_created"] for r in (*self._developers.values(), *self._requests.values())]
        self._last_created = max(map(parse_date, dates), default=None)


def _upgrade_key_records(keys: list[Record], developers: dict[str, Record]) -> None:
    """A state file written before keys were recorded by id held the raw keys on the
    developers: record them by id, as approving does now."""
    raw_to_id: dict[str, str] = {}
    for k in keys:
        if "key_id" not in k:
            k["key_id"] = key_id_of(k["key"])
            k.setdefault("revoked", False)
        raw_to_id[k["key"]] = k["key_id"]
    for developer_id, developer in list(developers.items()):
        if not any(name in raw_to_id for name in developer["keys"]):
            continue
        developers[developer_id] = {
            **developer,
            "keys": {raw_to_id.get(k, k): v for k, v in developer["keys"].items()},
            "subscriptions": {
                p: raw_to_id.get(k, k) for p, k in developer["subscriptions"].items()
            },
        }


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; not every platform can open a directory."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
