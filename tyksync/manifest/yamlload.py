"""Strict YAML: the only place in tyksync that parses YAML text.

We never let PyYAML construct Python objects. We read the parser's *events* one at a time
(libyaml's C parser when available) and build plain data ourselves, which lets us refuse
anchors and aliases at the event that introduces them (so an alias bomb never expands),
refuse every non-standard tag before anything could act on it, and record the line of
every value for error messages.

Scalars are resolved with a deliberately small YAML 1.2 core schema: `true`/`false` are
the only booleans (YAML 1.1 words such as `yes` or `on` stay strings and are rejected
later wherever a boolean is expected), decimal integers and floats are numbers, and
number lookalikes that YAML 1.1 would silently convert (`0755`, `1_000`, `1:30`, `0x1F`)
are refused with a hint to quote them.

Messages never repeat input *values*: a value may be a secret pasted by mistake. Keys and
positions are fine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tyksync.errors import Problem
from tyksync.escape import printable

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_PROBLEMS_PER_FILE = 50
# Python refuses int() of very long digit strings anyway (4300 digits); no manifest value
# needs more than a handful.
MAX_INT_DIGITS = 30

# A path from the document root to a value: mapping keys and sequence indices.
PathKey = str | int
YamlPath = tuple[PathKey, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL = _TAG + "str", _TAG + "int", _TAG + "bool", _TAG + "null"
_MAP, _SEQ = _TAG + "map", _TAG + "seq"
_SCALAR_TAGS = frozenset({_STR, _INT, _BOOL, _NULL})

_NULL_RE = re.compile(r"~|null|Null|NULL|")
_BOOL_VALUES = {"true": True, "false": False}
_INT_RE = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF|nan|NaN|NAN)"
)
# What YAML 1.1 (and so many other tools) would read as a number, but we will not guess.
_LOOKALIKE_RE = re.compile(
    r"[-+]?0[0-9_]+"  # leading zero: octal in YAML 1.1
    r"|[-+]?0[xXoObB][0-9a-fA-F_]+"  # hex, octal, binary
    r"|[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?"  # digit separators
    r"|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"  # sexagesimal (1:30 == 90)
)


# libyaml's parser is several times faster; both expose the same event API.
_Loader: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


@dataclass(frozen=True)
class YamlDoc:
    """One YAML document as plain data, plus the line of every value."""

    data: Any
    # Line (1-based) of each value: for a mapping entry, the line of its key; for a
    # sequence item, the line where the item starts; () is the root. Only some of them
    # when `text` is set (see there): ask `line_of`.
    lines: dict[YamlPath, int]
    # Values refused while reading (aliases, bad tags, number lookalikes, ...): they hold
    # a placeholder, were reported already, and schema errors under them are noise.
    refused: frozenset[YamlPath] = frozenset()
    # sha256 of the file's bytes: a saved plan is bound to them, comments included.
    sha256: str = ""
    # Paths of the explicit nulls in `data`, as the builder saw them; None: not recorded.
    nulls: frozenset[YamlPath] | None = None
    # The document's text, when `lines` holds only the lines the fast reader records
    # (those a valid manifest needs): any other line comes from a strict read of it, on
    # the first question about one (only problems ask).
    text: str | None = field(default=None, repr=False)
    _all_lines: dict[YamlPath, int] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def line_of(self, path: tuple[Any, ...]) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        lines = self.lines
        if self.text is not None and path not in lines:
            lines = self._every_line()
        for end in range(len(path), -1, -1):
            line = lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def _every_line(self) -> dict[YamlPath, int]:
        if not self._all_lines:
            assert self.text is not None
            strict, _ = parse_yaml_strict(self.text, "")
            # The fast reader answered, so the strict one reads the text alike, to the end.
            self._all_lines.update(strict.lines if strict is not None else self.lines)
        return self._all_lines


class _Abort(Exception):
    """Stop reading this file: going on would waste time or hide the real problem."""


def describe_type(value: object) -> str:
    """How error messages name a value's kind (never the value itself)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a " + type(value).__name__


