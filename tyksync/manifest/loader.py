"""Find, read and check every manifest file of a run; report all problems at once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, get_args

import msgspec

from tyksync.errors import ManifestError, Problem
from tyksync.gcpause import collector_paused
from tyksync.manifest.discovery import find_manifest_files
from tyksync.manifest.model import ENVIRONMENT_PATTERN, OWNER_PATTERN, ManifestDoc
from tyksync.manifest.validate import validate_doc
from tyksync.manifest.yamlload import YamlDoc, YamlPath, read_yaml_file
from tyksync.models import RESERVED_PREFIX, Prune
from tyksync.timefmt import parse_age, parse_expiry


class DeclaredRequest(msgspec.Struct, frozen=True, gc=False):
    """One declared request (100k at scale: a Struct, as `models.KeyRequest` is)."""

    developer: str  # reference as written (email or id)
    plans: tuple[str, ...]  # policy references as written, declared order
    approved: bool  # the request's, else the defaults', else True
    fields: Mapping[str, str]  # defaults.fields overlaid with the request's fields
    owner: str
    file: str
    line: int
    # The environments of tyksync.toml this request is in: its own `environments`, else
    # its file's; None: all of them.
    environments: frozenset[str] | None = None
    environments_line: int = 0  # where they are written (FILE:LINE of a typo)
    expires: str | None = None  # as written: a date or an RFC 3339 time (checked)

    @property
    def textual_identity(self) -> tuple[str, frozenset[str]]:
        """Identity before resolution: emails compare case-insensitively."""
        return (self.developer.lower(), frozenset(self.plans))

    def in_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments


@dataclass(frozen=True, slots=True)  # 20k of them at 100k requests
class DeclaredDeveloper:
    """Every key under `developers:`, so that `bob: []` is kept (it matters for pruning)."""

    ref: str
    file: str
    line: int


@dataclass(frozen=True)
class ManifestFile:
    path: str
    owner: str
    prune: Prune
    developers: tuple[DeclaredDeveloper, ...]
    requests: tuple[DeclaredRequest, ...]
    sha256: str = ""  # of the file's bytes
    environments: frozenset[str] | None = None  # the file's `environments`; None: all
    environments_line: int = 0

    def in_environment(self, name: str) -> bool:
        return self.environments is None or name in self.environments

    revoke: bool = False
    reject_pending_after: str | None = None  # as written (`30d`; checked)


@dataclass(frozen=True)
class Manifests:
    files: tuple[ManifestFile, ...]

    @property
    def requests(self) -> tuple[DeclaredRequest, ...]:
        return tuple(r for f in self.files for r in f.requests)

    def to_data(self) -> dict[str, Any]:
        """Canonical plain data, for fingerprinting saved plans.

        Each file's bytes are in it through their digest: any edit, a comment included,
        makes a saved plan stale (SPEC section 9). Paths are kept as given.
        """
        return {
            "files": [
                {
                    "path": f.path,
                    "sha256": f.sha256,
                    "owner": f.owner,
                    "prune": f.prune,
                    "developers": [d.ref for d in f.developers],
                    "requests": [
                        {
                            "developer": r.developer,
                            "plans": list(r.plans),
                            "approved": r.approved,
                            "fields": dict(sorted(r.fields.items())),
                        }
                        for r in f.requests
                    ],
                }
                for f in self.files
            ]
        }


def load_manifests(paths: Sequence[str | Path]) -> Manifests:
    """Read every manifest under `paths`; raise one ManifestError with every problem."""
    problems: list[Problem] = []
    files = find_manifest_files(paths, problems)
    loaded: list[ManifestFile] = []
    shared: dict[Any, Any] = {}
    with collector_paused():
        for display, path in files:
            declared = _load(path, display, problems, shared)
            if declared is not None:
                problems.extend(_environments_outside_file(declared))
                loaded.append(declared)
        problems.extend(_identities_declared_twice(loaded))
    if problems:
        raise ManifestError(problems)
    return Manifests(tuple(loaded))


def _load(
    path: Path, display: str, problems: list[Problem], shared: dict[Any, Any]
) -> ManifestFile | None:
    """One file's declarations, or None after adding its problems. Its YAML document is
    dropped on return: only the declarations stay."""
    doc, found = read_yaml_file(path, display)
    problems.extend(found)
    if doc is None:
        return None
    declared = _plain_declared(doc, display, shared)
    if declared is not None:
        return declared
    manifest, found = validate_doc(doc, display)
    problems.extend(found)
    return None if manifest is None else _declared(manifest, doc, display)


def _declared(manifest: ManifestDoc, doc: YamlDoc, file: str) -> ManifestFile:
    defaults_approved = manifest.defaults.approved if manifest.defaults else True
    defaults_fields = dict(manifest.defaults.fields) if manifest.defaults else {}
    file_environments = _environments(manifest.environments)
    file_environments_line = doc.line_of(("environments",)) if file_environments else 0
    developers: list[DeclaredDeveloper] = []
    requests: list[DeclaredRequest] = []
    for ref, decls in manifest.developers.items():
        developers.append(DeclaredDeveloper(ref, file, doc.line_of(("developers", ref))))
        for index, decl in enumerate(decls):
            fields = {**defaults_fields, **(decl.fields or {})}
            environments, environments_line = file_environments, file_environments_line
            if decl.environments is not None:
                environments = _environments(decl.environments)
                environments_line = doc.line_of(("developers", ref, index, "environments"))
            requests.append(
                DeclaredRequest(
                    developer=ref,
                    plans=decl.policy_refs,
                    approved=defaults_approved if decl.approved is None else decl.approved,
                    fields=MappingProxyType(fields),
                    owner=manifest.owner,
                    file=file,
                    line=doc.line_of(("developers", ref, index)),
                    environments=environments,
                    environments_line=environments_line,
                    expires=decl.expires,
                )
            )
    return ManifestFile(
        path=file,
        owner=manifest.owner,
        prune=manifest.prune,
        developers=tuple(developers),
        requests=tuple(requests),
        sha256=doc.sha256,
        environments=file_environments,
        environments_line=file_environments_line,
        revoke=manifest.revoke,
        reject_pending_after=manifest.reject_pending_after,
    )


# `_plain_declared` reads what the models (tyksync/manifest/model.py) accept, in plain
# Python; the patterns are the models' own, the developer's for printable ASCII only
# (beyond it, what `\s` matches is up to pydantic's regex dialect: pydantic decides).
_FILE_KEYS = frozenset(
    {"version", "owner", "prune", "revoke", "reject_pending_after", "defaults"}
    | {"environments", "developers"}
)
_REQUIRED_KEYS = frozenset({"version", "owner", "developers"})
_DEFAULTS_KEYS = frozenset({"approved", "fields"})
_PRUNES: dict[Any, Prune] = {prune: prune for prune in get_args(Prune)}


def _whole(pattern: str) -> Callable[[str], object]:
    """Pydantic's `^...$` (Rust: `$` is the end), with `fullmatch` (Python's `$` would
    also match before a final newline)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$")).fullmatch


