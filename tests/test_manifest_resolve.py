"""Resolving manifest references against a hand-built live state (no HTTP)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tyksync.errors import ManifestError, Problem
from tyksync.manifest import Manifests, load_manifests, resolve
from tyksync.manifest.resolve import HINTED_PROBLEMS
from tyksync.models import Desired, Developer, FileScope, LiveState, Policy
from tyksync.planner import make_plan

ALICE = Developer("64b0000000000000000000a1", "alice@example.com", "org")
BOB = Developer("64b0000000000000000000b2", "Bob@Example.com", "org")
TWIN_1 = Developer("64b0000000000000000000c1", "twin@example.com", "org")
TWIN_2 = Developer("64b0000000000000000000c2", "twin@example.com", "org")
GONE = Developer("64b0000000000000000000d1", "gone@example.com", "org", inactive=True)

GOLD = Policy("64a0000000000000000000a1", "gold-explicit", "Gold")
REPORTS = Policy("64a0000000000000000000a2", "", "Reports")
SILVER_1 = Policy("64a0000000000000000000b1", "silver-1", "Silver")
SILVER_2 = Policy("64a0000000000000000000b2", "silver-2", "Silver")
OLD = Policy("64a0000000000000000000c1", "old", "Old", active=False)
# A policy whose explicit id is another policy's name: the explicit id wins.
TRICKY = Policy("64a0000000000000000000d1", "Reports", "Tricky")

LIVE = LiveState(
    developers=(ALICE, BOB, TWIN_1, TWIN_2, GONE),
    policies=(GOLD, REPORTS, SILVER_1, SILVER_2, OLD),
    requests=(),
)


def manifests(tmp_path: Path, *texts: str) -> Manifests:
    for index, text in enumerate(texts):
        (tmp_path / f"m{index}.yaml").write_text(text, encoding="utf-8")
    return load_manifests([tmp_path])


def manifest(developers: str, owner: str = "team", prune: str = "owned") -> str:
    return f"version: 1\nowner: {owner}\nprune: {prune}\ndevelopers:\n{developers}"


def resolve_problems(loaded: Manifests, live: LiveState = LIVE) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        resolve(loaded, live)
    return caught.value.problems


def test_resolves_by_email_id_name_explicit_id_and_db_id(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n"  # line 5
            "    - plan: Gold\n"  # 6: by name
            "    - plans: [gold-explicit, Reports]\n"  # 7: explicit id, name; order kept
            "      approved: false\n"
            "      fields: {ticket: T-1}\n"
            "  bob@example.com:\n"  # 10: email, case-insensitively
            "    - plan: 64a0000000000000000000a2\n"  # 11: by _id
            "  64b0000000000000000000c1:\n"  # 12: by developer id (twin email is ambiguous)
            "    - plan: silver-1\n"  # 13
        ),
    )
    desired = resolve(loaded, LIVE)
    assert isinstance(desired, Desired)
    gold, gold_reports, bob, twin = desired.requests
    assert (gold.developer, gold.policies, gold.approved, gold.line) == (ALICE, (GOLD,), True, 6)
    assert gold_reports.policies == (GOLD, REPORTS)
    assert (gold_reports.approved, dict(gold_reports.fields)) == (False, {"ticket": "T-1"})
    assert gold_reports.identity == (ALICE.id, frozenset({GOLD.db_id, REPORTS.db_id}))
    assert (bob.developer, bob.policies) == (BOB, (REPORTS,))
    assert (twin.developer, twin.policies) == (TWIN_1, (SILVER_1,))
    assert all(r.owner == "team" and r.file == str(tmp_path / "m0.yaml") for r in desired.requests)
    assert desired.scopes == (
        FileScope(
            str(tmp_path / "m0.yaml"), "team", "owned", frozenset({ALICE.id, BOB.id, TWIN_1.id})
        ),
    )


def test_scope_keeps_developers_without_requests(tmp_path: Path) -> None:
    loaded = manifests(tmp_path, manifest("  alice@example.com: []\n", prune="developers"))
    desired = resolve(loaded, LIVE)
    assert desired.requests == ()
    (scope,) = desired.scopes
    assert (scope.prune, scope.developer_ids) == ("developers", frozenset({ALICE.id}))


def test_explicit_id_wins_over_a_name(tmp_path: Path) -> None:
    live = LiveState(LIVE.developers, (*LIVE.policies, TRICKY), ())
    loaded = manifests(tmp_path, manifest("  alice@example.com:\n    - plan: Reports\n"))
    (request,) = resolve(loaded, live).requests
    assert request.policies == (TRICKY,)


@pytest.mark.parametrize(
    ("developers", "line", "fragment"),
    [
        ("  nobody@example.com:\n    - plan: Gold\n", 5, "unknown developer 'nobody@example.com'"),
        ("  64b00000000000000000ffff: []\n", 5, "unknown developer '64b00000000000000000ffff'"),
        (
            "  twin@example.com:\n    - plan: Gold\n",
            5,
            "ambiguous developer 'twin@example.com': 2 developers have this email "
            f"({TWIN_1.id}, {TWIN_2.id}); use the developer id",
        ),
        ("  gone@example.com: []\n", 5, "developer 'gone@example.com' is inactive"),
        ("  alice@example.com:\n    - plan: Platinum\n", 6, "unknown policy 'Platinum'"),
        (
            "  alice@example.com:\n    - plans: [Gold, Silver]\n",
            6,
            f"ambiguous policy 'Silver': 2 policies match it (_id {SILVER_1.db_id}, "
            f"{SILVER_2.db_id}); use the policy's `id` or `_id` instead",
        ),
        ("  alice@example.com:\n    - plan: Old\n", 6, "policy 'Old' is inactive"),
        (
            "  alice@example.com:\n    - plans: [Gold, gold-explicit]\n",
            6,
            "policy 'gold-explicit' names a policy already listed in this request",
        ),
    ],
)
def test_resolution_problems(tmp_path: Path, developers: str, line: int, fragment: str) -> None:
    (problem,) = resolve_problems(manifests(tmp_path, manifest(developers)))
    assert (problem.file, problem.line) == (str(tmp_path / "m0.yaml"), line)
    assert fragment in problem.message


def test_a_developer_problem_is_reported_once(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path, manifest("  nobody@example.com:\n    - plan: Gold\n    - plan: Reports\n")
    )
    (problem,) = resolve_problems(loaded)
    assert problem.line == 5


def test_every_resolution_problem_at_once(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest("  nobody@example.com:\n    - plan: Gold\n"),
        manifest("  alice@example.com:\n    - plan: Nope\n    - plan: Old\n", owner="other"),
    )
    problems = resolve_problems(loaded)
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("m0.yaml", 5),
        ("m1.yaml", 6),
        ("m1.yaml", 7),
    ]


def test_identity_twice_after_resolution_policy(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest("  alice@example.com:\n    - plans: [Gold, Reports]\n"),
        manifest(
            "  alice@example.com:\n    - plans: [64a0000000000000000000a2, gold-explicit]\n",
            owner="other",
        ),
    )
    (problem,) = resolve_problems(loaded)
    assert (problem.file, problem.line) == (str(tmp_path / "m1.yaml"), 6)
    # The policies by name, sorted, though this request named them otherwise.
    assert problem.message == (
        "request for developer 'alice@example.com' with policies [Gold, Reports] declared "
        f"twice: here and at {tmp_path / 'm0.yaml'}:6"
    )


def test_identity_twice_after_resolution_names_what_has_no_name(tmp_path: Path) -> None:
    # A developer without an email is named by id; a policy without a name by its
    # explicit id, or else by its `_id`.
    anonymous = Developer("64b0000000000000000000e1", "", "org")
    nameless = Policy("64a0000000000000000000e1", "nameless-id", "")
    bare = Policy("64a0000000000000000000e2", "", "")
    live = LiveState((*LIVE.developers, anonymous), (*LIVE.policies, nameless, bare), ())
    loaded = manifests(
        tmp_path,
        manifest(
            f"  {anonymous.id}:\n"
            f"    - plans: [nameless-id, {bare.db_id}]\n"  # 6
            f"    - plans: [{bare.db_id}, {nameless.db_id}]\n"  # 7
        ),
    )
    (problem,) = resolve_problems(loaded, live)
    assert problem.line == 7
    assert problem.message == (
        f"request for developer '{anonymous.id}' with policies [{bare.db_id}, nameless-id] "
        f"declared twice: here and at {tmp_path / 'm0.yaml'}:6"
    )


def test_identity_twice_after_resolution_developer(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n    - plan: Gold\n"
            f"  {ALICE.id}:\n    - plan: Gold\n"  # same developer, by id
        ),
    )
    (problem,) = resolve_problems(loaded)
    assert problem.line == 8
    assert problem.message == (
        "request for developer 'alice@example.com' with policies [Gold] declared twice: "
        f"here and at {tmp_path / 'm0.yaml'}:6"
    )


def test_same_policies_for_different_developers_is_fine(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest("  alice@example.com:\n    - plan: Gold\n  bob@example.com:\n    - plan: Gold\n"),
    )
    assert len(resolve(loaded, LIVE).requests) == 2


def test_multi_policy_request_against_legacy_dashboard_is_an_error(tmp_path: Path) -> None:
    loaded = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n"  # 5
            "    - plan: Gold\n"  # 6: one policy: fine on any Dashboard
            "    - plans: [Gold, Reports]\n"  # 7
        ),
    )
    legacy = dataclasses.replace(LIVE, legacy=True)
    (problem,) = resolve_problems(loaded, legacy)
    assert (problem.file, problem.line) == (str(tmp_path / "m0.yaml"), 7)
    assert "for_plan" in problem.message and "one request per plan" in problem.message
    assert (
        len(
            resolve(
                manifests(tmp_path, manifest("  alice@example.com:\n    - plan: Gold\n")), legacy
            ).requests
        )
        == 1
    )


def test_single_policy_requests_against_a_legacy_dashboard_plan_as_usual(
    tmp_path: Path,
) -> None:
    # Only a multi-policy request is refused on a pre-1.9.2 Dashboard: single-policy ones
    # resolve and plan as on any other (a create here), however the policy is named.
    loaded = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n"
            "    - plan: Gold\n"  # 6
            "    - plans: [Reports]\n"  # 7
            "      approved: false\n"
        ),
    )
    legacy = dataclasses.replace(LIVE, legacy=True)
    desired = resolve(loaded, legacy)
    assert [(r.policies, r.approved, r.line) for r in desired.requests] == [
        ((GOLD,), True, 6),
        ((REPORTS,), False, 7),
    ]
    plan = make_plan(desired, legacy)
    assert [(a.action, [p.name for p in a.policies], a.approve) for a in plan.actions] == [
        ("create", ["Gold"], True),
        ("create", ["Reports"], False),
    ]
    assert plan.warnings == ()


# --- did you mean -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("developers", "message"),
    [
        (
            "  alice@example.com:\n    - plan: Glod\n",
            "unknown policy 'Glod' (did you mean 'Gold'?)",
        ),
        (
            # Case-insensitive; the suggestion is spelled as the Dashboard spells it.
            "  alice@example.com:\n    - plan: reprots\n",
            "unknown policy 'reprots' (did you mean 'Reports'?)",
        ),
        (
            # Both policies named Silver are one suggestion; an inactive one is none.
            "  alice@example.com:\n    - plan: Silvr\n",
            "unknown policy 'Silvr' (did you mean 'Silver'?)",
        ),
        ("  alice@example.com:\n    - plan: Olf\n", "unknown policy 'Olf'"),
        ("  alice@example.com:\n    - plan: Platinum\n", "unknown policy 'Platinum'"),
        (
            "  alcie@example.com: []\n",
            "unknown developer 'alcie@example.com' (did you mean 'alice@example.com'?)",
        ),
        (
            "  BOB@example.org: []\n",
            "unknown developer 'BOB@example.org' (did you mean 'Bob@Example.com'?)",
        ),
        # An inactive developer is not suggested.
        ("  gone@example.org: []\n", "unknown developer 'gone@example.org'"),
    ],
)
def test_unknown_names_suggest_the_closest(tmp_path: Path, developers: str, message: str) -> None:
    (problem,) = resolve_problems(manifests(tmp_path, manifest(developers)))
    assert problem.message == message


def policies_named(*names: str) -> LiveState:
    policies = (Policy(f"64a00000000000000000{i:04x}", "", n) for i, n in enumerate(names))
    return LiveState(LIVE.developers, tuple(policies), ())


def test_suggestions_are_capped(tmp_path: Path) -> None:
    live = policies_named("Gold 1", "Gold 2", "Gold 3", "Gold 4", "Gold 5")
    loaded = manifests(tmp_path, manifest("  alice@example.com:\n    - plan: Gold 6\n"))
    (problem,) = resolve_problems(loaded, live)
    assert problem.message.startswith("unknown policy 'Gold 6' (did you mean 'Gold ")
    assert problem.message.count(" or ") == 2  # three suggestions at most


def test_suggestions_are_quoted_and_escaped(tmp_path: Path) -> None:
    # Names come from the Dashboard: quotes, backslashes and control characters in them.
    live = policies_named("Gold '5'", "Silver\\6", "Reports\x1b7")
    text = "  alice@example.com:\n    - plan: Gold 5\n    - plan: Silver 6\n    - plan: Reports 7\n"
    problems = resolve_problems(manifests(tmp_path, manifest(text)), live)
    assert [p.message for p in problems] == [
        "unknown policy 'Gold 5' (did you mean 'Gold \\'5\\''?)",
        "unknown policy 'Silver 6' (did you mean 'Silver\\\\6'?)",
        "unknown policy 'Reports 7' (did you mean 'Reports\x1b7'?)",
    ]
    assert "\x1b" not in str(problems[2])
    assert str(problems[2]).endswith("(did you mean 'Reports\\x1b7'?)")


def test_ambiguity_lists_the_ids_sorted_whatever_the_dashboard_order(tmp_path: Path) -> None:
    live = LiveState(
        tuple(reversed(LIVE.developers)), tuple(reversed(LIVE.policies)), (), legacy=False
    )
    loaded = manifests(
        tmp_path,
        manifest("  twin@example.com: []\n  alice@example.com:\n    - plan: Silver\n"),
    )
    assert [p.message for p in resolve_problems(loaded, live)] == [
        "ambiguous developer 'twin@example.com': 2 developers have this email "
        f"({TWIN_1.id}, {TWIN_2.id}); use the developer id",
        f"ambiguous policy 'Silver': 2 policies match it (_id {SILVER_1.db_id}, "
        f"{SILVER_2.db_id}); use the policy's `id` or `_id` instead",
    ]


def test_a_request_refused_for_its_policies_is_not_also_declared_twice(tmp_path: Path) -> None:
    # Once a request has a problem it is left out, so it cannot also clash with another:
    # one problem each, the one that says what to fix.
    loaded = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n"
            "    - plan: Gold\n"  # 6
            "    - plans: [Gold, gold-explicit]\n"  # 7: Gold twice, which leaves [Gold]
        ),
    )
    assert [(p.line, p.message) for p in resolve_problems(loaded)] == [
        (
            7,
            "policy 'gold-explicit' names a policy already listed in this request "
            f"(_id {GOLD.db_id})",
        )
    ]
    on_legacy = manifests(
        tmp_path,
        manifest(
            "  alice@example.com:\n"
            "    - plans: [Gold, Reports]\n"  # 6
            "    - plans: [gold-explicit, Reports]\n"  # 7: the same identity
        ),
    )
    legacy = dataclasses.replace(LIVE, legacy=True)
    assert [p.line for p in resolve_problems(on_legacy, legacy)] == [6, 7]
    assert all("one request per plan" in p.message for p in resolve_problems(on_legacy, legacy))


def test_suggestions_stop_after_the_first_twenty_unknown_names(tmp_path: Path) -> None:
    # Manifests pointed at the wrong Dashboard: every name unknown. Each suggestion scans
    # every name the Dashboard has, so only the first ones get one.
    text = "".join(f"  alice{i}@example.com: []\n" for i in range(30))
    problems = resolve_problems(manifests(tmp_path, manifest(text)))
    assert len(problems) == 30
    hinted = [p for p in problems if "(did you mean 'alice@example.com'?)" in p.message]
    assert len(hinted) == HINTED_PROBLEMS
