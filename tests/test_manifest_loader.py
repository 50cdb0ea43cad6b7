"""Loading manifests: strict YAML, the format's rules, FILE:LINE errors, all at once."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from tyksync.errors import ManifestError, Problem
from tyksync.manifest import (
    DeclaredDeveloper,
    ManifestDoc,
    Manifests,
    load_manifests,
    manifest_json_schema,
    yamlload,
)
from tyksync.manifest.yamlload import MAX_FILE_BYTES

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"
INVALID = FIXTURES / "invalid"
VALID = FIXTURES / "valid"


def problems_of(*paths: str | Path) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_manifests(list(paths))
    return caught.value.problems


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


MANIFEST = """\
version: 1
owner: {owner}
developers:
  alice@example.com:
    - plan: Gold
"""

# (fixture, line, fragment of the message): one fixture per failure mode.
INVALID_CASES = [
    ("alias.yaml", 6, 'bob@example.com": YAML aliases (*name) are not allowed'),
    ("alias.yaml", 4, "YAML anchors (&name) are not allowed"),
    ("anchor_merge.yaml", 6, "YAML merge keys (<<) are not allowed"),
    ("duplicate_key.yaml", 6, "duplicate key 'owner' (first at line 2)"),
    ("python_tag.yaml", 5, "YAML tag '!!python/object/apply:os.system' is not allowed"),
    ("custom_tag.yaml", 5, "YAML tag '!Ref' is not allowed"),
    ("yes_boolean.yaml", 6, "approved: must be true or false, got a string"),
    ("octal.yaml", 6, "fields.ticket: ambiguous number-like value"),
    ("sexagesimal.yaml", 7, "fields.window: ambiguous number-like value"),
    ("underscore_number.yaml", 6, "fields.budget: ambiguous number-like value"),
    ("int_field.yaml", 6, "fields.ticket: must be a string, got an integer; quote it"),
    ("float_field.yaml", 6, "fields.ratio: must be a string, got a number"),
    ("list_fields.yaml", 6, "fields: must be a mapping, got a list"),
    (
        "unknown_key.yaml",
        6,
        "unknown key 'aproved' (allowed: plan, plans, approved, fields, environments, expires)",
    ),
    ("defaults_unknown.yaml", 4, "defaults: unknown key 'approve' (allowed: approved, fields)"),
    ("reserved_field.yaml", 7, "fields.tyksync_owner: field keys starting with 'tyksync_'"),
    ("missing_version.yaml", 2, "missing required key 'version'"),
    ("missing_developers.yaml", 1, "missing required key 'developers'"),
    ("bad_version.yaml", 1, "version: must be 1"),
    ("bool_version.yaml", 1, "version: must be the integer 1"),
    ("plan_and_plans.yaml", 5, "exactly one of 'plan' or 'plans'"),
    ("neither_plan.yaml", 5, "exactly one of 'plan' or 'plans'"),
    ("empty_plans.yaml", 5, "plans: must not be empty"),
    ("duplicate_plans.yaml", 5, "'plans' names the same policy twice"),
    ("empty.yaml", 1, "empty manifest: expected a mapping with version, owner, developers"),
    ("comments_only.yaml", 1, "empty manifest"),
    ("non_utf8.yaml", 4, "not valid UTF-8 text"),
    ("control_char.yaml", 6, "invalid YAML"),
    ("deep_nesting.yaml", 6, "nested too deeply (more than 32 levels)"),
    ("identity_twice.yaml", 6, "declared twice: here and at "),
    ("bad_prune.yaml", 3, "prune: must be 'owned', 'developers' or 'none'"),
    ("bad_developer_key.yaml", 4, "a developer key must be an email or a 24-hex developer id"),
    ("int_developer_key.yaml", 4, "mapping keys must be strings, got an integer; quote the key"),
    ("int_plan.yaml", 5, "plan: must be a string, got an integer"),
    ("bad_owner.yaml", 2, "owner: must be 1 to 64 letters, digits"),
    ("null_value.yaml", 6, "approved: has no value (null)"),
    ("null_developer.yaml", 4, "has no value (null)"),
    ("multi_doc.yaml", 5, "a second YAML document"),
    ("not_mapping.yaml", 1, "a manifest must be a mapping with version, owner, developers"),
    ("syntax_error.yaml", 6, "invalid YAML: while parsing a flow sequence"),
]


@pytest.mark.parametrize(("fixture", "line", "fragment"), INVALID_CASES)
def test_invalid_fixture(fixture: str, line: int, fragment: str) -> None:
    path = INVALID / fixture
    problems = problems_of(path)
    located = [p for p in problems if p.file == str(path) and p.line == line]
    assert any(fragment in p.message for p in located), "\n".join(map(str, problems))


def test_every_invalid_fixture_has_a_case() -> None:
    covered = {case[0] for case in INVALID_CASES}
    assert covered == {p.name for p in INVALID.iterdir()}


def test_error_text_is_file_colon_line() -> None:
    path = INVALID / "int_field.yaml"
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert f'{path}:6: developers."alice@example.com"[0].fields.ticket: must be' in str(
        caught.value
    )


def test_identity_twice_names_both_lines() -> None:
    path = INVALID / "identity_twice.yaml"
    (problem,) = problems_of(path)
    assert problem.line == 6
    assert problem.message.endswith(f"declared twice: here and at {path}:5")
    assert "alice@example.com" in problem.message and "[Gold]" in problem.message


def test_yaml_and_schema_problems_of_one_file_come_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.yaml",
        "version: 1\nowner: team\ndevelopers:\n  alice@example.com:\n"
        "    - plan: Gold\n      fields: {a: 0755, b: 42}\n      approved: maybe\n",
    )
    found = {(p.line, p.message.split(": ", 1)[1][:20]) for p in problems_of(path)}
    assert found == {
        (6, "ambiguous number-lik"),
        (6, "must be a string, go"),
        (7, "must be true or fals"),
    }


def test_all_problems_of_all_files_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "version: 1\nowner: a\ndevelopers: {}\nextra: 1\n")
    second = write(
        tmp_path,
        "b/b.yaml",
        "version: 2\nowner: b\ndevelopers:\n  bob@example.com:\n    - plan: 7\n",
    )
    problems = problems_of(tmp_path)
    assert [(p.file, p.line) for p in problems] == [
        (str(first), 4),
        (str(second), 1),
        (str(second), 5),
    ]


def test_identity_twice_across_files_with_different_owners(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", MANIFEST.format(owner="one"))
    second = write(
        tmp_path,
        "b.yaml",
        "version: 1\nowner: two\ndevelopers:\n  ALICE@example.com:\n    - plans: [Gold]\n",
    )
    (problem,) = problems_of(tmp_path)
    assert (problem.file, problem.line) == (str(second), 5)
    assert f"declared twice: here and at {first}:5" in problem.message


def test_identity_twice_names_the_developer_and_the_sorted_policies(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.yaml",
        "version: 1\nowner: one\ndevelopers:\n  alice@example.com:\n    - plans: [Gold, Reports]\n",
    )
    second = write(
        tmp_path,
        "b.yaml",
        "version: 1\nowner: two\ndevelopers:\n  ALICE@example.com:\n    - plans: [Reports, Gold]\n",
    )
    (problem,) = problems_of(tmp_path)
    assert (problem.file, problem.line) == (str(second), 5)
    # The developer as written here, the policies sorted whatever order they were written.
    assert problem.message == (
        "request for developer 'ALICE@example.com' with policies [Gold, Reports] declared "
        f"twice: here and at {first}:5"
    )


def test_same_owner_in_two_files_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MANIFEST.format(owner="team"))
    write(tmp_path, "b.yaml", MANIFEST.format(owner="team").replace("Gold", "Silver"))
    manifests = load_manifests([tmp_path])
    assert [f.owner for f in manifests.files] == ["team", "team"]


def test_different_policy_sets_are_different_identities(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        "version: 1\nowner: t\ndevelopers:\n  a@x.io:\n"
        "    - plan: Gold\n    - plans: [Gold, Reports]\n    - plans: [Reports]\n",
    )
    assert len(load_manifests([tmp_path]).requests) == 3


def test_valid_folder() -> None:
    manifests = load_manifests([VALID])
    paths = [Path(f.path).relative_to(VALID).as_posix() for f in manifests.files]
    # Sorted, recursive, *.yml included, hidden folders and other suffixes skipped.
    assert paths == ["minimal.yml", "nested/quoting.yaml", "payments.yaml"]
    payments = manifests.files[2]
    assert payments.owner == "payments-team"
    assert payments.prune == "owned"
    assert payments.developers == (
        DeclaredDeveloper("alice@example.com", payments.path, 8),
        DeclaredDeveloper("bob@example.com", payments.path, 13),
    )
    gold, both = payments.requests
    assert (gold.developer, gold.plans, gold.approved, gold.line) == (
        "alice@example.com",
        ("Gold",),
        True,
        9,
    )
    assert dict(gold.fields) == {"cost-centre": "cc-7"}
    assert (both.plans, both.approved, both.line) == (("Gold", "Reports"), False, 10)
    assert dict(both.fields) == {"cost-centre": "cc-7", "ticket": "OPS-42"}
    assert both.owner == "payments-team" and both.file == payments.path


def test_quoted_lookalikes_stay_strings() -> None:
    manifests = load_manifests([VALID / "nested" / "quoting.yaml"])
    (quoting,) = manifests.files
    assert quoting.prune == "developers"
    first, second = quoting.requests
    assert first.developer == "64b000000000000000000001"
    assert first.plans == ("0755",)
    assert dict(first.fields) == {
        "window": "1:30",
        "budget": "1_000",
        "flag": "yes",
        "note": "12",
        "since": "2024-01-01",
        "empty": "",
        "multi": "first line\nsecond line\n",
    }
    assert second.plans == ("Reports", "64a0000000000000000000aa")


def test_request_fields_override_defaults(tmp_path: Path) -> None:
    write(
        tmp_path,
        "m.yaml",
        "version: 1\nowner: t\ndefaults:\n  approved: false\n  fields: {a: '1', b: '2'}\n"
        "developers:\n  a@x.io:\n    - plan: P\n      fields: {b: '3'}\n"
        "    - plan: Q\n      approved: true\n",
    )
    first, second = load_manifests([tmp_path]).requests
    assert (first.approved, dict(first.fields)) == (False, {"a": "1", "b": "3"})
    assert (second.approved, dict(second.fields)) == (True, {"a": "1", "b": "2"})


def test_declared_values_are_immutable() -> None:
    manifests = load_manifests([VALID / "payments.yaml"])
    with pytest.raises(TypeError):
        manifests.requests[0].fields["x"] = "y"  # type: ignore[index]


def test_to_data_is_plain_and_canonical() -> None:
    manifests = load_manifests([VALID / "payments.yaml"])
    data = manifests.to_data()
    assert json.loads(json.dumps(data)) == data
    (payments,) = data["files"]
    assert payments["requests"][1] == {
        "developer": "alice@example.com",
        "plans": ["Gold", "Reports"],
        "approved": False,
        "fields": {"cost-centre": "cc-7", "ticket": "OPS-42"},
    }
    assert payments["developers"] == ["alice@example.com", "bob@example.com"]


def test_to_data_holds_every_byte_comments_included(tmp_path: Path) -> None:
    # SPEC section 9: any edit to the manifests, a comment too, makes a saved plan stale.
    one = write(tmp_path, "one/m.yaml", MANIFEST.format(owner="t"))
    two = write(tmp_path, "two/m.yaml", MANIFEST.format(owner="t") + "# reviewed\n")
    first, second = load_manifests([one]).to_data(), load_manifests([two]).to_data()
    first["files"][0]["path"] = second["files"][0]["path"] = ""
    assert first != second
    first["files"][0]["sha256"] = second["files"][0]["sha256"] = ""
    assert first == second  # the declarations are the same: only the bytes differ


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    problems = problems_of(tmp_path / "nope.yaml", tmp_path / "empty")
    assert {(Path(p.file).name, p.message) for p in problems} == {
        ("nope.yaml", "no such file or folder"),
        ("empty", "no manifests (*.yaml, *.yml) in this folder"),
    }


def test_no_paths() -> None:
    (problem,) = problems_of()
    assert "no manifest paths given" in problem.message


def test_explicit_file_is_read_whatever_its_suffix(tmp_path: Path) -> None:
    path = write(tmp_path, "manifest.txt", MANIFEST.format(owner="t"))
    assert load_manifests([path]).files[0].path == str(path)


def test_a_file_given_twice_is_read_once(tmp_path: Path) -> None:
    path = write(tmp_path, "m.yaml", MANIFEST.format(owner="t"))
    assert len(load_manifests([path, tmp_path, str(path)]).files) == 1


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_ends(tmp_path: Path) -> None:
    # A loop is now a problem naming the link (SPEC 10), no longer silently cut short.
    write(tmp_path, "sub/m.yaml", MANIFEST.format(owner="t"))
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (problem,) = problems_of(tmp_path)
    assert problem.file == str(tmp_path / "sub" / "loop")
    assert "symbolic link loop" in problem.message


def test_file_over_the_size_limit_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    filler = "# " + "x" * 1000 + "\n"
    path.write_text(MANIFEST.format(owner="t") + filler * (2 * 1024 + 50), encoding="utf-8")
    assert path.stat().st_size > 2 * MAX_FILE_BYTES
    start = time.perf_counter()
    (problem,) = problems_of(path)
    assert time.perf_counter() - start < 0.5
    assert (problem.line, problem.message.split(" (")[0]) == (1, "file too large")


def test_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "bomb.yaml", "\n".join(rows) + "\n")
    start = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - start < 0.5
    assert any(p.line == 2 and "YAML aliases" in p.message for p in problems)


def test_no_message_repeats_an_input_value(tmp_path: Path) -> None:
    canary = "CANARY-VALUE-123"
    text = f"""\