_OWNER = _whole(OWNER_PATTERN)
_DEVELOPER = _whole(r"[0-9a-f]{24}|[!-?A-~]{1,64}@[!-?A-~]{1,255}")
_ENVIRONMENT = _whole(ENVIRONMENT_PATTERN)
_MAX_NAME = 256  # a policy name's, a field key's


def _plain_declared(doc: YamlDoc, file: str, shared: dict[Any, Any]) -> ManifestFile | None:
    """What `_declared(validate_doc(doc))` gives, for a document that the models take
    without a problem and this reads whole; None for any other, which goes through
    pydantic and gets its messages. It spares 100k requests pydantic's model objects.

    `shared`: one object for each distinct policy list and line number, across the run
    (100k requests hold them)."""
    data = doc.data
    # Without nulls (every null is a problem), a key that `get` finds None is absent.
    if doc.nulls is None or doc.nulls or doc.refused or data.__class__ is not dict:
        return None
    if not _REQUIRED_KEYS <= data.keys() <= _FILE_KEYS:
        return None
    owner, version = data["owner"], data["version"]
    prune = data.get("prune", "owned")
    prune = _PRUNES.get(prune) if prune.__class__ is str else None
    revoke = data.get("revoke", False)
    reject = data.get("reject_pending_after")
    if (
        version.__class__ is not int
        or version != 1
        or owner.__class__ is not str
        or not _OWNER(owner)
        or prune is None
        or revoke.__class__ is not bool
        or (reject is not None and not _is(parse_age, reject))
    ):
        return None
    # Field keys found valid: the same few in every request.
    field_keys: set[str] = set()
    defaults = data.get("defaults", {})
    if defaults.__class__ is not dict or not defaults.keys() <= _DEFAULTS_KEYS:
        return None
    defaults_approved = defaults.get("approved", True)
    defaults_fields: dict[str, str] = defaults.get("fields", {})
    if defaults_approved.__class__ is not bool or not _are_fields(defaults_fields, field_keys):
        return None
    file_environments, file_environments_line = None, 0
    if "environments" in data:
        file_environments = _environment_set(data["environments"])
        if file_environments is None:
            return None
        file_environments_line = doc.line_of(("environments",))
    developers_data = data["developers"]
    if developers_data.__class__ is not dict:
        return None
    # Requests without fields of their own share one mapping.
    defaults_only = MappingProxyType(dict(defaults_fields))
    lines = doc.lines
    developers: list[DeclaredDeveloper] = []
    requests: list[DeclaredRequest] = []
    for ref, decls in developers_data.items():
        if not _DEVELOPER(ref) or decls.__class__ is not list:
            return None
        path: YamlPath = ("developers", ref)
        line = lines.get(path) or doc.line_of(path)
        developers.append(DeclaredDeveloper(ref, file, shared.setdefault(line, line)))
        for index, decl in enumerate(decls):
            if decl.__class__ is not dict:
                return None
            plan = decl.get("plan")
            if plan is None:
                policy_refs = _policy_list(decl.get("plans"), shared)
                if policy_refs is None:
                    return None
            elif plan.__class__ is not str or not 0 < len(plan) <= _MAX_NAME:
                return None
            else:
                policy_refs = shared.get(plan) or shared.setdefault(plan, (plan,))
            approved = decl.get("approved")
            own = decl.get("fields")
            if own is None:
                fields = defaults_only
            elif own.__class__ is dict:
                for key, value in own.items():
                    if value.__class__ is not str or not (
                        key in field_keys or _is_field_key(key, field_keys)
                    ):
                        return None
                # The document's own mapping: nothing else holds it once loading ends.
                fields = MappingProxyType({**defaults_fields, **own} if defaults_fields else own)
            else:
                return None
            environments, environments_line = file_environments, file_environments_line
            names = decl.get("environments")
            if names is not None:
                environments = _environment_set(names)
                path = ("developers", ref, index, "environments")
                environments_line = lines.get(path) or doc.line_of(path)
            expires = decl.get("expires")
            # No key but those read here, and not both `plan` and `plans` (without nulls,
            # every key that `get` found is not None).
            known = 1 + (approved is not None) + (own is not None) + (names is not None)
            if approved is None:
                approved = defaults_approved
            if (
                len(decl) != known + (expires is not None)
                or approved.__class__ is not bool
                or (names is not None and environments is None)
                or (expires is not None and not _is(parse_expiry, expires))
            ):
                return None
            path = ("developers", ref, index)
            line = lines.get(path) or doc.line_of(path)
            request = DeclaredRequest(
                ref,
                policy_refs,
                approved,
                fields,
                owner,
                file,
                shared.setdefault(line, line),
                environments,
                environments_line,
                expires,
            )
            requests.append(request)
    return ManifestFile(
        path=file,
        owner=owner,
        prune=prune,
        developers=tuple(developers),
        requests=tuple(requests),
        sha256=doc.sha256,
        environments=file_environments,
        environments_line=file_environments_line,
        revoke=revoke,
        reject_pending_after=reject,
    )


