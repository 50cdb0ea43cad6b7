"""The GitHub Action (SPEC 14): its step scripts run as action.yml wires them, against the
sandbox over HTTP, with a stub `gh` that records every call (harness/action.py).

Plan mode: one PR comment per environment, created once and then edited in place; plans
with warnings only are posted; an error or a plan apply would refuse fails the check; the
saved plan and the full JSON plan go to the artifact, and a truncated comment says where.
Apply mode: the merged PR's saved plan is found, downloaded and applied; a stale one
changes nothing. The secret reaches neither `gh` nor any output.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from harness.action import ACTION, BOT, ActionRun, GitHub
from support import Tyk

from tyksync.sandbox import Sandbox

HEAD = "a" * 40  # the PR's last commit: what its plan run was made for
MERGE = "b" * 40  # the commit the merge pushed to main
MARKER = "<!-- tyksync-plan:default -->"


@pytest.fixture
def gh(tmp_path: Path) -> GitHub:
    return GitHub(tmp_path / "github")


def plan_run(
    dash: Sandbox, gh: GitHub, tmp_path: Path, run_id: int = 100, **inputs: str
) -> ActionRun:
    """A plan-mode run for PR 7 at HEAD, through the comment step, like the runner does."""
    run = ActionRun(
        gh,
        tmp_path,
        {"mode": "plan", "dashboard-url": dash.url, "dashboard-secret": dash.secret, **inputs},
        run_id=run_id,
        sha=HEAD,
    )
    run.run("plan")
    if run.outputs["plan"].get("saved") == "true":
        run.upload("upload")
        gh.add_artifact(
            "tyksync-plan-default", run_id, HEAD, f"2026-12-01T10:00:{run_id % 60:02d}Z"
        )
    if run.outputs["plan"].get("exitcode", "") != "":
        run.run("comment")
    return run


def assert_secret_kept(dash: Sandbox, gh: GitHub, *runs: ActionRun) -> None:
    """The secret in no call of `gh` (argv, stdin, environment), no step's output or
    printout, no comment, no artifact; nor any key the Dashboard issued."""
    secrets = [dash.secret, *dash.store.issued_keys()]
    recorded = gh.log.read_text() if gh.log.exists() else ""
    artifacts = "".join(p.read_text() for p in gh.store.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in recorded
        assert secret not in json.dumps(gh.comments())
        assert secret not in artifacts
        for run in runs:
            assert secret not in run.everything_printed()


# ---- plan mode -------------------------------------------------------------------------


def test_first_push_posts_one_comment_then_the_next_edits_it(
    dash: Sandbox, gh: GitHub, tmp_path: Path
) -> None:
    first = plan_run(dash, gh, tmp_path, run_id=100)
    assert first.results["plan"].code == 0, first.results["plan"].all
    assert first.outputs["plan"]["exitcode"] == "2"
    assert first.results["comment"].code == 0, first.results["comment"].all
    assert gh.methods() == [
        "GET repos/acme/access/issues/7/comments?per_page=100",
        "POST repos/acme/access/issues/7/comments",
    ]
    (comment,) = gh.comments()
    assert comment["body"].startswith(MARKER + "\n### tyksync plan\n")
    assert "**create**" in comment["body"] and "`alice@example.com`" in comment["body"]
    assert first.outputs["comment"]["comment-id"] == str(comment["id"])
    assert first.outputs["comment"]["comment-url"].endswith(f"#c{comment['id']}")

    # Someone else's comment quoting the marker is never edited.
    state = gh.state
    state["comments"].insert(
        0, {"id": 1, "issue": 7, "user": {"login": "mallory"}, "body": f"{MARKER} hi"}
    )
    gh.state = state
    second = plan_run(dash, gh, tmp_path, run_id=101)
    assert second.results["comment"].code == 0, second.results["comment"].all
    assert gh.methods()[2:] == [
        "GET repos/acme/access/issues/7/comments?per_page=100",
        f"PATCH repos/acme/access/issues/comments/{comment['id']}",
    ]
    assert [c["id"] for c in gh.comments()] == [1, comment["id"]]  # no second comment
    assert gh.comments()[0]["body"] == f"{MARKER} hi"
    assert_secret_kept(dash, gh, first, second)


def test_the_comment_is_found_on_any_page(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    plan_run(dash, gh, tmp_path, run_id=100)
    state = gh.state
    chatter = [
        {"id": n, "issue": 7, "user": {"login": "reviewer"}, "body": "LGTM"} for n in range(1, 6)
    ]
    state["comments"] = chatter + state["comments"]  # ours is on the third page now
    gh.state = state
    plan_run(dash, gh, tmp_path, run_id=101)
    assert gh.methods()[-1].startswith("PATCH ")
    assert len(gh.comments()) == 6


def test_the_artifact_holds_the_saved_plan_and_the_full_plan(
    dash: Sandbox, gh: GitHub, tmp_path: Path
) -> None:
    run = plan_run(dash, gh, tmp_path)
    artifact = gh.store / "100" / "tyksync-plan-default"
    assert sorted(p.name for p in artifact.iterdir()) == ["plan-full.json", "plan.json", "plan.md"]
    saved = json.loads((artifact / "plan.json").read_text())
    full = json.loads((artifact / "plan-full.json").read_text())
    assert saved["saved"] == {
        "manifest_paths": ["manifests"],
        "reissue": False,
        "environment": None,
        "expiry_warning_days": 14,
        "as_of": None,
    }
    assert full == {k: v for k, v in saved.items() if k != "saved"}
    assert len(full["actions"]) == 6
    # The job summary shows the plan too, and the comment is that same Markdown.
    markdown = (artifact / "plan.md").read_text()
    assert run.summary.read_text() == markdown
    assert gh.comments()[0]["body"] == f"{MARKER}\n{markdown}"


def test_a_plan_with_warnings_only_is_posted(
    dash: Sandbox, gh: GitHub, tmp_path: Path, tyk: Tyk
) -> None:
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    payments = tmp_path / "manifests" / "payments.yaml"
    payments.write_text(payments.read_text().replace("OPS-7", "OPS-8"))  # bob: approved
    run = plan_run(dash, gh, tmp_path)
    assert run.results["plan"].code == 0
    assert run.outputs["plan"]["exitcode"] == "0"  # warnings alone are no changes
    (comment,) = gh.comments()
    assert "Nothing will be applied, but 1 difference needs a person" in comment["body"]
    assert "#### Warnings" in comment["body"] and "`bob@example.com`" in comment["body"]
    assert_secret_kept(dash, gh, run)


def test_a_plan_apply_would_refuse_fails_the_check_and_is_posted(
    dash: Sandbox, gh: GitHub, tmp_path: Path
) -> None:
    run = plan_run(dash, gh, tmp_path, **{"max-deletes": "0"})
    plan = run.results["plan"]
    assert plan.code == 3, plan.all
    assert "::error title=tyksync::default: apply would refuse this plan" in plan.out
    assert run.outputs["plan"]["exitcode"] == "3"
    assert run.outputs["plan"]["saved"] == "true"  # kept: a person may apply it with force
    (comment,) = gh.comments()
    assert "> [!CAUTION]" in comment["body"]
    assert comment["body"].index("[!CAUTION]") < comment["body"].index("**create**")
    assert_secret_kept(dash, gh, run)


def test_an_error_fails_the_check_and_the_comment_says_so(
    dash: Sandbox, gh: GitHub, tmp_path: Path
) -> None:
    plan_run(dash, gh, tmp_path, run_id=100)  # a plan was posted on an earlier push
    (tmp_path / "manifests" / "payments.yaml").write_text("version: 1\nowner: x\nbogus: 1\n")
    run = plan_run(dash, gh, tmp_path, run_id=101)
    plan = run.results["plan"]
    assert plan.code == 1
    assert "manifests/payments.yaml:3" in plan.err  # tyksync's FILE:LINE, in the log
    assert run.outputs["plan"] == {
        "dir": str(run.temp / "tyksync-plan-default"),
        "markdown": str(run.temp / "tyksync-plan-default" / "plan.md"),
        "exitcode": "1",
        "saved": "false",
    }
    # The old plan no longer stands in the comment: a reviewer must not approve it.
    (comment,) = gh.comments()
    assert "**tyksync plan failed** (exit 1)" in comment["body"]
    assert "https://github.example/acme/access/actions/runs/101" in comment["body"]
    assert "**create**" not in comment["body"]
    assert not (gh.store / "101").exists()  # nothing uploaded
    assert_secret_kept(dash, gh, run)


def test_no_pull_request_no_comment(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    run = ActionRun(
        gh, tmp_path, {"mode": "plan", "dashboard-url": dash.url, "dashboard-secret": dash.secret}
    )
    run.pr = None
    run.run("plan")
    assert run.run("comment").code == 0
    assert "not a pull request" in run.results["comment"].out
    assert gh.calls() == []


def test_environments_have_a_comment_each(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    # `environment` is also passed as --env (tyksync.toml); here only its marker is tried,
    # so the two comments are made by the comment step alone, from one plan.
    run = plan_run(dash, gh, tmp_path)
    for name in ("staging", "prod"):
        run.inputs["environment"] = name
        assert run.run("comment").code == 0
    bodies = [c["body"] for c in gh.comments()]
    assert [b.splitlines()[0] for b in bodies] == [
        MARKER,
        "<!-- tyksync-plan:staging -->",
        "<!-- tyksync-plan:prod -->",
    ]
    assert bodies[1].splitlines()[1] == "**Environment `staging`**"
    run.inputs["environment"] = "x --><script>"
    assert run.run("comment").code == 1
    assert "use letters, digits" in run.results["comment"].out


def test_a_truncated_comment_points_to_the_artifact(
    dash: Sandbox, gh: GitHub, tmp_path: Path
) -> None:
    lines = ["version: 1", "owner: many", "developers:"]
    with dash.store.batch():
        for n in range(400):
            email = f"developer-{n:04d}@example.com"
            dash.store.add_developer(email)
            lines += [f"  {email}:", "    - plan: Gold", "      fields: {ticket: OPS-1234567}"]
    (tmp_path / "manifests" / "many.yaml").write_text("\n".join(lines) + "\n")
    run = plan_run(dash, gh, tmp_path)
    assert run.outputs["plan"]["exitcode"] == "2", run.results["plan"].all
    (comment,) = gh.comments()
    assert len(comment["body"]) < 65536  # GitHub's limit for a comment
    note = next(line for line in comment["body"].splitlines() if "output truncated" in line)
    assert note.endswith(
        "not shown (full plan: `plan.json` in the `tyksync-plan-default` artifact of "
        "[this run](https://github.example/acme/access/actions/runs/100))._"
    )
    saved = json.loads((gh.store / "100" / "tyksync-plan-default" / "plan.json").read_text())
    assert len(saved["actions"]) == 406  # everything is in the artifact


# ---- apply mode ------------------------------------------------------------------------


def merged(gh: GitHub, pr: int = 7, head: str = HEAD, merge: str = MERGE) -> None:
    state = gh.state
    state["pulls"] = [
        {
            "number": pr,
            "merged_at": "2026-12-01T11:00:00Z",
            "merge_commit_sha": merge,
            "head": {"sha": head},
        }
    ]
    gh.state = state


def apply_run(dash: Sandbox, gh: GitHub, tmp_path: Path, run_id: int, **inputs: str) -> ActionRun:
    run = ActionRun(
        gh,
        tmp_path,
        {"mode": "apply", "dashboard-url": dash.url, "dashboard-secret": dash.secret, **inputs},
        run_id=run_id,
        event="push",
        pr=None,
        sha=MERGE,
    )
    if run.run("find").code == 0:
        run.run("apply")
    return run


def test_apply_applies_the_merged_prs_plan(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    seeded = set(dash.store.issued_keys())
    plan_run(dash, gh, tmp_path, run_id=100)
    plan_run(dash, gh, tmp_path, run_id=101)  # a later plan of the same commit: this one
    merged(gh)
    run = apply_run(dash, gh, tmp_path, run_id=200)
    assert run.results["find"].code == 0, run.results["find"].all
    assert run.outputs["find"] == {
        "plan-file": str(run.temp / "tyksync-apply-default" / "plan.json"),
        "pr": "7",
        "run-id": "101",
    }
    assert gh.methods()[-3:] == [
        f"GET repos/acme/access/commits/{MERGE}/pulls",
        "GET repos/acme/access/actions/artifacts?name=tyksync-plan-default&per_page=100",
        "run download",
    ]
    applied = run.results["apply"]
    assert applied.code == 0, applied.all
    assert not tyksync_plans_again(dash)
    # The keys are in the sink alone: a 0600 file in RUNNER_TEMP, named by an output.
    sink = Path(run.outputs["apply"]["key-sink"])
    assert sink == run.temp / "tyksync-keys-default.jsonl"
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600
    keys = [json.loads(line)["key"] for line in sink.read_text().splitlines()]
    assert set(keys) == set(dash.store.issued_keys()) - seeded and len(keys) == 4
    assert run.outputs["apply"]["keys-issued"] == "4"
    result = json.loads(Path(run.outputs["apply"]["result"]).read_text())
    assert result["ok"] is True and result["keys"]["captured"] == 4
    assert_secret_kept(dash, gh, run)


def tyksync_plans_again(dash: Sandbox) -> bool:
    """Whether a plan of the example manifests would still change anything."""
    from tyksync.client import DashboardClient
    from tyksync.manifest import load_manifests
    from tyksync.pipeline import plan_live

    client = DashboardClient(dash.url, dash.secret)
    try:
        return plan_live(client, load_manifests([Path("manifests")])).has_changes
    finally:
        client.close()


def test_a_stale_plan_fails_clearly_and_changes_nothing(
    dash: Sandbox, gh: GitHub, tmp_path: Path, tyk: Tyk
) -> None:
    plan_run(dash, gh, tmp_path, run_id=100)
    merged(gh)
    # Someone changed the Dashboard between the review and the merge.
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    before = dash.mutating_calls()
    run = apply_run(dash, gh, tmp_path, run_id=200)
    applied = run.results["apply"]
    assert applied.code == 3, applied.all
    assert "the saved plan is stale" in applied.err
    assert "::error title=tyksync::default: the reviewed plan was NOT applied" in applied.out
    assert dash.mutating_calls() == before
    assert run.outputs["apply"]["keys-issued"] == "0"
    assert_secret_kept(dash, gh, run)


def test_force_and_max_deletes_reach_apply(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    plan_run(dash, gh, tmp_path, run_id=100)
    merged(gh)
    run = apply_run(dash, gh, tmp_path, run_id=200, **{"max-deletes": "0", "force": "true"})
    applied = run.results["apply"]
    assert applied.code == 3, applied.all  # --force never lifts --max-deletes
    assert "max-deletes" in applied.err or "--max-deletes" in applied.err
    assert dash.mutating_calls() == 0


def test_no_merged_pull_request_applies_nothing(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    run = apply_run(dash, gh, tmp_path, run_id=200)
    assert run.results["find"].code == 1
    assert f"no merged pull request has commit {MERGE}" in run.results["find"].out
    assert "apply" not in run.results
    assert dash.mutating_calls() == 0


def test_no_saved_plan_applies_nothing(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    plan_run(dash, gh, tmp_path, run_id=100)
    merged(gh, head="d" * 40)  # the PR's last commit was never planned
    run = apply_run(dash, gh, tmp_path, run_id=200)
    assert run.results["find"].code == 1
    assert "no saved plan (tyksync-plan-default) for pull request #7" in run.results["find"].out
    assert dash.mutating_calls() == 0


def test_apply_mode_refuses_a_pull_request_event(dash: Sandbox, gh: GitHub, tmp_path: Path) -> None:
    run = ActionRun(gh, tmp_path, {"mode": "apply"}, event="pull_request")
    assert run.run("find").code == 1
    assert "not on a pull request" in run.results["find"].out


def test_a_mode_that_is_neither_fails_before_installing(gh: GitHub, tmp_path: Path) -> None:
    run = ActionRun(gh, tmp_path, {"mode": "destroy"})
    assert run.run("install").code == 1
    assert "mode 'destroy': expected plan or apply" in run.results["install"].out
    assert not (run.temp / "tyksync-venv").exists()


def test_the_action_file_is_where_uses_finds_it() -> None:
    assert ACTION.name == "action.yml" and ACTION.parent.joinpath("scripts", "action").is_dir()
    assert BOT == "github-actions[bot]"


@pytest.mark.parametrize("force", ["false", "true"])
def test_force_reaches_apply_for_a_plan_refused_by_the_share_rule(
    dash: Sandbox, gh: GitHub, tmp_path: Path, force: str
) -> None:
    carol = next(d["id"] for d in dash.store.developers() if d["email"] == "carol@example.com")
    for n in range(10):  # owned, undeclared: the plan deletes them, over 30% of the managed
        dash.store.add_request(
            carol, ["silver"], fields={"tyksync_owner": "payments-team", "n": str(n)}
        )
    plan_run(dash, gh, tmp_path, run_id=100)
    merged(gh)
    before = len(dash.store.requests())
    run = apply_run(dash, gh, tmp_path, run_id=200, force=force)
    applied = run.results["apply"]
    if force == "true":
        assert applied.code == 0, applied.all
        assert not any(r["fields"].get("n") for r in dash.store.requests())
    else:
        assert applied.code == 3, applied.all
        assert "over 30%" in applied.all
        assert len(dash.store.requests()) == before
