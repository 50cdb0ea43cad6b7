"""The fast reader of plain manifests answers only where the strict builder would answer
the same: the same data, lines and nulls, and no problem. Anything else it leaves to the
strict builder (returns None)."""

from __future__ import annotations

import re

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_manifest_plain_path import manifests

from tyksync.manifest import fastyaml
from tyksync.manifest.fastyaml import RECORDED, read_plain
from tyksync.manifest.yamlload import parse_yaml, parse_yaml_strict

# Lines of the shapes manifests have, and of the shapes that must fall back: flow
# collections, quotes, comments, anchors, tags, lookalike numbers and booleans, tabs.
KEYS = st.sampled_from(
    [
        "version",
        "owner",
        "developers",
        "plan",
        "plans",
        "fields",
        "a@b.c",
        "x",
        "'q'",
        '"d"',
        "- plan",
        "-",
        "? k",
        "&a k",
        "*a",
        "!!str k",
    ]
)
VALUES = st.sampled_from(
    [
        "1",
        "t",
        "Gold",
        "[Gold, Reports]",
        "{ticket: OPS-1}",
        "yes",
        "on",
        "0755",
        "1e3",
        "1:30",
        "~",
        "null",
        "'it''s'",
        '"x\\ty"',
        "|",
        ">",
        "# c",
        "[",
        "{a: [b, {c: d}]}",
        "2027-01-31",
        "a # b",
        "",
        "\t1",
        ".inf",
        "-1",
        "0x1F",
        "[a, a, a]",
        "@x",
        "`x`",
    ]
)
INDENTS = st.sampled_from(["", "  ", "    ", "      ", " ", "\t"])
LINE = st.tuples(INDENTS, KEYS, st.sampled_from([": ", ":", " ", ""]), VALUES).map("".join)
DOC = st.lists(
    LINE | st.sampled_from(["# comment", "", "---", "...", "  - plan: Gold"]), max_size=12
).map("\n".join)


# Documents of the plain kind the fast reader answers for (as people and `export` write
# them), and the same with one character put somewhere: a quote, a colon, a tab, a flow
# bracket, an anchor, a comment sign... each must be read alike, or left to the builder.
SCALAR = st.sampled_from(
    [
        *("Gold", "OPS-1", "a@b.c", "1", "x y", "x  y", "true", "0755", "-", "-x", "x -y"),
        *(".5", "~", "+1", "1_0", "a:b", "a #b", " pad ", "", "é", "[a]", "a,b", "it's"),
        'say "x"',
    ]
)
TREE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["plan", "plans", "fields", "environments", "a", "b@c.d"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=12,
)
PLAIN = st.dictionaries(
    st.sampled_from(["version", "owner", "developers", "environments"]), TREE, min_size=1
).map(lambda d: yaml.safe_dump(d, default_flow_style=None, sort_keys=False, allow_unicode=True))
# Manifests (valid ones, and ones with a value or key at the edge of the format), written
# the ways people and `export` write them: flow leaves, all blocks, lists indented or not.
MANIFESTS = st.tuples(manifests(), st.sampled_from([None, False]), st.booleans()).map(
    lambda t: yaml.dump(
        t[0],
        Dumper=Indented if t[2] else yaml.SafeDumper,
        default_flow_style=t[1],
        sort_keys=False,
        allow_unicode=True,
    )
)
TEXTS = PLAIN | MANIFESTS


class Indented(yaml.SafeDumper):
    """Lists indented under their key (`  - plan: Gold`), as the SPEC's examples are."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


MUTATED = st.tuples(
    TEXTS, st.integers(0, 10**6), st.sampled_from(list("'\":\t[]{}&*!#|>-?%@`, \n"))
).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1) :])


def _shift(text: str, at: int, change: str) -> str:
    """One line of `text` deleted, doubled, moved in or out, or swapped with the next."""
    lines = text.split("\n")
    i = at % len(lines)
    if change == "delete":
        del lines[i]
    elif change == "double":
        lines.insert(i, lines[i])
    elif change == "swap" and i + 1 < len(lines):
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif change.startswith("in"):
        lines[i] = " " * int(change[2:]) + lines[i]
    elif change.startswith("out"):
        lines[i] = lines[i][int(change[3:]) :] if lines[i].startswith("  ") else lines[i]
    return "\n".join(lines)


SHIFTED = st.builds(
    _shift,
    TEXTS,
    st.integers(0, 10**6),
    st.sampled_from(["delete", "double", "swap", "in1", "in2", "in4", "out1", "out2"]),
)


def assert_agrees(text: str) -> bool:
    """The fast reader's answer for `text` is the strict builder's; False: no answer."""
    fast = read_plain(text)
    if fast is None:
        return False  # left to the strict builder
    strict, problems = parse_yaml_strict(text, "m.yaml")
    assert problems == [] and strict is not None, (text, problems)
    data, lines = fast
    assert data == strict.data, text
    assert strict.nulls == frozenset(), text  # a null is left to the strict builder
    # The lines it records are the builder's, and it records every one loading needs.
    assert {p: strict.lines[p] for p in lines} == lines, text
    needed = {p for p in strict.lines if len(p) <= RECORDED or p[RECORDED:] == ("environments",)}
    assert needed <= lines.keys(), (text, needed - lines.keys())
    # Any other line comes from a strict read when asked for, missing paths included.
    doc, _ = parse_yaml(text, "m.yaml")
    assert doc is not None and doc.text == text
    asked = [*strict.lines, *((*p, "nope") for p in strict.lines), *((*p, 7) for p in strict.lines)]
    assert [doc.line_of(p) for p in asked] == [strict.line_of(p) for p in asked], text
    return True


@settings(max_examples=1500, deadline=None)
@given(TEXTS | MUTATED | SHIFTED | DOC | st.text(max_size=120))
def test_the_fast_reader_agrees_with_the_strict_builder(text: str) -> None:
    assert_agrees(text)
    # Python 3.10 reads the lines with greedy quantifiers for the possessive ones.
    assert GREEDY.findall(text) == fastyaml._ROW.findall(text)


GREEDY = re.compile(fastyaml.greedy(fastyaml.ROW_PATTERN), re.MULTILINE)


def test_the_fast_reader_answers_for_a_plain_manifest() -> None:
    text = (
        "version: 1\nowner: payments-team\n# a comment\ndevelopers:\n"
        "  alice@example.com:\n    - plans: [Gold, Reports]\n      fields: {ticket: OPS-42}\n"
        "  bob@example.com: []\n"
    )
    assert assert_agrees(text)
