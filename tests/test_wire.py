"""The listing reader: what it reads chunk by chunk is what reading the whole body gives."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from tyksync.wire import ListingReader, Unread, WireListing, WireRequest


def request(rng: random.Random, n: int, *, legacy: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"_id" if legacy else "id": f"{n:024x}"}
    item.update(
        {
            "by_user": f"{rng.randrange(50):024x}",
            "apply_policies": [f"p{rng.randrange(5)}"],
            "fields": {"ticket": f"T-{n}", "note": rng.choice(["", '}, {"id": "x"}, {'])},
            "approved": rng.random() < 0.8,
            "date_created": "2026-01-02T03:04:05.000000Z",
            # Nested objects that start like an item, in arrays and after a comma.
            "catalogues": [{"id": "c1", "n": 1}, {"id": "c2"}][: rng.randrange(3)],
            "portal_developer": {"id": f"{n:024x}", "keys": {"k" * 8: ["p1"]}},
        }
    )
    return item


def body(items: list[dict[str, Any]], *, compact: bool, pages_first: bool = False) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    envelope = {"Pages": 1, "Data": items} if pages_first else {"Data": items, "Pages": 1}
    return json.dumps(envelope, separators=separators).encode()


def read(data: bytes, rng: random.Random, piece: int) -> tuple[WireListing | Unread, int]:
    """The reader's result and the most bytes it held at once."""
    reader = ListingReader(WireRequest, piece=piece)
    held = 0
    at = 0
    while at < len(data):
        size = rng.randrange(1, 3 * piece)
        reader.feed(data[at : at + size])
        held = max(held, reader.held)
        at += size
    return reader.finish(), held


def as_data(result: WireListing | Unread) -> list[Any]:
    """The items a listing holds, as plain data, whichever way they were read."""
    if isinstance(result, WireListing):
        return [msgspec.to_builtins(i) for i in result.items]
    answer = json.loads(result.body)
    return [msgspec.to_builtins(i) for i in result.items] + [
        msgspec.to_builtins(msgspec.convert(i, WireRequest)) for i in answer["Data"]
    ]


@pytest.mark.parametrize("seed", range(40))
def test_items_read_as_they_arrive_are_those_of_the_whole_body(seed: int) -> None:
    rng = random.Random(seed)
    legacy = seed % 5 == 0
    items = [request(rng, n, legacy=legacy) for n in range(rng.randrange(0, 400))]
    data = body(items, compact=seed % 2 == 0, pages_first=seed % 7 == 3)
    whole = msgspec.json.decode(data, type=Any)
    expected = [msgspec.to_builtins(msgspec.convert(i, WireRequest)) for i in whole["Data"]]
    piece = rng.choice([300, 2000, 10_000])
    result, held = read(data, rng, piece)
    assert isinstance(result, WireListing)
    assert as_data(result) == expected
    assert result.pages == 1
    if len(data) > 20 * piece and seed % 7 != 3:
        # Streamed: never near the whole body at once.
        assert held < len(data) // 4


def test_a_listing_held_whole_when_items_do_not_start_alike() -> None:
    rng = random.Random(1)
    items = [request(rng, n) for n in range(200)]
    for n, item in enumerate(items):  # every other item starts with another member
        if n % 2:
            items[n] = {"approved": item.pop("approved"), **item}
    data = body(items, compact=True)
    result, _ = read(data, rng, 1000)
    assert isinstance(result, WireListing)
    assert [i.id for i in result.items] == [i["id"] for i in items]


def test_what_msgspec_refuses_is_handed_back_with_the_items_before_it() -> None:
    rng = random.Random(2)
    items = [request(rng, n) for n in range(300)]
    items[250]["approved"] = "yes"  # the client's checks name this; msgspec only refuses
    data = body(items, compact=False)
    result, _ = read(data, rng, 2000)
    assert isinstance(result, Unread)
    assert result.items, "the items before the refused one were read as they came"
    answer = json.loads(result.body)
    ids = [i.id for i in result.items] + [i["id"] for i in answer["Data"]]
    assert ids == [i["id"] for i in items]
    assert answer["Pages"] == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"[]", b"null", b'{"Data": null, "Pages": 0}', b'{"Data": [], "Pages": true}', b"{"],
)
def test_short_or_odd_answers_are_handed_back_whole(data: bytes) -> None:
    reader = ListingReader(WireRequest, piece=16)
    reader.feed(data)
    result = reader.finish()
    if data == b'{"Data": null, "Pages": 0}':
        assert result == WireListing([], 0)
    else:
        assert isinstance(result, Unread)
        assert bytes(result.body) == data
        assert result.items == []


def test_a_hostile_listing_costs_a_bounded_number_of_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every item start a hostile Dashboard plants inside an item is a cut that fails:
    searches back off, so the decodes stay few however long the listing."""
    item = {"id": "a" * 24, "x": [{"id": str(n)} for n in range(2000)]}
    data = body([item], compact=True)
    decodes = 0
    real = msgspec.json.Decoder.decode

    class Counting:
        def __init__(self, inner: msgspec.json.Decoder[Any]) -> None:
            self.inner = inner

        def decode(self, buf: Any) -> Any:
            nonlocal decodes
            decodes += 1
            return real(self.inner, buf)

    reader = ListingReader(WireRequest, piece=64)
    monkeypatch.setattr(reader, "_items_decoder", Counting(reader._items_decoder))
    for at in range(0, len(data), 64):
        reader.feed(data[at : at + 64])
    result = reader.finish()
    assert isinstance(result, WireListing) and [i.id for i in result.items] == ["a" * 24]
    assert len(data) > 20_000
    assert decodes <= 3 * 12  # three tries a search, one search each time the bytes double
