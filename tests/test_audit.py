"""Audit (SPEC section 12): `grants` over real HTTP against the sandbox, the offline
`diff` (two folders, and a revision of a temporary git repository), and the access changes
every plan opens with, checked against the actions of the same plan (hypothesis).

Golden files are in `tests/golden/audit/`. After a change of output that is meant,
rewrite them and review the diff like any other code:

    TYKSYNC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_audit.py
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import EXAMPLES, ROOT, Tyk

from tyksync.audit import (
    UNDECLARED,
    UNMANAGED,
    GrantFilter,
    GrantsReport,
    access_diff,
    grants,
)
from tyksync.client import DashboardClient
from tyksync.manifest import load_manifests
from tyksync.models import LiveState
from tyksync.pipeline import plan_for
from tyksync.plan import (
    ACCESS_KINDS,
    Action,
    DevRef,
    Plan,
    PolicyRef,
    Scope,
    access_changes,
)
from tyksync.render import render_json, render_markdown, render_text
from tyksync.render_audit import (
    CSV_COLUMNS,
    _csv_bool,
    render_diff,
    render_grants,
    render_grants_csv,
)
from tyksync.sandbox import Sandbox

GOLDEN = Path(__file__).parent / "golden" / "audit"
UPDATE = os.environ.get("TYKSYNC_UPDATE_GOLDEN") == "1"
NOW = dt.datetime(2026, 2, 1, 12, 0, tzinfo=dt.timezone.utc)

ALICE = "64a000000000000000000a01"
GOLD = "64b000000000000000000b01"
REPORTS = "64b000000000000000000b03"
LIST_CALLS = {
    ("GET", "/api/portal/requests"): 1,
    ("GET", "/api/portal/developers"): 1,
    ("GET", "/api/portal/policies"): 1,
}


def assert_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
        return
    assert path.exists(), f"{path} is missing; create it with TYKSYNC_UPDATE_GOLDEN=1"
    assert actual == path.read_bytes().decode("utf-8"), f"{name} differs from its golden file"


def read_live(sandbox: Sandbox) -> LiveState:
    client = DashboardClient(sandbox.url, sandbox.secret, timeout=(5.0, 10.0))
    try:
        return client.read_live()
    finally:
        client.close()


def rendered(report: GrantsReport, fmt: str) -> str:
    out = io.StringIO()
    render_grants(report, out, fmt)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in the repository root, so that manifests read as `examples/manifests/...`."""
    monkeypatch.chdir(ROOT)


# ---- grants: golden files, from the demo Dashboard over HTTP -----------------------------

FORMATS = [("text", "txt"), ("json", "json"), ("csv", "csv"), ("markdown", "md")]


@pytest.mark.parametrize("fmt,suffix", FORMATS)
def test_grants_golden_with_manifests(
    fmt: str, suffix: str, sandbox: Sandbox, in_root: None
) -> None:
    manifests = load_manifests([Path("examples/manifests")])
    report = grants(read_live(sandbox), now=NOW, manifests=manifests, dashboard="sandbox:demo")
    assert_golden(f"grants_manifests.{suffix}", rendered(report, fmt))


@pytest.mark.parametrize("fmt,suffix", FORMATS)
def test_grants_golden_without_manifests(fmt: str, suffix: str, sandbox: Sandbox) -> None:
    report = grants(read_live(sandbox), now=NOW, dashboard="sandbox:demo")
    assert_golden(f"grants_live.{suffix}", rendered(report, fmt))


def hostile_sandbox(sandbox: Sandbox) -> Sandbox:
    """The demo plus a developer, a policy and an owner that a hostile party chose."""
    store = sandbox.store
    dev = store.add_developer("mal|lory`x`@evil.example\x1b[2J\n", id="64a0000000000000000000ff")
    policy = store.add_policy(
        "=cmd|' /C calc'!A0 <b>`Gold`</b>", id="evil", db_id="64b0000000000000000000ff"
    )
    store.add_request(
        dev["id"],
        [policy["_id"]],
        approved=True,
        fields={"tyksync_owner": "@team|x\u202e"},
        date_created="2026-01-20T00:00:00Z",
        id="64c0000000000000000000ff",
    )
    return sandbox


@pytest.mark.parametrize("fmt,suffix", FORMATS)
def test_grants_golden_hostile(fmt: str, suffix: str, sandbox: Sandbox) -> None:
    report = grants(read_live(hostile_sandbox(sandbox)), now=NOW, dashboard="sandbox:demo")
    assert_golden(f"grants_hostile.{suffix}", rendered(report, fmt))


