"""A fast reader for the plain subset of YAML that manifests are written in.

`read_plain` reads block mappings and sequences, `key: value` lines, one-line flow lists
and maps (`[Gold, Reports]`, `{ticket: OPS-42}`), plain scalars of a small alphabet,
quotes without escapes, and whole-line comments: what `tyksync export` and people write.
For such a text it gives exactly what the strict event builder (`yamlload._Builder`)
gives: the same data, line for every path and nulls. For anything else (other
characters, tabs, anchors, tags, multi-line scalars, duplicate keys, a value the strict
reader would refuse or report, ...) it gives None, and the strict reader reads the text,
with all its checks and messages. It never reports a problem itself.

The strict reader goes through libyaml's events, each a Python object with two marks;
this goes through lines with a few regexes, several times faster on a large manifest.
"""

from __future__ import annotations

import re
from typing import Any

from tyksync.manifest.yamlload import (
    _LOOKALIKE,
    _TOO_LONG,
    MAX_DEPTH,
    MAX_NODES,
    YamlPath,
    resolve_plain,
)

# Only printable ASCII and newlines: libyaml refuses some other characters, and quoting
# rules for the rest are not worth repeating here.
_OUTSIDE = re.compile(r"[^\n\x20-\x7e]")
_KEY = r"[A-Za-z0-9_][A-Za-z0-9_.@+-]*"
# A plain scalar: a conservative alphabet, single spaces inside, no `: ` or ` #`.
_PLAIN = r"[A-Za-z0-9_.~+-](?:[A-Za-z0-9_.@+/~-]| (?=[A-Za-z0-9_.@+/~-]))*"
_QUOTED = r"\"[^\"\\]*\"|'[^']*'"
_SCALAR = re.compile(rf"(?:{_PLAIN}|{_QUOTED})")
# `- ` prefixes, then `key:` and a value, or a value alone.
_LINE = re.compile(rf"(?P<dash>- +)?(?:(?P<key>{_KEY}):(?: +(?P<value>.+))?|(?P<item>.+))")
_FLOW_ITEM = re.compile(rf" *(?P<v>{_PLAIN}|{_QUOTED}) *")
_FLOW_PAIR = re.compile(rf" *(?P<k>{_KEY}): +(?P<v>{_PLAIN}|{_QUOTED}) *")


class _Bail(Exception):
    """Not the plain subset: leave it to the strict reader."""


_MAP, _SEQ = "map", "seq"


class _Reader:
    def __init__(self) -> None:
        self.lines: dict[YamlPath, int] = {}
        self.nulls: list[YamlPath] = []
        self.nodes = 0
        # One object for each distinct string: keys and policy names repeat in every
        # request, and 100k declarations keep them all.
        self.strings: dict[str, str] = {}

    def count(self, path: YamlPath) -> None:
        self.nodes += 1
        if self.nodes >= MAX_NODES or len(path) >= MAX_DEPTH - 2:
            raise _Bail

    def scalar(self, text: str, path: YamlPath) -> Any:
        # Counted without the depth check: its container's path was checked (`count`), and
        # the node limit is checked after each line.
        self.nodes += 1
        if text[0] in "\"'":
            return text[1:-1]
        if text[0] == "-" and (len(text) == 1 or text[1] == " "):
            raise _Bail
        value = resolve_plain(text)
        if value is _LOOKALIKE or value is _TOO_LONG:
            raise _Bail
        if value is None:
            self.nulls.append(path)
        elif value is text:
            return self.strings.setdefault(text, text)
        return value

    def key(self, text: str) -> str:
        value = resolve_plain(text)
        if not isinstance(value, str) or value != text:
            raise _Bail
        return self.strings.setdefault(text, text)

    def value(self, text: str, path: YamlPath, line: int) -> Any:
        """A value written on its line: a flow list or map, or a scalar."""
        if text[0] == "[":
            if text[-1] != "]":
                raise _Bail
            self.count(path)
            inner = text[1:-1]
            items: list[Any] = []
            if inner.strip():
                for part in inner.split(","):
                    m = _FLOW_ITEM.fullmatch(part)
                    if m is None:
                        raise _Bail
                    item_path = (*path, len(items))
                    self.lines[item_path] = line
                    items.append(self.scalar(m["v"], item_path))
            return items
        if text[0] == "{":
            if text[-1] != "}":
                raise _Bail
            self.count(path)
            inner = text[1:-1]
            mapping: dict[str, Any] = {}
            if inner.strip():
                for part in inner.split(","):
                    m = _FLOW_PAIR.fullmatch(part)
                    if m is None:
                        raise _Bail
                    key = self.key(m["k"])
                    if key in mapping:
                        raise _Bail
                    self.nodes += 1
                    entry_path = (*path, key)
                    self.lines[entry_path] = line
                    mapping[key] = self.scalar(m["v"], entry_path)
            return mapping
        if _SCALAR.fullmatch(text) is None:
            raise _Bail
        return self.scalar(text, path)


