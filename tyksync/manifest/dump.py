"""Write manifests as YAML that the strict loader reads back exactly (for `export`).

PyYAML's dumper quotes every string that YAML 1.1 would read as something else (`yes`,
`0755`, `1:30`, ...), but leaves plain a few that our stricter reading does not take as
strings, such as `1e3` (a float in YAML 1.2) or `0o17` (refused as ambiguous). Quoting
those too keeps export-then-load lossless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from tyksync.manifest.yamlload import plain_is_string


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper that quotes what our loader would not read back as the same string."""


# Line breaks that PyYAML writes raw with allow_unicode, and then reads back as a
# newline (or a space); only double quotes escape them.
_RAW_BREAKS = ("\x85", "\u2028", "\u2029")


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style: str | None = None
    if any(ch in value for ch in _RAW_BREAKS):
        style = '"'
    elif not plain_is_string(value):
        style = "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def dump_manifest(data: Mapping[str, Any]) -> str:
    """YAML text for a manifest given as plain data (dicts, lists, str, int, bool).

    Keys keep their order, so callers decide the layout (version, owner, ... first).
    """
    return yaml.dump(
        dict(data),
        Dumper=_ManifestDumper,
        sort_keys=False,
        default_flow_style=False,
        # Unicode is written as itself, unless a value holds a character a terminal would
        # act on (a bidi override, ...): YAML counts those printable, so only escaping
        # every non-ASCII character keeps them out of a person's terminal.
        allow_unicode=_printable(data),
        width=100,
    )


def _printable(value: Any) -> bool:
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, Mapping):
        return all(_printable(k) and _printable(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_printable(v) for v in value)
    return True
