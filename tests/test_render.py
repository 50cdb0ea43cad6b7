"""Tests of the plan renderers: plans built by hand, data in, text out.

Outputs are compared exactly with golden files in `tests/golden/render/`. After a change of
output that is meant, rewrite them and review the diff like any other code:

    TYKSYNC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

The tool version is replaced by `<version>` in golden files, so a release does not touch them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path
from typing import get_args

import pytest

from tyksync import __version__
from tyksync.plan import (
    KINDS,
    Action,
    DevRef,
    PendingRequest,
    Plan,
    PlanWarning,
    PolicyRef,
    Scope,
)
from tyksync.render import (
    FORMATS,
    Format,
    render,
    render_json,
    render_markdown,
    render_text,
    use_color,
)

GOLDEN = Path(__file__).parent / "golden" / "render"
UPDATE = os.environ.get("TYKSYNC_UPDATE_GOLDEN") == "1"

ANSI = re.compile(r"\x1b\[[0-9;]*m")
OUR_CODES = {"\x1b[0m", "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m"}

# --- plans ------------------------------------------------------------------------------

ALICE = DevRef("64c0a1a1a1a1a1a1a1a1a1a1", "alice@example.com")
BOB = DevRef("64c0b0b0b0b0b0b0b0b0b0b0", "bob@example.com")
DAVE = DevRef("64c0d0d0d0d0d0d0d0d0d0d0", "dave@example.com")
ERIN = DevRef("64c0e0e0e0e0e0e0e0e0e0e0", "erin@example.com")
GOLD = PolicyRef("64c0f0f0f0f0f0f0f0f0f001", "Gold")
REPORTS = PolicyRef("64c0f0f0f0f0f0f0f0f0f002", "Reports")
SILVER = PolicyRef("64c0f0f0f0f0f0f0f0f0f003", "Silver")
SCOPE = Scope(
    developer_ids=frozenset({ALICE.id, BOB.id, DAVE.id, ERIN.id}),
    owners=frozenset({"payments-team"}),
    policy_ids=frozenset({GOLD.id, REPORTS.id, SILVER.id}),
)
MANIFEST_DIGEST = "ab" * 32
FINGERPRINT = "cd" * 32
DASHBOARD = "https://dashboard.example.com"


def plan_of(
    actions: tuple[Action, ...] = (),
    warnings: tuple[PlanWarning, ...] = (),
    unmanaged: int = 0,
    dashboard: str = DASHBOARD,
    pending: tuple[PendingRequest, ...] = (),
) -> Plan:
    """A plan holding these actions and warnings, as the renderers get it (made by hand,
    not by the planner)."""
    return Plan(
        actions=actions,
        warnings=warnings,
        unmanaged=unmanaged,
        managed=len(actions),
        scope=SCOPE,
        manifest_digest=MANIFEST_DIGEST,
        fingerprint=FINGERPRINT,
        dashboard=dashboard,
        pending=pending,
    )


CREATE = Action(
    action="create",
    developer=ALICE,
    policies=(GOLD, REPORTS),
    reason="no live request for this identity",
    approve=False,
    fields={"ticket": "OPS-42"},
    owner="payments-team",
)
APPROVE = Action(
    action="approve",
    developer=BOB,
    policies=(SILVER,),
    reason="pending, and the manifest says approved: true",
    request_id="64c0c0c0c0c0c0c0c0c0c001",
    approve=True,
)
REPLACE = Action(
    action="replace",
    developer=DAVE,
    policies=(REPORTS,),
    reason="fields differ: ticket OPS-9 -> OPS-10",
    request_id="64c0c0c0c0c0c0c0c0c0c003",
    approve=True,
    fields={"ticket": "OPS-10"},
    owner="payments-team",
    declared_at="manifests/payments.yaml:14",
)
DELETE_APPROVED = Action(
    action="delete",
    developer=ERIN,
    policies=(SILVER,),
    reason="not declared by owner payments-team",
    request_id="64c0c0c0c0c0c0c0c0c0c004",
    owner="payments-team",
    approved=True,
)
DELETE_LEGACY = Action(
    action="delete",
    developer=ERIN,
    policies=(),
    reason="legacy request of a developer listed with prune: developers",
    request_id="64c0c0c0c0c0c0c0c0c0c005",
)
WARN_APPROVED = PlanWarning(
    developer=BOB,
    policies=(GOLD,),
    message="approved on the Dashboard but approved: false in the manifest; "
    "approval cannot be undone",
    request_id="64c0c0c0c0c0c0c0c0c0c006",
)
WARN_REISSUE = PlanWarning(
    developer=DAVE,
    policies=(GOLD, SILVER),
    message="approved with other fields; run with --reissue to replace it (issues a new key)",
)

FULL = plan_of(
    actions=(CREATE, APPROVE, REPLACE, DELETE_APPROVED, DELETE_LEGACY),
    warnings=(WARN_APPROVED, WARN_REISSUE),
    unmanaged=3,
)
# SPEC section 11: a delete and a replace that revoke, one that cannot tell the key apart
# (with its warning), an expiry coming up, and more pending requests than are listed.
DELETE_REVOKES = dataclasses.replace(DELETE_APPROVED, revoke_key="key#ab12cd34")
REPLACE_REVOKES = dataclasses.replace(
    REPLACE,
    reason="fields differ: ticket OPS-9 -> OPS-10; --reissue issues a new key",
    approved=True,
    revoke_key="key#0f1e2d3c",
)
DELETE_AMBIGUOUS = Action(
    action="delete",
    developer=ALICE,
    policies=(GOLD,),
    reason="expired on 2026-11-30 (manifests/payments.yaml:8)",
    request_id="64c0c0c0c0c0c0c0c0c0c007",
    owner="payments-team",
    approved=True,
    declared_at="manifests/payments.yaml:8",
)
WARN_AMBIGUOUS = PlanWarning(
    developer=ALICE,
    policies=(GOLD,),
    message="2 keys on the developer's record grant exactly these policies, so the one this "
    "request issued cannot be told apart: nothing is revoked, and the key it issued stays valid",
    request_id="64c0c0c0c0c0c0c0c0c0c007",
)
WARN_EXPIRES = PlanWarning(
    developer=BOB,
    policies=(SILVER,),
    message="expires on 2026-12-10 (manifests/payments.yaml:12): from then on it counts as "
    "undeclared, and its request is deleted and its key revoked; extend `expires` to keep it",
)
PENDING = tuple(
    PendingRequest(
        request_id=f"64c0c0c0c0c0c0c0c0c0d{i:03d}",
        developer=ERIN if i % 2 else DAVE,
        policies=(REPORTS,) if i % 3 else (GOLD, SILVER),
        date_created=f"2026-10-{i + 1:02d}T08:00:00.000000Z",
        age_days=61 - i,
    )
    for i in range(23)
)
LIFECYCLE = plan_of(
    actions=(REPLACE_REVOKES, DELETE_REVOKES, DELETE_AMBIGUOUS),
    warnings=(WARN_AMBIGUOUS, WARN_EXPIRES),
    pending=PENDING,
)
EMPTY = plan_of()
QUIET = plan_of(warnings=(WARN_APPROVED,), unmanaged=1)

HOSTILE_DEV = DevRef("64c0999999999999999999a9", "mallory<b>&co@example.com")
HOSTILE = plan_of(
    actions=(
        Action(
            action="create",
            developer=HOSTILE_DEV,
            policies=(PolicyRef("64c0f0f0f0f0f0f0f0f0f0a1", "Gold, *EU* [beta]"),),
            reason="no live request for this identity",
            approve=True,
            fields={
                "pipe": "a|b",
                "script": "<script>alert('x')</script>",
                "ticks": "`rm -rf` ``x``",
                "lines": "one\ntwo\r\n",
                "ansi": "\x1b[31mred\x1b[0m",
                "bidi": "abc\u202edef",
                "mention": "@security-team",
                "amp": "fish & chips",
                "link": "[click](https://evil.example)",
                "math": "$x^2$ # not a heading ~~strike~~ *em* _em_",
                "empty": "",
                "quote": 'say "hi" \\ bye',
                "key with space": "v",
                "tag": "x\U000e0001y",
            },
            owner="payments|team",
            declared_at="manifests/we|rd.yaml:3",
        ),
        Action(
            action="delete",
            developer=HOSTILE_DEV,
            policies=(PolicyRef("64c0f0f0f0f0f0f0f0f0f0a2", "<img src=x onerror=alert(1)>"),),
            reason="not declared; fields: note=`x` | y\n\x1b[2J",
            request_id="64c0c0c0c0c0c0c0c0c0c0a9",
            owner="payments|team",
        ),
    ),
    warnings=(PlanWarning(HOSTILE_DEV, (), "odd <tag> & `tick` | pipe\nnext line"),),
    pending=(
        PendingRequest(
            request_id="64c0c0c0c0c0c0c0c0c0c0b1",
            developer=HOSTILE_DEV,
            policies=(PolicyRef("64c0f0f0f0f0f0f0f0f0f0a3", "[pend](https://evil.example) |"),),
            date_created="not a date \x1b[2J",
            age_days=None,
        ),
    ),
)


def big_plan(count: int) -> Plan:
    """`count` creates spread over developers, five each, with a field to make lines long."""
    actions = []
    for i in range(count):
        dev = DevRef(f"64c0{i // 5:020x}", f"developer-{i // 5:05d}@example.com")
        actions.append(
            Action(
                action="create",
                developer=dev,
                policies=(PolicyRef(f"64c1{i:020x}", f"Policy {i % 5}"),),
                reason="no live request for this identity",
                approve=True,
                fields={"ticket": f"OPS-{i}"},
                owner="payments-team",
            )
        )
    return plan_of(actions=tuple(actions), warnings=(WARN_APPROVED, WARN_REISSUE))


# --- helpers ----------------------------------------------------------------------------


def text_of(plan: Plan, *, color: bool = False) -> str:
    out = io.StringIO()
    render_text(plan, out, color=color)
    return out.getvalue()


def json_of(plan: Plan) -> str:
    out = io.StringIO()
    render_json(plan, out)
    return out.getvalue()


def markdown_of(plan: Plan, limit: int = 60000) -> str:
    out = io.StringIO()
    render_markdown(plan, out, limit=limit)
    return out.getvalue()


def without_version(text: str) -> str:
    return text.replace(f'"tool_version": "{__version__}"', '"tool_version": "<version>"').replace(
        f"tyksync {__version__}</sub>", "tyksync <version></sub>"
    )


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    actual = without_version(actual)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing; create it with TYKSYNC_UPDATE_GOLDEN=1"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{name} differs from its golden file (see module docstring)"


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- golden files -----------------------------------------------------------------------

PLANS = {
    "full": FULL,
    "empty": EMPTY,
    "quiet": QUIET,
    "hostile": HOSTILE,
    "lifecycle": LIFECYCLE,
}


@pytest.mark.parametrize("name", sorted(PLANS))
def test_text_golden(name: str) -> None:
    assert_golden(f"{name}.txt", text_of(PLANS[name]))


def test_text_color_golden() -> None:
    assert_golden("full_color.txt", text_of(FULL, color=True))


@pytest.mark.parametrize("name", sorted(PLANS))
def test_json_golden(name: str) -> None:
    assert_golden(f"{name}.json", json_of(PLANS[name]))


@pytest.mark.parametrize("name", sorted(PLANS))
def test_markdown_golden(name: str) -> None:
    assert_golden(f"{name}.md", markdown_of(PLANS[name]))


def test_markdown_truncated_golden() -> None:
    assert_golden("truncated.md", markdown_of(FULL, limit=1200))


# --- text -------------------------------------------------------------------------------


def test_text_lines_per_action_kind() -> None:
    lines = text_of(FULL).splitlines()
    assert (
        "  + create   alice@example.com  [Gold, Reports]  approve=no  fields: ticket=OPS-42"
        "  (owner payments-team)"
    ) in lines
    assert "  ~ approve  bob@example.com  [Silver]  request 64c0c0c0c0c0c0c0c0c0c001" in lines
    assert (
        "-/+ replace  dave@example.com  [Reports]  request 64c0c0c0c0c0c0c0c0c0c003: fields "
        "differ: ticket OPS-9 -> OPS-10  approve=yes  fields: ticket=OPS-10"
        "  (owner payments-team, manifests/payments.yaml:14)"
    ) in lines
    assert (
        "  - delete   erin@example.com  [Silver]  request 64c0c0c0c0c0c0c0c0c0c004: not declared"
        " by owner payments-team (approved: the key it issued stays valid)"
        "  (owner payments-team)"
    ) in lines
    assert (
        "  - delete   erin@example.com  [no policies]  request 64c0c0c0c0c0c0c0c0c0c005: legacy"
        " request of a developer listed with prune: developers"
    ) in lines


def test_text_keeps_the_plan_order() -> None:
    plan = plan_of(actions=(DELETE_APPROVED, CREATE, APPROVE))
    # Action lines are `  + create ...`; the access-change lines above them are not.
    words = [line.split() for line in text_of(plan).splitlines()]
    verbs = [w[1] for w in words if len(w) > 1 and w[1] in KINDS]
    assert verbs == ["delete", "create", "approve"]


def test_text_delete_of_a_pending_request_does_not_mention_a_key() -> None:
    pending = Action("delete", ERIN, (SILVER,), "not declared", request_id="64c0" + "0" * 20)
    assert "stays valid" not in text_of(plan_of(actions=(pending,)))


def test_text_warnings_and_summary() -> None:
    lines = text_of(FULL).splitlines()
    assert (
        "! warning: bob@example.com [Gold]  request 64c0c0c0c0c0c0c0c0c0c006: approved on the "
        "Dashboard but approved: false in the manifest; approval cannot be undone"
    ) in lines
    assert (
        "! warning: dave@example.com [Gold, Silver]: approved with other fields; run with "
        "--reissue to replace it (issues a new key)"
    ) in lines
    assert lines[-1] == (
        "Plan: 1 to create, 1 to approve, 1 to replace, 2 to delete. "
        "2 warnings, 3 unmanaged requests left alone."
    )


@pytest.mark.parametrize(
    ("plan", "last"),
    [
        (EMPTY, "No changes. The Dashboard matches the manifests."),
        (QUIET, "Nothing will be applied, but 1 difference needs a person (see the warnings). "
         "1 unmanaged request left alone."),
        (plan_of(warnings=(WARN_APPROVED, WARN_REISSUE)), "Nothing will be applied, but 2 "
         "differences need a person (see the warnings)."),
        (plan_of(unmanaged=2), "No changes. The Dashboard matches the manifests. "
         "2 unmanaged requests left alone."),
        (plan_of(actions=(APPROVE,), warnings=(WARN_APPROVED,)),
         "Plan: 0 to create, 1 to approve, 0 to replace, 0 to delete. 1 warning."),
    ],
)  # fmt: skip
def test_text_summary_line(plan: Plan, last: str) -> None:
    assert text_of(plan).splitlines()[-1] == last


def test_text_without_a_dashboard_has_no_dashboard_line() -> None:
    assert text_of(plan_of(dashboard="")) == "No changes. The Dashboard matches the manifests.\n"


def test_text_names_a_developer_without_email_by_id() -> None:
    anonymous = DevRef("64c0abababababababababab", "")
    plan = plan_of(actions=(Action("create", anonymous, (GOLD,), "new", approve=True),))
    assert "  + create   64c0abababababababababab  [Gold]  approve=yes\n" in text_of(plan)


def test_actions_without_a_request_id_or_details() -> None:
    # Not what the planner makes, but a hand-edited saved plan can hold it: render, don't fail.
    bare = (
        Action("approve", BOB, (SILVER,), "pending", approve=True),
        Action("delete", ERIN, (SILVER,), "not declared"),
    )
    plan = plan_of(actions=bare)
    lines = text_of(plan).splitlines()
    assert "  ~ approve  bob@example.com  [Silver]" in lines
    assert "  - delete   erin@example.com  [Silver]  not declared" in lines
    md = markdown_of(plan).splitlines()
    assert "- `~` **approve** `Silver`" in md
    assert "- `-` **delete** `Silver` — `not declared`" in md


def test_colour_only_when_asked() -> None:
    plain, colored = text_of(FULL), text_of(FULL, color=True)
    assert "\x1b" not in plain
    assert "\x1b[32m  + create\x1b[0m" in colored
    assert "\x1b[33m  ~ approve\x1b[0m" in colored
    assert "\x1b[33m-/+ replace\x1b[0m" in colored
    assert "\x1b[31m  - delete\x1b[0m" in colored
    assert "\x1b[33m! warning:\x1b[0m" in colored
    assert colored.splitlines()[-1].startswith("\x1b[1mPlan: ")
    assert ANSI.sub("", colored) == plain


def test_text_neutralises_hostile_strings() -> None:
    for color in (False, True):
        out = text_of(HOSTILE, color=color)
        # The only escape sequences are ours: user data cannot recolour or clear a terminal.
        assert set(ANSI.findall(out)) <= OUR_CODES
        assert "\x1b" not in ANSI.sub("", out)
        assert "\u202e" not in out
        assert "\r" not in out
    lines = text_of(HOSTILE).splitlines()
    # One line per action and per warning: newlines in values are shown as \n.
    assert sum(line.startswith("  + create") for line in lines) == 1
    assert sum(line.startswith("  - delete") for line in lines) == 1
    assert sum(line.startswith("! warning:") for line in lines) == 1
    create = next(line for line in lines if line.startswith("  + create"))
    assert 'lines="one\\ntwo\\r\\n"' in create
    assert 'ansi="\\x1b[31mred\\x1b[0m"' in create
    assert 'bidi="abc\\u202edef"' in create
    assert 'empty=""' in create
    assert 'quote="say \\"hi\\" \\\\ bye"' in create
    assert '"key with space"=v' in create
    assert 'tag="x\\U000e0001y"' in create
    assert '["Gold, *EU* [beta]"]' in create


# --- use_color --------------------------------------------------------------------------


def test_use_color_on_a_terminal() -> None:
    assert use_color(TtyStringIO(), {}) is True
    assert use_color(TtyStringIO(), {"TERM": "xterm-256color"}) is True


@pytest.mark.parametrize("value", ["1", "0", "false", "yes"])
def test_use_color_no_color_set_to_anything(value: str) -> None:
    assert use_color(TtyStringIO(), {"NO_COLOR": value}) is False


def test_use_color_empty_no_color_is_unset() -> None:
    # no-color.org: "when present and not an empty string".
    assert use_color(TtyStringIO(), {"NO_COLOR": ""}) is True


def test_use_color_not_a_terminal() -> None:
    assert use_color(io.StringIO(), {}) is False


def test_use_color_dumb_terminal() -> None:
    assert use_color(TtyStringIO(), {"TERM": "dumb"}) is False


@pytest.mark.parametrize("name", ["FORCE_COLOR", "CLICOLOR_FORCE"])
@pytest.mark.parametrize("value", ["1", "true", "3", "yes"])
def test_use_color_forced_without_a_terminal(name: str, value: str) -> None:
    assert use_color(io.StringIO(), {name: value}) is True
    assert use_color(TtyStringIO(), {name: value, "TERM": "dumb"}) is True


@pytest.mark.parametrize("name", ["FORCE_COLOR", "CLICOLOR_FORCE"])
@pytest.mark.parametrize("value", ["", "0"])
def test_use_color_force_empty_or_zero_forces_nothing(name: str, value: str) -> None:
    assert use_color(io.StringIO(), {name: value}) is False
    assert use_color(TtyStringIO(), {name: value}) is True


@pytest.mark.parametrize("name", ["FORCE_COLOR", "CLICOLOR_FORCE"])
def test_use_color_no_color_wins_over_force(name: str) -> None:
    assert use_color(TtyStringIO(), {name: "1", "NO_COLOR": "1"}) is False


def test_use_color_the_option_wins_over_all() -> None:
    assert use_color(TtyStringIO(), {}, no_color=True) is False
    assert use_color(TtyStringIO(), {"FORCE_COLOR": "1"}, no_color=True) is False
    assert use_color(io.StringIO(), {"CLICOLOR_FORCE": "1"}, no_color=True) is False


def test_use_color_closed_stream() -> None:
    stream = io.StringIO()
    stream.close()
    assert use_color(stream, {}) is False


# --- JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PLANS))
def test_json_is_one_object_that_round_trips(name: str) -> None:
    plan = PLANS[name]
    out = json_of(plan)
    assert out.endswith("}\n")
    assert "\x1b" not in out
    data = json.loads(out)  # one object: json.loads refuses trailing data
    assert data == plan.to_data()
    assert list(data) == list(plan.to_data())  # to_data's own order, not sorted
    assert Plan.from_data(json.loads(out)).to_data() == plan.to_data()


def test_json_is_the_same_whatever_colour_the_dispatcher_is_given() -> None:
    out = io.StringIO()
    render(FULL, out, "json", color=True)
    assert out.getvalue() == json_of(FULL)


# --- Markdown ---------------------------------------------------------------------------


def test_markdown_structure() -> None:
    out = markdown_of(FULL)
    lines = out.splitlines()
    assert lines[0] == "### tyksync plan"
    assert "Dashboard: `https://dashboard.example.com`" in lines
    table = lines.index("| create | approve | replace | delete | warnings | unmanaged |")
    assert lines[table + 2] == "| 1 | 1 | 1 | 2 | 2 | 3 |"
    assert "#### `alice@example.com` (1 change)" in lines
    assert "#### `erin@example.com` (2 changes)" in lines
    assert "#### Warnings" in lines
    assert lines[-1] == f"<sub>fingerprint `{FINGERPRINT}` · tyksync {__version__}</sub>"
    assert "truncated" not in out
    assert sum(bool(ACTION_LINE.match(line)) for line in lines) == len(FULL.actions)


def test_markdown_groups_a_developer_once_in_order_of_first_appearance() -> None:
    plan = plan_of(actions=(DELETE_APPROVED, CREATE, DELETE_LEGACY))
    headings = [line for line in markdown_of(plan).splitlines() if line.startswith("#### ")]
    assert headings == [
        "#### `erin@example.com` (2 changes)",
        "#### `alice@example.com` (1 change)",
    ]


def test_markdown_no_changes_keeps_the_table() -> None:
    lines = markdown_of(EMPTY).splitlines()
    assert "No changes." in lines
    assert "| 0 | 0 | 0 | 0 | 0 | 0 |" in lines
    assert not any(line.startswith("#### ") for line in lines)


def test_markdown_approved_delete_says_the_key_stays_valid() -> None:
    out = markdown_of(plan_of(actions=(DELETE_APPROVED,)))
    assert "**approved: the key it issued stays valid**" in out


def test_a_delete_that_revokes_says_so_and_not_that_the_key_stays_valid() -> None:
    plan = plan_of(actions=(DELETE_REVOKES, REPLACE_REVOKES))
    text, markdown = text_of(plan), markdown_of(plan)
    assert "(approved: revoke key#ab12cd34)" in text
    assert "(approved: revoke key#0f1e2d3c)" in text
    assert "**revoke** `key#ab12cd34`" in markdown
    assert "stays valid" not in text + markdown
    actions = json.loads(json_of(plan))["actions"]
    assert [a["revoke_key"] for a in actions] == ["key#ab12cd34", "key#0f1e2d3c"]


def test_the_pending_queue_lists_the_20_oldest_and_a_count() -> None:
    text, markdown = text_of(LIFECYCLE), markdown_of(LIFECYCLE)
    listed = [line for line in text.splitlines() if line.startswith("  ? ")]
    assert len(listed) == 20
    assert listed[0].endswith("request 64c0c0c0c0c0c0c0c0c0d000  61 days old")
    assert "23 pending requests wait for a decision (the 20 oldest shown):" in text
    assert "  ... and 3 more (plan --format json lists all)" in text
    assert (
        sum(
            line.startswith("- `dave") or line.startswith("- `erin")
            for line in markdown.splitlines()[
                markdown.splitlines().index(
                    "#### 23 pending requests wait for a decision (the 20 oldest shown)"
                ) :
            ]
        )
        == 20
    )
    pending = json.loads(json_of(LIFECYCLE))["pending"]
    assert len(pending) == 23
    assert pending[0] == {
        "request_id": "64c0c0c0c0c0c0c0c0c0d000",
        "developer": {"id": DAVE.id, "email": DAVE.email},
        "policies": [{"id": GOLD.id, "name": "Gold"}, {"id": SILVER.id, "name": "Silver"}],
        "date_created": "2026-10-01T08:00:00.000000Z",
        "age_days": 61,
    }
    assert "pending" not in text_of(FULL) and "pending" not in markdown_of(FULL)


def _code_spans(line: str) -> tuple[list[str], str]:
    """CommonMark code spans of one line, and the line without them: a backtick run opens
    a span that the next run of the same length closes; one space is stripped from each
    side of content that has a space on both."""
    spans: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(line):
        if line[i] != "`":
            rest.append(line[i])
            i += 1
            continue
        run = re.match(r"`+", line[i:])
        assert run is not None
        fence = run.group(0)
        closing = re.compile(r"(?<!`)" + fence + r"(?!`)")
        end = closing.search(line, i + len(fence))
        if end is None:  # an unmatched run is literal text
            rest.append(fence)
            i += len(fence)
            continue
        content = line[i + len(fence) : end.start()]
        if len(content) >= 2 and content[0] == content[-1] == " " and content.strip():
            content = content[1:-1]
        spans.append(content)
        rest.append("\x00")  # where a span stood
        i = end.end()
    return spans, "".join(rest)


HOSTILE_STRINGS = (
    "a|b",
    "<script>alert('x')</script>",
    "`rm -rf` ``x``",
    "@security-team",
    "fish & chips",
    "[click](https://evil.example)",
    "$x^2$ # not a heading ~~strike~~ *em* _em_",
    "mallory<b>&co@example.com",
    "Gold, *EU* [beta]",
    "<img src=x onerror=alert(1)>",
    "payments|team",
    "manifests/we|rd.yaml:3",
)


def test_markdown_puts_every_outside_string_in_a_code_span() -> None:
    out = markdown_of(HOSTILE)
    spans: list[str] = []
    outside = []
    for line in out.splitlines():
        if line.startswith("|") or line.startswith("<sub>"):
            continue  # the summary table (numbers) and our footer
        found, rest = _code_spans(line)
        spans += found
        outside.append(rest)
    # Nothing of the hostile input stands outside a code span (`\\[...\\]` is ours).
    text = "\n".join(outside).replace("\\[", "").replace("\\]", "")
    for raw in ("<", ">", "|", "@", "[", "http", "&", "$", "EU", "mallory", "Gold", "script"):
        assert raw not in text, (raw, text)
    # ... and each value is intact inside one (a field as `key=value`).
    joined = "\n".join(spans)
    for raw in HOSTILE_STRINGS:
        assert raw in joined, raw
    assert "mention=@security-team" in spans
    # No control characters, and one line per action and per warning.
    assert "\x1b" not in out
    assert "\r" not in out
    assert "\u202e" not in out
    assert "ansi=\\x1b[31mred\\x1b[0m" in spans
    lines = out.splitlines()
    assert sum(bool(re.match(r"- `(\+|-)` \*\*", line)) for line in lines) == 2
    warnings = lines[lines.index("#### Warnings") + 2 :]
    assert warnings[0].startswith("- `mallory") and warnings[0].endswith("next line``")


def test_markdown_code_span_holds_any_backtick_run() -> None:
    for value in ("`", "``", "a`b", "` x `", " lead", "trail ", "", "```fence```"):
        plan = plan_of(
            actions=(
                Action("create", HOSTILE_DEV, (GOLD,), "new", approve=True, fields={"k": value}),
            )
        )
        spans, _ = _code_spans(next(x for x in markdown_of(plan).splitlines() if "k=" in x))
        assert f"k={value}" in spans, value


def test_markdown_truncates_2000_actions_under_the_limit() -> None:
    plan = big_plan(2000)
    full = markdown_of(plan, limit=10**9)
    assert len(full) > 60000
    out = markdown_of(plan)
    assert len(out) < 60000
    lines = out.splitlines()
    shown = sum(line.startswith("- `+`") for line in lines)
    assert 0 < shown < 2000
    note = (
        f"_… output truncated: {2000 - shown} more actions not shown "
        "(full plan: run tyksync plan --format json)._"
    )
    assert note in lines
    # The head, the warnings and the footer survive; the cut is at a whole action.
    assert lines[0] == "### tyksync plan"
    assert "| 2000 | 0 | 0 | 0 | 2 | 0 |" in lines
    assert sum(line.startswith("- `bob@example.com`") for line in lines) == 1
    assert lines[-1].startswith("<sub>fingerprint ")
    assert full.startswith(out[: out.index("\n\n#### Warnings")])
    # No developer heading is left without an action under it.
    for i, line in enumerate(lines):
        if line.startswith("#### developer-"):
            assert lines[i + 2].startswith("- `+`")


def test_markdown_truncation_note_names_where_the_full_plan_is() -> None:
    plan = big_plan(2000)
    where = "full plan: the `tyksync-plan` artifact of [this run](https://ci.example/runs/7)"
    out = io.StringIO()
    render_markdown(plan, out, full_plan=where)
    text = out.getvalue()
    assert len(text) < 60000
    note = next(line for line in text.splitlines() if "output truncated" in line)
    assert note.endswith(f"not shown ({where})._")
    # One line whatever it is given; nothing given is the default.
    out = io.StringIO()
    render_markdown(plan, out, full_plan="see\n\nthe   artifact\n")
    assert "not shown (see the artifact)._" in out.getvalue()
    out = io.StringIO()
    render_markdown(plan, out, full_plan=" \n")
    assert "(full plan: run tyksync plan --format json)._" in out.getvalue()


def test_markdown_limit_is_strict() -> None:
    full = markdown_of(FULL, limit=10**9)
    assert markdown_of(FULL, limit=len(full) + 1) == full
    at_limit = markdown_of(FULL, limit=len(full))
    assert len(at_limit) < len(full)
    assert "output truncated" in at_limit


ACTION_LINE = re.compile(r"- `(\+|~|-/\+|-)` \*\*")
WARNING_LINE = re.compile(r"- `[a-z]+@example.com` \\\[")
ACCESS_LINE = re.compile(r"- `[a-z]+@example.com`: `[-+~?]`")


def test_markdown_any_limit_gives_output_under_it() -> None:
    full = markdown_of(FULL, limit=10**9)
    for limit in range(700, len(full) + 2):
        try:
            out = markdown_of(FULL, limit=limit)
        except ValueError:
            continue  # too small for even the summary: refused, never overrun
        assert len(out) < limit
        hidden = re.search(
            r"truncated: (?:the access changes of (\d+) more developers? and )?"
            r"(\d+) more actions?(?: and (\d+) more warnings?)?",
            out,
        )
        lines = out.splitlines()
        shown_actions = sum(bool(ACTION_LINE.match(line)) for line in lines)
        shown_warnings = sum(bool(WARNING_LINE.match(line)) for line in lines)
        shown_access = sum(bool(ACCESS_LINE.match(line)) for line in lines)
        if hidden is None:
            assert out == full
        else:
            assert shown_access + int(hidden.group(1) or 0) == 4  # alice, bob, dave, erin
            assert shown_actions + int(hidden.group(2)) == len(FULL.actions)
            assert shown_warnings + int(hidden.group(3) or 0) == len(FULL.warnings)


def test_markdown_cuts_warnings_last() -> None:
    plan = big_plan(20)
    full = markdown_of(plan, limit=10**9)
    out = markdown_of(plan, limit=len(full) - 300)
    lines = out.splitlines()
    shown = sum(line.startswith("- `+`") for line in lines)
    assert 0 < shown < 20
    assert "- `bob@example.com`" in out and "- `dave@example.com`" in out
    assert f"_… output truncated: {20 - shown} more actions not shown (full" in out


def test_markdown_cuts_warnings_when_they_alone_do_not_fit() -> None:
    many = tuple(
        PlanWarning(DevRef(f"64c0{i:020x}", f"w{i:03d}@example.com"), (GOLD,), "x" * 80)
        for i in range(50)
    )
    plan = plan_of(actions=(CREATE,), warnings=many)
    out = markdown_of(plan, limit=2000)
    assert len(out) < 2000
    shown = sum(line.startswith("- `w") for line in out.splitlines())
    assert 0 < shown < 50
    assert f"1 more action and {50 - shown} more warnings not shown" in out


def test_markdown_refuses_a_limit_too_small_for_the_summary() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        markdown_of(FULL, limit=100)


# --- dispatch and streams ---------------------------------------------------------------


def test_formats_are_the_format_literal() -> None:
    assert set(FORMATS) == set(get_args(Format))


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_dispatches(fmt: Format) -> None:
    direct = {"text": text_of(FULL), "json": json_of(FULL), "markdown": markdown_of(FULL)}
    out = io.StringIO()
    render(FULL, out, fmt)
    assert out.getvalue() == direct[fmt]


def test_render_passes_colour_to_text_only() -> None:
    out = io.StringIO()
    render(FULL, out, "text", color=True)
    assert out.getvalue() == text_of(FULL, color=True)
    out = io.StringIO()
    render(FULL, out, "markdown", color=True)
    assert "\x1b" not in out.getvalue()


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown plan format 'html'"):
        render(FULL, io.StringIO(), "html")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(PLANS))
def test_renderers_write_only_to_the_given_stream(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = PLANS[name]
    sink = io.StringIO()
    render_text(plan, sink, color=True)
    render_json(plan, sink)
    render_markdown(plan, sink)
    render_markdown(big_plan(300), sink, limit=5000)
    for fmt in FORMATS:
        render(plan, sink, fmt)
    assert sink.getvalue()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