class _Builder:
    """Turns a parser's event stream into plain data, refusing everything non-plain."""

    def __init__(self, file: str, next_event: Callable[[], yaml.Event]) -> None:
        self.file = file
        self._next = next_event
        self.problems: list[Problem] = []
        self.lines: dict[YamlPath, int] = {}
        self.refused: set[YamlPath] = set()
        self.nulls: list[YamlPath] = []  # where a null was read (some in refused values)
        self._nodes = 0

    # -- problems -----------------------------------------------------------------------

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))
        if len(self.problems) >= MAX_PROBLEMS_PER_FILE:
            self.problems.append(
                Problem(self.file, line, "too many problems in this file; stopped reading it")
            )
            raise _Abort

    def problem_at(self, path: YamlPath, line: int, message: str) -> None:
        """A problem with a value: prefixed with where the value sits, when known."""
        known = bool(path) and path[: len(_DISCARDED)] != _DISCARDED
        self.problem(line, f"{render_path(path)}: {message}" if known else message)

    def fatal(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))
        raise _Abort

    # -- document -----------------------------------------------------------------------

    def document(self) -> Any:
        """Read the whole stream; exactly one document is allowed."""
        self._expect(yaml.StreamStartEvent)
        event = self._next()
        if isinstance(event, yaml.StreamEndEvent):
            self.fatal(1, "empty manifest: expected a mapping with version, owner, developers")
        root = self._next()
        self.lines[()] = _line(root)
        data = self.node(root, (), 1)
        self._expect(yaml.DocumentEndEvent)
        event = self._next()
        if not isinstance(event, yaml.StreamEndEvent):
            self.problem(
                _line(event),
                "a second YAML document ('---') in one file; put each manifest in its own file",
            )
        return data

    def _expect(self, kind: type[yaml.Event]) -> yaml.Event:
        event = self._next()
        if not isinstance(event, kind):  # pragma: no cover - the parser guarantees order
            self.fatal(_line(event), "unexpected YAML structure")
        return event

    # -- nodes --------------------------------------------------------------------------

    def node(self, event: yaml.Event, path: YamlPath, depth: int) -> Any:
        """The value that starts with `event`; _INVALID (and `path` refused) if refused."""
        value = self._node(event, path, depth)
        if value is _INVALID:
            self.refused.add(path)
        elif value is None:
            self.nulls.append(path)
        return value

    def null_paths(self) -> frozenset[YamlPath]:
        """The nulls that are in the data: not under a refused value or a dropped entry."""
        refused = self.refused
        return frozenset(
            path
            for path in self.nulls
            if path[: len(_DISCARDED)] != _DISCARDED
            and not any(path[:end] in refused for end in range(len(path)))
        )

    def _node(self, event: yaml.Event, path: YamlPath, depth: int) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self.fatal(_line(event), f"too many YAML values (more than {MAX_NODES})")
        if depth > MAX_DEPTH:
            self.fatal(_line(event), f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(event, yaml.AliasEvent):
            # Refused before anything is expanded: this is what defuses alias bombs.
            self.problem_at(
                path, _line(event), "YAML aliases (*name) are not allowed; write it out"
            )
            return _INVALID
        if getattr(event, "anchor", None) is not None:
            self.problem_at(path, _line(event), "YAML anchors (&name) are not allowed")
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event, path)
        if isinstance(event, yaml.SequenceStartEvent):
            return self.sequence(event, path, depth)
        if isinstance(event, yaml.MappingStartEvent):
            return self.mapping(event, path, depth)
        self.fatal(_line(event), "unexpected YAML structure")  # pragma: no cover
        return _INVALID  # pragma: no cover

    def _tag_ok(self, event: yaml.CollectionStartEvent, allowed: str, path: YamlPath) -> bool:
        if event.tag is None or event.tag == allowed:
            return True
        self.problem_at(path, _line(event), _tag_message(event.tag))
        return False

    def _fast(self, event: yaml.Event, depth: int, *, key: bool = False) -> Any:
        """A plain, untagged, unanchored scalar that needs no check beyond counting: its
        value, counted as `_node` counts it. _SLOW for anything else, nothing counted: the
        full path (`node`, `key`) reads it and reports what there is to report. `key`: only
        a string that is not `<<` qualifies."""
        if (
            event.__class__ is not _ScalarEvent
            or event.anchor is not None
            or event.tag is not None
            or self._nodes >= MAX_NODES
            or depth > MAX_DEPTH
        ):
            return _SLOW
        text = event.value
        if event.implicit[0]:
            if key:
                if text == "<<" or _plain_string(text) is None:
                    return _SLOW
                value: Any = text
            else:
                value = resolve_plain(text)
                if value is _LOOKALIKE or value is _TOO_LONG:
                    return _SLOW
        else:
            value = text  # quoted or block scalar
        self._nodes += 1
        return value

    def sequence(self, start: yaml.SequenceStartEvent, path: YamlPath, depth: int) -> Any:
        tag_ok = self._tag_ok(start, _SEQ, path)
        items: list[Any] = []
        next_event, lines = self._next, self.lines
        while True:
            event = next_event()
            if event.__class__ is _SequenceEndEvent:
                return items if tag_ok else _INVALID
            item_path = (*path, len(items))
            mark = event.start_mark
            lines[item_path] = int(mark.line) + 1 if mark is not None else 1
            value = self._fast(event, depth + 1)
            if value is _SLOW:
                value = self.node(event, item_path, depth + 1)
            elif value is None:
                self.nulls.append(item_path)
            items.append(value)

    def mapping(self, start: yaml.MappingStartEvent, path: YamlPath, depth: int) -> Any:
        tag_ok = self._tag_ok(start, _MAP, path)
        result: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        next_event, lines, fast = self._next, self.lines, self._fast
        while True:
            event = next_event()
            if event.__class__ is _MappingEndEvent:
                return result if tag_ok else _INVALID
            mark = event.start_mark
            key_line = int(mark.line) + 1 if mark is not None else 1
            key = fast(event, depth + 1, key=True)
            if key is _SLOW:
                key = self.key(event, depth)
            value_event = next_event()
            if key is None or key in key_lines:
                if key is not None:
                    first = key_lines[key]
                    self.problem(
                        key_line, f"duplicate key {quote_key(key)} (first at line {first})"
                    )
                # The entry is dropped, but its value is still read so that every problem
                # in it is reported in this run.
                self.node(value_event, _DISCARDED, depth + 1)
                continue
            key_lines[key] = key_line
            value_path = (*path, key)
            lines[value_path] = key_line
            value = fast(value_event, depth + 1)
            if value is _SLOW:
                value = self.node(value_event, value_path, depth + 1)
            elif value is None:
                self.nulls.append(value_path)
            result[key] = value

    def key(self, event: yaml.Event, depth: int) -> str | None:
        """A mapping key: always a string in our format. None after reporting a problem."""
        line = _line(event)
        if (
            isinstance(event, yaml.ScalarEvent)
            and event.tag is None
            and event.implicit[0]
            and event.value == "<<"
        ):
            if event.anchor is not None:
                self.problem(line, "YAML anchors (&name) are not allowed")
            self.problem(line, "YAML merge keys (<<) are not allowed; write the keys out")
            return None
        value = self.node(event, _DISCARDED, depth + 1)
        if isinstance(value, str):
            return value
        if value is _INVALID:
            return None  # already reported
        if isinstance(value, (list, dict)):
            self.problem(line, "mapping keys must be plain strings, not lists or mappings")
        else:
            self.problem(
                line, f"mapping keys must be strings, got {describe_type(value)}; quote the key"
            )
        return None

    def scalar(self, event: yaml.ScalarEvent, path: YamlPath) -> Any:
        tag, text, line = event.tag, event.value, _line(event)
        if tag is None and event.implicit[0]:
            return self._plain(text, line, path)
        if tag is None or tag == _STR:
            return text  # quoted or block scalar, or an explicit !!str
        if tag not in _SCALAR_TAGS:
            self.problem_at(path, line, _tag_message(tag))
            return _INVALID
        # An explicit standard tag must agree with what the text says.
        value = self._plain(text, line, path)
        if value is _INVALID:
            return value
        expected = {_INT: int, _BOOL: bool, _NULL: type(None)}[tag]
        if type(value) is not expected:
            self.problem_at(path, line, f"value does not match its !!{tag[len(_TAG) :]} tag")
            return _INVALID
        return value

    def _plain(self, text: str, line: int, path: YamlPath) -> Any:
        value = resolve_plain(text)
        if value is _LOOKALIKE:
            self.problem_at(
                path,
                line,
                "ambiguous number-like value (octal, hex, '_' or ':' separated): "
                "quote it to make it a string",
            )
            return _INVALID
        if value is _TOO_LONG:
            self.problem_at(path, line, "integer too long; quote it to make it a string")
            return _INVALID
        return value


