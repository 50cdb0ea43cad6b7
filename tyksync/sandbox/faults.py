"""Fault injection for the sandbox: the misbehaviour of real networks and Dashboards.

A `Faults` value can be swapped on a running sandbox (`sandbox.faults = Faults(...)`). Each
fault kind draws from its own random stream seeded from `seed`, so a run is reproducible
and turning one kind on does not change the sequence another kind draws.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

METHODS = ("GET", "POST", "PUT", "DELETE")
WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})

# Names under which injected faults are counted by `Faults.counts()`.
FAULT_KINDS = (
    "reset_before",
    "rate_limit",
    "error",
    "drop_after_write",
    "invalid_json",
    "refuse_all_pages",
    "cap_all_pages",
)


@dataclass
class Faults:
    """What to inject; the default injects nothing."""

    latency: float = 0.0  # seconds from a call's arrival to its handling, parsing included
    jitter: float = 0.0  # plus uniform(0, jitter) seconds
    slow: dict[str, float] = field(default_factory=dict)  # method -> more seconds
    error_rates: dict[str, float] = field(default_factory=dict)  # method -> rate of 5xx
    error_statuses: tuple[int, ...] = (500, 502, 503)
    rate_limit: dict[str, float] = field(default_factory=dict)  # method -> rate of 429
    retry_after: int = 1  # the 429's Retry-After, in seconds
    drop_after_write: float = 0.0  # commit the write, then close without answering
    reset_before: float = 0.0  # close the connection before handling anything
    invalid_json: float = 0.0  # a GET answers 200 with a body that is not JSON
    refuse_all_pages: bool = False  # "everything" paging (p<=0 / p=-1) is a 400
    cap_all_pages: bool = False  # "everything" paging silently returns page one only
    # One route only, by "METHOD TEMPLATE" (e.g. "DELETE /api/portal/developers/{id}/keys/
    # {key_id}", the templates of `PortalApi.routes`): rate of 5xx, and of answers dropped
    # after the write was committed. Counted as `error` and `drop_after_write`.
    route_errors: dict[str, float] = field(default_factory=dict)
    route_drops: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _streams: dict[str, random.Random] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _counts: Counter[str] = field(default_factory=Counter, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.error_rates = _check_rates("error_rates", self.error_rates)
        self.rate_limit = _check_rates("rate_limit", self.rate_limit)
        for name in ("drop_after_write", "reset_before", "invalid_json"):
            _check_rate(name, getattr(self, name))
        for name in ("route_errors", "route_drops"):
            for route, rate in getattr(self, name).items():
                method = route.split(" ", 1)[0]
                if method not in METHODS or " /" not in route:
                    raise ValueError(f"{name}: {route!r} is not 'METHOD /path/template'")
                _check_rate(f"{name}[{route}]", rate)
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if not self.error_statuses:
            raise ValueError("error_statuses must name at least one status")

    @classmethod
    def none(cls) -> Faults:
        return cls()

    # -- decisions, one per fault kind; each counts what it injects ----------------------

    def delay(self, method: str = "GET") -> float:
        """Seconds from a call's arrival to its handling (so before a write commits)."""
        extra = self.slow.get(method, 0.0)
        if self.jitter <= 0:
            return self.latency + extra
        with self._lock:
            return self.latency + extra + self._stream("jitter").uniform(0, self.jitter)

    def reset(self) -> bool:
        return self._roll("reset_before", self.reset_before)

    def rate_limited(self, method: str) -> bool:
        return self._roll("rate_limit", self.rate_limit.get(method, 0.0))

    def error_status(self, method: str, route: str = "") -> int | None:
        """A 5xx to answer instead of handling the call, or None. `route`: the call's
        route template, for `route_errors`."""
        rate = self.route_errors.get(f"{method} {route}", 0.0) if route else 0.0
        if not self._roll("error", max(rate, self.error_rates.get(method, 0.0))):
            return None
        with self._lock:
            return self._stream("error_status").choice(self.error_statuses)

    def drop_answer(self, method: str, route: str = "") -> bool:
        """Called after a write was committed: lose its answer?"""
        rate = self.route_drops.get(f"{method} {route}", 0.0) if route else 0.0
        return method in WRITE_METHODS and self._roll(
            "drop_after_write", max(rate, self.drop_after_write)
        )

    def corrupt(self, method: str) -> bool:
        return method == "GET" and self._roll("invalid_json", self.invalid_json)

    def refuse_everything(self) -> bool:
        return self._flag("refuse_all_pages", self.refuse_all_pages)

    def cap_everything(self) -> bool:
        return self._flag("cap_all_pages", self.cap_all_pages)

    def counts(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        with self._lock:
            return {kind: self._counts[kind] for kind in FAULT_KINDS}

    # -- internals ------------------------------------------------------------------------

    def _stream(self, kind: str) -> random.Random:
        # String seeds are hashed deterministically (not subject to PYTHONHASHSEED).
        if kind not in self._streams:
            self._streams[kind] = random.Random(f"{self.seed}/{kind}")
        return self._streams[kind]

    def _roll(self, kind: str, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            hit = self._stream(kind).random() < rate
            if hit:
                self._counts[kind] += 1
            return hit

    def _flag(self, kind: str, on: bool) -> bool:
        if on:
            with self._lock:
                self._counts[kind] += 1
        return on


def _check_rate(name: str, rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{name}: a rate must be between 0 and 1, not {rate}")


def _check_rates(name: str, rates: dict[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for method, rate in rates.items():
        upper = method.upper()
        if upper not in METHODS:
            raise ValueError(f"{name}: unknown method {method!r} (one of {', '.join(METHODS)})")
        _check_rate(f"{name}[{upper}]", rate)
        checked[upper] = rate
    return checked