def test_grants_hostile_text_has_no_control_characters(sandbox: Sandbox) -> None:
    report = grants(read_live(hostile_sandbox(sandbox)), now=NOW)
    for fmt in ("text", "csv", "markdown", "json"):
        out = rendered(report, fmt)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e]", out), fmt
        if fmt in ("text", "csv"):
            assert "mal|lory`x`@evil.example\\x1b[2J\\n" in out


def table_cells(line: str) -> list[str]:
    """A GFM table row split as GFM splits it: at every pipe not preceded by a backslash."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_grants_markdown_table_cells_hold_hostile_pipes(sandbox: Sandbox) -> None:
    out = rendered(grants(read_live(hostile_sandbox(sandbox)), now=NOW), "markdown")
    rows = [line for line in out.splitlines() if line.startswith("|")]
    widths = {len(table_cells(row)) for row in rows}
    assert widths == {9}
    evil = next(row for row in rows if "evil.example" in row)
    cells = [c.strip() for c in table_cells(evil)]
    # The developer cell is one code span whose fence is longer than its backtick runs.
    assert cells[0] == "``mal\\|lory`x`@evil.example\\x1b[2J\\n``"
    assert cells[1] == "``=cmd\\|' /C calc'!A0 <b>`Gold`</b>``"
    assert cells[4] == "`@team\\|x\\u202e`"


def test_grants_csv_parses_and_agrees_with_json(sandbox: Sandbox, in_root: None) -> None:
    manifests = load_manifests([Path("examples/manifests")])
    report = grants(read_live(sandbox), now=NOW, manifests=manifests)
    rows = list(csv.DictReader(io.StringIO(rendered(report, "csv"))))
    data = json.loads(rendered(report, "json"))["grants"]
    assert len(rows) == len(data) == 6
    assert tuple(rows[0]) == CSV_COLUMNS
    for row, item in zip(rows, data, strict=True):
        assert row["developer_email"] == item["developer"]["email"]
        assert row["developer_id"] == item["developer"]["id"]
        assert row["policies"].split(";") == [p["name"] for p in item["policies"]] or (
            row["policies"] == "" and item["policies"] == []
        )
        assert row["policy_ids"] == ";".join(p["id"] for p in item["policies"])
        for key in ("state", "request_id", "declared_at", "created"):
            assert row[key] == item[key]
        assert row["owner"] == (item["owner"] or "")
        assert int(row["age_days"]) == item["age_days"]
        assert row["wanted"] == ("yes" if item["wanted"] else "no")
        assert row["expires"] == ""
        assert row["key_on_record"] == _csv_bool(item["key_on_record"])
        assert row["for_api"] == (item["for_api"] or "")


def test_grants_csv_neutralises_formulas(sandbox: Sandbox) -> None:
    report = grants(read_live(hostile_sandbox(sandbox)), now=NOW)
    out = io.StringIO()
    render_grants_csv(report, out)
    row = next(
        r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["request_id"].endswith("ff")
    )
    assert row["policies"] == "'=cmd|' /C calc'!A0 <b>`Gold`</b>"
    assert row["owner"] == "'@team|x\\u202e"


# ---- grants: where each request is declared, read off the plan ---------------------------


def test_grants_place_each_request_as_the_plan_does(sandbox: Sandbox, in_root: None) -> None:
    # A duplicate of carol's declared Gold request, newer, so the plan keeps the old one.
    sandbox.store.add_request(
        "64a000000000000000000a03",
        [GOLD],
        approved=False,
        fields={"tyksync_owner": "payments-team"},
        date_created="2026-01-10T00:00:00Z",
        id="64c0000000000000000000d1",
    )
    live = read_live(sandbox)
    manifests = load_manifests([Path("examples/manifests")])
    plan = plan_for(manifests, live)
    report = grants(live, now=NOW, manifests=manifests)
    by_id = {g.request_id: g for g in report.grants}
    assert by_id["64c000000000000000000c02"].declared_at == "examples/manifests/payments.yaml:21"
    assert by_id["64c000000000000000000c02"].wanted is True
    assert by_id["64c0000000000000000000d1"].declared_at == UNDECLARED  # the duplicate
    assert by_id["64c000000000000000000c04"].declared_at == UNDECLARED  # pruned
    assert by_id["64c000000000000000000c06"].declared_at == UNMANAGED  # legacy, no manifest
    assert by_id["64c000000000000000000c05"].declared_at == "examples/manifests/analytics.yaml:9"
    # Every row the plan deletes is unwanted, every unmanaged one is one the plan counts.
    deleted = {a.request_id for a in plan.actions if a.action == "delete"}
    assert {g.request_id for g in report.grants if g.declared_at == UNDECLARED} == deleted
    assert sum(g.declared_at == UNMANAGED for g in report.grants) == plan.unmanaged
    assert {g.request_id[-3:] for g in report.grants if g.wanted} == {"c01", "c02", "c03", "c05"}
    assert report.not_yet_live == plan.count("create") == 2


def test_grants_ages_and_states(sandbox: Sandbox) -> None:
    report = grants(read_live(sandbox), now=NOW)
    by_id = {g.request_id: g for g in report.grants}
    carol = by_id["64c000000000000000000c02"]
    assert (carol.state, carol.age_days, carol.created[:10]) == ("key", 30, "2026-01-02")
    assert by_id["64c000000000000000000c01"].state == "pending"
    legacy = by_id["64c000000000000000000c06"]
    assert (legacy.policies, legacy.for_api) == ((), "5f1e7e0a1dcd600011112222")
    assert all(g.expires is None for g in report.grants)
    # The demo seeds keys on the developers' records: each approved request's is there.
    assert {g.request_id: g.key_on_record for g in report.grants if g.state == "key"} == {
        g.request_id: None if g.for_api else True for g in report.grants if g.state == "key"
    }
    assert all(g.key_on_record is None for g in report.grants if g.state == "pending")
    assert all(g.declared_at is None and g.wanted is None for g in report.grants)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (GrantFilter(developers=("ERIN@example.com",)), {"c04", "c05"}),
        (GrantFilter(developers=("64a000000000000000000a02",)), {"c01"}),
        (GrantFilter(policies=("Silver",)), {"c01", "c04"}),
        (GrantFilter(policies=("silver",)), {"c01", "c04"}),  # the explicit id
        (GrantFilter(policies=("Gold", "Reports")), {"c02", "c03", "c05"}),
        (GrantFilter(owners=("payments-team",)), {"c01", "c02", "c03", "c04"}),
        (GrantFilter(unmanaged=True), {"c05", "c06"}),  # no owner mark
        (GrantFilter(state="key"), {"c02", "c04", "c06"}),
        (GrantFilter(policies=("Silver",), state="key"), {"c04"}),
        (GrantFilter(expiring_within=3650), set()),  # no expiry is known yet
        (GrantFilter(developers=("nobody@example.com",)), set()),
    ],
)
def test_grants_filters(sandbox: Sandbox, where: GrantFilter, expected: set[str]) -> None:
    report = grants(read_live(sandbox), now=NOW, where=where)
    assert {g.request_id[-3:] for g in report.grants} == expected


def test_grants_unmanaged_with_manifests_is_what_no_manifest_governs(
    sandbox: Sandbox, in_root: None
) -> None:
    manifests = load_manifests([Path("examples/manifests")])
    report = grants(
        read_live(sandbox), now=NOW, manifests=manifests, where=GrantFilter(unmanaged=True)
    )
    # erin's portal request has no owner mark, but analytics.yaml declares it.
    assert [g.request_id for g in report.grants] == ["64c000000000000000000c06"]


def test_grants_show_expires_as_written_and_filter_on_it(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "version: 1\nowner: payments-team\nprune: none\ndevelopers:\n"
        "  carol@example.com:\n    - plan: Gold\n      expires: 2026-02-10\n"
        "      fields: {ticket: OPS-1}\n"
    )
    manifests = load_manifests([tmp_path])

    def carol(within: int | None) -> list[str | None]:
        where = GrantFilter(developers=("carol@example.com",), expiring_within=within)
        report = grants(read_live(sandbox), now=NOW, manifests=manifests, where=where)
        return [g.expires for g in report.grants]

    # The date as written (not the moment it takes effect, the next midnight).
    assert carol(None) == ["2026-02-10"]
    # NOW is 2026-02-01 12:00; the grant holds through the 10th: it ends at the 11th's
    # midnight, 9.5 days away.
    assert carol(10) == ["2026-02-10"]
    assert carol(9) == []


# ---- grants through the CLI, over HTTP ---------------------------------------------------


def test_grants_reads_the_dashboard_once_three_list_calls(dash: Sandbox, tyk: Tyk) -> None:
    for i in range(40):  # more developers and requests than a page holds
        dev = dash.store.add_developer(f"dev{i:02d}@example.com")
        dash.store.add_request(dev["id"], [GOLD], approved=bool(i % 2))
    dash.reset_counts()
    r = tyk("grants", "manifests", "--format", "json")
    assert r.code == 0, r.err
    assert dash.counts() == LIST_CALLS
    assert dash.mutating_calls() == 0
    assert len(json.loads(r.out)["grants"]) == 46
    dash.reset_counts()
    assert tyk("grants", "--format", "csv").code == 0
    assert dash.counts() == LIST_CALLS


def test_grants_cli_filters_and_formats(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("grants", "manifests", "--policy", "Gold", "--state", "key", "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert set(data) == {"dashboard", "as_of", "grants"}
    (row,) = data["grants"]
    assert row["developer"] == {"id": "64a000000000000000000a03", "email": "carol@example.com"}
    assert row["declared_at"] == "manifests/payments.yaml:21"
    assert row["wanted"] is True
    assert set(row) == {
        "developer",
        "policies",
        "state",
        "request_id",
        "owner",
        "declared_at",
        "created",
        "age_days",
        "expires",
        "key_on_record",
        "wanted",
        "for_api",
    }
    text = tyk("grants", "manifests", "--unmanaged")
    assert text.code == 0
    assert "[legacy API 5f1e7e0a1dcd600011112222]" in text.out
    assert "1 grant: 1 key, 0 pending." in text.out
    owner = tyk("grants", "--owner", "payments-team", "--developer", "erin@example.com")
    assert "64c000000000000000000c04" in owner.out
    assert "64c000000000000000000c05" not in owner.out
    none = tyk("grants", "--expiring-within", "30", "--format", "markdown")
    assert none.code == 0
    assert "No grants." in none.out
    typo = tyk("grants", "--policy", "Glod", "--developer", "bob@example.com")
    assert "No grants." in typo.out
    assert "--policy 'Glod': no policy with this name, id or _id on the Dashboard" in typo.err
    assert "--developer" not in typo.err
    md = tyk("grants", "manifests", "--format", "markdown")
    assert md.out.startswith("### tyksync grants\n")


def test_grants_bad_manifests_fail_before_any_call(dash: Sandbox, tyk: Tyk) -> None:
    Path("manifests/bad.yaml").write_text("version: 1\nowner: x\ndevelopers: {a@b.c: [{}]}\n")
    dash.reset_counts()
    r = tyk("grants", "manifests")
    assert r.code == 1
    assert "manifests/bad.yaml:3" in r.err
    assert dash.counts() == {}


def test_grants_unresolvable_manifests_are_an_error(dash: Sandbox, tyk: Tyk) -> None:
    Path("manifests/more.yaml").write_text(
        "version: 1\nowner: x\ndevelopers:\n  nobody@example.com:\n    - plan: Gold\n"
    )
    r = tyk("grants", "manifests")
    assert r.code == 1
    assert "unknown developer 'nobody@example.com'" in r.err


# ---- access changes in the plan ----------------------------------------------------------

DEVS = [DevRef(f"64a0{i:020x}", f"dev{i}@example.com") for i in range(4)]
POLICIES = [PolicyRef(f"64b0{i:020x}", name) for i, name in enumerate(["Gold", "Silver", "Rep"])]


@st.composite
def actions(draw: st.DrawFn) -> Action:
    kind = draw(st.sampled_from(["create", "approve", "replace", "delete"]))
    policies = tuple(draw(st.lists(st.sampled_from(POLICIES), min_size=1, max_size=3, unique=True)))
    if kind == "delete":
        policies = draw(st.sampled_from([policies, ()]))
    return Action(
        action=kind,
        developer=draw(st.sampled_from(DEVS)),
        policies=policies,
        reason="generated",
        request_id=None if kind == "create" else f"64c0{draw(st.integers(0, 999)):020x}",
        approve=True if kind == "approve" else draw(st.booleans()),
        approved=draw(st.booleans()) if kind in ("replace", "delete") else False,
        declared_at=draw(st.sampled_from([None, "m.yaml:3"])),
    )


def plan_of(acts: list[Action]) -> Plan:
    return Plan(
        actions=tuple(sorted(acts, key=lambda a: a.sort_key)),
        warnings=(),
        unmanaged=0,
        managed=len(acts),
        scope=Scope(frozenset(), frozenset(), frozenset()),
        manifest_digest="ab" * 32,
        fingerprint="cd" * 32,
        dashboard="https://dash.example.com",
    )


def expected_kinds(a: Action) -> Counter[str]:
    """SPEC 12 read literally: a key issued by a create with approval or an approval
    (gain), an approved request deleted (loss), a new key in place of an approved one
    (new key), a pending request created (pending)."""
    kinds: Counter[str] = Counter()
    issues_key = a.action == "approve" or (a.creates and a.approve)
    if a.deletes and a.approved:
        if issues_key:
            kinds["new_key"] += 1
        else:
            kinds["loss"] += 1
    if issues_key and not (a.deletes and a.approved):
        kinds["gain"] += 1
    if a.creates and not a.approve:
        kinds["pending"] += 1
    return kinds


@settings(max_examples=300, deadline=None)
@given(st.lists(actions(), max_size=12))
def test_access_changes_match_the_actions(acts: list[Action]) -> None:
    plan = plan_of(acts)
    changes = plan.access_changes
    # Each change comes from one action of the plan, and each action gives exactly the
    # changes its kind calls for: nothing more, nothing less, in the actions' order.
    expected = [
        (kind, a.developer, a.policies, a.request_id, a.declared_at)
        for a in plan.actions
        for kind in sorted(expected_kinds(a), key=["loss", "new_key", "gain", "pending"].index)
    ]
    got = [(c.change, c.developer, c.policies, c.request_id, c.declared_at) for c in changes]
    assert got == expected
    assert all(c.change in ACCESS_KINDS for c in changes)
    # A delete of a pending request changes no access; every other action does.
    for a in plan.actions:
        silent = a.action == "delete" and not a.approved
        assert silent == (not expected_kinds(a))
    # Every rendering shows them: JSON as data, text and Markdown one line per developer.
    data = json.loads(_render(render_json, plan))
    assert data["access_changes"] == [c.to_data() for c in changes]
    developers = {c.developer for c in changes}
    text = _render(lambda p, s: render_text(p, s, color=False), plan)
    md = _render(render_markdown, plan)
    if developers:
        assert "\nAccess changes:\n" in text
        assert "\n**Access changes**\n" in md
        block = text.split("Access changes:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert len(block) == len(developers)
        for line in block:
            symbols = Counter(w for w in line.split() if w in ("+", "-", "~", "?"))
            who = line.split()[0]
            mine = [c for c in changes if c.developer.email == who]
            assert symbols == Counter(c.symbol for c in mine)
    else:
        assert "Access changes" not in text
        assert "Access changes" not in md


def _render(fn: object, plan: Plan) -> str:
    out = io.StringIO()
    fn(plan, out)  # type: ignore[operator]
    return out.getvalue()


def test_access_changes_of_each_kind_of_action() -> None:
    def kinds(action: str, **kw: bool) -> list[str]:
        rid = None if action == "create" else "64c0" + "0" * 20
        made = Action(action, DEVS[0], (POLICIES[0],), "r", request_id=rid, **kw)
        return [c.change for c in access_changes([made])]

    assert kinds("create", approve=True) == ["gain"]
    assert kinds("create", approve=False) == ["pending"]
    assert kinds("approve", approve=True) == ["gain"]
    assert kinds("replace", approve=True) == ["gain"]
    assert kinds("replace", approve=False) == ["pending"]
    assert kinds("replace", approve=True, approved=True) == ["new_key"]
    assert kinds("replace", approve=False, approved=True) == ["loss", "pending"]
    assert kinds("delete", approved=True) == ["loss"]
    assert kinds("delete", approved=False) == []


@pytest.mark.parametrize("limit", [20000, 8000])
def test_markdown_truncation_keeps_access_changes_first(limit: int) -> None:
    acts = [
        Action("create", DevRef(f"64a0{i:020x}", f"d{i:03d}@example.com"), (POLICIES[0],), "r",
               approve=True, fields={"ticket": "x" * 80})
        for i in range(300)
    ]  # fmt: skip
    md = _render(lambda p, s: render_markdown(p, s, limit=limit), plan_of(acts))
    assert len(md) < limit
    assert "**Access changes**" in md
    note = re.search(
        r"truncated: (?:the access changes of (\d+) more developers and )?(\d+) more", md
    )
    assert note is not None
    shown = sum(1 for line in md.splitlines() if re.match(r"- `d\d+@example.com`: ", line))
    assert shown + int(note.group(1) or 0) == 300


# ---- diff: two folders -------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


OLD = """\
version: 1
owner: payments-team
developers:
  alice@example.com:
    - plan: Gold
    - plans: [Gold, Reports]
      approved: false
  bob@example.com:
    - plan: Silver
  carol@example.com:
    - plan: Gold
  dave@example.com:
    - plan: Reports
      approved: false
