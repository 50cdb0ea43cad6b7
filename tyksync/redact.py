"""Secrets that must never reach output: the Dashboard secret and every issued key.

Values are registered as soon as tyksync holds them; the logging filter and `redact()` then
replace them wherever they would be written. This is the last line of defence: code paths
are written not to format secrets in the first place.
"""

from __future__ import annotations

import logging
import re
import threading

from tyksync.escape import printable

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "[REDACTED]"
_PASSES = 4
_MIN_LEN = 4  # a one- or two-character "secret" would mask ordinary text everywhere


class _Group:
    """The secrets of one length, and the characters they are made of.

    An apply registers a key per approval and redacts every journal and progress line:
    testing each secret with `in` made a line cost time in proportion to the keys issued
    so far, and looking every window of the line up in a set cost ~35 us a line. A secret
    can only stand in a run of its group's characters at least as long as it: a regex finds
    those runs at C speed (a JSON line of ids, emails and words holds none as long as a
    key), and only their windows are looked up."""

    __slots__ = ("chars", "length", "runs", "secrets")

    def __init__(self, length: int) -> None:
        self.length = length
        self.secrets: set[str] = set()
        self.chars: set[str] = set()
        self.runs: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        self.secrets.add(value)
        if not self.chars.issuperset(value):
            self.chars.update(value)
            self.runs = None  # compiled again when next needed

    def found_in(self, text: str) -> bool:
        windows = len(text) - self.length + 1
        if windows <= 0:
            return False
        if len(self.secrets) * 2 < windows:
            return any(s in text for s in self.secrets)
        if self.runs is None:
            members = "".join(re.escape(c) for c in sorted(self.chars))
            self.runs = re.compile(f"[{members}]{{{self.length},}}")
        size = self.length
        for match in self.runs.finditer(text):
            run = match.group()
            if not self.secrets.isdisjoint(run[i : i + size] for i in range(len(run) - size + 1)):
                return True
        return False


# The secrets by length (issued keys share one): a plan that revokes registers every key
# its developers hold (100k at scale), so registering is O(length).
_by_length: dict[int, _Group] = {}


def register(value: str | None) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)
            group = _by_length.get(len(value))
            if group is None:
                group = _by_length[len(value)] = _Group(len(value))
            group.add(value)


def redact(text: str) -> str:
    for _ in range(_PASSES):
        with _lock:
            if not _holds_a_secret(text):
                return text
            secrets = sorted(_secrets, key=len, reverse=True)
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
        # Another pass: the mask itself can complete a secret that a part of one before
        # it had begun ("…10" + "[REDACTED]" holds a secret ending "10[").
    return MASK  # masks that kept completing secrets: none of the text is shown


def _holds_a_secret(text: str) -> bool:
    """Whether any registered secret occurs in `text`, in time bounded by the length of the
    text and the number of distinct secret lengths, not by the number of secrets. The
    caller holds `_lock` (the groups change as keys are issued)."""
    return any(group.found_in(text) for group in _by_length.values())


class RedactingFilter(logging.Filter):
    """Formats each record once, masks every registered secret in the result and escapes
    control characters: a log line may quote Dashboard text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # A traceback's text is formatted later by the handler; keep only the message.
            clean = f"{clean}: {redact(str(record.exc_info[1]))}"
            record.exc_info = None
            record.exc_text = None
        record.msg = printable(clean)
        record.args = None
        return True
