"""The loader's plain path (`loader._plain_declared`, no pydantic) gives exactly what the
models and `_declared` give, wherever it answers; anything it does not take whole goes
to pydantic, for its messages. And the duplicate check and the request factory it uses
agree with what they stand for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tyksync.errors import ManifestError, Problem
from tyksync.manifest import loader
from tyksync.manifest.loader import DeclaredRequest, ManifestFile, Manifests, load_manifests
from tyksync.manifest.validate import validate_doc
from tyksync.manifest.yamlload import YamlDoc, parse_yaml, parse_yaml_strict

# Valid manifests, as people write them...
EMAILS = st.sampled_from(
    ["alice@example.com", "Alice@Example.com", "bob@example.com", "0123456789abcdef01234567"]
)
NAMES = st.sampled_from(["Gold", "Silver", "Plan 07", "x" * 256])
FIELDS = st.dictionaries(
    st.sampled_from(["ticket", "team", "k" * 256]), st.sampled_from(["OPS-1", ""])
)
ENVIRONMENTS = st.lists(st.sampled_from(["staging", "prod", "a" * 64]), min_size=1, unique=True)
REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "approved": st.booleans(),
        "fields": FIELDS,
        "environments": ENVIRONMENTS,
        "expires": st.sampled_from(["2027-01-31", "2027-01-31T12:00:00Z"]),
    },
).flatmap(
    lambda request: st.one_of(
        NAMES.map(lambda name: {"plan": name, **request}),
        st.lists(NAMES, min_size=1, max_size=3, unique=True).map(
            lambda names: {"plans": names, **request}
        ),
    )
)
VALID_MANIFEST = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "owner": st.sampled_from(["team-a", "a" * 64]),
        "developers": st.dictionaries(EMAILS, st.lists(REQUEST, max_size=3), max_size=3),
    },
    optional={
        "prune": st.sampled_from(["owned", "developers", "none"]),
        "revoke": st.booleans(),
        "reject_pending_after": st.sampled_from(["30d", "12h", "999999w"]),
        "defaults": st.fixed_dictionaries(
            {}, optional={"approved": st.booleans(), "fields": FIELDS}
        ),
        "environments": ENVIRONMENTS,
    },
)
# ... and values at the edges of what the models take, put anywhere in one: lengths,
# patterns (`$` before a newline, whitespace that is ASCII or not), types that strict
# mode refuses, dates and durations that do not exist, names that repeat.
EDGES = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        1,
        1.5,
        "",
        "x" * 257,
        "é",
        "yes",
        "Owned",
        "t a",
        "t\n",
        "tyksync_owner",
        "2027-02-30",
        "2027-01-31\n",
        "soon",
        "0d",
        "1000000d",
        "30d\n",
        "-x",
        [],
        {},
        ["Gold", "Gold"],
        ["staging", "staging"],
        ["a" * 65],
        [1],
        {"a": "b"},
        {"tyksync_x": "y"},
        {"": "y"},
        {"t": 1},
    ]
)
EDGE_KEYS = st.sampled_from(
    [
        "0123456789ABCDEF01234567",
        "a b@c.d",
        "a@b@c",
        "x\u00a0y@z.w",
        "x\x1cy@z.w",
        "é@x.y",
        "@x",
        "x@",
        "a" * 64 + "@x",
        "a" * 65 + "@x",
        "x@" + "b" * 255,
        "x@" + "b" * 256,
        "a@b.c\n",
        "plan",
        "plans",
        "aproved",
        "tyksync_owner",
        "k" * 257,
        "",
    ]
)


def positions(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in `data`."""
    found: list[tuple[Any, Any]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            found.append((data, key))
            found.extend(positions(value))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.append((data, index))
            found.extend(positions(value))
    return found


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    data = draw(VALID_MANIFEST)
    for _ in range(draw(st.integers(0, 2))):
        where = positions(data)
        if not where:
            break
        container, key = draw(st.sampled_from(where))
        change = draw(st.sampled_from(["value", "value", "key", "drop"]))
        if change == "value":
            container[key] = copy.deepcopy(draw(EDGES))
        elif change == "drop":
            del container[key]
        elif isinstance(container, dict):
            container[draw(EDGE_KEYS)] = container.pop(key)
    return data


def through_pydantic(doc: YamlDoc) -> ManifestFile | None:
    manifest, _ = validate_doc(doc, "m.yaml")
    return None if manifest is None else loader._declared(manifest, doc, "m.yaml")


def check(doc: YamlDoc) -> bool:
    """The plain path's answer is pydantic's; False: it did not answer."""
    plain = loader._plain_declared(doc, "m.yaml", {})
    if plain is None:
        return False
    assert plain == through_pydantic(doc)
    return True


@settings(max_examples=1500, deadline=None)
@given(manifests(), st.sampled_from([False, None]))
def test_the_plain_path_agrees_with_the_models(data: dict[str, Any], flow: bool | None) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=flow)
    strict, _ = parse_yaml_strict(text, "m.yaml")
    assert strict is not None
    check(strict)
    # The same through the fast reader, which records fewer lines.
    doc, _ = parse_yaml(text, "m.yaml")
    assert doc is not None
    check(doc)