def read_plain(text: str) -> tuple[Any, dict[YamlPath, int], frozenset[YamlPath]] | None:
    """(data, lines, nulls) of `text`, or None: not the plain subset (see the module)."""
    if _OUTSIDE.search(text) is not None:
        return None
    try:
        return _read(text)
    except _Bail:
        return None


def _read(text: str) -> tuple[Any, dict[YamlPath, int], frozenset[YamlPath]]:
    reader = _Reader()
    lines = reader.lines
    # Open collections, innermost last: (column, kind, container, path).
    stack: list[tuple[int, str, Any, YamlPath]] = []
    # A `key:` with nothing after it: its value is the block that follows, or null.
    pending: tuple[int, dict[str, Any], str, YamlPath] | None = None
    root: dict[str, Any] | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip(" ")
        content = line.lstrip(" ")
        if not content or content[0] == "#":
            continue
        if "#" in content or content.startswith(("---", "...", "%", "? ")):
            raise _Bail
        col = len(line) - len(content)
        m = _LINE.fullmatch(content)
        if m is None:
            raise _Bail
        dash, key = m["dash"], m["key"]
        if root is None:
            if col != 0 or dash or key is None:
                raise _Bail  # a manifest is a mapping: anything else goes the strict way
            root = {}
            lines[()] = number
            reader.count(())
            stack.append((0, _MAP, root, ()))
        if pending is not None:
            p_col, p_map, p_key, p_path = pending
            pending = None
            if dash and col >= p_col:
                seq: list[Any] = []
                reader.count(p_path)
                p_map[p_key] = seq
                stack.append((col, _SEQ, seq, p_path))
            elif not dash and col > p_col:
                nested: dict[str, Any] = {}
                reader.count(p_path)
                p_map[p_key] = nested
                stack.append((col, _MAP, nested, p_path))
            else:
                reader.count(p_path)
                p_map[p_key] = None
                reader.nulls.append(p_path)
        while stack and (
            stack[-1][0] > col or (stack[-1][0] == col and (stack[-1][1] == _SEQ) != bool(dash))
        ):
            stack.pop()
        if not stack or stack[-1][0] != col:
            raise _Bail
        _, kind, container, path = stack[-1]
        if dash:
            if kind != _SEQ:
                raise _Bail
            item_path = (*path, len(container))
            lines[item_path] = number
            if key is None:
                container.append(reader.value(m["item"], item_path, number))
                if reader.nodes >= MAX_NODES:
                    raise _Bail
                continue
            # `- key: ...`: a mapping that starts here, its keys at this column.
            item: dict[str, Any] = {}
            reader.count(item_path)
            container.append(item)
            col += len(dash)
            stack.append((col, _MAP, item, item_path))
            container, path = item, item_path
        elif kind != _MAP or key is None:
            raise _Bail
        key = reader.key(key)
        if key in container:
            raise _Bail
        reader.nodes += 1
        entry_path = (*path, key)
        lines[entry_path] = number
        value = m["value"]
        if value is None:
            container[key] = None  # for now: the block that follows, or null
            pending = (col, container, key, entry_path)
        else:
            container[key] = reader.value(value, entry_path, number)
        if reader.nodes >= MAX_NODES:
            raise _Bail
    if pending is not None:
        p_col, p_map, p_key, p_path = pending
        reader.count(p_path)
        reader.nulls.append(p_path)
    if root is None:
        raise _Bail
    return root, lines, frozenset(reader.nulls)
