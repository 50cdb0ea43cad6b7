"""`dump_manifest` writes YAML that the strict loader reads back exactly (export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tyksync.manifest import dump_manifest, load_manifests
from tyksync.manifest.yamlload import parse_yaml, plain_is_string

TRICKY = ["1e3", "0o17", "0x1F", "0755", "1_000", "1:30", "yes", "No", "on", "~", "null", ""]
TRICKY += ["true", "True", "-1", "+1", ".5", ".inf", "-.NaN", "<<", "2024-01-01", "=", "\ufeff"]
TRICKY += ["x\x07y", "a\x85b", "a\u2028b", "multi\nline\n", " padded ", "#hash", "- dash", "a: b"]


def manifest_with(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "version": 1,
        "owner": "team",
        "prune": "owned",
        "developers": {
            "alice@example.com": [{"plan": "Gold", "fields": fields}],
            "64b000000000000000000001": [{"plans": ["1e3", "0755"], "approved": False}],
            "bob@example.com": [],
        },
    }


def test_tricky_strings_round_trip(tmp_path: Path) -> None:
    data = manifest_with({f"k{i}": text for i, text in enumerate(TRICKY)})
    text = dump_manifest(data)
    doc, problems = parse_yaml(text, "m.yaml")
    assert problems == []
    assert doc is not None and doc.data == data
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    (request, _) = load_manifests([path]).requests
    assert dict(request.fields) == data["developers"]["alice@example.com"][0]["fields"]


def test_key_order_is_kept() -> None:
    text = dump_manifest(manifest_with({}))
    assert text.startswith("version: 1\nowner: team\nprune: owned\ndevelopers:\n")


def test_plain_is_string() -> None:
    assert plain_is_string("Gold") and plain_is_string("OPS-42")
    assert not any(plain_is_string(t) for t in ["1e3", "0755", "yes"[:0], "true", "42", "~"])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: not k.startswith("tyksync_")),
        st.text(max_size=30) | st.text("0123456789eE+-._:xob ", max_size=12),
        max_size=8,
    )
)
def test_any_fields_round_trip(fields: dict[str, str]) -> None:
    data = manifest_with(fields)
    doc, problems = parse_yaml(dump_manifest(data), "m.yaml")
    assert problems == []
    assert doc is not None and doc.data == data