# What no number, null or boolean starts with: text starting otherwise is a string, unless
# it is one of the words below (what the patterns above accept starts with one of these).
_NUMBER_OR_NULL_START = frozenset("0123456789+-.~")
_WORDS = frozenset({"true", "false", "null", "Null", "NULL"})


def _plain_string(text: str) -> str | None:
    """`text`, when written unquoted it is that string for certain; else None (look closer)."""
    if text and text[0] not in _NUMBER_OR_NULL_START and text not in _WORDS:
        return text
    return None


def resolve_plain(text: str) -> Any:
    """What an unquoted, untagged scalar means here (see the module docstring).

    Returns the value, or the _LOOKALIKE / _TOO_LONG markers for text that is refused.
    """
    if _plain_string(text) is not None:
        return text
    if text in _BOOL_VALUES:
        return _BOOL_VALUES[text]
    if _NULL_RE.fullmatch(text):
        return None
    # Before int and float: `0755` would otherwise pass as the float 755.0.
    if _LOOKALIKE_RE.fullmatch(text):
        return _LOOKALIKE
    if _INT_RE.fullmatch(text):
        return _TOO_LONG if len(text) > MAX_INT_DIGITS else int(text)
    if _FLOAT_RE.fullmatch(text):
        # YAML spells infinity and NaN `.inf` and `.nan`; Python without the dot.
        lowered = text.lower()
        return float(lowered.replace(".", "", 1) if lowered.endswith(("inf", "nan")) else text)
    return text


