"""Seed data: the packaged demo, or a YAML file of the same shape (`--seed FILE`).

```yaml
org_id: 5e9d9544a1dcd60001d0ed20
developers: [{id: 64a0..., email: alice@example.com, inactive: false, fields: {}}]
policies: [{_id: 64b0..., id: gold, name: Gold, active: true}]
requests:
  - {id: 64c0..., developer: bob@example.com, policies: [Gold], approved: false,
     fields: {ticket: OPS-7}, date_created: "2026-01-05T10:00:00Z"}
  - {developer: dave@example.com, for_api: 5f1e..., approved: true}   # legacy v1
```

A request names its developer by email or id and its policies by name, explicit `id` or
`_id`; it is stored with the policies' `_id`s. Approved requests get a fresh key when the
store is seeded: keys are credentials, never fixed in a file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tyksync.sandbox.store import DEFAULT_ORG_ID, SandboxError, Store, is_object_id, parse_date

SeedSource = Literal["demo"] | Path


class SeedError(SandboxError):
    """A seed file that cannot be read, or that names something it does not define."""


class _Strict(BaseModel):
    # Strict: an id that YAML read as a number is an error, not silently converted.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


def _object_id(value: str | None) -> str | None:
    if value is not None and not is_object_id(value):
        raise ValueError(f"{value!r} is not a 24-hex ObjectId")
    return value


class SeedDeveloper(_Strict):
    email: str
    id: str | None = None
    inactive: bool = False
    fields: dict[str, str] = Field(default_factory=dict)

    _check_id = field_validator("id")(_object_id)


class SeedPolicy(_Strict):
    name: str
    db_id: str | None = Field(default=None, alias="_id")
    id: str = ""
    active: bool = True

    _check_id = field_validator("db_id")(_object_id)


class SeedRequest(_Strict):
    developer: str
    policies: list[str] = Field(default_factory=list)
    approved: bool = False
    fields: dict[str, str] = Field(default_factory=dict)
    for_api: str = ""
    id: str | None = None
    date_created: str | datetime | None = None
    version: str | None = None

    _check_id = field_validator("id")(_object_id)

    @field_validator("date_created")
    @classmethod
    def _check_date(cls, value: str | datetime | None) -> str | datetime | None:
        if value is not None:
            parse_date(value)  # raises ValueError on a malformed date
        return value


class SeedData(_Strict):
    org_id: str = DEFAULT_ORG_ID
    developers: list[SeedDeveloper] = Field(default_factory=list)
    policies: list[SeedPolicy] = Field(default_factory=list)
    requests: list[SeedRequest] = Field(default_factory=list)


def load_seed(source: SeedSource) -> SeedData:
    """Read and check seed data: `"demo"` for the packaged demo, or a YAML file."""
    if source == "demo":
        name = "the demo seed"
        text = resources.files("tyksync.sandbox").joinpath("demo.yaml").read_text("utf-8")
    else:
        name = str(source)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as e:
            raise SeedError(f"{name}: cannot read the seed file: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SeedError(f"{name}: not valid YAML: {e}") from e
    try:
        return SeedData.model_validate(data if data is not None else {})
    except ValidationError as e:
        raise SeedError(f"{name}: {_describe(e)}") from e


def apply_seed(store: Store, seed: SeedData) -> None:
    """Add the seed's data to a store, all of it or (on error) nothing."""
    with store.batch():
        try:
            _apply(store, seed)
        except (ValueError, SeedError) as e:
            store.reset()
            raise SeedError(f"seed data: {e}") from e


def _apply(store: Store, seed: SeedData) -> None:
    store.set_org_id(seed.org_id)
    developer_ids: dict[str, str] = {}  # id and lower-cased email -> id
    for d in seed.developers:
        added = store.add_developer(d.email, id=d.id, inactive=d.inactive, fields=d.fields)
        developer_ids[added["id"]] = developer_ids[d.email.lower()] = added["id"]
    for p in seed.policies:
        store.add_policy(p.name, id=p.id, db_id=p.db_id, active=p.active)
    resolve_policy = _policy_resolver(store)
    for r in seed.requests:
        developer = developer_ids.get(r.developer) or developer_ids.get(r.developer.lower())
        if developer is None:
            raise SeedError(f"request for unknown developer {r.developer!r}")
        store.add_request(
            developer,
            [resolve_policy(ref) for ref in r.policies],
            approved=r.approved,
            fields=r.fields,
            for_api=r.for_api,
            date_created=r.date_created,
            id=r.id,
            version=r.version,
        )


def _policy_resolver(store: Store) -> Callable[[str], str]:
    """Resolve a reference like the Dashboard's readers do: `_id`, then explicit `id`, then
    a name that only one policy has."""
    policies = store.policies()
    by_db_id = {p["_id"] for p in policies}
    by_id: dict[str, str] = {p["id"]: p["_id"] for p in policies if p["id"]}
    by_name: dict[str, list[str]] = {}
    for p in policies:
        by_name.setdefault(p["name"], []).append(p["_id"])

    def resolve(ref: str) -> str:
        if ref in by_db_id:
            return ref
        if ref in by_id:
            return by_id[ref]
        found = by_name.get(ref, [])
        if len(found) != 1:
            problem = "unknown" if not found else "ambiguous"
            raise SeedError(f"request names an {problem} policy {ref!r}")
        return found[0]

    return resolve


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'top level'}: {e['msg']}"
        for e in error.errors()
    )
