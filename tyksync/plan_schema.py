"""The JSON plan's schema (`tyksync schema --plan`), documented in docs/plan-format.md.

Written by hand rather than generated: the plan is a contract (SPEC sections 6 and 9) that
scripts rely on, and a generated schema would change whenever a dataclass did.
"""

from __future__ import annotations

from typing import Any

from tyksync.plan import ACCESS_KINDS, FORMAT_VERSION, KINDS

_ID = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


_DEVELOPER = _object({"id": _ID, "email": {"type": "string"}})
_POLICIES = {"type": "array", "items": _object({"id": _ID, "name": {"type": "string"}})}
_FIELDS = {"type": "object", "additionalProperties": {"type": "string"}}

_ACTION = _object(
    {
        "action": {"enum": list(KINDS)},
        "developer": _DEVELOPER,
        "policies": _POLICIES,
        "request_id": _NULLABLE_STRING,
        "approve": {"type": "boolean"},
        "fields": _FIELDS,
        "owner": _NULLABLE_STRING,
        "reason": {"type": "string"},
        "approved": {"type": "boolean"},
        "declared_at": _NULLABLE_STRING,
        "revoke_key": {"type": ["string", "null"], "pattern": "^key#[0-9a-f]{8}$"},
    }
)
_PENDING = _object(
    {
        "request_id": _ID,
        "developer": _DEVELOPER,
        "policies": _POLICIES,
        "date_created": {"type": "string"},
        "age_days": {"type": ["integer", "null"], "minimum": 0},
    }
)
_ACCESS_CHANGE = _object(
    {
        "change": {"enum": list(ACCESS_KINDS)},
        "developer": _DEVELOPER,
        "policies": _POLICIES,
        "request_id": _NULLABLE_STRING,
        "declared_at": _NULLABLE_STRING,
    }
)
_WARNING = _object(
    {
        "developer": _DEVELOPER,
        "policies": _POLICIES,
        "request_id": _NULLABLE_STRING,
        "message": {"type": "string"},
    }
)
_SAFETY = _object(
    {
        "deletes": _COUNT,
        "managed": _COUNT,
        "max_deletes": {"type": ["integer", "null"], "minimum": 0},
        "refused": {"type": "boolean"},
        "message": {"type": "string"},
    }
)
_SUMMARY = _object(
    {k: _COUNT for k in (*KINDS, "warnings", "unmanaged")},
)
_SCOPE = _object(
    {
        k: {"type": "array", "items": {"type": "string"}}
        for k in ("developer_ids", "owners", "policy_ids")
    }
)
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SAVED = _object(
    {
        "manifest_paths": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "reissue": {"type": "boolean"},
        # The environment of tyksync.toml the plan was made for (null: none). Written by
        # every tyksync that knows environments; plans saved before lack it.
        "environment": {"type": ["string", "null"], "minLength": 1},
        "expiry_warning_days": {"type": "integer", "minimum": 0},
        "as_of": _NULLABLE_STRING,
    },
    required=["manifest_paths", "reissue"],
)


def plan_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of `plan --format json` and of a saved plan file (which
    adds `saved`)."""
    properties: dict[str, Any] = {
        "format_version": {"const": FORMAT_VERSION},
        "tool_version": {"type": "string"},
        "dashboard": {"type": "string"},
        "fingerprint": _HEX64,
        "summary": _SUMMARY,
        "safety": _SAFETY,
        "managed": _COUNT,
        "access_changes": {"type": "array", "items": _ACCESS_CHANGE},
        "actions": {"type": "array", "items": _ACTION},
        "warnings": {"type": "array", "items": _WARNING},
        "pending": {"type": "array", "items": _PENDING},
        "scope": _SCOPE,
        "manifest_digest": _HEX64,
        "live_digest": _HEX64,
        "saved": _SAVED,
    }
    schema = _object(properties, required=[k for k in properties if k != "saved"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tyksync plan",
        "description": "The plan printed by `tyksync plan --format json`; a file saved with "
        "`--out` adds `saved`. See docs/plan-format.md.",
        **schema,
    }