def plain_is_string(text: str) -> bool:
    """Whether `text` written unquoted reads back as that same string."""
    value = resolve_plain(text)
    return isinstance(value, str) and value == text


# Where values go that are read only for their problems (refused keys, duplicates).
_DISCARDED: YamlPath = ("<discarded>",)


_BARE = re.compile(r"[A-Za-z0-9_-]{1,80}")


def render_path(path: tuple[Any, ...]) -> str:
    """`developers."a@example.com"[0].fields.ticket`: keys and indices, never values."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part)
        if not _BARE.fullmatch(text):
            text = json.dumps(text if len(text) <= 80 else text[:80] + "...")
        out += ("." if out else "") + text
    return out or "(top level)"


class _Invalid:
    """Stands in for a value that was refused, so that building can go on."""

    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()
_LOOKALIKE: Any = _Invalid()
_TOO_LONG: Any = _Invalid()
_SLOW: Any = _Invalid()  # `_Builder._fast`: read this one with the full checks

_ScalarEvent = yaml.ScalarEvent
_SequenceEndEvent = yaml.SequenceEndEvent
_MappingEndEvent = yaml.MappingEndEvent


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 1


def quote_key(text: str, limit: int = 80) -> str:
    """Quote a key for a message, bounded and with control characters escaped."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return "'" + printable(text.replace("\\", "\\\\"), ascii_only=True).replace("'", "\\'") + "'"


