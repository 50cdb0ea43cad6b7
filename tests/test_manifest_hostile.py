"""Hostile manifests: each is refused by `load_manifests`, quickly, with FILE:LINE.

The committed corpus lives in tests/fixtures/hostile/; inputs that would be megabytes are
generated here instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tyksync.errors import ManifestError, Problem
from tyksync.manifest import load_manifests, yamlload
from tyksync.manifest.yamlload import MAX_FILE_BYTES, MAX_NODES, parse_yaml

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
# Generous: each of these takes milliseconds; the bound only catches an expansion (a
# billion laughs runs for minutes), so it allows a machine busy with a parallel suite.
BOUND_SECONDS = 5.0

# (fixture, line, fragment)
CORPUS = [
    ("alias_bomb.yaml", 2, "YAML anchors (&name) are not allowed"),
    ("alias_bomb.yaml", 3, "YAML aliases (*name) are not allowed"),
    ("alias_quadratic.yaml", 3, "YAML anchors (&name) are not allowed"),
    ("alias_quadratic.yaml", 5, "YAML aliases (*name) are not allowed"),
    # libyaml refuses 5,000 flow levels itself ("exceeded maximum nesting depth") before
    # our own limit ("nested too deeply") is reached; either is fine.
    ("deep_nesting_flow.yaml", 3, "nest"),
    ("deep_nesting_block.yaml", 34, "nested too deeply"),
    ("duplicate_keys.yaml", 6, "duplicate key 'alice@example.com' (first at line 4)"),
    ("python_object_apply.yaml", 2, "YAML tag '!!python/object/apply:os.system' is not allowed"),
    ("python_name.yaml", 1, "YAML tag '!!python/name:os.system' is not allowed"),
    ("int_developer_id.yaml", 3, "mapping keys must be strings, got an integer"),
    ("int_plan.yaml", 5, "plan: must be a string, got an integer"),
    ("yaml11_booleans.yaml", 6, "approved: must be true or false, got a string"),
    ("octal_lookalike.yaml", 6, "fields.mode: ambiguous number-like value"),
    ("merge_key.yaml", 6, "YAML merge keys (<<) are not allowed"),
    ("non_utf8.yaml", 4, "not valid UTF-8 text"),
    ("utf16.yaml", 1, "not valid UTF-8 text"),
    ("empty.yaml", 1, "empty manifest"),
    ("nul_byte.yaml", 4, "invalid YAML"),
    ("multi_document.yaml", 4, "a second YAML document"),
]


@pytest.fixture(autouse=True, params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every hostile input, with libyaml's parser and with PyYAML's fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(yamlload, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return str(request.param)


def refused(path: Path) -> tuple[list[Problem], float]:
    start = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        load_manifests([path])
    return caught.value.problems, time.perf_counter() - start


@pytest.mark.parametrize(("fixture", "line", "fragment"), CORPUS)
def test_hostile_fixture_is_refused(fixture: str, line: int, fragment: str) -> None:
    path = HOSTILE / fixture
    problems, seconds = refused(path)
    assert seconds < BOUND_SECONDS
    assert all(p.file == str(path) and p.line >= 1 for p in problems)
    assert any(p.line == line and fragment in p.message for p in problems), "\n".join(
        map(str, problems)
    )


def test_corpus_is_covered() -> None:
    names = {p.name for p in HOSTILE.iterdir() if p.suffix == ".yaml"}
    assert names == {case[0] for case in CORPUS}


def test_nothing_was_executed() -> None:
    for fixture in ("python_object_apply.yaml", "multi_document.yaml"):
        refused(HOSTILE / fixture)
    assert not Path("/tmp/tyksync-pwned").exists()


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "oversized.yaml"
    with path.open("w", encoding="utf-8") as out:
        out.write("version: 1\nowner: team\ndevelopers:\n")
        row = "  d{:07d}@example.com: [{{plan: Gold}}]\n"
        for index in range(2 * MAX_FILE_BYTES // len(row.format(0)) + 1):
            out.write(row.format(index))
    assert path.stat().st_size > 2 * 1024 * 1024
    problems, seconds = refused(path)
    assert seconds < BOUND_SECONDS
    assert [(p.file, p.line) for p in problems] == [(str(path), 1)]
    assert "file too large" in problems[0].message


def test_too_many_values_within_the_size_limit(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("version: 1\nowner: t\ndevelopers: {}\nx: [" + "1," * MAX_NODES + "1]\n")
    assert path.stat().st_size < MAX_FILE_BYTES
    problems, seconds = refused(path)
    # Scanning 100,000 values takes PyYAML's pure-Python parser about a second.
    assert seconds < (BOUND_SECONDS if parser == "libyaml" else 4 * BOUND_SECONDS)
    assert any(p.line == 4 and "too many YAML values" in p.message for p in problems)


def test_long_integer_is_not_converted(tmp_path: Path) -> None:
    # int() of a 5,000-digit string raises in Python 3.11+; we must refuse it cleanly.
    path = tmp_path / "long.yaml"
    path.write_text("version: 1\nowner: t\ndevelopers: {}\nx: " + "9" * 5000 + "\n")
    problems, seconds = refused(path)
    assert seconds < BOUND_SECONDS
    assert any(p.line == 4 and "integer too long" in p.message for p in problems)


# Characters that make YAML interesting: indicators, quotes, escapes, controls, non-ASCII.
YAML_ALPHABET = "abc019 :-.[]{},&*!|>'\"%@`#?~<\n\t\\\x00\x85\ufeffé"


@settings(max_examples=300, deadline=None)
@given(st.text(YAML_ALPHABET, max_size=200) | st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    # Whatever the input, the result is data or located problems, never an exception.
    doc, problems = parse_yaml(text, "fuzz.yaml")
    assert doc is not None or problems
    assert all(p.file == "fuzz.yaml" and p.line >= 1 for p in problems)
