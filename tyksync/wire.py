"""The requests and developers listings, read for the members tyksync uses, as they arrive.

A 100k requests listing is mostly embedded developers (`portal_developer`, with their keys
and secrets), which tyksync drops: msgspec skips them without building a Python object, so
they are never held. And the listing is decoded while it downloads, a few MiB at a time:
the whole body (hundreds of MiB) is never held, let alone next to what was decoded from it.

The types below are those the client's checks accept (`_key_request`, `_developer`), so an
answer that passes them passes these. What these cannot read is handed back as bytes, to
be read as plain JSON and judged (and reported) by those checks: the messages are theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec


class WireItem(msgspec.Struct, gc=False):
    """A listed item's id: `id`, or `_id` before 1.9.2. UNSET: the member was absent."""

    id: str | msgspec.UnsetType | None = msgspec.UNSET
    db_id: str | msgspec.UnsetType | None = msgspec.field(default=msgspec.UNSET, name="_id")


class WireRequest(WireItem, gc=False):
    """A listed key request: its members as they must be typed (null is Go's zero value);
    the rest is skipped."""

    by_user: str | None = None
    apply_policies: list[str] | None = None
    for_plan: str | None = None
    fields: dict[str, str] | None = None
    approved: bool | None = None
    date_created: str | None = None
    for_api: str | None = None
    version: str | None = None
    org_id: str | None = None


class WireDeveloperKeyless(WireItem, gc=False):
    email: str | None = None
    org_id: str | None = None
    inactive: bool | None = None


class WireDeveloper(WireDeveloperKeyless, gc=False):
    keys: Any = None  # judged by the client's `_developer_keys`, which never fails a listing


def wire_id(item: WireItem) -> str | None:
    """`id`, or `_id` when `id` is empty, null or absent; None: neither."""
    value = item.id or item.db_id
    return None if value is msgspec.UNSET else value


def legacy_id(item: WireItem) -> bool:
    """Listed the pre-1.9.2 way: `_id` and no `id`."""
    return item.db_id is not msgspec.UNSET and item.id is msgspec.UNSET


@dataclass(frozen=True)
class WireListing:
    items: list[WireItem]
    pages: int


@dataclass(frozen=True)
class Unread:
    """What a `ListingReader` could not read: `body` is to be read as plain JSON, a listing
    whose `Data` lacks the `items` read before it."""

    items: list[WireItem]
    body: bytearray


# `{"Data": [`, then how the first item starts: `{"id"` (the key Go writes first).
_START = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"Data"[ \t\r\n]*:[ \t\r\n]*\[[ \t\r\n]*')
_ITEM_START = re.compile(rb'\{[ \t\r\n]*"[A-Za-z_]{1,32}"')
_WHITESPACE = b" \t\r\n"
PIECE = 4 * 1024 * 1024  # undecoded bytes that start a search for complete items
_TRIES = 3  # cuts decoded, from the last item start back, before waiting for more bytes


class ListingReader:
    """Reads a listing `{"Data": [item, ...], "Pages": n}` of `item`s chunk by chunk.

    Items are decoded whenever a few MiB are pending, up to the last item start that ends
    a run of complete items. An item start is where the first item started: `{"id"` (any
    whitespace allowed between). Such bytes cannot be inside a JSON string (its quotes
    would be escaped), but an object nested in an item may start the same way: a cut there
    leaves that item's `{` open, which no JSON array survives, so msgspec refuses it and
    the previous start is tried. A cut is therefore taken only where msgspec reads every
    item before it; anything else (another envelope, another order of members, an item
    msgspec refuses) waits for the end, where the rest is read whole, as without this.
    Candidates that keep failing wait for twice the bytes before the next search, so a
    hostile listing costs a bounded number of extra decodes.
    """

    def __init__(self, item: type[WireItem], piece: int | None = None) -> None:
        self._items_decoder = msgspec.json.Decoder(list[item])  # type: ignore[valid-type]
        data: Any = list[item] | None  # type: ignore[valid-type]
        self._envelope = msgspec.json.Decoder(
            msgspec.defstruct("Envelope", [("Data", data, None), ("Pages", Any, 0)], gc=False)
        )
        self._pending = bytearray()
        self._items: list[WireItem] = []
        self._token: bytes | None = None  # None: not streaming (yet, or at all)
        self._started = False
        self._piece = PIECE if piece is None else piece
        self._next_search = self._piece

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        if not self._started and len(self._pending) >= 256:
            self._start()
        if self._token is not None and len(self._pending) >= self._next_search:
            self._search()

    @property
    def held(self) -> int:
        """Bytes fed and not decoded yet."""
        return len(self._pending)

    def finish(self) -> WireListing | Unread:
        """The listing, or what is left to read as plain JSON."""
        # Streaming, `Data`'s `[` is the first byte held: its member name goes back before it.
        body = self._pending if self._token is None else bytearray(b'{"Data":') + self._pending
        self._pending = bytearray()
        try:
            envelope: Any = self._envelope.decode(body)
        except msgspec.MsgspecError:
            return Unread(self._items, body)
        pages = envelope.Pages
        if not isinstance(pages, int) or isinstance(pages, bool):
            return Unread(self._items, body)
        return WireListing(self._items + (envelope.Data or []), pages)

    def _start(self) -> None:
        """From `{"Data": [{"id"...` on, hold `[{"id"...`: complete items are cut from it."""
        self._started = True
        pending = self._pending
        start = _START.match(pending)
        if start is None:
            return
        item = _ITEM_START.match(pending, start.end())
        if item is None:
            return
        self._token = bytes(pending[item.start() : item.end()])
        del pending[: start.end() - 1]
        pending[0] = ord("[")

    def _search(self) -> None:
        pending = self._pending
        end = len(pending)
        tries = _TRIES
        while tries:
            at = pending.rfind(self._token, 1, end)  # type: ignore[arg-type]
            if at <= 1:
                break
            end = at
            comma = at - 1
            while pending[comma] in _WHITESPACE:
                comma -= 1
            if pending[comma] != ord(","):
                continue  # `"member": {"id"` or `[{"id"`: nested, not an item start
            tries -= 1
            pending[comma] = ord("]")
            try:
                with memoryview(pending) as view, view[: comma + 1] as piece:
                    items = self._items_decoder.decode(piece)
            except msgspec.MsgspecError:
                pending[comma] = ord(",")
                continue
            self._items.extend(items)
            del pending[1 : comma + 1]
            self._next_search = len(pending) + self._piece
            return
        self._next_search = 2 * len(pending)