def _tag_message(tag: str) -> str:
    shown = "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
    return (
        f"YAML tag {quote_key(shown)} is not allowed "
        "(only plain strings, numbers, booleans, lists and mappings)"
    )


def parse_yaml(text: str, file: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Parse one YAML document strictly.

    Returns the document (None when it could not be read to the end) and its problems. A
    document with problems is still returned when it was read to the end, so that the
    caller can report schema problems of the rest of the file in the same run.
    """
    from tyksync.manifest.fastyaml import read_plain  # it builds on this module

    plain = read_plain(text)
    if plain is not None:
        data, lines = plain
        return YamlDoc(data, lines, nulls=frozenset(), text=text), []
    return parse_yaml_strict(text, file)


def parse_yaml_strict(text: str, file: str) -> tuple[YamlDoc | None, list[Problem]]:
    """`parse_yaml` without the fast reader: every document through the event builder
    (what the fast reader must agree with, wherever it answers)."""
    try:
        # The pure-Python parser checks every character here, libyaml while parsing.
        loader = _Loader(text)
    except UnicodeEncodeError:  # lone surrogates: cannot come from decoding UTF-8
        return None, [Problem(file, 1, "not valid UTF-8 text (manifests must be UTF-8)")]
    except yaml.reader.ReaderError as exc:
        return None, [_reader_problem(file, text, exc)]
    builder = _Builder(file, loader.get_event)
    try:
        data = builder.document()
    except _Abort:
        return None, builder.problems
    except yaml.MarkedYAMLError as exc:
        return None, [*builder.problems, _syntax_problem(file, exc)]
    except yaml.reader.ReaderError as exc:
        return None, [*builder.problems, _reader_problem(file, text, exc)]
    finally:
        loader.dispose()
    doc = YamlDoc(data, builder.lines, frozenset(builder.refused), nulls=builder.null_paths())
    return doc, builder.problems


def _reader_problem(file: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    # libyaml reports a byte offset into the UTF-8 text; the pure parser a str index.
    before = text.encode("utf-8")[: exc.position] if _Loader is not yaml.SafeLoader else None
    line = before.count(b"\n") + 1 if before is not None else text.count("\n", 0, exc.position) + 1
    return Problem(file, line, f"invalid YAML: {exc.reason}")


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError) -> Problem:
    # Build the message from PyYAML's short descriptions only: str(exc) would quote a
    # snippet of the offending line, which may hold a secret.
    mark = exc.problem_mark or exc.context_mark
    line = int(mark.line) + 1 if mark is not None else 1
    parts = [p for p in (exc.context, exc.problem) if p]
    return Problem(file, line, "invalid YAML: " + ", ".join(parts or ["syntax error"]))


def read_yaml_file(path: Path, display: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Read and parse one manifest file, within the size limit, as strict UTF-8."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                return None, [Problem(display, 1, too_big())]
            # Read one byte past the limit: the file may have grown since fstat.
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [Problem(display, 1, f"cannot read: {exc.strerror or type(exc).__name__}")]
    if len(raw) > MAX_FILE_BYTES:
        return None, [Problem(display, 1, too_big())]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Problem(display, line, "not valid UTF-8 text (manifests must be UTF-8)")]
    doc, problems = parse_yaml(text, display)
    if doc is not None:
        doc = dataclasses.replace(doc, sha256=hashlib.sha256(raw).hexdigest())
    return doc, problems


def too_big() -> str:
    return f"file too large (more than {MAX_FILE_BYTES // 1024} KiB); split it into several files"