"""
NEW = """\
version: 1
owner: payments-team
developers:
  Alice@Example.com:
    - plans: [Gold]
    - plans: [Reports, Gold]
  bob@example.com:
    - plan: Silver Plus
  dave@example.com:
    - plan: Reports
  erin@example.com:
    - plan: Gold
      approved: false
"""
MOVED = """\
version: 1
owner: data-team
prune: none
developers:
  carol@example.com:
    - plan: Gold
      approved: false
"""


@pytest.fixture
def two_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "old" / "payments.yaml", OLD)
    write(tmp_path / "new" / "payments.yaml", NEW)
    write(tmp_path / "new" / "data.yaml", MOVED)
    return Path("old"), Path("new")


def diff_of(old: Path, new: Path) -> list[tuple[str, str, tuple[str, ...], object, object]]:
    report = access_diff(
        load_manifests([old]), load_manifests([new]), old_label=str(old), new_label=str(new)
    )
    return [(c.change, c.developer, c.policies, c.before, c.after) for c in report.changes]


def test_diff_compares_as_written(two_sets: tuple[Path, Path]) -> None:
    changes = diff_of(*two_sets)
    compact = [(kind, dev.lower(), pols) for kind, dev, pols, _, _ in changes]
    assert compact == [
        # Emails compare in any case; `plan: X` is `plans: [X]`; a set in any order.
        ("approve", "alice@example.com", ("Reports", "Gold")),
        # A rename of the policy is a loss and a gain.
        ("loss", "bob@example.com", ("Silver",)),
        ("gain", "bob@example.com", ("Silver Plus",)),
        ("unapprove", "carol@example.com", ("Gold",)),
        ("owner", "carol@example.com", ("Gold",)),
        ("approve", "dave@example.com", ("Reports",)),
        ("gain", "erin@example.com", ("Gold",)),
    ]
    by_kind = {(c[0], c[1].lower()): c for c in changes}
    assert by_kind[("owner", "carol@example.com")][3:] == ("payments-team", "data-team")
    assert by_kind[("unapprove", "carol@example.com")][3:] == (True, False)
    gain = by_kind[("gain", "erin@example.com")]
    assert gain[3] is None
    assert gain[4] == {
        "approved": False,
        "owner": "payments-team",
        "expires": None,
        "declared_at": "new/payments.yaml:12",
        "environments": None,
    }


def test_diff_same_manifests_no_changes(two_sets: tuple[Path, Path], tyk: Tyk) -> None:
    r = tyk("diff", "old", "old", "--detailed-exitcode")
    assert (r.code, r.out) == (0, "Access diff: old -> old\n\nNo access changes.\n")


def test_diff_loss_notes_when_nothing_prunes_it_any_more(tmp_path: Path) -> None:
    old = write(tmp_path / "a" / "m.yaml", MOVED)
    new = write(tmp_path / "b" / "m.yaml", "version: 1\nowner: data-team\ndevelopers: {}\n")
    gone = write(tmp_path / "c" / "other.yaml", "version: 1\nowner: x\ndevelopers: {}\n")
    (pruned,) = access_diff(
        load_manifests([old]), load_manifests([new]), old_label="a", new_label="b"
    ).changes
    assert pruned.note is None  # data-team still prunes what it owns
    (kept,) = access_diff(
        load_manifests([old]), load_manifests([gone]), old_label="a", new_label="c"
    ).changes
    assert kept.change == "loss"
    assert kept.note is not None and "no manifest prunes it any more" in kept.note


@pytest.mark.parametrize("fmt,suffix", [("text", "txt"), ("json", "json"), ("markdown", "md")])
def test_diff_golden(fmt: str, suffix: str, two_sets: tuple[Path, Path], tyk: Tyk) -> None:
    r = tyk("diff", "old", "new", "--format", fmt, "--detailed-exitcode")
    assert r.code == 2, r.err
    assert_golden(f"diff.{suffix}", r.out)


def test_diff_json_shape(two_sets: tuple[Path, Path], tyk: Tyk) -> None:
    data = json.loads(tyk("diff", "old", "new", "--format", "json").out)
    assert set(data) == {"old", "new", "changes"}
    for change in data["changes"]:
        assert {"change", "developer", "policies", "before", "after"} <= set(change)
        assert change["change"] in ("gain", "loss", "approve", "unapprove", "expiry", "owner")


def test_diff_markdown_keeps_manifest_text_inert(tmp_path: Path) -> None:
    hostile = (
        "version: 1\nowner: x\ndevelopers:\n  '<b>|`x`@example.com':\n"
        "    - plan: '[a](http://e)|`b`'\n"
    )
    new = write(tmp_path / "new" / "m.yaml", hostile)
    old = write(tmp_path / "old" / "m.yaml", "version: 1\nowner: x\ndevelopers: {}\n")
    report = access_diff(
        load_manifests([old]), load_manifests([new]), old_label="old", new_label="new"
    )
    out = io.StringIO()
    render_diff(report, out, "markdown")
    text = out.getvalue()
    assert "#### ``<b>|`x`@example.com``" in text
    assert "`` [a](http://e)|`b` ``" in text


def test_diff_usage_errors(two_sets: tuple[Path, Path], tyk: Tyk) -> None:
    r = tyk("diff", "old")
    assert r.code == 1
    assert "OLD_PATH and NEW_PATH" in r.err
    both_bad = (Path("old/bad.yaml"), Path("new/bad.yaml"))
    for path in both_bad:
        path.write_text("version: 2\n")
    r = tyk("diff", "old", "new")
    assert r.code == 1
    assert "old/bad.yaml:1" in r.err
    assert "new/bad.yaml:1" in r.err


def test_diff_reads_no_secret_and_no_dashboard(
    two_sets: tuple[Path, Path], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYK_DASHBOARD_URL", "https://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("TYK_DASHBOARD_SECRET", raising=False)
    assert tyk("diff", "old", "new").code == 0


# ---- diff --base: a git revision ----------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_OPTIONAL_LOCKS": "0",  # `git status` must not rewrite the index we compare
    }
    done = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def snapshot(repo: Path) -> tuple[str, dict[str, bytes], bytes]:
    """Everything a run could change: git's view, every file outside .git, and the index."""
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    return (
        git(repo, "status", "--porcelain", "--ignored"),
        files,
        (repo / ".git/index").read_bytes(),
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A git repository whose first commit holds the example manifests, then a work tree
    change: bob's Silver request becomes Gold, and an uncommitted new file."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    git(root, "init", "-q", "-b", "main")
    shutil.copytree(EXAMPLES, root / "manifests")
    write(root / "README.md", "not a manifest\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    payments = root / "manifests" / "payments.yaml"
    payments.write_text(payments.read_text().replace("- plan: Silver", "- plan: Gold"))
    write(
        root / "manifests" / "new.yaml",
        "version: 1\nowner: new\ndevelopers:\n  zed@example.com:\n    - plan: Reports\n",
    )
    monkeypatch.chdir(root)
    yield root


def test_diff_base_reads_the_revision_and_leaves_the_work_tree(repo: Path, tyk: Tyk) -> None:
    before = snapshot(repo)
    r = tyk("diff", "--base", "main", "manifests/", "--format", "json", "--detailed-exitcode")
    assert r.code == 2, r.err
    assert snapshot(repo) == before
    changes = json.loads(r.out)["changes"]
    assert [(c["change"], c["developer"], c["policies"]) for c in changes] == [
        ("gain", "bob@example.com", ["Gold"]),
        ("loss", "bob@example.com", ["Silver"]),
        ("gain", "zed@example.com", ["Reports"]),
    ]
    assert changes[1]["declared_at"] == "main:manifests/payments.yaml:18"
    assert changes[0]["declared_at"] == "manifests/payments.yaml:18"


def test_diff_base_markdown_golden(repo: Path, tyk: Tyk) -> None:
    r = tyk("diff", "--base", "main", "manifests", "--format", "markdown")
    assert r.code == 0, r.err
    assert_golden("diff_base.md", r.out)


def test_diff_base_committed_changes_and_a_folder_added_since(repo: Path, tyk: Tyk) -> None:
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "change")
    write(
        repo / "more" / "m.yaml",
        "version: 1\nowner: more\ndevelopers:\n  a@example.com: [{plan: Gold}]\n",
    )
    before = snapshot(repo)
    assert tyk("diff", "--base", "HEAD", "manifests").out.endswith("No access changes.\n")
    r = tyk("diff", "--base", "HEAD~1", "manifests", "more", "--format", "json")
    assert r.code == 0, r.err
    changes = [(c["change"], c["developer"]) for c in json.loads(r.out)["changes"]]
    assert changes == [
        ("gain", "a@example.com"),  # `more` did not exist at HEAD~1: all of it is new
        ("gain", "bob@example.com"),
        ("loss", "bob@example.com"),
        ("gain", "zed@example.com"),
    ]
    assert snapshot(repo) == before


def test_diff_base_from_a_subfolder_and_of_one_file(
    repo: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo / "manifests")
    r = tyk("diff", "--base", "main", "payments.yaml", "--format", "json")
    assert r.code == 0, r.err
    changes = json.loads(r.out)["changes"]
    assert [c["change"] for c in changes] == ["gain", "loss"]
    assert changes[1]["declared_at"] == "main:manifests/payments.yaml:18"


def test_diff_base_problems_name_the_revision(repo: Path, tyk: Tyk) -> None:
    write(repo / "manifests" / "payments.yaml", "version: 2\n")
    git(repo, "commit", "-q", "-am", "broken")
    write(repo / "manifests" / "payments.yaml", (EXAMPLES / "payments.yaml").read_text())
    r = tyk("diff", "--base", "HEAD", "manifests")
    assert r.code == 1
    assert "HEAD:manifests/payments.yaml:1" in r.err


def test_diff_base_unknown_revision(repo: Path, tyk: Tyk) -> None:
    before = snapshot(repo)
    r = tyk("diff", "--base", "no-such-branch", "manifests")
    assert r.code == 1
    assert "--base 'no-such-branch': unknown git revision" in r.err
    option = tyk("diff", "--base", "--upload-pack=x", "manifests")
    assert option.code == 1 and "not a git revision" in option.err
    assert snapshot(repo) == before


def test_diff_base_outside_a_git_repository(
    tmp_path: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    shutil.copytree(EXAMPLES, plain / "manifests")
    monkeypatch.chdir(plain)
    r = tyk("diff", "--base", "main", "manifests")
    assert r.code == 1
    assert "not inside a git work tree" in r.err
    assert sorted(p.name for p in plain.rglob("*")) == [
        "analytics.yaml",
        "manifests",
        "payments.yaml",
    ]


def test_diff_base_path_outside_the_repository(repo: Path, tmp_path: Path, tyk: Tyk) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLES, outside)
    r = tyk("diff", "--base", "main", str(outside))
    assert r.code == 1
    assert "outside the git work tree" in r.err


def test_grants_say_whether_the_key_is_still_on_record(dash: Sandbox, tyk: Tyk) -> None:
    # carol's seeded Gold request is approved: its key is on her record until revoked;
    # deleting the request alone leaves it there (SPEC section 11).
    def carol() -> dict[str, Any]:
        r = tyk("grants", "--developer", "carol@example.com", "--format", "json")
        assert r.code == 0, r.err
        (row,) = json.loads(r.out)["grants"]
        return dict(row)

    assert carol()["key_on_record"] is True
    issued = next(k for k in dash.store.issued() if k["request_id"] == "64c000000000000000000c02")
    dash.store.revoke_key(issued["developer_id"], issued["key_id"])
    assert carol()["key_on_record"] is False
    pending = tyk("grants", "--developer", "bob@example.com", "--format", "json")
    assert [g["key_on_record"] for g in json.loads(pending.out)["grants"]] == [None]


def test_diff_tells_declarations_of_one_identity_in_other_environments_apart(
    tmp_path: Path, tyk: Tyk
) -> None:
    def write(folder: str, staging_approved: str) -> Path:
        path = tmp_path / folder
        path.mkdir()
        (path / "m.yaml").write_text(
            "version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n"
            f"    - plan: Gold\n      approved: {staging_approved}\n"
            "      environments: [staging]\n"
            "    - plan: Gold\n      environments: [prod]\n"
        )
        return path

    old, new = write("old", "false"), write("new", "true")
    r = tyk("diff", str(old), str(new), "--format", "json", "--detailed-exitcode")
    assert r.code == 2, r.all
    (change,) = json.loads(r.out)["changes"]
    assert (change["change"], change["developer"], change["declared_at"]) == (
        "approve",
        "alice@example.com",
        f"{new}/m.yaml:5",
    )


def test_diff_base_skips_hidden_entries_and_refuses_a_huge_blob_unread(
    repo: Path, tyk: Tyk
) -> None:
    # Discovery skips .github and the like under a folder given; --base does the same.
    write(repo / "manifests" / ".github" / "ci.yml", "on: push\njobs: {}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "hidden")
    r = tyk("diff", "--base", "HEAD", "manifests/", "--format", "json")
    assert r.code == 0, r.err
    # A blob over the manifest size limit is a FILE:LINE problem, not read into memory.
    write(repo / "manifests" / "huge.yaml", "# x\n" * 300_000)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "huge")
    (repo / "manifests" / "huge.yaml").unlink()  # only the revision holds it
    huge = tyk("diff", "--base", "HEAD", "manifests/")
    assert huge.code == 1
    assert "HEAD:manifests/huge.yaml:1: file too large" in huge.err, huge.err


def test_grants_text_quotes_a_policy_name_that_would_read_as_two(dash: Sandbox, tyk: Tyk) -> None:
    policy = dash.store.add_policy("Gold, Silver]", id="blur")
    carol = next(d["id"] for d in dash.store.developers() if d["email"] == "carol@example.com")
    dash.store.add_request(carol, [policy["_id"]])
    r = tyk("grants", "--policy", "blur")
    assert r.code == 0, r.err
    assert '["Gold, Silver]"]' in r.out
