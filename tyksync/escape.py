"""Text from outside made safe to show a person: the one escaper of tyksync.

Dashboard data (emails and field values that developers choose, policy names, messages) and
text read from files (names, keys) may hold control characters: ESC sequences that retitle
or recolour a terminal, CR/LF that forge a line of output, bidirectional overrides that
reorder one. Everything tyksync prints from outside goes through `printable` first: the
renderers, the apply summary, error messages and every log line.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, ascii_only: bool = False) -> str:
    """`text` with control, format and separator characters (C0, C1, DEL, bidi overrides,
    line and paragraph separators) shown as backslash escapes. `ascii_only` escapes every
    non-ASCII character too, so that a lookalike letter in a key shows for what it is."""
    if ascii_only:
        return "".join(c if " " <= c <= "~" else _escape_char(c) for c in text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) for c in text)


def printable_lines(text: str) -> str:
    """Each line of a message made of several (e.g. one problem a line) made printable."""
    return "\n".join(printable(line) for line in text.split("\n"))