def _is(parse: Callable[[str], object], value: Any) -> bool:
    """`value` is a string that `parse` takes (the models' AfterValidators run it)."""
    if value.__class__ is not str:
        return False
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _are_fields(fields: Any, valid_keys: set[str]) -> bool:
    """The models' `Fields`: strings to strings, keys 1 to 256 long and not reserved.
    `valid_keys`: keys found valid already (strings all), added to."""
    return fields.__class__ is dict and all(
        value.__class__ is str and (key in valid_keys or _is_field_key(key, valid_keys))
        for key, value in fields.items()
    )


def _is_field_key(key: Any, valid_keys: set[str]) -> bool:
    if key.__class__ is not str or not 0 < len(key) <= _MAX_NAME or key.startswith(RESERVED_PREFIX):
        return False
    valid_keys.add(key)
    return True


def _policy_list(names: Any, shared: dict[Any, Any]) -> tuple[str, ...] | None:
    """The models' `plans`, as a tuple from `shared`; None: not that."""
    if names.__class__ is not list or not names:
        return None
    for name in names:
        if name.__class__ is not str or not 0 < len(name) <= _MAX_NAME:
            return None
    found = tuple(names)
    if len(set(found)) != len(found):
        return None
    interned: tuple[str, ...] = shared.setdefault(found, found)
    return interned


