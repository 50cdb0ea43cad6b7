"""Validate one parsed YAML document against the manifest models, with FILE:LINE errors.

Pydantic reports a location as a tuple of keys and indices; the YAML loader recorded the
line of each such path, so every error points at the offending key (or, for a missing key,
at the mapping that lacks it). Messages are rewritten from the error *type* and never
include the offending input value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tyksync.errors import Problem
from tyksync.manifest.model import Defaults, ManifestDoc, RequestDecl
from tyksync.manifest.yamlload import YamlDoc, YamlPath, describe_type, quote_key, render_path
from tyksync.timefmt import MOMENT_HELP

EMPTY_MESSAGE = "empty manifest: expected a mapping with version, owner, developers"

# Booleans in YAML 1.1 (which many tools still speak), strings in ours.
_YAML11_BOOLS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false"})

_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def validate_doc(doc: YamlDoc, file: str) -> tuple[ManifestDoc | None, list[Problem]]:
    """The manifest in `doc`, or None and every problem found in it."""
    if () in doc.refused:
        return None, []  # the whole document was refused, and that was reported
    if doc.data is None:
        return None, [Problem(file, doc.line_of(()), EMPTY_MESSAGE)]
    if not isinstance(doc.data, dict):
        return None, [
            Problem(
                file,
                doc.line_of(()),
                "a manifest must be a mapping with version, owner, developers; "
                f"got {describe_type(doc.data)}",
            )
        ]
    problems: list[Problem] = []
    null_paths = set(_null_paths(doc.data, ()) if doc.nulls is None else doc.nulls)
    quiet = null_paths | doc.refused
    for path in sorted(null_paths, key=doc.line_of):
        problems.append(
            Problem(
                file,
                doc.line_of(path),
                f"{render_path(path)}: has no value (null); give it one or remove it",
            )
        )
    try:
        manifest = ManifestDoc.model_validate(doc.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=True):
            loc = _value_loc(error["loc"])
            if any(loc[:end] in quiet for end in range(len(loc) + 1)):
                continue  # already reported
            if error["type"] == "plan_or_plans" and any(q[: len(loc)] == loc for q in quiet):
                continue  # `plan:` left empty: reported as null
            problems.append(_problem(doc, file, error))
        return None, problems
    return (None, problems) if problems else (manifest, [])


def _null_paths(data: Any, path: YamlPath) -> Iterator[YamlPath]:
    """Paths of explicit nulls. No manifest key accepts null: `approved:` left empty is
    more likely a slip than a wish for the default, so it is refused rather than guessed."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _null_paths(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _null_paths(value, (*path, index))
    elif data is None:
        yield path


def _value_loc(loc: tuple[int | str, ...]) -> YamlPath:
    return tuple(part for part in loc if part != "[key]")


def _allowed_keys(parent: YamlPath) -> list[str]:
    """The keys allowed in the mapping at `parent`, for 'unknown key' messages."""
    model: type[Any] | None = None
    if parent == ():
        model = ManifestDoc
    elif parent == ("defaults",):
        model = Defaults
    elif len(parent) == 3 and parent[0] == "developers" and isinstance(parent[2], int):
        model = RequestDecl
    return list(model.model_fields) if model is not None else []


def _problem(doc: YamlDoc, file: str, error: ErrorDetails) -> Problem:
    kind = error["type"]
    raw_loc = error["loc"]
    loc = _value_loc(raw_loc)
    is_key = bool(raw_loc) and raw_loc[-1] == "[key]"
    value = error.get("input")
    line = doc.line_of(loc)

    if kind == "missing":
        parent, name = loc[:-1], loc[-1]
        where = f"{render_path(parent)}: " if parent else ""
        return Problem(file, doc.line_of(parent), f"{where}missing required key '{name}'")
    if kind == "extra_forbidden":
        parent, name = loc[:-1], str(loc[-1])
        allowed = _allowed_keys(parent)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        where = f"{render_path(parent)}: " if parent else ""
        return Problem(file, line, f"{where}unknown key {quote_key(name)}{hint}")

    where = render_path(loc)
    if is_key:
        message = _key_message(loc, kind, error)
    elif kind == "string_type" and loc[-1:] == ("expires",):
        message = f"must be {MOMENT_HELP}, got {describe_type(value)}"
    elif kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}, got {describe_type(value)}"
        if kind == "bool_type" and isinstance(value, str) and value.lower() in _YAML11_BOOLS:
            message += " (YAML 1.1 words such as yes/no/on/off are not booleans here)"
        elif kind == "string_type" and isinstance(value, (int, float, bool)):
            message += "; quote it to make it a string"
    elif kind == "literal_error":
        message = f"must be {error.get('ctx', {}).get('expected', 'one of the allowed values')}"
    elif kind == "string_pattern_mismatch" and loc == ("owner",):
        message = "must be 1 to 64 letters, digits, '.', '_' or '-'"
    elif kind == "string_pattern_mismatch" and "environments" in loc:
        message = "an environment name is 1 to 64 letters, digits, '_' or '-'"
    elif kind == "string_too_short" or kind == "too_short":
        message = "must not be empty"
    else:
        # Our own PydanticCustomError messages, or pydantic's, which describe the
        # constraint and not the input.
        message = error["msg"]
    return Problem(file, line, f"{where}: {message}")


def _key_message(loc: YamlPath, kind: str, error: ErrorDetails) -> str:
    if loc[:1] == ("developers",) and len(loc) == 2 and kind == "string_pattern_mismatch":
        return "a developer key must be an email or a 24-hex developer id (lowercase)"
    if kind in ("string_too_short", "too_short"):
        return "key must not be empty"
    return error["msg"]
