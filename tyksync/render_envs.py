"""Plans of several environments, one after another, each under its name (SPEC 13).

text: an `== NAME ==` line before each plan; Markdown: a `## NAME` heading before each
(the plans share the comment's size limit); JSON: one object, `{"environments": {NAME:
plan}}`, so that stdout still holds exactly one JSON object. Environment names are plain
(letters, digits, `_`, `-`: `tyksync.config`), so they need no escaping in any of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TextIO

from tyksync.plan import Plan
from tyksync.render import Format

MARKDOWN_LIMIT = 60000  # a pull-request comment's room, shared by every environment's plan


def render_heading(name: str, stream: TextIO, fmt: Format, *, first: bool) -> None:
    """The heading that stands before environment `name`'s plan (none in JSON)."""
    if fmt == "json":
        return
    gap = "" if first else "\n"
    line = f"## {name}\n" if fmt == "markdown" else f"== {name} =="
    stream.write(f"{gap}{line}\n")


def markdown_limit(environments: int) -> int:
    """Each environment's share of the comment, so that all of them fit in one."""
    return MARKDOWN_LIMIT // max(1, environments)


def render_environments_json(plans: Mapping[str, Plan], stream: TextIO) -> None:
    """`{"environments": {NAME: plan}}`, each plan as `render_json` prints it alone."""
    data = {"environments": {name: plan.to_data() for name, plan in plans.items()}}
    json.dump(data, stream, indent=2, ensure_ascii=True)
    stream.write("\n")