def _environment_set(names: Any) -> frozenset[str] | None:
    """The models' `Environments`, as `_environments` keeps them; None: not that."""
    if (
        names.__class__ is not list
        or not names
        or not all(n.__class__ is str and _ENVIRONMENT(n) for n in names)
    ):
        return None
    found = frozenset(names)
    return found if len(found) == len(names) else None


def _environments(names: list[str] | None) -> frozenset[str] | None:
    return None if names is None else frozenset(names)


def _environments_outside_file(manifest: ManifestFile) -> list[Problem]:
    """A request limited to environments its file is not in would never apply: a slip."""
    if manifest.environments is None:
        return []
    problems = []
    for request in manifest.requests:
        assert request.environments is not None  # the file's, at least
        outside = sorted(request.environments - manifest.environments)
        if outside:
            problems.append(
                Problem(
                    manifest.path,
                    request.environments_line,
                    f"environments: {', '.join(outside)} not in this file's environments "
                    f"({', '.join(sorted(manifest.environments))}, line "
                    f"{manifest.environments_line})",
                )
            )
    return problems


def _identities_declared_twice(files: Sequence[ManifestFile]) -> list[Problem]:
    """Same developer reference and same set of policy references, anywhere in the run.

    Checked on the text, so that `validate` catches it offline; `resolve` checks again
    after resolution, where `Gold` and its `_id` turn out to be the same policy.
    """
    # textual_identity, taken apart: by developer (their requests come one after another),
    # then by policies, a set of one keyed by its name (a string never equals a frozenset).
    # Values: the first request of an identity, or all of them once there are several.
    seen: dict[str, dict[Any, Any]] = {}
    problems: list[Problem] = []
    developer: str | None = None
    mine: dict[Any, Any] = {}
    for request in (r for f in files for r in f.requests):
        if request.developer is not developer:
            developer = request.developer
            lowered = developer.lower()
            mine = seen.setdefault(developer if lowered == developer else lowered, {})
        names: Any = request.plans
        if len(names) == 1:
            names = names[0]
        else:
            names = frozenset(names)
            if len(names) == 1:
                (names,) = names
        earlier = mine.setdefault(names, request)
        if earlier is request:
            continue
        if earlier.__class__ is not list:
            earlier = mine[names] = [earlier]
        # Declarations for environments that do not meet (`environments: [staging]` and
        # `environments: [prod]`) never plan together: each environment sees one of them.
        clash = next((e for e in earlier if _meet(e.environments, request.environments)), None)
        if clash is not None:
            problems.append(declared_twice(request, clash, request.developer, request.plans))
        earlier.append(request)
    return problems


def _meet(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is None or b is None or bool(a & b)


class Located(Protocol):
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...


def declared_twice(
    request: Located, earlier: Located, developer: str, policies: Iterable[str]
) -> Problem:
    """The problem for a request whose identity `earlier` already declared."""
    where = f"{earlier.file}:{earlier.line}"
    names = ", ".join(sorted(policies))
    return Problem(
        request.file,
        request.line,
        f"request for developer '{developer}' with policies [{names}] declared twice: "
        f"here and at {where}",
    )
