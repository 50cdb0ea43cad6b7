"""The manifest format (version 1) as strict pydantic models.

Strict mode: no coercion at all, so `ticket: 42` or `approved: "yes"` are errors rather
than silently becoming "42" or True. These models also produce the published JSON Schema
(`tyksync schema`), so their docstrings and descriptions are user documentation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tyksync.models import RESERVED_PREFIX, Prune
from tyksync.timefmt import AGE_HELP, MOMENT_HELP, parse_age, parse_expiry

OWNER_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
# An email (checked loosely: the Dashboard decides who exists) or a 24-hex ObjectId.
DEVELOPER_PATTERN = r"^([0-9a-f]{24}|[^@\s]{1,64}@[^@\s]{1,255})$"


def _not_reserved(key: str) -> str:
    if key.startswith(RESERVED_PREFIX):
        raise PydanticCustomError(
            "reserved_field",
            "field keys starting with '{prefix}' are reserved for tyksync",
            {"prefix": RESERVED_PREFIX},
        )
    return key


FieldKey = Annotated[
    str, StringConstraints(min_length=1, max_length=256), AfterValidator(_not_reserved)
]
Fields = Annotated[
    dict[FieldKey, str],
    Field(
        description="Key request fields (string to string). Keys starting with "
        f"'{RESERVED_PREFIX}' are reserved.",
        json_schema_extra={"propertyNames": {"not": {"pattern": f"^{RESERVED_PREFIX}"}}},
    ),
]


def _expiry(text: str) -> str:
    try:
        parse_expiry(text)
    except ValueError as e:
        raise PydanticCustomError("expires_format", "must be {form}", {"form": str(e)}) from None
    return text


def _age(text: str) -> str:
    try:
        parse_age(text)
    except ValueError:
        raise PydanticCustomError("age_format", "must be {form}", {"form": AGE_HELP}) from None
    return text


_EXPIRES_PATTERN = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2}))?$"
Expires = Annotated[
    str,
    AfterValidator(_expiry),
    Field(
        description=f"From this moment on the request counts as undeclared: {MOMENT_HELP}; "
        "a date means the end of that day, UTC.",
        json_schema_extra={"pattern": _EXPIRES_PATTERN},
    ),
]
Age = Annotated[
    str,
    AfterValidator(_age),
    Field(json_schema_extra={"pattern": r"^[1-9][0-9]{0,5}[hdw]$"}),
]
# A policy as written: its name, explicit `id` or `_id` (resolved later, against live state).
PolicyName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
DeveloperRef = Annotated[str, StringConstraints(pattern=DEVELOPER_PATTERN)]
Owner = Annotated[str, StringConstraints(pattern=OWNER_PATTERN)]
# An environment of tyksync.toml (the same names `tyksync.config` accepts).
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
EnvironmentName = Annotated[str, StringConstraints(pattern=ENVIRONMENT_PATTERN)]


def _unique_environments(names: list[str] | None) -> list[str] | None:
    if names is not None and len(set(names)) != len(names):
        raise PydanticCustomError(
            "duplicate_environment", "'environments' names the same environment twice"
        )
    return names


Environments = Annotated[
    list[EnvironmentName],
    Field(
        min_length=1,
        description="Only in these environments of tyksync.toml (default: all).",
        json_schema_extra={"uniqueItems": True},
    ),
    AfterValidator(_unique_environments),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Defaults(_Strict):
    """Defaults for every request of this file."""

    approved: bool = Field(
        default=True, description="Approve requests (issue keys) unless a request says otherwise."
    )
    fields: Fields = Field(default_factory=dict)


class RequestDecl(_Strict):
    """One key request: exactly one of `plan` or `plans`."""

    plan: PolicyName | None = Field(
        default=None, description="A policy's name, explicit `id` or `_id`."
    )
    plans: Annotated[list[PolicyName], Field(min_length=1)] | None = Field(
        default=None,
        description="Several policies for one request (apply_policies); the first is for_plan.",
    )
    approved: bool | None = Field(
        default=None, description="Approve this request (issue a key); default from `defaults`."
    )
    fields: Fields | None = None
    environments: Environments | None = Field(
        default=None,
        description="Only in these environments of tyksync.toml (within the file's own "
        "`environments`); default: the file's.",
    )
    expires: Expires | None = None

    @field_validator("plans")
    @classmethod
    def _unique(cls, plans: list[str] | None) -> list[str] | None:
        if plans is not None and len(set(plans)) != len(plans):
            raise PydanticCustomError("duplicate_plan", "'plans' names the same policy twice")
        return plans

    @model_validator(mode="after")
    def _one_of_plan_plans(self) -> RequestDecl:
        if (self.plan is None) == (self.plans is None):
            raise PydanticCustomError(
                "plan_or_plans", "a request needs exactly one of 'plan' or 'plans'"
            )
        return self

    @property
    def policy_refs(self) -> tuple[str, ...]:
        if self.plans is not None:
            return tuple(self.plans)
        assert self.plan is not None  # guaranteed by _one_of_plan_plans
        return (self.plan,)


class ManifestDoc(_Strict):
    """A tyksync manifest: the key requests one owner manages."""

    version: Literal[1] = Field(description="Manifest format version; must be 1.")
    owner: Owner = Field(
        description="Names the set of requests this file manages (stored in "
        "fields.tyksync_owner). Letters, digits, '.', '_' and '-', up to 64."
    )
    prune: Prune = Field(
        default="owned",
        description="Which undeclared live requests to delete: those carrying this owner "
        "('owned'), those of the developers listed here ('developers'), or none.",
    )
    revoke: bool = Field(
        default=False,
        description="Deleting an approved request (undeclared, duplicate, expired, or the old "
        "half of a --reissue replace) also revokes the key it issued, when the developer's "
        "record tells that key apart.",
    )
    reject_pending_after: Age | None = Field(
        default=None,
        description="Delete undeclared pending requests of the developers listed here once "
        f"they are older than this: {AGE_HELP}.",
    )
    defaults: Defaults | None = None
    environments: Environments | None = Field(
        default=None,
        description="Only in these environments of tyksync.toml (`--env NAME`); default: all.",
    )
    developers: dict[DeveloperRef, list[RequestDecl]] = Field(
        description="Developer email or 24-hex developer id -> that developer's requests. "
        "An empty list declares that the developer holds no request of this owner."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _exactly_int_one(cls, value: Any) -> Any:
        # Literal[1] alone accepts `true` and `1.0`, since both compare equal to 1.
        if type(value) is not int:
            raise PydanticCustomError("version_type", "must be the integer 1")
        return value
