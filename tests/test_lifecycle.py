"""Access lifecycle (SPEC section 11) end to end, over real HTTP against the sandbox:
revocation, expiry, the pending queue, provenance, and key ids kept out of every output.

Each test builds its own small world in an empty sandbox (`dash(seed=None)`), writes its
manifests under ./life, and runs tyksync as a user would (`tyk`), reading the outcome from
the sandbox's store: whether a raw key still grants access is `store.key_valid`.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from harness.capture import LogCapture, capture_logs
from support import CliResult, Tyk

from tyksync import redact
from tyksync.applier import Applier
from tyksync.client import DashboardClient
from tyksync.errors import TyksyncError
from tyksync.journal import Journal
from tyksync.manifest import load_manifests
from tyksync.models import Developer, key_label
from tyksync.pipeline import plan_live
from tyksync.sandbox import Faults, Sandbox, key_id_of

pytestmark = pytest.mark.dash(seed=None)

ALICE, BOB, CAROL = (
    "64a0000000000000000a1001",
    "64a0000000000000000a1002",
    "64a0000000000000000a1003",
)
GOLD, SILVER = "64b0000000000000000b1001", "64b0000000000000000b1002"
OWNER = "payments-team"
REVOKE_ROUTE = "DELETE /api/portal/developers/{id}/keys/{key_id}"
NOW = datetime.now(timezone.utc)


def world(sb: Sandbox) -> None:
    store = sb.store
    with store.batch():
        for dev_id, email in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")):
            store.add_developer(f"{email}@example.com", id=dev_id)
        store.add_policy("Gold", id="gold", db_id=GOLD)
        store.add_policy("Silver", id="silver", db_id=SILVER)


def owned(ticket: str) -> dict[str, str]:
    return {"ticket": ticket, "tyksync_owner": OWNER}


def granted(sb: Sandbox, developer: str, policies: list[str], ticket: str = "T-1") -> str:
    """An approved request tyksync made earlier (it carries the owner mark); its raw key."""
    request = sb.store.add_request(developer, policies, approved=True, fields=owned(ticket))
    return key_of(sb, request["id"])


def key_of(sb: Sandbox, request_id: str) -> str:
    (issued,) = [k["key"] for k in sb.store.issued() if k["request_id"] == request_id]
    return str(issued)


def manifest(body: str, name: str = "team.yaml") -> Path:
    folder = Path("life")
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(body, encoding="utf-8")
    return folder


def team(developers: str, *, head: str = "") -> Path:
    """A payments-team manifest: `head` holds file-level keys (revoke, ...)."""
    return manifest(f"version: 1\nowner: {OWNER}\n{head}developers:\n{developers}")


def journal_events(path: Path = Path(".tyksync/journal.jsonl")) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def apply(tyk: Tyk, folder: Path, *more: str) -> CliResult:
    return tyk("apply", str(folder), "--auto-approve", *more)


# ---- revocation ----------------------------------------------------------------------------


@pytest.mark.parametrize("revoke", [True, False])
def test_a_removed_grant_s_key_is_invalid_after_apply_with_revoke_and_valid_without(
    dash: Sandbox, tyk: Tyk, revoke: bool
) -> None:
    world(dash)
    folder = team(
        "  alice@example.com:\n    - plan: Gold\n", head=f"revoke: {str(revoke).lower()}\n"
    )
    assert apply(tyk, folder, "--key-sink", "sink.jsonl").code == 0
    (line,) = [json.loads(x) for x in Path("sink.jsonl").read_text().splitlines()]
    key = str(line["key"])
    assert dash.store.key_valid(key)
    label = key_label(key_id_of(key))

    team("  alice@example.com: []\n", head=f"revoke: {str(revoke).lower()}\n")
    planned = tyk("plan", "life")
    data = json.loads(tyk("plan", "life", "--format", "json").out)
    (action,) = data["actions"]
    if revoke:
        assert f"(approved: revoke {label})" in planned.out
        assert "stays valid" not in planned.out
        assert action["revoke_key"] == label
    else:
        assert "(approved: the key it issued stays valid)" in planned.out
        assert action["revoke_key"] is None

    applied = apply(tyk, folder)
    assert applied.code == 0, applied.all
    assert dash.store.requests() == []
    assert dash.store.key_valid(key) is not revoke
    events = [e["event"] for e in journal_events()]
    if revoke:
        assert f"revoked {label}, then deleted request {line['request_id']}" in applied.out
        assert (
            events.index("revoke.sent") < events.index("revoke.done") < events.index("delete.sent")
        )
        (done,) = [e for e in journal_events() if e["event"] == "revoke.done"]
        assert done["key"] == label
    else:
        assert "(the key it issued stays valid)" in applied.out
        assert "revoke.sent" not in events
    assert tyk("plan", "life", "--detailed-exitcode").code == 0


def test_the_old_half_of_a_reissue_replace_is_revoked(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    old = granted(dash, ALICE, [GOLD], "OLD")
    folder = team(
        "  alice@example.com:\n    - plan: Gold\n      fields: {ticket: NEW}\n",
        head="revoke: true\n",
    )
    assert "revoke" not in tyk("plan", "life").out  # no --reissue: a warning, no replace
    applied = apply(tyk, folder, "--reissue")
    assert applied.code == 0, applied.all
    assert f"revoked {key_label(key_id_of(old))}" in applied.out
    assert not dash.store.key_valid(old)
    (request,) = dash.store.requests()
    assert request["fields"]["ticket"] == "NEW" and request["approved"]
    assert dash.store.key_valid(key_of(dash, request["id"]))


def test_keys_that_cannot_be_told_apart_are_not_revoked_and_warned(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    store = dash.store
    # alice: two keys for Gold (the request of one was deleted by hand, its key kept).
    earlier = store.add_request(ALICE, [GOLD], approved=True, fields=owned("A-0"))
    store.delete_request(earlier["id"])
    alice_key = granted(dash, ALICE, [GOLD], "A-1")
    # bob: two approved requests for Silver, one declared (kept), one a duplicate.
    bob_keys = [granted(dash, BOB, [SILVER], "B-1"), granted(dash, BOB, [SILVER], "B-1")]
    # carol: her key already revoked by hand, so the record holds none for Gold.
    carol = store.add_request(CAROL, [GOLD], approved=True, fields=owned("C-1"))
    store.revoke_key(CAROL, key_id_of(key_of(dash, carol["id"])))
    folder = team(
        "  alice@example.com: []\n"
        "  bob@example.com:\n    - plan: Silver\n      fields: {ticket: B-1}\n"
        "  carol@example.com: []\n",
        head="revoke: true\n",
    )

    data = json.loads(tyk("plan", "life", "--format", "json").out)
    assert [(a["developer"]["email"], a["action"], a["revoke_key"]) for a in data["actions"]] == [
        ("alice@example.com", "delete", None),
        ("bob@example.com", "delete", None),
        ("carol@example.com", "delete", None),
    ]
    messages = {w["developer"]["email"]: w["message"] for w in data["warnings"]}
    assert messages["alice@example.com"].startswith(
        "2 keys on the developer's record grant exactly these policies"
    )
    assert messages["bob@example.com"].startswith("another approved request of this developer (")
    assert messages["carol@example.com"].startswith("no key on the developer's record grants")
    for w in data["warnings"]:
        assert "stays valid" in w["message"]
        assert [p["name"] for p in w["policies"]] in (["Gold"], ["Silver"])
    text = tyk("plan", "life").out
    assert "! warning: alice@example.com [Gold]  request" in text

    applied = apply(tyk, folder)
    assert applied.code == 0, applied.all
    assert "revoke key#" not in applied.out and "revoked key#" not in applied.out
    assert store.key_valid(alice_key)
    assert all(store.key_valid(k) for k in bob_keys)
    assert [r["by_user"] for r in store.requests()] == [BOB]
    assert dash.counts().get(("DELETE", REVOKE_ROUTE[len("DELETE ") :]), 0) == 0


def test_a_failed_revoke_keeps_the_request_and_the_next_apply_converges(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    (request,) = dash.store.requests()
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    dash.faults = Faults(route_errors={REVOKE_ROUTE: 1.0})

    failed = apply(tyk, folder)
    assert failed.code == 1
    assert "FAILED  delete" in failed.out
    assert "the request was kept: run apply again" in failed.out
    assert [r["id"] for r in dash.store.requests()] == [request["id"]]
    assert dash.store.key_valid(key)
    events = [e["event"] for e in journal_events()]
    assert "revoke.sent" in events and "delete.sent" not in events

    dash.faults = Faults()
    again = apply(tyk, folder)
    assert again.code == 0, again.all
    assert not dash.store.key_valid(key)
    assert dash.store.requests() == []
    assert tyk("plan", "life", "--detailed-exitcode").code == 0


def test_a_lost_revoke_answer_is_settled_without_a_second_revoke(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    dash.faults = Faults(route_drops={REVOKE_ROUTE: 1.0})
    dash.reset_counts()

    applied = apply(tyk, folder)
    assert applied.code == 0, applied.all
    assert "(its answer was lost; the key is gone)" in applied.out
    assert dash.counts()[("DELETE", "/api/portal/developers/{id}/keys/{key_id}")] == 1
    assert dash.fault_counts()["drop_after_write"] == 1
    assert not dash.store.key_valid(key)
    assert dash.store.requests() == []
    events = [e["event"] for e in journal_events()]
    assert events.count("revoke.sent") == 1
    assert events.index("revoke.lost") < events.index("revoke.done") < events.index("delete.sent")


def test_a_key_no_longer_the_planned_one_is_not_revoked_and_the_request_kept(
    dash: Sandbox,
) -> None:
    """Between plan and apply the planned key went, and another for the same policies came:
    it may be the same key under another id, so nothing is guessed."""
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    (request,) = dash.store.requests()
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    with DashboardClient(dash.url, dash.secret) as client:
        plan = plan_live(client, load_manifests([folder]))
        (action,) = plan.actions
        assert action.revoke_key == key_label(key_id_of(key))
        dash.store.revoke_key(ALICE, key_id_of(key))
        other = dash.store.add_request(ALICE, [GOLD], approved=True)
        dash.store.delete_request(other["id"])
        result = Applier(client).apply(plan)
    (outcome,) = result.outcomes
    assert outcome.status == "failed"
    assert "another key grants the same policies; nothing revoked" in outcome.detail
    assert [r["id"] for r in dash.store.requests()] == [request["id"]]
    assert dash.store.key_valid(key_of(dash, other["id"]))


def test_a_key_revoked_since_the_plan_lets_the_delete_go_on(dash: Sandbox) -> None:
    """A concurrent apply (or a person) revoked the planned key: the request is deleted,
    and no second revoke is sent."""
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    with DashboardClient(dash.url, dash.secret) as client:
        plan = plan_live(client, load_manifests([folder]))
        dash.store.revoke_key(ALICE, key_id_of(key))
        dash.reset_counts()
        result = Applier(client).apply(plan)
    (outcome,) = result.outcomes
    assert outcome.status == "done", outcome.detail
    assert "was revoked already, then deleted request" in outcome.detail
    assert dash.counts().get(("DELETE", "/api/portal/developers/{id}/keys/{key_id}"), 0) == 0
    assert dash.store.requests() == []


def test_a_revoke_found_done_is_journaled(dash: Sandbox) -> None:
    """The planned key was revoked since the plan: nothing is sent, and the journal says
    why the delete went on without a revoke."""
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    journal = Journal(Path("j.jsonl"))
    with DashboardClient(dash.url, dash.secret) as client:
        plan = plan_live(client, load_manifests([folder]))
        dash.store.revoke_key(ALICE, key_id_of(key))
        Applier(client, journal=journal).apply(plan)
    journal.close()
    events = journal_events(Path("j.jsonl"))
    gone = [e for e in events if e["event"] == "revoke.gone"]
    assert [e["key"] for e in gone] == [plan.actions[0].revoke_key]
    assert "revoke.sent" not in {e["event"] for e in events}
    assert not any(key_id_of(key) in json.dumps(e) for e in events)


def test_a_saved_plan_that_revokes_is_applied_and_goes_stale_when_the_keys_change(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    team("  alice@example.com: []\n  bob@example.com: []\n", head="revoke: true\n")
    assert tyk("plan", "life", "--out", "p.json").code == 0
    saved = Path("p.json").read_text()
    assert key_label(key_id_of(key)) in saved and key_id_of(key) not in saved
    # A key issued to a developer in scope since: which key a delete revokes may differ.
    other = dash.store.add_request(BOB, [SILVER], approved=True)
    dash.store.delete_request(other["id"])
    stale = tyk("apply", "--plan", "p.json")
    assert stale.code == 3 and "stale" in stale.err
    assert dash.store.key_valid(key)

    assert tyk("plan", "life", "--out", "p.json").code == 0
    applied = tyk("apply", "--plan", "p.json")
    assert applied.code == 0, applied.all
    assert not dash.store.key_valid(key)


# ---- expiry --------------------------------------------------------------------------------


def day(offset: int) -> str:
    return (NOW + timedelta(days=offset)).strftime("%Y-%m-%d")


def moment(offset: int) -> str:
    """Now plus `offset` days, to the second, as --as-of takes it."""
    return (NOW + timedelta(days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_expired_declaration_is_deleted_and_revoked_and_never_created(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    folder = team(
        "  alice@example.com:\n"
        "    - plan: Gold\n      fields: {ticket: T-1}\n      expires: 2020-01-31\n"
        "  bob@example.com:\n"
        "    - plan: Silver\n      expires: 2020-01-31T12:00:00+02:00\n",
        head="revoke: true\n",
    )
    data = json.loads(tyk("plan", "life", "--format", "json").out)
    (action,) = data["actions"]
    assert action["action"] == "delete"
    assert action["reason"] == "expired on 2020-01-31 (life/team.yaml:6)"
    assert action["declared_at"] == "life/team.yaml:6"
    assert action["revoke_key"] == key_label(key_id_of(key))
    assert "bob" not in json.dumps(data["actions"])  # expired: never created

    assert apply(tyk, folder).code == 0
    assert dash.store.requests() == []
    assert not dash.store.key_valid(key)
    assert tyk("plan", "life", "--detailed-exitcode").code == 0


def test_an_expiry_coming_up_warns_and_as_of_plans_for_another_moment(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    soon = day(5)
    folder = team(
        f"  alice@example.com:\n    - plan: Gold\n      fields: {{ticket: T-1}}\n"
        f"      expires: {soon}\n",
        head="revoke: true\n",
    )
    now = tyk("plan", "life", "--detailed-exitcode")
    assert now.code == 0  # warnings alone are no changes
    assert f"expires on {soon} (life/team.yaml:6)" in now.out
    assert "its request is deleted and its key revoked" in now.out
    assert f"expires on {soon}" not in tyk("plan", "life", "--expiry-warning", "3").out
    assert (
        f"expires on {soon}" in tyk("plan", "life", "--as-of", day(3), "--expiry-warning", "3").out
    )

    # As of the day after: expired, so deleted and revoked; as of the day itself: not yet.
    later = tyk("plan", "life", "--as-of", day(6), "--detailed-exitcode")
    assert later.code == 2
    assert f"expired on {soon} (life/team.yaml:6)" in later.out
    assert "revoke key#" in later.out
    assert "planned as of" in later.err
    assert tyk("plan", "life", "--as-of", soon, "--detailed-exitcode").code == 0
    assert tyk("plan", "life", "--as-of", f"{soon}T23:59:59Z", "--detailed-exitcode").code == 0
    bad = tyk("plan", "life", "--as-of", "next week")
    assert bad.code == 1 and "--as-of" in bad.err

    # A plan made for another moment is for review only: apply --plan refuses it.
    saved = tyk("plan", "life", "--as-of", day(6), "--out", "later.json")
    assert "apply --plan refuses it" in saved.err
    assert json.loads(Path("later.json").read_text())["saved"]["as_of"] == f"{day(6)}T00:00:00Z"
    dash.reset_counts()
    refused = tyk("apply", "--plan", "later.json")
    assert refused.code == 3
    assert "made with --as-of" in refused.err
    assert dash.mutating_calls() == 0
    # ... and apply always plans for now: nothing expires yet.
    assert apply(tyk, folder).code == 0
    assert dash.store.key_valid(key) and len(dash.store.requests()) == 1


def test_changing_expires_alone_never_replaces(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    entry = "  alice@example.com:\n    - plan: Gold\n      fields: {{ticket: T-1}}\n{}"
    folder = team(entry.format(f"      expires: {day(100)}\n"))
    assert apply(tyk, folder).code == 0
    team(entry.format(f"      expires: '{day(200)}T08:00:00Z'\n"))
    assert tyk("plan", "life", "--detailed-exitcode").code == 0
    team(entry.format(""))
    assert tyk("plan", "life", "--detailed-exitcode").code == 0


def test_a_saved_plan_is_applied_when_its_expiry_warning_is_still_the_same(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    team(f"  alice@example.com:\n    - plan: Gold\n      expires: {day(3)}\n")
    assert tyk("plan", "life", "--out", "p.json", "--expiry-warning", "7").code == 0
    assert json.loads(Path("p.json").read_text())["saved"]["expiry_warning_days"] == 7
    applied = tyk("apply", "--plan", "p.json")
    assert applied.code == 0, applied.all
    assert len(dash.store.requests()) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2027-02-30", "expires: must be a real date or time (day is out of range for month)"),
        ("2027-01-31T08:00:00", "expires: must be a date (2027-01-31) or an RFC 3339 time"),
        ("tomorrow", "expires: must be a date (2027-01-31) or an RFC 3339 time"),
        ("20270131", "expires: must be a date (2027-01-31) or an RFC 3339 time"),
        ("12:30:00", "expires: ambiguous number-like value"),
    ],
)
def test_an_expires_that_is_no_moment_is_refused_with_file_and_line(
    dash: Sandbox, tyk: Tyk, value: str, message: str
) -> None:
    team(f"  alice@example.com:\n    - plan: Gold\n    - plan: Silver\n      expires: {value}\n")
    r = tyk("validate", "life")
    assert r.code == 1
    assert f'life/team.yaml:7: developers."alice@example.com"[1].{message}' in r.err
    assert value not in r.err.replace(message, "")  # the value itself is never echoed


def test_file_level_lifecycle_keys_are_checked(dash: Sandbox, tyk: Tyk) -> None:
    team("  alice@example.com: []\n", head="revoke: 'yes'\nreject_pending_after: 30 days\n")
    r = tyk("validate", "life")
    assert r.code == 1
    assert "life/team.yaml:3: revoke: must be true or false" in r.err
    assert "life/team.yaml:4: reject_pending_after: must be a whole number of hours" in r.err
    for age in ("12h", "30d", "2w"):
        team("  alice@example.com: []\n", head=f"revoke: true\nreject_pending_after: {age}\n")
        assert tyk("validate", "life").code == 0


# ---- the pending queue ---------------------------------------------------------------------


def portal_request(sb: Sandbox, developer: str, policy: str, age_days: int) -> str:
    """A request a developer made in the portal: pending, no owner mark, `age_days` old."""
    created = NOW - timedelta(days=age_days, minutes=5)
    return str(sb.store.add_request(developer, [policy], date_created=created)["id"])


def test_pending_requests_are_listed_in_every_rendering(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    old = portal_request(dash, BOB, SILVER, 40)
    young = portal_request(dash, CAROL, GOLD, 2)
    declared = portal_request(dash, ALICE, GOLD, 50)  # declared: not waiting for anyone
    team("  alice@example.com:\n    - plan: Gold\n")

    text = tyk("plan", "life").out
    assert "2 pending requests wait for a decision:" in text
    lines = [line for line in text.splitlines() if line.startswith("  ? ")]
    assert lines == [
        f"  ? bob@example.com  [Silver]  request {old}  40 days old",
        f"  ? carol@example.com  [Gold]  request {young}  2 days old",
    ]
    assert declared not in "\n".join(lines)

    markdown = tyk("plan", "life", "--format", "markdown").out
    assert "#### 2 pending requests wait for a decision" in markdown
    assert f"- `bob@example.com` \\[`Silver`\\] request `{old}`, 40 days old" in markdown

    pending = json.loads(tyk("plan", "life", "--format", "json").out)["pending"]
    assert [p["request_id"] for p in pending] == [old, young]
    assert pending[0]["developer"] == {"id": BOB, "email": "bob@example.com"}
    assert pending[0]["policies"] == [{"id": SILVER, "name": "Silver"}]
    assert pending[0]["age_days"] == 40
    assert pending[0]["date_created"] == dash.store.get_request(old)["date_created"]
    # Ages are counted from --as-of too.
    aged = json.loads(tyk("plan", "life", "--format", "json", "--as-of", moment(10)).out)
    assert [p["age_days"] for p in aged["pending"]] == [50, 12]


def test_export_pending_then_apply_approves_the_existing_requests(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    bob = portal_request(dash, BOB, SILVER, 40)
    carol = dash.store.add_request(
        CAROL, [GOLD, SILVER], fields={"reason": "reporting"}, date_created=NOW
    )["id"]
    made_by_tyksync = dash.store.add_request(ALICE, [GOLD], fields=owned("T-9"))["id"]
    exported = tyk("export", "--pending", "-v")
    assert exported.code == 0, exported.err
    assert "owner: pending" in exported.out and "prune: none" in exported.out
    assert f"request {made_by_tyksync}: pending, made by tyksync" in exported.err
    Path("life").mkdir()
    Path("life/pending.yaml").write_text(exported.out)
    custom = tyk("export", "--pending", "--owner", "portal-triage")
    assert "owner: portal-triage" in custom.out

    plan = json.loads(tyk("plan", "life", "--format", "json").out)
    assert sorted((a["action"], a["request_id"]) for a in plan["actions"]) == sorted(
        [("approve", bob), ("approve", carol)]
    )
    dash.reset_counts()
    applied = apply(tyk, Path("life"))
    assert applied.code == 0, applied.all
    assert dash.counts().get(("POST", "/api/portal/requests"), 0) == 0  # adopted, no create
    by_id = {r["id"]: r for r in dash.store.requests()}
    assert by_id[bob]["approved"] and by_id[carol]["approved"]
    assert not by_id[made_by_tyksync]["approved"]
    assert by_id[carol]["fields"] == {"reason": "reporting"}
    assert tyk("plan", "life", "--detailed-exitcode").code == 0


def test_reject_pending_after_deletes_old_undeclared_pending_requests(
    dash: Sandbox, tyk: Tyk
) -> None:
    world(dash)
    old = portal_request(dash, BOB, SILVER, 40)
    young = portal_request(dash, BOB, GOLD, 10)
    unlisted = portal_request(dash, CAROL, GOLD, 90)  # carol is not listed in the file
    folder = team("  bob@example.com: []\n", head="reject_pending_after: 30d\n")
    data = json.loads(tyk("plan", "life", "--format", "json").out)
    (action,) = data["actions"]
    assert (action["action"], action["request_id"]) == ("delete", old)
    assert action["reason"] == "pending for 40 days (reject_pending_after: 30d in life/team.yaml)"
    assert [p["request_id"] for p in data["pending"]] == [unlisted, young]
    assert "stays valid" not in tyk("plan", "life").out  # pending: it issued no key

    assert apply(tyk, folder).code == 0
    assert sorted(r["id"] for r in dash.store.requests()) == sorted([young, unlisted])
    team("  bob@example.com: []\n", head="reject_pending_after: 1w\n")
    (later,) = json.loads(tyk("plan", "life", "--format", "json").out)["actions"]
    assert later["reason"].startswith("pending for 10 days (reject_pending_after: 1w")


# ---- provenance ----------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_created_requests_carry_their_source_and_commit(
    dash: Sandbox, tyk: Tyk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world(dash)
    team(
        "  alice@example.com:\n    - plan: Gold\n"
        "  bob@example.com:\n    - plans: [Silver, Gold]\n      approved: false\n"
    )
    git("init", "-q", cwd=tmp_path)
    git("add", "life", cwd=tmp_path)
    git("commit", "-q", "-m", "grants", cwd=tmp_path)
    head = git("rev-parse", "HEAD", cwd=tmp_path)
    # Run from a folder below the top level: sources are relative to the top level.
    (tmp_path / "ci").mkdir()
    monkeypatch.chdir(tmp_path / "ci")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/grants")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    applied = tyk("apply", "../life", "--auto-approve", "--journal", "journal.jsonl")
    assert applied.code == 0, applied.all

    fields = {r["by_user"]: r["fields"] for r in dash.store.requests()}
    assert fields[ALICE]["tyksync_source"] == "life/team.yaml:5"
    assert fields[BOB]["tyksync_source"] == "life/team.yaml:7"
    assert fields[ALICE]["tyksync_commit"] == fields[BOB]["tyksync_commit"] == head
    events = journal_events(Path("journal.jsonl"))
    assert events and all(e["commit"] == head for e in events)
    assert all(
        e["ci_run"] == "https://github.example.com/acme/grants/actions/runs/4242" for e in events
    )

    # Reserved fields never make a request differ: another commit, nothing to do.
    (tmp_path / "README").write_text("x")
    git("add", "README", cwd=tmp_path)
    git("commit", "-q", "-m", "more", cwd=tmp_path)
    assert tyk("plan", "../life", "--detailed-exitcode").code == 0


def test_outside_a_work_tree_the_source_is_relative_to_here_and_no_commit(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    world(dash)
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    folder = team("  alice@example.com:\n    - plan: Gold\n")
    assert apply(tyk, folder).code == 0
    (request,) = dash.store.requests()
    assert request["fields"]["tyksync_source"] == "life/team.yaml:5"
    assert "tyksync_commit" not in request["fields"]
    assert all("commit" not in e and "ci_run" not in e for e in journal_events())


# ---- key ids never leave tyksync -----------------------------------------------------------


def test_the_client_keeps_key_ids_hidden_and_revokes(dash: Sandbox) -> None:
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    key_id = key_id_of(key)
    with DashboardClient(dash.url, dash.secret) as client:
        live = client.read_live()
        alice = next(d for d in live.developers if d.id == ALICE)
        assert dict(alice.keys or {}) == {key_id: frozenset({GOLD})}
        assert next(d for d in live.developers if d.id == BOB).keys == {}
        assert key_id not in repr(live) and key_id not in str(alice)
        assert redact.redact(f"id {key_id}.") == f"id {redact.MASK}."
        assert client.revoke_key(ALICE, key_id) is True
        assert client.revoke_key(ALICE, key_id) is False  # 404: already gone
        assert (client.developer(ALICE) or alice).keys == {}
    assert not dash.store.key_valid(key)
    # A Developer made anywhere never shows its keys, and equal developers stay equal.
    made = Developer(ALICE, "alice@example.com", keys={"0123456789abcdef": frozenset()})
    assert "0123456789abcdef" not in repr(made) and made == Developer(ALICE, "alice@example.com")


def test_key_ids_appear_in_no_output_at_any_verbosity(
    dash: Sandbox, tyk: Tyk, logs: LogCapture, tmp_path: Path
) -> None:
    world(dash)
    store = dash.store
    revoked = granted(dash, ALICE, [GOLD])
    earlier = store.add_request(BOB, [SILVER], approved=True, fields=owned("B-0"))
    store.delete_request(earlier["id"])
    granted(dash, BOB, [SILVER], "B-1")  # ambiguous: two keys for Silver
    portal_request(dash, CAROL, GOLD, 3)
    team(
        "  alice@example.com: []\n  bob@example.com: []\n  carol@example.com:\n"
        "    - plan: Silver\n",
        head="revoke: true\n",
    )
    runs = [
        tyk("plan", "life", "-vv", "--format", fmt, "--out", f"plan-{fmt}.json")
        for fmt in ("text", "json", "markdown")
    ]
    runs.append(tyk("export", "-vv"))
    runs.append(tyk("export", "--pending", "-vv"))
    runs.append(tyk("apply", "life", "--auto-approve", "-vv", "--key-sink", "sink.jsonl"))
    runs.append(tyk("apply", "life", "--auto-approve", "-vv", "--format", "json"))
    assert all(r.code == 0 for r in runs), [r.all for r in runs]
    assert not store.key_valid(revoked)
    assert key_label(key_id_of(revoked)) in runs[0].out  # the label, shown where it belongs

    key_ids = [str(k["key_id"]) for k in store.issued()]
    raw_keys = [str(k["key"]) for k in store.issued()]
    assert len(key_ids) == 4  # alice's (revoked), bob's two, and the one made for carol
    texts = {f"run {' '.join(r.argv)}": r.out + r.err for r in runs}
    texts["log"] = "\n".join(
        [r.getMessage() for r in logs.records] + [logs.format(r) for r in logs.records]
    )
    sink = (tmp_path / "sink.jsonl").resolve()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.resolve() != sink:
            texts[str(path.relative_to(tmp_path))] = path.read_text(errors="replace")
    assert any(name.startswith("plan-") for name in texts)
    assert ".tyksync/journal.jsonl" in texts

    def scan(texts: dict[str, str]) -> list[tuple[str, int]]:
        return [
            (where, n)
            for where, text in texts.items()
            for n, secret in enumerate(key_ids + raw_keys)
            if secret in text
        ]

    assert scan(texts) == []
    # The scan can fail: a key id or a key where it looks is found.
    assert scan({"x": f"DELETE /keys/{key_ids[1]} 200", "y": raw_keys[2]}) == [("x", 1), ("y", 6)]


def test_a_retried_revoke_logs_the_key_label_never_its_id(dash: Sandbox) -> None:
    # Records straight from the client's logger, before any handler's redaction filter:
    # what a library user or another handler would see.
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    key_id = key_id_of(key)
    dash.faults = Faults(route_errors={REVOKE_ROUTE: 1.0}, error_statuses=(429,), retry_after=0)
    client = DashboardClient(dash.url, dash.secret, sleep=lambda _s: None)
    with capture_logs() as logs, pytest.raises(TyksyncError):
        client.revoke_key(ALICE, key_id)
    retries = [m for m in logs.messages if "retrying" in m]
    assert retries and all(key_label(key_id) in m for m in retries)
    assert not any(key_id in m for m in logs.messages)


def test_sandbox_logs_mask_a_revoked_key_id(dash: Sandbox) -> None:
    world(dash)
    key_id = key_id_of(granted(dash, ALICE, [GOLD]))
    lines: list[str] = []
    with Sandbox("log-secret-1234", log=lines.append) as sb:
        sb.store.add_developer("x@example.com", id=ALICE)
        requests.delete(
            f"{sb.url}/api/portal/developers/{ALICE}/keys/{key_id}",
            headers={"authorization": "log-secret-1234"},
            timeout=10,
        )
    assert any("/keys/(key id)" in line for line in lines), lines
    assert not any(key_id in line for line in lines)


def test_an_expiry_warning_past_a_century_is_refused_not_a_crash(dash: Sandbox, tyk: Tyk) -> None:
    world(dash)
    folder = team("  alice@example.com: []\n")
    r = tyk("plan", str(folder), "--expiry-warning", "99999999999")
    assert r.code == 1 and "--expiry-warning" in r.err and "internal error" not in r.err
    saved = tyk("plan", str(folder), "--out", "p.json")
    assert saved.code == 0, saved.all
    data = json.loads(Path("p.json").read_text())
    data["saved"]["expiry_warning_days"] = 10**12
    Path("p.json").write_text(json.dumps(data))
    edited = tyk("apply", "--plan", "p.json")
    assert edited.code == 1 and "not a tyksync plan file" in edited.err, edited.all
    assert dash.mutating_calls() == 0


@pytest.mark.dash(seed=None, state="state.json")
def test_a_key_gone_while_another_names_the_policy_by_its_explicit_id_is_not_guessed(
    dash: Sandbox,
) -> None:
    """The planned key was revoked, and another key of alice grants Gold, recorded under
    Gold's explicit `id` ("gold"): it may be the same grant under another id, so nothing is
    revoked and the request is kept (compared canonically, as the planner does)."""
    world(dash)
    key = granted(dash, ALICE, [GOLD])
    folder = team("  alice@example.com: []\n", head="revoke: true\n")
    with DashboardClient(dash.url, dash.secret) as client:
        plan = plan_live(client, load_manifests([folder]))
        dash.store.revoke_key(ALICE, key_id_of(key))
        other = dash.store.add_request(ALICE, [GOLD], approved=True, fields={"x": "y"})
        # A Dashboard may record a key's policies by explicit `id`: rewrite the record
        # the way another process would, and the store reads it back.
        state = json.loads(Path("state.json").read_text())
        (alice,) = [d for d in state["developers"] if d["id"] == ALICE]
        alice["keys"] = {k: ["gold"] for k in alice["keys"]}
        Path("state.json").write_text(json.dumps(state))
        assert list(dash.store.get_developer(ALICE)["keys"].values()) == [["gold"]]
        result = Applier(client).apply(plan)
    (outcome,) = result.outcomes
    assert outcome.status == "failed", outcome.detail
    assert "another key grants the same policies" in outcome.detail
    assert {r["id"] for r in dash.store.requests()} == {plan.actions[0].request_id, other["id"]}
