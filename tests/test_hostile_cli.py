"""Hostile input through the CLI: every manifest in tests/fixtures/hostile/, and bigger
ones generated here, is refused by `validate`, `plan` and `apply` alike.

Each run must: exit 1; name the file and a line (`FILE:LINE: ...`), as the loader does;
take under a second, measured around `run()`; print no traceback; never echo the input's
values (canary values are put into each hostile file's scalars, in copies made here); and
leave the Dashboard untouched: bad manifests fail before any call, so the sandbox sees
none at all (`counts() == {}`).

Also here: a manifest that empties an owner's whole set is caught by the delete threshold.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import ROOT, Tyk

from tyksync.errors import ManifestError
from tyksync.manifest import load_manifests
from tyksync.manifest.yamlload import MAX_DEPTH, MAX_FILE_BYTES, MAX_NODES
from tyksync.sandbox import Sandbox

HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile"
CORPUS = sorted(p.name for p in HOSTILE.iterdir() if p.suffix in (".yaml", ".yml"))
# Generous: each refusal takes milliseconds; the bound catches an expansion or a hang.
BOUND_SECONDS = 15.0  # catches an expansion (minutes), not a machine busy with parallel suites
# Output allowance on top of 4 characters per input byte: every problem is one short line.
MAX_STDERR = 20_000

COMMANDS: dict[str, tuple[str, ...]] = {
    "validate": ("validate",),
    "validate --online": ("validate", "--online"),
    "plan": ("plan", "--format", "json"),
    "apply": ("apply", "--auto-approve"),
}

# A distinctive value, and a numeric one for places where only a number fits.
CANARY = f"HOSTILE-CANARY-{secrets.token_hex(6)}"
NUMBER = "4242424242421"
OCTAL = "075512345670123"
NEEDLES = (CANARY, "HOSTILE-CANARY", NUMBER, OCTAL[1:], "1234567890123")
HEAD = re.compile(r"Error: \d+ problems? in the manifests:")


def loader_problems(path: Path) -> list[str]:
    """What the loader itself says about `path`: the CLI must say all of it."""
    with pytest.raises(ManifestError) as caught:
        load_manifests([str(path)])
    return [str(p) for p in caught.value.problems]


def assert_refused(sb: Sandbox, tyk: Tyk, path: Path) -> None:
    """Every command refuses `path` the same way, quickly, quietly, without a call."""
    expected = loader_problems(path)
    assert expected
    for name, command in COMMANDS.items():
        r = tyk(*command, str(path), "-vv")
        where = f"{name} {path.name}"
        assert r.code == 1, f"{where}: exit {r.code}\n{r.err}"
        assert r.seconds < BOUND_SECONDS, f"{where}: took {r.seconds:.2f}s"
        assert "Traceback" not in r.err and "internal error" not in r.err, r.err
        assert r.out == "", f"{where}: wrote to stdout"
        # Bounded: a few characters per input byte at most, never an expansion.
        bound = MAX_STDERR + 4 * path.stat().st_size
        assert len(r.err) < bound, f"{where}: {len(r.err)} characters of errors"
        lines = r.err.splitlines()
        assert HEAD.fullmatch(lines[0]), lines[0]
        located = re.compile(re.escape(str(path)) + r":[1-9][0-9]*: \S")
        assert lines[1:] and all(located.match(line) for line in lines[1:]), r.err
        assert lines[1:] == expected, f"{where}: the CLI and the loader disagree"
        for needle in NEEDLES:
            assert needle not in r.err, f"{where}: echoed an input value"
        assert sb.counts() == {}, f"{where}: the Dashboard was called"
    assert sb.mutating_calls() == 0


# ---- the committed corpus ------------------------------------------------------------------


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 10, "tests/fixtures/hostile/ is missing or nearly empty"


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_file_is_refused_by_every_command(dash: Sandbox, tyk: Tyk, name: str) -> None:
    assert_refused(dash, tyk, HOSTILE / name)


# ---- the corpus with canary values ---------------------------------------------------------

# Per corpus file, how to put canaries into its values without changing what makes it
# hostile (keys, tags and structure stay). A listed pattern that is no longer in the file
# fails the test, so the canaries cannot silently stop being there.
OWNER = (rb"owner: team\n", f"owner: {CANARY}\n".encode())
GOLD = (rb"\bGold\b", CANARY.encode())
PWNED = (rb"touch /tmp/tyksync-pwned", f"touch {CANARY}".encode())
VARIANTS: dict[str, list[tuple[bytes, bytes]]] = {
    "alias_bomb.yaml": [(rb'"lol"', f'"{CANARY}"'.encode())],
    "alias_quadratic.yaml": [OWNER, (rb'"x{100,}"', f'"{CANARY * 200}"'.encode())],
    "deep_nesting_block.yaml": [OWNER, (rb"(k\d+):\s*\Z", rf"\1: {CANARY}\n".encode())],
    "deep_nesting_flow.yaml": [OWNER, (rb"\[\]", f'["{CANARY}"]'.encode())],
    "duplicate_keys.yaml": [OWNER, GOLD, (rb"\bPlatinum\b", CANARY.encode())],
    "empty.yaml": [(rb"\A\Z", f"# {CANARY}\n".encode())],
    "int_developer_id.yaml": [OWNER, GOLD],
    "int_plan.yaml": [OWNER, (rb"plan: 42\b", f"plan: {NUMBER}".encode())],
    "merge_key.yaml": [OWNER, GOLD],
    "multi_document.yaml": [OWNER, PWNED],
    "non_utf8.yaml": [OWNER, (rb"\[\]", f"[{{plan: {CANARY}}}]".encode())],
    "nul_byte.yaml": [OWNER, (rb'"\x00"', f'"{CANARY}\x00{CANARY}"'.encode())],
    "octal_lookalike.yaml": [OWNER, GOLD, (rb"\b0755\b", OCTAL.encode())],
    "python_name.yaml": [(rb"os\.system\n", f"os.system {CANARY}\n".encode())],
    "python_object_apply.yaml": [PWNED],
    "yaml11_booleans.yaml": [OWNER, GOLD],
}
# Files whose bytes are not UTF-8 text as a whole: canaries go in through their encoding.
ENCODED = {"utf16.yaml": "utf-16"}


def canary_variant(name: str, folder: Path) -> Path:
    raw = (HOSTILE / name).read_bytes()
    if name in ENCODED:
        encoding = ENCODED[name]
        text = raw.decode(encoding)
        assert text.startswith("version: 1\n")
        raw = (text + f"owner: {CANARY}\ndevelopers: {{a@b.c: [{{plan: {CANARY}}}]}}\n").encode(
            encoding
        )
    else:
        for pattern, replacement in VARIANTS[name]:
            raw, count = re.subn(pattern, replacement, raw)
            assert count, f"{name}: {pattern!r} is no longer in the corpus file"
    path = folder / name
    path.write_bytes(raw)
    return path


def test_every_corpus_file_has_a_canary_variant() -> None:
    assert set(CORPUS) <= set(VARIANTS) | set(ENCODED), (
        "a new corpus file: say in VARIANTS how to put canaries into its values"
    )


@pytest.mark.parametrize("name", CORPUS)
def test_canary_values_are_never_echoed(dash: Sandbox, tyk: Tyk, tmp_path: Path, name: str) -> None:
    if name not in VARIANTS and name not in ENCODED:
        pytest.fail(f"{name}: no canary variant (see test_every_corpus_file_has_a_canary_variant)")
    path = canary_variant(name, tmp_path)
    assert path.read_bytes() != (HOSTILE / name).read_bytes()
    original = {p.split(": ", 1)[0].rsplit(":", 1)[1] for p in loader_problems(HOSTILE / name)}
    variant = {p.split(": ", 1)[0].rsplit(":", 1)[1] for p in loader_problems(path)}
    if name not in ENCODED and name != "empty.yaml":
        assert original <= variant, "the canaries changed where the problems are"
    assert_refused(dash, tyk, Path(name))  # relative: the error names it as given
    assert not Path(CANARY).exists()  # `touch CANARY` was never run


def test_a_whole_folder_of_hostile_files_is_refused_at_once(
    dash: Sandbox, tyk: Tyk, tmp_path: Path
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name in CORPUS:
        canary_variant(name, folder)
    r = tyk("plan", "hostile")
    assert r.code == 1
    assert r.seconds < 2 * BOUND_SECONDS
    named = {line.split(":", 1)[0] for line in r.err.splitlines()[1:]}
    assert named == {f"hostile/{name}" for name in CORPUS}  # every file, in one run
    assert CANARY not in r.err
    assert dash.counts() == {}


# ---- generated: too big to commit ----------------------------------------------------------


def gen_oversized(path: Path) -> None:
    row = f"  d{{:07d}}@example.com: [{{{{plan: {CANARY}}}}}]\n"
    with path.open("w", encoding="utf-8") as out:
        out.write(f"version: 1\nowner: {CANARY}\ndevelopers:\n")
        for n in range(2 * MAX_FILE_BYTES // len(row.format(0)) + 1):
            out.write(row.format(n))
    assert path.stat().st_size > 2 * MAX_FILE_BYTES


def gen_just_over_the_limit(path: Path) -> None:
    head = f"version: 1\nowner: t\ndevelopers: {{}}\nnote: '{CANARY}"
    path.write_text(head + "x" * (MAX_FILE_BYTES - len(head)) + "'\n")
    assert path.stat().st_size == MAX_FILE_BYTES + 2


def gen_too_many_values(path: Path) -> None:
    path.write_text(
        f"version: 1\nowner: {CANARY}\ndevelopers: {{}}\nx: [" + "1," * MAX_NODES + "1]\n"
    )
    assert path.stat().st_size < MAX_FILE_BYTES


def gen_deep_flow(path: Path) -> None:
    depth = 100_000
    path.write_text(f"version: 1\nowner: t\ndevelopers: {'[' * depth}{CANARY}{']' * depth}\n")


def gen_deep_block(path: Path) -> None:
    lines = ["version: 1", "owner: t", "developers:"]
    lines += [" " * (2 * n) + f"k{n}:" for n in range(1, 4 * MAX_DEPTH)]
    lines[-1] += f" {CANARY}"
    path.write_text("\n".join(lines) + "\n")


def gen_big_alias_bomb(path: Path) -> None:
    lines = [f'l0: &l0 ["{CANARY}", "{CANARY}"]']
    lines += [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 40)]
    path.write_text("\n".join(lines) + "\n")


def gen_long_integer(path: Path) -> None:
    path.write_text("version: 1\nowner: t\ndevelopers: {}\nx: " + "1234567890" * 500 + "\n")


def gen_huge_value(path: Path) -> None:
    value = CANARY * (MAX_FILE_BYTES // (2 * len(CANARY)))
    path.write_text(f"version: 1\nowner: t\ndevelopers: {{}}\nblob: '{value}'\n")


def gen_many_problems(path: Path) -> None:
    rows = "".join(f"  d{n}@example.com: [{{plan: {CANARY}, approved: on}}]\n" for n in range(5000))
    path.write_text(f"version: 1\nowner: t\ndevelopers:\n{rows}")


def gen_long_line_syntax_error(path: Path) -> None:
    path.write_text(f"version: 1\nowner: t\ndevelopers: {{}}\nnote: '{CANARY * 5000}\n")


GENERATED: dict[str, Callable[[Path], None]] = {
    "oversized": gen_oversized,
    "one_byte_over": gen_just_over_the_limit,
    "too_many_values": gen_too_many_values,
    "deep_flow_100k": gen_deep_flow,
    "deep_block": gen_deep_block,
    "alias_bomb_10^39": gen_big_alias_bomb,
    "long_integer": gen_long_integer,
    "huge_value_unknown_key": gen_huge_value,
    "thousands_of_problems": gen_many_problems,
    "unterminated_long_line": gen_long_line_syntax_error,
}


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_hostile_file_is_refused(
    dash: Sandbox, tyk: Tyk, tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.yaml"
    GENERATED[name](path)
    assert_refused(dash, tyk, Path(path.name))


# ---- syntax errors on lines that hold a value ------------------------------------------------

# PyYAML's str(error) quotes the offending line; tyksync must not.
SYNTAX = {
    "unterminated_quote": f'version: 1\nowner: "{CANARY}\n',
    "bad_indent": (
        f"version: 1\nowner: t\ndevelopers:\n  a@b.c:\n    - plan: {CANARY}\n   x: {CANARY}\n"
    ),
    "colon_in_value": f"version: 1\nowner: t\nnote: {CANARY}: {CANARY}\n",
    "unknown_escape": f'version: 1\nowner: t\nnote: "\\q{CANARY}"\n',
    "tab_indent": f"version: 1\nowner: t\n\tnote: {CANARY}\n",
    "control_character": f'version: 1\nowner: t\nnote: "\x07{CANARY}"\n',
    "unclosed_flow": f"version: 1\nowner: t\nnote: [{CANARY}, {{a: {CANARY}\n",
    "block_scalar_dedent": f"version: 1\nowner: t\nnote: |\n  {CANARY}\n bad: {CANARY}\n",
    "every_schema_error": (
        f'version: "1"\nowner: "{CANARY} x"\nprune: {CANARY}\ndevelopers:\n'
        f"  a@b.c: [{{plan: {CANARY}, approved: yes, fields: {{tyksync_x: {CANARY}, "
        f"n: 1:30, m: {NUMBER}}}}}]\n  not-an-email: []\n"
    ),
    "non_string_keys": (
        f"version: 1\nowner: t\ndevelopers: {{1.5: [{{plan: {CANARY}}}], true: [], null: []}}\n"
    ),
}


@pytest.mark.parametrize("name", list(SYNTAX))
def test_syntax_and_schema_errors_never_quote_the_line(
    dash: Sandbox, tyk: Tyk, tmp_path: Path, name: str
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SYNTAX[name])
    assert_refused(dash, tyk, Path(path.name))


# ---- files that are not files ----------------------------------------------------------------


def test_fifos_devices_and_symlink_loops_neither_hang_nor_crash(tmp_path: Path) -> None:
    # In a child process with a timeout: a manifest reader that opened a FIFO would block.
    folder = tmp_path / "m"
    folder.mkdir()
    os.mkfifo(folder / "fifo.yaml")
    os.symlink("/dev/zero", folder / "zero.yaml")
    os.symlink(".", folder / "self")
    os.symlink("..", folder / "parent")
    (folder / "bad.yaml").write_text(f"version: 1\nowner: {CANARY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYK")}
    env["PYTHONPATH"] = str(ROOT)

    def tyksync(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tyksync", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )

    inside = tyksync("validate", "m")
    assert inside.returncode == 1
    # The links lead outside m (zero.yaml, parent) or back into it (self): each one is
    # named (SPEC 10), and none is followed.
    lines = inside.stderr.splitlines()[1:]
    assert lines[0] == "m/bad.yaml:1: missing required key 'developers'"
    assert [line.split(": ")[0] for line in lines[1:]] == [
        "m/parent:1",
        "m/self:1",
        "m/zero.yaml:1",
    ]
    named = tyksync("validate", "m/fifo.yaml", "m/zero.yaml")
    assert named.returncode == 1
    assert named.stderr.splitlines()[1:] == [
        "m/fifo.yaml:1: not a regular file or folder",
        "m/zero.yaml:1: not a regular file or folder",
    ]
    for done in (inside, named):
        assert "Traceback" not in done.stderr
        assert CANARY not in done.stderr


def test_control_characters_in_file_names_cannot_forge_error_lines(
    dash: Sandbox, tyk: Tyk, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for name in (
        "nl\nforged.yaml:1: all fine; x.yaml",
        "cr\rhidden.yaml",
        "osc\x1b]0;pwned\x07.yaml",
    ):
        (folder / name).write_text("version: 1\nowner: t\ndevelopers: {}\nx: 1\n")
    r = tyk("validate", "m")
    assert r.code == 1
    lines = r.err.splitlines()
    assert HEAD.fullmatch(lines[0])
    assert len(lines) == 1 + 3  # one line per problem
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", r.err), repr(r.err)


# ---- the delete threshold --------------------------------------------------------------------

BULK = 12


@pytest.fixture
def bulk(dash: Sandbox) -> Sandbox:
    """BULK requests owned by `bulk` (a third approved), one owned by `other`, in the
    `dash` sandbox, which the test marks `@pytest.mark.dash(seed=None)`."""
    sb = dash
    assert sb.store.developers() == [], "mark the test @pytest.mark.dash(seed=None)"
    policy = sb.store.add_policy("Gold", id="gold")["_id"]
    developers = [sb.store.add_developer(f"d{n}@example.com")["id"] for n in range(BULK)]
    sb.store.add_requests(
        {
            "developer_id": developer,
            "policies": [policy],
            "approved": n % 3 == 0,
            "fields": {"tyksync_owner": "bulk"},
        }
        for n, developer in enumerate(developers)
    )
    outsider = sb.store.add_developer("outsider@example.com")["id"]
    sb.store.add_request(outsider, [policy], fields={"tyksync_owner": "other"})
    return sb


def owned_by(sb: Sandbox, owner: str) -> list[dict[str, object]]:
    return [r for r in sb.store.requests() if r["fields"].get("tyksync_owner") == owner]


def write_bulk_manifest(keep: int) -> Path:
    path = Path("bulk.yaml")
    if keep == 0:
        path.write_text("version: 1\nowner: bulk\ndevelopers: {}\n")
    else:
        rows = "".join(f"  d{n}@example.com: [{{plan: Gold}}]\n" for n in range(keep))
        path.write_text(f"version: 1\nowner: bulk\ndevelopers:\n{rows}")
    return path


@pytest.mark.dash(seed=None)
def test_emptying_an_owners_set_is_refused_then_forced(bulk: Sandbox, tyk: Tyk) -> None:
    write_bulk_manifest(keep=0)
    before = bulk.store.requests()
    plan = tyk("plan", "bulk.yaml")
    assert plan.code == 0
    assert f"{BULK} to delete" in plan.out
    assert "apply will refuse this plan without --force" in plan.err

    refused = tyk("apply", "bulk.yaml", "--auto-approve", "-vv")
    assert refused.code == 3, refused.out + refused.err
    assert f"deletes {BULK} of {BULK} managed requests (over 30%)" in refused.err
    assert "--force" in refused.err
    assert bulk.mutating_calls() == 0
    assert bulk.store.requests() == before

    assert tyk("plan", "bulk.yaml", "--out", "plan.json").code == 0
    saved = tyk("apply", "--plan", "plan.json")  # a reviewed plan is not exempt
    assert saved.code == 3, saved.out + saved.err
    assert bulk.mutating_calls() == 0

    forced = tyk("apply", "bulk.yaml", "--auto-approve", "--force")
    assert forced.code == 0, forced.out + forced.err
    assert f"Apply complete: {BULK} done, 0 failed." in forced.out
    assert owned_by(bulk, "bulk") == []
    assert len(owned_by(bulk, "other")) == 1  # another owner's request is not touched
    assert bulk.mutating_calls() == BULK
    assert tyk("plan", "bulk.yaml", "--detailed-exitcode").code == 0


@pytest.mark.parametrize(
    ("keep", "refused"),
    [
        (BULK, False),  # nothing to delete
        (BULK - 3, False),  # 3 of 12 = 25%
        (BULK - 4, True),  # 4 of 12 = 33%
        (1, True),
    ],
)
@pytest.mark.dash(seed=None)
def test_delete_threshold_boundary(bulk: Sandbox, tyk: Tyk, keep: int, refused: bool) -> None:
    write_bulk_manifest(keep)
    r = tyk("apply", "bulk.yaml", "--auto-approve")
    assert r.code == (3 if refused else 0), r.out + r.err
    if refused:
        assert bulk.mutating_calls() == 0
    assert len(owned_by(bulk, "bulk")) == (BULK if refused else keep)


@pytest.mark.dash(seed=None)
def test_max_deletes_caps_even_a_small_plan(bulk: Sandbox, tyk: Tyk) -> None:
    write_bulk_manifest(BULK - 1)
    r = tyk("apply", "bulk.yaml", "--auto-approve", "--max-deletes", "0")
    assert r.code == 3 and "--max-deletes 0" in r.err
    assert bulk.mutating_calls() == 0
    assert tyk("apply", "bulk.yaml", "--auto-approve", "--max-deletes", "1").code == 0
    assert len(owned_by(bulk, "bulk")) == BULK - 1