version: 1
owner: team
prune: {canary}
defaults:
  approved: {canary}
developers:
  alice@example.com:
    - plan: [{canary}]
      approved: {canary}
      fields: {{ticket: [{canary}], other: {{x: {canary}}}}}
    - plans: {canary}
      plan: {canary}
"""
    path = write(tmp_path, "m.yaml", text)
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    assert len(caught.value.problems) >= 7
    assert canary not in str(caught.value)


def test_no_message_repeats_a_value_from_a_yaml_error(tmp_path: Path) -> None:
    canary = "CANARY-VALUE-123"
    path = write(tmp_path, "m.yaml", f"version: 1\nowner: '{canary}\n")
    assert canary not in str(problems_of(path))


def test_many_requests_load_fast(tmp_path: Path) -> None:
    for f in range(20):
        rows = ["version: 1", f"owner: team-{f}", "developers:"]
        for d in range(250):
            rows += [f"  dev{d}@team{f}.example:", "    - plan: Gold", "      fields: {a: b}"]
        write(tmp_path, f"m{f:02d}.yaml", "\n".join(rows) + "\n")
    start = time.perf_counter()
    manifests = load_manifests([tmp_path])
    assert time.perf_counter() - start < 2.0  # ~0.1s with libyaml; generous for CI
    assert isinstance(manifests, Manifests) and len(manifests.requests) == 5000


def test_json_schema() -> None:
    schema = manifest_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    assert set(schema["required"]) == {"version", "owner", "developers"}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["version"]["const"] == 1
    request = schema["$defs"]["RequestDecl"]
    assert request["additionalProperties"] is False
    assert request["properties"]["approved"] == {
        "type": "boolean",
        "description": request["properties"]["approved"]["description"],
        "title": "Approved",
    }
    assert json.loads(json.dumps(schema)) == schema
    assert ManifestDoc.model_json_schema()  # the model itself stays usable


@pytest.mark.parametrize(("fixture", "line", "fragment"), INVALID_CASES)
def test_invalid_fixture_with_the_pure_python_parser(
    monkeypatch: pytest.MonkeyPatch, fixture: str, line: int, fragment: str
) -> None:
    # Without libyaml, tyksync falls back to PyYAML's own parser: same rules, same lines.
    monkeypatch.setattr(yamlload, "_Loader", yaml.SafeLoader)
    test_invalid_fixture(fixture, line, fragment)


def test_valid_folder_with_the_pure_python_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    with_libyaml = load_manifests([VALID])
    monkeypatch.setattr(yamlload, "_Loader", yaml.SafeLoader)
    assert load_manifests([VALID]) == with_libyaml


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        (".inf", float("inf")),
        ("-.INF", float("-inf")),
        # YAML 1.1 booleans, dates and the like stay strings.
        ("yes", "yes"),
        ("No", "No"),
        ("on", "on"),
        ("True", "True"),
        ("y", "y"),
        ("2024-01-01", "2024-01-01"),
        ("1.2.3", "1.2.3"),
        ("nan", "nan"),
    ],
)
def test_plain_scalars(text: str, expected: object) -> None:
    doc, problems = yamlload.parse_yaml(f"value: {text}\n", "m.yaml")
    assert problems == [] and doc is not None
    value = doc.data["value"]
    assert (type(value), value) == (type(expected), expected)


def test_nan_is_a_number() -> None:
    doc, _ = yamlload.parse_yaml("value: .NaN\n", "m.yaml")
    assert doc is not None and isinstance(doc.data["value"], float)


@pytest.mark.parametrize(
    "text", ["0755", "0x1F", "0o17", "0b101", "1_000", "1:30", "-0755", "9" * 40]
)
def test_number_lookalikes_are_refused(text: str) -> None:
    _, problems = yamlload.parse_yaml(f"value: {text}\n", "m.yaml")
    (problem,) = problems
    assert problem.line == 1 and "quote it to make it a string" in problem.message
    assert text not in problem.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("!!str 0755", "0755"), ("!!int 42", 42), ("!!bool true", True), ("!!null ~", None)],
)
def test_standard_tags_are_accepted(text: str, expected: object) -> None:
    doc, problems = yamlload.parse_yaml(f"value: {text}\n", "m.yaml")
    assert problems == [] and doc is not None and doc.data["value"] == expected


@pytest.mark.parametrize(
    "text", ["!!int yes", "!!bool 1", "!!float 1.5", "!!binary aGk=", "!!set {a}"]
)
def test_other_or_mismatched_tags_are_refused(text: str) -> None:
    _, problems = yamlload.parse_yaml(f"value: {text}\n", "m.yaml")
    assert problems and all(p.line == 1 for p in problems)
