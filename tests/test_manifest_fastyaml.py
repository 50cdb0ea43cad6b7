"""The fast reader of plain manifests answers only where the strict builder would answer
the same: the same data, lines and nulls, and no problem. Anything else it leaves to the
strict builder (returns None)."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tyksync.manifest.fastyaml import read_plain
from tyksync.manifest.yamlload import parse_yaml_strict

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
SCALAR = st.sampled_from(["Gold", "OPS-1", "a@b.c", "1", "x y", "true", "0755", "-", "é"])
TREE = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["plan", "plans", "fields", "a", "b@c.d"]), inner, max_size=3
        )
    ),
    max_leaves=12,
)
PLAIN = st.dictionaries(st.sampled_from(["version", "owner", "developers"]), TREE, min_size=1).map(
    lambda d: yaml.safe_dump(d, default_flow_style=None, sort_keys=False, allow_unicode=True)
)
MUTATED = st.tuples(
    PLAIN, st.integers(0, 10**6), st.sampled_from(list("'\":\t[]{}&*!#|>-?%@` \n"))
).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[2] + t[0][t[1] % (len(t[0]) + 1) :])


@settings(max_examples=1500, deadline=None)
@given(PLAIN | MUTATED | DOC | st.text(max_size=120))
def test_the_fast_reader_agrees_with_the_strict_builder(text: str) -> None:
    fast = read_plain(text)
    if fast is None:
        return  # left to the strict builder
    strict, problems = parse_yaml_strict(text, "m.yaml")
    assert problems == [] and strict is not None, (text, problems)
    data, lines, nulls = fast
    assert (data, lines, nulls) == (strict.data, strict.lines, strict.nulls), text


def test_the_fast_reader_answers_for_a_plain_manifest() -> None:
    text = (
        "version: 1\nowner: payments-team\n# a comment\ndevelopers:\n"
        "  alice@example.com:\n    - plans: [Gold, Reports]\n      fields: {ticket: OPS-42}\n"
        "  bob@example.com: []\n"
    )
    fast = read_plain(text)
    assert fast is not None
    strict, problems = parse_yaml_strict(text, "m.yaml")
    assert strict is not None and problems == []
    assert fast == (strict.data, strict.lines, strict.nulls)
