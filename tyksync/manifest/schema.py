"""The manifest JSON Schema, printed by `tyksync schema` (for editors and CI linting)."""

from __future__ import annotations

from typing import Any

from tyksync.manifest.model import ManifestDoc

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a manifest file, format version 1.

    The schema cannot say everything the loader enforces (no YAML anchors, aliases or
    duplicate keys; exactly one of `plan`/`plans`; no identity declared twice across
    files), so it is a guide for editors, and `tyksync validate` stays the authority.
    """
    schema = _without_null(ManifestDoc.model_json_schema(mode="validation"))
    request = schema["$defs"]["RequestDecl"]
    request["properties"]["plans"]["uniqueItems"] = True
    request["oneOf"] = [{"required": ["plan"]}, {"required": ["plans"]}]
    # Keys that are neither an email nor a developer id are errors, not free-form.
    schema["properties"]["developers"]["additionalProperties"] = False
    return {
        "$schema": SCHEMA_DIALECT,
        **schema,
        "title": "tyksync manifest (version 1)",
        "description": (
            "Key requests of a Tyk Dashboard developer portal that one owner manages. "
            "Every *.yaml/*.yml file under the paths given to tyksync is one manifest."
        ),
    }


def _without_null(node: Any) -> Any:
    """Drop the `null` alternative of optional keys: the loader refuses explicit nulls
    (an omitted key means "use the default"), so the schema should refuse them too."""
    if isinstance(node, list):
        return [_without_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _without_null(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1 and len(rest) != len(options):
            del node["anyOf"]
            node = {**rest[0], **node}
            if node.get("default", ...) is None:
                del node["default"]
    return node