VALID = """\
version: 1
owner: payments
prune: developers
revoke: true
reject_pending_after: 30d
defaults:
  approved: false
  fields: {cost-centre: cc-1}
environments: [staging, prod]
developers:
  alice@example.com:
    - plan: Gold
      fields: {ticket: OPS-1, cost-centre: cc-2}
    - plans: [Gold, Reports]
      approved: true
      environments: [prod]
      expires: 2027-01-31
  0123456789abcdef01234567: []
  bob@example.com:
    - plan: Silver
"""


def test_the_plain_path_answers_for_a_valid_manifest() -> None:
    doc, problems = parse_yaml(VALID, "m.yaml")
    assert doc is not None and problems == []
    assert doc.text is not None  # the fast reader's document
    assert check(doc)
    strict, _ = parse_yaml_strict(VALID, "m.yaml")
    assert strict is not None and check(strict)


def test_requests_without_fields_share_one_mapping() -> None:
    doc, _ = parse_yaml(VALID, "m.yaml")
    assert doc is not None
    plain = loader._plain_declared(doc, "m.yaml", {})
    assert plain is not None
    second, third = plain.requests[1], plain.requests[2]
    assert second.fields is third.fields
    assert dict(second.fields) == {"cost-centre": "cc-1"}


def write_pair(folder: Path) -> list[Path]:
    folder.mkdir()
    (folder / "a.yaml").write_text(VALID)
    (folder / "b.yaml").write_text(
        VALID.replace("owner: payments", "owner: other").replace("alice@", "ALICE@")
    )
    return [folder]


def test_load_manifests_is_the_same_without_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_pair(tmp_path / "m")
    with pytest.raises(ManifestError) as fast:
        load_manifests(paths)
    monkeypatch.setattr(loader, "_plain_declared", lambda *args: None)
    with pytest.raises(ManifestError) as slow:
        load_manifests(paths)
    assert fast.value.problems == slow.value.problems
    assert any("declared twice" in p.message for p in fast.value.problems)


def test_load_manifests_gives_the_same_manifests_without_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(VALID)
    (folder / "b.yaml").write_text(VALID.replace("owner: payments", "owner: b").replace("@", "2@"))
    fast = load_manifests([folder])
    monkeypatch.setattr(loader, "_plain_declared", lambda *args: None)
    slow = load_manifests([folder])
    assert fast == slow
    assert fast.to_data() == slow.to_data()


# -- the duplicate check -------------------------------------------------------------------


def declared_twice_reference(files: list[ManifestFile]) -> list[Problem]:
    """The check as it was first written: on `textual_identity`, a list per identity."""
    seen: dict[tuple[str, frozenset[str]], list[DeclaredRequest]] = {}
    problems: list[Problem] = []
    for request in (r for f in files for r in f.requests):
        earlier = seen.setdefault(request.textual_identity, [])
        clash = next(
            (e for e in earlier if loader._meet(e.environments, request.environments)), None
        )
        if clash is not None:
            problems.append(loader.declared_twice(request, clash, request.developer, request.plans))
        earlier.append(request)
    return problems


DECLARED = st.builds(
    DeclaredRequest,
    developer=st.sampled_from(["a@x.y", "A@x.y", "b@x.y"]),
    plans=st.lists(st.sampled_from(["G", "S", "R"]), min_size=1, max_size=3, unique=True).map(
        tuple
    ),
    approved=st.just(True),
    fields=st.just({}),
    owner=st.just("o"),
    file=st.sampled_from(["a.yaml", "b.yaml"]),
    line=st.integers(1, 50),
    environments=st.none() | st.frozensets(st.sampled_from(["s", "p"]), min_size=1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(DECLARED, max_size=8), max_size=3))
def test_the_duplicate_check_is_the_textual_identity_check(requests: list[list[Any]]) -> None:
    files = [
        ManifestFile(path="f", owner="o", prune="owned", developers=(), requests=tuple(r))
        for r in requests
    ]
    assert loader._identities_declared_twice(files) == declared_twice_reference(files)
    assert Manifests(tuple(files)).requests == tuple(r for rs in requests for r in rs)
