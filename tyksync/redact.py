"""Secrets that must never reach output: the Dashboard secret and every issued key.

Values are registered as soon as tyksync holds them; the logging filter and `redact()` then
replace them wherever they would be written. This is the last line of defence: code paths
are written not to format secrets in the first place.
"""

from __future__ import annotations

import logging
import threading

from tyksync.escape import printable

_lock = threading.Lock()
_secrets: set[str] = set()
# The secrets by length. An apply registers a key per approval and redacts every journal
# and progress line: testing each secret with `in` made a line cost time in proportion to
# the keys issued so far (0.18 ms a line after 1,000 approvals). A plan that revokes
# registers every key its developers hold (100k at scale): registering is O(1).
_by_length: dict[int, set[str]] = {}
MASK = "[REDACTED]"
_MIN_LEN = 4  # a one- or two-character "secret" would mask ordinary text everywhere


def register(value: str | None) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)
            _by_length.setdefault(len(value), set()).add(value)


def redact(text: str) -> str:
    with _lock:
        if not _holds_a_secret(text):
            return text
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def _holds_a_secret(text: str) -> bool:
    """Whether any registered secret occurs in `text`, in time bounded by the length of the
    text and the number of distinct secret lengths (issued keys share one), not by the
    number of secrets: many secrets of one length are looked up in a set, one window of
    the text at a time. The caller holds `_lock` (the sets change as keys are issued)."""
    size = len(text)
    for length, group in _by_length.items():
        windows = size - length + 1
        if windows <= 0:
            continue
        if len(group) * 2 < windows:
            if any(s in text for s in group):
                return True
        elif not group.isdisjoint(text[i : i + length] for i in range(windows)):
            return True
    return False


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
