"""The Dashboard's wire format in both dialects (see docs/DESIGN.md, "Sandbox wire format").

Pure functions from stored records to JSON-ready values, and from request bodies and
query strings to checked arguments. Refusals are `StoreError`s carrying their status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tyksync.sandbox.store import Record, StoreError

Dialect = Literal["modern", "legacy"]
DIALECTS: tuple[Dialect, ...] = ("modern", "legacy")
PAGE_SIZE = 10

T = TypeVar("T")


def parse_dialect(value: str) -> Dialect:
    if value == "modern":
        return "modern"
    if value == "legacy":
        return "legacy"
    raise ValueError(f"unknown dialect {value!r} (one of {', '.join(DIALECTS)})")


def _id_key(dialect: Dialect) -> str:
    # Dashboards before 1.9.2 list requests and developers with Mongo's `_id`.
    return "id" if dialect == "modern" else "_id"


def render_request(request: Record, dialect: Dialect) -> Record:
    out: Record = {_id_key(dialect): request["id"]}
    out.update((k, v) for k, v in request.items() if k != "id")
    if dialect == "legacy":
        out.pop("apply_policies", None)
    return out


def render_developer(developer: Record, dialect: Dialect) -> Record:
    out: Record = {_id_key(dialect): developer["id"]}
    out.update((k, v) for k, v in developer.items() if k != "id")
    return out


def render_policy(policy: Record, dialect: Dialect) -> Record:
    if dialect == "legacy":
        # Explicit policy ids came with later Dashboards.
        return {k: v for k, v in policy.items() if k != "id"}
    return dict(policy)


def request_list_json(
    requests: Sequence[Record], developers: Mapping[str, Record], dialect: Dialect
) -> str:
    """The `Data` array of a request list, each request embedding its whole developer.

    Each developer is serialised once per answer and spliced into every request of theirs:
    a developer with many requests (and so many keys) would otherwise be serialised again
    for each one.
    """
    embedded: dict[str, str] = {}
    items = []
    for request in requests:
        developer_id = request["by_user"]
        if developer_id not in embedded:
            developer = developers.get(developer_id)
            rendered = None if developer is None else render_developer(developer, dialect)
            embedded[developer_id] = json.dumps(rendered)
        own = json.dumps(render_request(request, dialect))
        items.append(
            f'{own[:-1]}, "portal_developer": {embedded[developer_id]}, '
            '"catalogue_entry": null, "catalogues": []}'
        )
    return "[" + ", ".join(items) + "]"


# -- paging -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """Which part of a list a call asks for: everything, or the page at 0-based `index`."""

    everything: bool
    index: int = 0


def parse_page(raw: str | None, dialect: Dialect) -> Page:
    """Dashboards >= 1.9.2 count `p` from 1 and read any `p<=0` as everything; older ones
    count from 0 and read only `p=-1` as everything."""
    if raw is None:
        return Page(everything=False)
    try:
        p = int(raw.strip())
    except ValueError:
        raise StoreError(400, "Invalid page number") from None
    if dialect == "modern":
        return Page(everything=True) if p <= 0 else Page(everything=False, index=p - 1)
    if p == -1:
        return Page(everything=True)
    if p < -1:
        raise StoreError(400, "Invalid page number")
    return Page(everything=False, index=p)


def page_count(total: int) -> int:
    return -(-total // PAGE_SIZE)


def page_items(items: Sequence[T], page: Page) -> Sequence[T]:
    if page.everything:
        return items
    start = page.index * PAGE_SIZE
    return items[start : start + PAGE_SIZE]


# -- the create body ----------------------------------------------------------------------


@dataclass(frozen=True)
class CreateArgs:
    by_user: str
    for_plan: str
    apply_policies: list[str] | None
    fields: dict[str, str]
    version: str
    for_api: str


def parse_create(body: bytes, dialect: Dialect) -> CreateArgs:
    """A create body as the Dashboard reads it. `approved` is ignored: approval only ever
    happens through PUT approve. A legacy Dashboard keeps `for_plan` only."""
    try:
        data = json.loads(body)
    except ValueError:
        raise StoreError(400, "Malformed request body: not valid JSON") from None
    if not isinstance(data, dict):
        raise StoreError(400, "Malformed request body: expected a JSON object")
    applied = _optional(data, "apply_policies", list)
    if applied is not None and not all(isinstance(p, str) for p in applied):
        raise StoreError(400, "Malformed request body: apply_policies must hold strings")
    fields = _optional(data, "fields", dict) or {}
    if not all(isinstance(v, str) for v in fields.values()):
        raise StoreError(400, "Malformed request body: field values must be strings")
    return CreateArgs(
        by_user=_optional(data, "by_user", str) or "",
        for_plan=_optional(data, "for_plan", str) or "",
        apply_policies=applied if dialect == "modern" else None,
        fields=fields,
        version=_optional(data, "version", str) or "",
        for_api=_optional(data, "for_api", str) or "",
    )


def _optional(data: Mapping[str, Any], name: str, kind: type[T]) -> T | None:
    """A member that may be absent or null (Go leaves the zero value), else of `kind`."""
    value = data.get(name)
    if value is not None and not isinstance(value, kind):
        raise StoreError(400, f"Malformed request body: {name} has the wrong type")
    return value


# -- answers ------------------------------------------------------------------------------


def envelope(status: Literal["OK", "Error"], message: str) -> bytes:
    return json.dumps({"Status": status, "Message": message, "Meta": None}).encode()


def listing(data_json: str, pages: int) -> bytes:
    return f'{{"Data": {data_json}, "Pages": {pages}}}'.encode()
