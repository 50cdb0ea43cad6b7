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
MASK = "[REDACTED]"
_MIN_LEN = 4  # a one- or two-character "secret" would mask ordinary text everywhere


def register(value: str | None) -> None:
    if value and len(value) >= _MIN_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


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
