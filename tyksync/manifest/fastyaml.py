"""A fast reader for the plain subset of YAML that manifests are written in.

`read_plain` reads block mappings and sequences, `key: value` lines, one-line flow lists
and maps (`[Gold, Reports]`, `{ticket: OPS-42}`), plain scalars of a small alphabet,
quotes without escapes, and whole-line comments: what `tyksync export` and people write.
For such a text it gives exactly the data the strict event builder (`yamlload._Builder`)
gives, and the lines of the values that loading a valid manifest asks for (see
`RECORDED`). For anything else (other characters, tabs, anchors, tags, multi-line
scalars, duplicate keys, nulls, a value the strict reader would refuse or report, ...)
it gives None, and the strict reader reads the text, with all its checks and messages.
It never reports a problem itself.

The strict reader goes through libyaml's events, each a Python object with two marks;
this matches every line of a text with one regex call and walks the matches.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from tyksync.manifest.yamlload import (
    _LOOKALIKE,
    _TOO_LONG,
    MAX_DEPTH,
    MAX_NODES,
    YamlPath,
    resolve_plain,
)

# Lines are recorded for the values whose path has at most this many parts (the root's
# keys, developers, their request items) and for every `environments` entry of a mapping
# that deep: what building the declarations of a valid manifest reads. Every other line
# is only asked for when a problem is reported, and comes from a strict read then.
RECORDED = 3


def _printable(excluded: str) -> str:
    """A character class: printable ASCII but `excluded`. Nothing else is read here:
    libyaml refuses some other characters, and quoting rules for the rest are not worth
    repeating."""
    kept = (chr(c) for c in range(0x20, 0x7F) if chr(c) not in excluded)
    return "[" + "".join(map(re.escape, kept)) + "]"


# Quantifiers are possessive (`*+`): nothing after one can start with what it took, so
# giving some back could never help a match, and the regex engine keeps no state for it
# (a fifth of its time). Python 3.10 has none: there, `_compile` makes them greedy.
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*+"
# A plain scalar: a conservative alphabet, single spaces inside, no `: ` or ` #`; a `-`
# first only when a character of the alphabet follows (`-` and `- x` are indicators).
_WORD = r"[A-Za-z0-9_.@+/~-]"
_PLAIN = rf"(?:[A-Za-z0-9_.~+]|-(?={_WORD})){_WORD}*+(?: {_WORD}++)*+"
# No `#` anywhere (a comment sign mid-line is left to the strict reader), no escapes;
# inside flow collections no `,` `:` or brackets either, so that splitting finds items.
_IN_FLOW = ",:[]{}"
_DOUBLE = '"' + _printable('"#\\') + '*+"'
_SINGLE = "'" + _printable("'#") + "*+'"
_QUOTED = f"{_DOUBLE}|{_SINGLE}"
_FLOW_SCALAR = "|".join(
    (_PLAIN, '"' + _printable('"#\\' + _IN_FLOW) + '*+"', "'" + _printable("'#" + _IN_FLOW) + "*+'")
)
_FLOW_SEQ = rf"\[ *+(?:(?:{_FLOW_SCALAR}) *+(?:, *+(?:{_FLOW_SCALAR}) *+)*+)?\]"
_FLOW_MAP = (
    rf"\{{ *+(?:{_KEY}: ++(?:{_FLOW_SCALAR}) *+(?:, *+{_KEY}: ++(?:{_FLOW_SCALAR}) *+)*+)?\}}"
)
# One match per line, whatever the line: (indent, `- ` prefix, key, then its value: the
# key and value of a one-entry flow map (the usual `fields: {ticket: OPS-42}`), a scalar,
# or another flow collection). A blank or comment line matches with every group empty; a
# line that is none of these does not match at all, which the count of matches shows.
ROW_PATTERN = (
    rf"^( *+)(?:(- ++)?(?:({_KEY}):(?= |$))? *+(?:\{{ *+({_KEY}): ++({_FLOW_SCALAR}) *+\}}"
    rf"|({_PLAIN}|{_QUOTED})|({_FLOW_SEQ}|{_FLOW_MAP}))?|#{_printable('')}*+) *+$"
)


def greedy(pattern: str) -> str:
    """`pattern` with greedy quantifiers for possessive ones (`+` and `*` stand for
    themselves only escaped, or in classes, where nothing repeats them)."""
    return pattern.replace("*+", "*").replace("++", "+")


_ROW = re.compile(ROW_PATTERN if sys.version_info >= (3, 11) else greedy(ROW_PATTERN), re.MULTILINE)


# The deepest block collection read here (the root is at 0): its values, and the items of
# a flow collection among them, stay within the strict reader's MAX_DEPTH, with a margin.
_DEEPEST = MAX_DEPTH - 4


class _Bail(Exception):
    """Not the plain subset: leave it to the strict reader."""


# What `_Scalars` holds for a text the strict reader would refuse or report, or read as
# null (a null is an error in every manifest, reported with the strict reader's lines).
_NOT_PLAIN: Any = object()


# What no number, null or boolean starts with (as `yamlload._plain_string` knows).
_STRING_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_WORDS = frozenset({"true", "false", "null", "Null", "NULL"})


class _Scalars(dict[str, Any]):
    """Text -> value, each text resolved once, and one object for each distinct string:
    keys and policy names repeat in every request, and 100k declarations keep them all."""

    def __missing__(self, text: str) -> Any:
        first = text[0]
        if first in _STRING_START and text not in _WORDS:
            value: Any = text
        elif first == '"' or first == "'":
            value = text[1:-1]
        else:
            value = resolve_plain(text)
            if value is None or value is _LOOKALIKE or value is _TOO_LONG:
                value = _NOT_PLAIN
        self[text] = value
        return value


def read_plain(text: str) -> tuple[Any, dict[YamlPath, int]] | None:
    """(data, lines) of `text`, or None: not the plain subset (see the module). `lines`
    holds the line of every value the strict reader has a line for whose path is at most
    RECORDED long, or RECORDED + 1 long and ends with `environments`; nothing else."""
    rows = _ROW.findall(text)
    if len(rows) != text.count("\n") + 1:
        return None  # a line that is not the plain subset
    try:
        return _read(rows)
    except _Bail:
        return None


def _flow(text: str, scalars: _Scalars) -> tuple[Any, int]:
    """A one-line flow list or map, its syntax checked by _ROW (so `,` and `:` split it),
    and how many values it holds."""
    inner = text[1:-1]
    if text[0] == "[":
        if not inner.strip(" "):
            return [], 0
        items = [scalars[part.strip(" ")] for part in inner.split(",")]
        if _NOT_PLAIN in items:
            raise _Bail
        return items, len(items)
    mapping: dict[str, Any] = {}
    if inner.strip(" "):
        for part in inner.split(","):
            key, _, value = part.partition(":")
            _entry(mapping, scalars[key.strip(" ")], scalars[value.strip(" ")])
    return mapping, 2 * len(mapping)


def _entry(mapping: dict[str, Any], key: Any, value: Any) -> None:
    if key.__class__ is not str or key in mapping or value is _NOT_PLAIN:
        raise _Bail  # `1: x`, `true: x`: keys must be strings; or a duplicate key
    mapping[key] = value


def _value(
    value: str, flow: str, flow_key: str, flow_value: str, scalars: _Scalars
) -> tuple[Any, int]:
    """A value written on its line (the last four groups of _ROW), and how many values
    it holds."""
    if flow_key:
        mapping: dict[str, Any] = {}
        _entry(mapping, scalars[flow_key], scalars[flow_value])
        return mapping, 2
    if flow:
        return _flow(flow, scalars)
    found = scalars[value]
    if found is _NOT_PLAIN:
        raise _Bail
    return found, 0


def _read(
    rows: list[tuple[str, str, str, str, str, str, str]],
) -> tuple[Any, dict[YamlPath, int]]:
    lines: dict[YamlPath, int] = {}
    scalars = _Scalars()
    root: dict[str, Any] = {}
    # The block collection being read: its column, whether it is a list, the collection,
    # its path when at most RECORDED long (else None: no line below it is recorded),
    # whether lines of its values are recorded (its path is shorter), its depth. First
    # the root, which the first line must be in (at column 0, a key).
    path: YamlPath | None = ()
    container: Any = root
    col_, is_list, shallow, depth = 0, False, True, 0
    # The collections it is in, innermost last, as the same tuples.
    stack: list[tuple[int, bool, Any, YamlPath | None, bool, int]] = []
    # A `key:` with nothing after it: its value is the block that follows.
    pending: tuple[int, dict[str, Any], str, YamlPath | None, int] | None = None
    number = skipped = flow_values = 0
    for indent, dash, key, flow_key, flow_value, value, flow in rows:
        number += 1
        if not key:
            if not (value or flow or flow_key):
                if dash:
                    raise _Bail  # `- ` alone: a null, or a block on the lines below
                skipped += 1
                continue  # blank, or a comment
            if not dash:
                raise _Bail  # a scalar alone on its line: the root, or a multi-line scalar
        col = len(indent)
        top = stack[-1] if dash and key and pending is None and col < col_ else None
        if top is not None and top[0] == col and top[1]:
            # The next `- key: ...` of the list the current item is in (the usual case):
            # the list stays where it is, under the item that starts here.
            _, _, items, path, shallow, depth = top
        else:
            if pending is not None:
                p_col, p_map, p_key, p_path, p_depth = pending
                pending = None
                if p_depth > _DEEPEST:
                    raise _Bail
                stack.append((col_, is_list, container, path, shallow, depth))
                if dash and col >= p_col:
                    p_map[p_key] = container = []
                    is_list = True
                elif not dash and col > p_col:
                    p_map[p_key] = container = {}
                    is_list = False
                else:
                    raise _Bail  # null
                col_, path, depth = col, p_path, p_depth
                shallow = path is not None and len(path) < RECORDED
            if col != col_ or is_list == (not dash):
                while col_ > col or (col_ == col and is_list == (not dash)):
                    if not stack:
                        raise _Bail
                    col_, is_list, container, path, shallow, depth = stack.pop()
                if col_ != col:
                    raise _Bail
            if dash:
                if not is_list:
                    raise _Bail
                items = container
                if key:
                    stack.append((col_, True, items, path, shallow, depth))
        if dash:
            item_path = None
            if shallow:
                item_path = (*path, len(items))  # type: ignore[misc]
                lines[item_path] = number
            if not key:
                found, more = _value(value, flow, flow_key, flow_value, scalars)
                items.append(found)
                if more:
                    flow_values += more
                    _flow_lines(found, item_path, lines)
                continue
            # `- key: ...`: a mapping that starts here, its keys at this column.
            if depth >= _DEEPEST:
                raise _Bail
            item: dict[str, Any] = {}
            items.append(item)
            col_, is_list, container, path = col + len(dash), False, item, item_path
            shallow = item_path is not None and len(item_path) < RECORDED
            depth += 1
        elif is_list:
            raise _Bail
        key = scalars[key]
        if key.__class__ is not str or key in container:
            raise _Bail  # `1:`, `true:`: keys must be strings; or a duplicate key
        entry_path = None
        if shallow or (path is not None and key == "environments"):
            entry_path = (*path, key)  # type: ignore[misc]
            lines[entry_path] = number
        if value:
            container[key] = found = scalars[value]
            if found is _NOT_PLAIN:
                raise _Bail
        elif flow_key:
            # `_value`, inline: most requests have one (`fields: {ticket: OPS-42}`). Its
            # value is often unique (a ticket): a string for certain is not looked up.
            flow_key = scalars[flow_key]
            found = (
                flow_value
                if flow_value[0] in _STRING_START and flow_value not in _WORDS
                else scalars[flow_value]
            )
            if flow_key.__class__ is not str or found is _NOT_PLAIN:
                raise _Bail  # `{1: x}`, `{true: x}`: keys must be strings
            container[key] = found = {flow_key: found}
            flow_values += 2
            if entry_path is not None:
                _flow_lines(found, entry_path, lines)
        elif flow:
            found, more = _flow(flow, scalars)
            container[key] = found
            flow_values += more
            _flow_lines(found, entry_path, lines)
        else:
            container[key] = None  # for now: the block that follows
            pending = (col_, container, key, entry_path, depth + 1)
    # Values, at least as many as the strict reader counts (it stops past MAX_NODES): 3
    # for each line covers its key, its value, and the item mapping or flow collection it
    # opens; and the root, and the keys and values in flow collections.
    nodes = 1 + 3 * (number - skipped) + flow_values
    if pending is not None or skipped == number or nodes >= MAX_NODES:
        raise _Bail  # a null at the end, no content at all, or too many values
    lines[()] = next(n for n, row in enumerate(rows, 1) if row[2])
    return root, lines


def _flow_lines(found: Any, path: YamlPath | None, lines: dict[YamlPath, int]) -> None:
    """The lines of a flow collection's items that RECORDED asks for: its own line."""
    if path is None or not found:
        return
    if len(path) < RECORDED:
        line = lines[path]
        for index_or_key in found if found.__class__ is dict else range(len(found)):
            lines[(*path, index_or_key)] = line
    elif len(path) == RECORDED and found.__class__ is dict and "environments" in found:
        lines[(*path, "environments")] = lines[path]
