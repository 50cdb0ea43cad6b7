"""The review loop (SPEC section 9) end to end over real HTTP against the sandbox.

A saved plan is a record for reviewers, never an authority: every forgery or edit is
refused with exit 3 before a single mutating call, a stale plan likewise, and only the plan
computed now (with its own safety figures) is ever applied.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import Tyk

from tyksync.plan import Action, fingerprint
from tyksync.sandbox import Sandbox

SECRET = "review-secret-CANARY-7f3a1"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "manifests"
BOB_PENDING = "64c000000000000000000c01"  # bob's Silver, which the demo plan approves
ERIN_PORTAL = "64c000000000000000000c05"  # erin's own Reports, which analytics adopts
DAVE_LEGACY = "64c000000000000000000c06"  # a legacy request: unmanaged
BULK = 12


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """The demo sandbox as the configured Dashboard, the examples copied to ./manifests."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    for name in ("TYK_DASHBOARD_SECRET_FILE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    with Sandbox(SECRET, seed="demo") as sb:
        monkeypatch.setenv("TYK_DASHBOARD_URL", sb.url)
        monkeypatch.setenv("TYK_DASHBOARD_SECRET", SECRET)
        yield sb


@pytest.fixture
def bulk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """BULK requests owned by `bulk` (a third approved), one owned by `other`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYK_DASHBOARD_SECRET_FILE", raising=False)
    with Sandbox(SECRET) as sb:
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
        monkeypatch.setenv("TYK_DASHBOARD_URL", sb.url)
        monkeypatch.setenv("TYK_DASHBOARD_SECRET", SECRET)
        yield sb


def bulk_manifest(keep: int) -> str:
    """bulk.yaml declaring the first `keep` of the BULK requests; the rest are deleted."""
    path = Path("bulk.yaml")
    if keep == 0:
        path.write_text("version: 1\nowner: bulk\ndevelopers: {}\n")
    else:
        rows = "".join(f"  d{n}@example.com: [{{plan: Gold}}]\n" for n in range(keep))
        path.write_text(f"version: 1\nowner: bulk\ndevelopers:\n{rows}")
    return str(path)


def owned_by(sb: Sandbox, owner: str) -> list[dict[str, Any]]:
    return [r for r in sb.store.requests() if r["fields"].get("tyksync_owner") == owner]


def all_calls(sb: Sandbox) -> int:
    return sum(sb.counts().values())


def save(tyk: Tyk, *paths: str, out: str = "plan.json") -> dict[str, Any]:
    r = tyk("plan", *(paths or ("manifests",)), "--out", out)
    assert r.code == 0, r.all
    return json.loads(Path(out).read_text())  # type: ignore[no-any-return]


def write(data: Any, out: str = "plan.json") -> None:
    Path(out).write_text(json.dumps(data, indent=2))


def assert_refused_untouched(sb: Sandbox, tyk: Tyk, *args: str) -> str:
    """`apply ARGS` exits 3 without one mutating call; returns stderr."""
    before = sb.store.requests()
    sb.reset_counts()
    r = tyk("apply", *args)
    assert r.code == 3, r.all
    assert sb.mutating_calls() == 0
    assert sb.store.requests() == before
    return r.err


# ---- forged and edited plans -----------------------------------------------------------------


def test_hand_written_plan_with_recomputed_fingerprint_is_refused(dash: Sandbox, tyk: Tyk) -> None:
    """A plan written to delete another team's and an unmanaged request and to grant Gold
    to someone no manifest names, fingerprinted the way tyksync would: refused."""
    other = dash.store.add_request(
        "64a000000000000000000a02", ["64b000000000000000000b03"], fields={"tyksync_owner": "x"}
    )["id"]
    data = save(tyk)
    developer = {"id": "64a000000000000000000a05", "email": "erin@example.com"}
    forged = [
        {
            "action": "create",
            "developer": developer,
            "policies": [{"id": "64b000000000000000000b01", "name": "Gold"}],
            "request_id": None,
            "approve": True,
            "fields": {},
            "owner": "payments-team",
            "reason": "not declared",
            "approved": False,
            "declared_at": "manifests/payments.yaml:9",
        },
        *(
            {
                "action": "delete",
                "developer": {"id": who, "email": "x@example.com"},
                "policies": [],
                "request_id": request_id,
                "approve": False,
                "fields": {},
                "owner": None,
                "reason": "not declared",
                "approved": True,
                "declared_at": None,
            }
            for who, request_id in (
                ("64a000000000000000000a02", other),
                ("64a000000000000000000a04", DAVE_LEGACY),
                ("64a000000000000000000a05", ERIN_PORTAL),
            )
        ),
    ]
    data["actions"] = forged
    data["summary"].update(create=1, approve=0, replace=0, delete=3)
    data["safety"].update(deletes=3, refused=False)
    data["fingerprint"] = fingerprint(
        data["live_digest"], data["manifest_digest"], [Action.from_data(a) for a in forged]
    )
    write(data)
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert "not made by tyksync from these manifests" in err
    assert "its actions differ" in err
    assert dash.store.get_request(other)["fields"]["tyksync_owner"] == "x"


def _set_dashboard(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.update(dashboard=value)


def _add_scope(data: dict[str, Any]) -> None:
    data["scope"]["developer_ids"].append("64a0000000000000000000ff")


def _bump_create(data: dict[str, Any]) -> None:
    data["summary"]["create"] += 1


def _drop_last_action(data: dict[str, Any]) -> None:
    data["actions"].pop()


def _repeat_first_action(data: dict[str, Any]) -> None:
    data["actions"].append(data["actions"][0])


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda data: data.update(managed=10_000), "it was edited"),
        (_set_dashboard(""), "names no Dashboard"),
        (_set_dashboard("https://dash.elsewhere.example"), "https://dash.elsewhere.example"),
        (_add_scope, "it was edited"),
        (_bump_create, "it was edited"),
        (_drop_last_action, "its actions differ"),
        (_repeat_first_action, "its actions differ"),
    ],
    ids=["managed", "dashboard-empty", "dashboard-other", "scope", "summary", "removed", "added"],
)
def test_an_edited_saved_plan_is_refused(
    dash: Sandbox, tyk: Tyk, edit: Callable[[dict[str, Any]], None], says: str
) -> None:
    data = save(tyk)
    edit(data)
    write(data)
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert says in err
    # The untouched plan still applies: the refusal was about the edit alone.
    assert tyk("plan", "manifests", "--out", "plan.json").code == 0
    assert tyk("apply", "--plan", "plan.json").code == 0


def test_safety_figures_come_from_the_plan_computed_now(bulk: Sandbox, tyk: Tyk) -> None:
    """A refused plan whose file claims a huge managed count and no refusal is still
    refused, with the figures of the plan computed at apply time."""
    data = save(tyk, bulk_manifest(keep=0))
    assert data["safety"]["refused"] is True
    # `managed` is compared: editing it is an edit.
    data["managed"] = 10_000
    write(data)
    assert "it was edited" in assert_refused_untouched(bulk, tyk, "--plan", "plan.json")
    # `safety` is not compared, and not read either: apply recomputes it.
    data = save(tyk, "bulk.yaml")
    data["safety"] = {
        "deletes": 0,
        "managed": 10_000,
        "max_deletes": None,
        "refused": False,
        "message": "fine",
    }
    write(data)
    err = assert_refused_untouched(bulk, tyk, "--plan", "plan.json")
    assert f"deletes {BULK} of {BULK} managed requests (over 30%)" in err


@pytest.mark.parametrize(
    "content",
    [
        "this is not json {",
        "[1, 2, 3]",
        json.dumps({"format_version": 1}),
        json.dumps({"hello": "world"}),
    ],
    ids=["not-json", "array", "bare", "other-object"],
)
def test_a_file_that_is_not_a_plan_is_exit_1_without_any_call(
    dash: Sandbox, tyk: Tyk, content: str
) -> None:
    Path("plan.json").write_text(content)
    dash.reset_counts()
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 1, r.all
    assert "not a tyksync plan file" in r.err
    assert all_calls(dash) == 0


def test_a_plan_without_saved_is_not_a_saved_plan(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--format", "json")
    Path("plan.json").write_text(r.out)  # `plan --format json > plan.json`: no `saved`
    dash.reset_counts()
    refused = tyk("apply", "--plan", "plan.json")
    assert refused.code == 1, refused.all
    assert "save one with `tyksync plan --out`" in refused.err
    assert all_calls(dash) == 0


# ---- an honest plan, and staleness -------------------------------------------------------------


def test_an_unedited_plan_applies_converges_and_is_then_stale(dash: Sandbox, tyk: Tyk) -> None:
    save(tyk)
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 0, r.all
    assert "Apply complete: 6 done, 0 failed." in r.out
    assert tyk("plan", "manifests", "--detailed-exitcode").code == 0
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert "the saved plan is stale" in err
    assert "live key requests" in err


@pytest.mark.parametrize(
    "edit",
    ["\n# a comment only\n", "\n"],
    ids=["comment", "newline"],
)
def test_any_manifest_edit_makes_the_plan_stale(dash: Sandbox, tyk: Tyk, edit: str) -> None:
    save(tyk)
    with Path("manifests/payments.yaml").open("a") as f:
        f.write(edit)
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert "the saved plan is stale: the manifests changed" in err


def test_a_dashboard_change_in_scope_makes_the_plan_stale(dash: Sandbox, tyk: Tyk) -> None:
    save(tyk)
    dash.store.delete_request(BOB_PENDING)  # the request the plan approves
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert "the saved plan is stale: the live key requests" in err


def test_a_dashboard_change_over_http_makes_the_plan_stale(dash: Sandbox, tyk: Tyk) -> None:
    import requests

    save(tyk)
    answer = requests.put(
        f"{dash.url}/api/portal/requests/approve/{BOB_PENDING}",
        headers={"authorization": SECRET},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json")
    assert "live key requests" in err


def test_apply_plan_without_paths_uses_the_recorded_paths(dash: Sandbox, tyk: Tyk) -> None:
    data = save(tyk, "manifests/payments.yaml")
    assert data["saved"]["manifest_paths"] == ["manifests/payments.yaml"]
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 0, r.all
    # analytics.yaml was not read: erin's portal request is still pending.
    assert dash.store.get_request(ERIN_PORTAL)["approved"] is False
    assert tyk("plan", "manifests/payments.yaml", "--detailed-exitcode").code == 0


def test_apply_plan_with_paths_reads_those(dash: Sandbox, tyk: Tyk) -> None:
    data = save(tyk, "manifests/payments.yaml")
    # PATHS given: the file's recorded paths are not read at all.
    data["saved"]["manifest_paths"] = ["nowhere/missing.yaml"]
    write(data)
    # Other PATHS than the plan was made from: a different plan, refused.
    err = assert_refused_untouched(dash, tyk, "--plan", "plan.json", "manifests")
    assert "the manifests changed" in err
    r = tyk("apply", "--plan", "plan.json", "manifests/payments.yaml")
    assert r.code == 0, r.all
    assert dash.store.get_request(ERIN_PORTAL)["approved"] is False


# ---- the safety verdict in every rendering -----------------------------------------------------


def test_refused_plan_text_markdown_and_json(bulk: Sandbox, tyk: Tyk) -> None:
    path = bulk_manifest(keep=2)  # 10 of 12
    text = tyk("plan", path)
    assert text.code == 0
    refused_lines = [line for line in text.out.splitlines() if line.startswith("REFUSED:")]
    assert refused_lines, text.out
    assert "deletes 10 of 12 managed requests (over 30%)" in refused_lines[0]

    md = tyk("plan", path, "--format", "markdown").out.splitlines()
    caution = md.index("> [!CAUTION]")
    first_action = next(i for i, line in enumerate(md) if line.startswith("- `-` **delete**"))
    table = next(i for i, line in enumerate(md) if line.startswith("| create |"))
    assert caution < first_action and caution < table
    assert "deletes 10 of 12" in md[caution + 1]

    data = json.loads(tyk("plan", path, "--format", "json").out)
    assert data["safety"] == {
        "deletes": 10,
        "managed": 12,
        "max_deletes": None,
        "refused": True,
        "message": "the plan deletes 10 of 12 managed requests (over 30%); "
        "review it, then use --force to apply anyway",
    }
    assert tyk("plan", path, "--detailed-exitcode").code == 3
    assert bulk.mutating_calls() == 0


def test_max_deletes_is_part_of_the_verdict(bulk: Sandbox, tyk: Tyk) -> None:
    path = bulk_manifest(keep=BULK - 1)  # one delete: under 30%
    data = json.loads(tyk("plan", path, "--format", "json", "--max-deletes", "0").out)
    assert data["safety"]["max_deletes"] == 0
    assert data["safety"]["refused"] is True
    assert "more than --max-deletes 0" in data["safety"]["message"]
    assert tyk("plan", path, "--max-deletes", "0", "--detailed-exitcode").code == 3
    assert tyk("plan", path, "--max-deletes", "0").code == 0
    assert tyk("plan", path, "--max-deletes", "1", "--detailed-exitcode").code == 2
    unlimited = json.loads(tyk("plan", path, "--format", "json").out)["safety"]
    assert unlimited["max_deletes"] is None and unlimited["refused"] is False


def test_a_saved_refused_plan_needs_force(bulk: Sandbox, tyk: Tyk) -> None:
    save(tyk, bulk_manifest(keep=0))
    err = assert_refused_untouched(bulk, tyk, "--plan", "plan.json")
    assert "--force" in err
    bulk.reset_counts()
    r = tyk("apply", "--plan", "plan.json", "--force")
    assert r.code == 0, r.all
    assert owned_by(bulk, "bulk") == []
    assert len(owned_by(bulk, "other")) == 1
    assert bulk.mutating_calls() == BULK


def test_force_does_not_lift_max_deletes(bulk: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", bulk_manifest(keep=0), "--max-deletes", "1", "--out", "plan.json")
    assert r.code == 0
    assert "--max-deletes 1" in r.err  # the apply hint carries the cap
    err = assert_refused_untouched(
        bulk, tyk, "--plan", "plan.json", "--force", "--max-deletes", "1"
    )
    assert "more than --max-deletes 1" in err
    assert len(owned_by(bulk, "bulk")) == BULK


# ---- warnings only ------------------------------------------------------------------------------


def test_a_warnings_only_plan_needs_a_person(dash: Sandbox, tyk: Tyk) -> None:
    Path("carol.yaml").write_text(
        "version: 1\nowner: payments-team\nprune: none\ndevelopers:\n"
        "  carol@example.com:\n    - plan: Gold\n      fields: {ticket: OPS-2}\n"
    )
    r = tyk("plan", "carol.yaml")
    assert r.code == 0, r.all
    assert "Nothing will be applied" in r.out
    assert "matches" not in r.out.lower()
    data = json.loads(tyk("plan", "carol.yaml", "--format", "json").out)
    assert data["actions"] == [] and len(data["warnings"]) == 1
    assert tyk("plan", "carol.yaml", "--detailed-exitcode").code == 0
    assert tyk("plan", "carol.yaml", "--detailed-exitcode", "--warnings-as-changes").code == 2
    assert dash.mutating_calls() == 0


# ---- the JSON Schema against real plans ------------------------------------------------------


def _validator(tyk: Tyk) -> jsonschema.Draft202012Validator:
    r = tyk("schema", "--plan")
    assert r.code == 0
    schema = json.loads(r.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_demo_plans_validate_against_the_schema(dash: Sandbox, tyk: Tyk) -> None:
    validator = _validator(tyk)
    printed = json.loads(tyk("plan", "manifests", "--format", "json").out)
    validator.validate(printed)
    saved = save(tyk)
    validator.validate(saved)
    assert "saved" in saved and "saved" not in printed
    # The schema has teeth: an unknown member or a bad action kind is invalid.
    assert not validator.is_valid({**printed, "extra": 1})
    bad = json.loads(json.dumps(printed))
    bad["actions"][0]["action"] = "grant"
    assert not validator.is_valid(bad)


def test_refused_plans_validate_against_the_schema(bulk: Sandbox, tyk: Tyk) -> None:
    validator = _validator(tyk)
    path = bulk_manifest(keep=0)
    printed = json.loads(tyk("plan", path, "--format", "json", "--max-deletes", "3").out)
    assert printed["safety"]["refused"] is True
    validator.validate(printed)
    validator.validate(save(tyk, path))


# ---- apply --format json ------------------------------------------------------------------------


@pytest.mark.parametrize("sink", [False, True], ids=["no-sink", "key-sink"])
def test_apply_format_json_is_one_object_and_never_a_key(
    dash: Sandbox, tyk: Tyk, sink: bool
) -> None:
    save(tyk)
    extra = ("--key-sink", "keys.jsonl") if sink else ()
    r = tyk("apply", "--plan", "plan.json", "--format", "json", *extra)
    assert r.code == 0, r.all
    data = json.loads(r.out)  # the whole of stdout is one object
    assert data["ok"] is True
    assert data["counts"] == {"done": 6, "failed": 0, "skipped": 0}
    assert data["keys"]["issued"] == 4
    assert data["keys"]["captured"] == (4 if sink else 0)
    assert len(data["actions"]) == 6
    for action in data["actions"]:
        assert action["status"] == "done"
        assert isinstance(action["detail"], str) and action["detail"]
    keys = dash.store.issued_keys()
    assert len(keys) >= 4
    for key in keys:
        assert key not in r.out and key not in r.err
    assert SECRET not in r.all
    if sink:
        captured = [json.loads(line)["key"] for line in Path("keys.jsonl").read_text().splitlines()]
        assert len(captured) == 4 and set(captured) <= set(keys)


def test_apply_format_json_with_nothing_to_do(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    save(tyk)
    r = tyk("apply", "--plan", "plan.json", "--format", "json")
    assert r.code == 0, r.all
    data = json.loads(r.out)
    assert data["ok"] is True and data["actions"] == []
    assert data["keys"]["issued"] == 0


# ---- the hint after plan --out ------------------------------------------------------------------


def test_the_printed_apply_command_applies_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tyk: Tyk
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TYK_DASHBOARD_URL", "TYK_DASHBOARD_SECRET", "TYK_DASHBOARD_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    state = "state dir/x.json"  # a space: the hint must quote it
    (tmp_path / "state dir").mkdir()
    r = tyk("plan", "manifests", "--sandbox", "--sandbox-state", state, "--out", "plan.json")
    assert r.code == 0, r.all
    marker = "apply it with: "
    hint = next(line for line in r.err.splitlines() if marker in line)
    words = shlex.split(hint.split(marker, 1)[1])
    assert words[:4] == ["tyksync", "apply", "--plan", "plan.json"]
    assert "--sandbox" in words
    assert words[words.index("--sandbox-state") + 1] == state
    applied = tyk(*words[1:])
    assert applied.code == 0, applied.all
    assert "Apply complete: 6 done, 0 failed." in applied.out
    again = tyk("plan", "manifests", "--sandbox", "--sandbox-state", state, "--detailed-exitcode")
    assert again.code == 0, again.all
