"""One error hierarchy, with messages written for the person running tyksync.

The CLI maps these to exit codes in one place (`tyksync.cli`). No message ever carries the
Dashboard secret or an issued key: messages are built from status codes, paths and the
Dashboard's own `Message`, which the client redacts before raising.
"""

from __future__ import annotations

from dataclasses import dataclass

from tyksync.escape import printable


class TyksyncError(Exception):
    """Base of every error tyksync raises on purpose. Exit code 1 unless a subclass says."""

    exit_code = 1
    # The environment (tyksync.toml) whose run raised it, when several may run: the CLI
    # names it in the message.
    environment: str | None = None


class ConfigError(TyksyncError):
    """Missing or contradictory connection settings (no Dashboard, no secret, ...)."""


class ConfigProblems(ConfigError):
    """Every problem of a tyksync.toml, or of the environments selected, one a line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            head = f"{len(self.problems)} problems in the configuration:"
            super().__init__("\n".join([head, *self.problems]))


@dataclass(frozen=True)
class Problem:
    """One problem found in a manifest, located at FILE:LINE."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{printable(self.file)}:{self.line}: {printable(self.message)}"


class ManifestError(TyksyncError):
    """Every problem of a run, reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the manifests"
        super().__init__(head + ":\n" + "\n".join(str(p) for p in self.problems))


class ApiError(TyksyncError):
    """The Dashboard answered, and the answer was an error."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.dashboard_message = message
        hint = _HINTS.get(status, "")
        super().__init__(
            f"{method} {path}: the Dashboard answered {status}"
            + (f": {message}" if message else "")
            + (f" ({hint})" if hint else "")
        )


class AlreadyProcessed(ApiError):
    """An approval the Dashboard refused because the request was approved before (by us,
    in an earlier try whose answer was lost, or by someone else)."""


_HINTS = {
    401: "check TYK_DASHBOARD_SECRET or --secret-file: the Dashboard did not accept the secret",
    403: "the Dashboard user behind this secret lacks the portal permissions",
}


class NetworkError(TyksyncError):
    """No usable answer: connection refused or reset, timeout, invalid JSON, ..."""

    def __init__(self, method: str, path: str, reason: str) -> None:
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(f"{method} {path}: {reason}")


class AnswerLost(NetworkError):
    """A write was sent and no answer came back: it may or may not have been committed.

    `in_flight`: we stopped waiting (a timeout) while the Dashboard may still be working
    on it, so a read right now may not show it yet. Otherwise the Dashboard answered or
    hung up, and a read shows the outcome.
    """

    def __init__(self, method: str, path: str, reason: str, *, in_flight: bool = False) -> None:
        super().__init__(method, path, reason)
        self.in_flight = in_flight


class MalformedAnswer(NetworkError):
    """The Dashboard answered something tyksync cannot read as the call's answer: wrong
    types, an id that is not one, ..."""


class IncompleteListing(TyksyncError):
    """A list answer did not hold the number of items its `Pages` promised."""


class Interrupted(TyksyncError):
    """The person stopped an apply (Ctrl-C); the journal says what was sent."""


class Refused(TyksyncError):
    """tyksync refused to act: unsafe plan, stale saved plan, no confirmation."""

    exit_code = 3


class StalePlan(Refused):
    """The saved plan no longer matches the live Dashboard or the manifests."""
