"""The CLI end to end against the sandbox over real HTTP: every command, option and exit code."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from harness.capture import capture_logs
from support import EXAMPLES, Tyk

from tyksync.sandbox import Faults, Sandbox


def keys_of(sb: Sandbox) -> list[str]:
    return sb.store.issued_keys()


def assert_no_secrets(sb: Sandbox, *texts: str) -> None:
    for text in texts:
        assert sb.secret not in text
        for key in keys_of(sb):
            assert key not in text


def live_requests(sb: Sandbox) -> list[dict[str, object]]:
    return sb.store.requests()


# ---- plan ------------------------------------------------------------------------------


def test_plan_text_shows_every_kind_of_action(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests")
    assert r.code == 0, r.err
    assert "+ create   alice@example.com  [Gold]" in r.out
    assert "~ approve  bob@example.com  [Silver]  request 64c000000000000000000c01" in r.out
    assert "-/+ replace  dave@example.com  [Reports]" in r.out
    assert "ticket 'OPS-9' -> 'OPS-10'" in r.out
    assert "- delete   erin@example.com  [Silver]" in r.out
    assert "the key it issued stays valid" in r.out
    assert "Plan: 2 to create, 2 to approve, 1 to replace, 1 to delete." in r.out
    assert "\x1b[" not in r.out  # not a terminal: no colour
    assert dash.mutating_calls() == 0


def test_plan_detailed_exitcode(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("plan", "manifests", "--detailed-exitcode").code == 2
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    r = tyk("plan", "manifests", "--detailed-exitcode")
    assert r.code == 0
    assert "No changes" in r.out


def test_plan_json_is_one_object_on_stdout(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--format", "json", "-vv")
    data = json.loads(r.out)
    assert data["format_version"] == 1
    assert data["summary"] == {
        "create": 2,
        "approve": 2,
        "replace": 1,
        "delete": 1,
        "warnings": 0,
        "unmanaged": 1,
    }
    assert data["dashboard"].startswith("http://127.0.0.1:")
    assert len(data["fingerprint"]) == 64
    first = data["actions"][0]
    assert set(first) >= {"action", "developer", "policies", "request_id", "approve", "fields"}
    assert set(first) >= {"owner", "reason"}
    assert "GET /api/portal/requests" in r.err  # logs on stderr, not stdout
    assert_no_secrets(dash, r.out, r.err)


def test_plan_markdown(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--format", "markdown")
    assert r.code == 0
    assert r.out.startswith("### tyksync plan")
    assert "| create | approve | replace | delete |" in r.out


def test_plan_order_is_stable_across_runs(dash: Sandbox, tyk: Tyk) -> None:
    a = tyk("plan", "manifests", "--format", "json").out
    b = tyk("plan", "manifests", "--format", "json").out
    assert a == b


# ---- apply -----------------------------------------------------------------------------


def test_apply_converges_and_second_apply_sends_nothing(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests", "--auto-approve")
    assert r.code == 0, r.all
    assert "Apply complete: 6 done, 0 failed." in r.out
    assert "4 key(s) issued and NOT captured" in r.out
    assert_no_secrets(dash, r.out, r.err)
    dash.reset_counts()
    again = tyk("apply", "manifests", "--auto-approve")
    assert again.code == 0
    assert "No changes" in again.out
    assert dash.mutating_calls() == 0


def test_apply_without_terminal_or_auto_approve_is_refused(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests")
    assert r.code == 3
    assert "--auto-approve" in r.err
    assert dash.mutating_calls() == 0


def test_apply_order_grants_before_it_takes_away(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("apply", "manifests", "--auto-approve", "--parallelism", "1").code == 0
    events = [
        json.loads(x)["event"] for x in Path(".tyksync/journal.jsonl").read_text().splitlines()
    ]
    first_delete = events.index("delete.sent")
    assert "create.sent" not in events[first_delete:]
    assert "approve.sent" not in events[first_delete:]


def test_key_sink_captures_keys_0600(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", "keys.jsonl")
    assert r.code == 0
    sink = Path("keys.jsonl")
    assert stat.S_IMODE(sink.stat().st_mode) == 0o600
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert len(lines) == 4
    assert {x["key"] for x in lines} <= set(keys_of(dash))
    assert set(lines[0]) >= {"developer", "policies", "request_id", "key"}
    assert "4 key(s) issued, 4 written to keys.jsonl" in r.out
    assert_no_secrets(dash, r.out, r.err, Path(".tyksync/journal.jsonl").read_text())


def test_key_sink_refuses_symlink_and_readable_file(dash: Sandbox, tyk: Tyk) -> None:
    Path("target").write_text("")
    os.chmod("target", 0o600)
    os.symlink("target", "link.jsonl")
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", "link.jsonl")
    assert r.code == 1 and "symbolic link" in r.err
    Path("open.jsonl").write_text("")
    os.chmod("open.jsonl", 0o644)
    r = tyk("apply", "manifests", "--auto-approve", "--key-sink", "open.jsonl")
    assert r.code == 1 and "chmod 600" in r.err
    assert dash.mutating_calls() == 0


def test_saved_plan_applies_exactly_and_asks_nothing(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--out", "plan.json")
    assert r.code == 0
    saved = Path("plan.json").read_text()
    assert_no_secrets(dash, saved)
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 0, r.all
    assert "Apply complete: 6 done" in r.out
    assert tyk("plan", "manifests", "--detailed-exitcode").code == 0


def test_saved_plan_auto_approve_accepted(dash: Sandbox, tyk: Tyk) -> None:
    tyk("plan", "manifests", "--out", "plan.json")
    assert tyk("apply", "--plan", "plan.json", "--auto-approve").code == 0


def test_stale_saved_plan_is_refused(dash: Sandbox, tyk: Tyk) -> None:
    tyk("plan", "manifests", "--out", "plan.json")
    dash.store.delete_request("64c000000000000000000c03")  # out-of-band change in scope
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 3
    assert "stale" in r.err
    assert dash.mutating_calls() == 0


@pytest.mark.dash(seed=None)
def test_plan_from_empty_dashboard_goes_stale_when_a_request_appears(
    dash: Sandbox, tyk: Tyk
) -> None:
    dash.store.add_developer("alice@example.com")
    dash.store.add_policy("Gold", id="gold")
    Path("m.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n    - plan: Gold\n"
    )
    assert tyk("plan", "m.yaml", "--out", "plan.json").code == 0
    dev = dash.store.developers()[0]["id"]
    pol = dash.store.policies()[0]["_id"]
    dash.store.add_request(dev, policies=[pol], fields={"tyksync_owner": "t"})
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == 3, r.all
    assert len(dash.store.requests()) == 1  # no duplicate was made


def test_saved_plan_for_another_dashboard_is_refused(dash: Sandbox, tyk: Tyk) -> None:
    tyk("plan", "manifests", "--out", "plan.json")
    with Sandbox(dash.secret, seed="demo") as other:
        r = tyk("apply", "--plan", "plan.json", "--dashboard", other.url)
        assert r.code == 3
        assert other.mutating_calls() == 0


def test_delete_threshold_and_max_deletes(dash: Sandbox, tyk: Tyk) -> None:
    dev = "64a000000000000000000a01"
    for n in range(12):
        dash.store.add_request(
            dev,
            policies=["64b000000000000000000b02"],
            fields={"tyksync_owner": "bulk", "n": str(n)},
        )
    Path("bulk.yaml").write_text("version: 1\nowner: bulk\ndevelopers: {}\n")
    r = tyk("apply", "bulk.yaml", "--auto-approve")
    assert r.code == 3
    assert "over 30%" in r.err
    assert dash.mutating_calls() == 0
    r = tyk("apply", "manifests", "--auto-approve", "--max-deletes", "0")
    assert r.code == 3 and "--max-deletes" in r.err
    assert dash.mutating_calls() == 0
    r = tyk("apply", "bulk.yaml", "--auto-approve", "--force")
    assert r.code == 0
    assert not [x for x in dash.store.requests() if x["fields"].get("tyksync_owner") == "bulk"]


def test_partial_failure_reports_and_continues(dash: Sandbox, tyk: Tyk) -> None:
    dash.faults = Faults(error_rates={"PUT": 1.0}, error_statuses=(400,))
    r = tyk("apply", "manifests", "--auto-approve")
    assert r.code == 1
    assert "FAILED" in r.out
    assert "Run apply again" in r.out
    assert any(x["id"] for x in dash.store.requests() if x.get("by_user", "").endswith("a01"))
    dash.faults = Faults()
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    assert tyk("plan", "manifests", "--detailed-exitcode").code == 0


# ---- validate, schema, export ----------------------------------------------------------


def test_validate_offline_and_online(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("validate", "manifests")
    assert r.code == 0 and "valid" in r.out
    assert dash.counts() == {}
    assert tyk("validate", "manifests", "--online").code == 0
    Path("bad.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  nobody@example.com:\n    - plan: Gold\n"
    )
    assert tyk("validate", "bad.yaml").code == 0
    r = tyk("validate", "bad.yaml", "--online")
    assert r.code == 1
    assert "bad.yaml:4:" in r.err and "nobody@example.com" in r.err


def test_bad_manifest_exit_1_with_file_and_line_and_no_change(dash: Sandbox, tyk: Tyk) -> None:
    Path("bad.yaml").write_text(
        "version: 1\nowner: t\ndevelopers:\n  alice@example.com:\n    - plan: Gold\n"
        "      fields: {ticket: 42}\n"
    )
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        r = tyk(*command, "bad.yaml")
        assert r.code == 1
        assert "bad.yaml:6:" in r.err
        assert "Traceback" not in r.err
    assert dash.counts() == {}


def test_schema(tyk: Tyk) -> None:
    r = tyk("schema")
    schema = json.loads(r.out)
    assert r.code == 0
    assert "owner" in json.dumps(schema)


def test_export_then_plan_shows_no_changes(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("export")
    assert r.code == 0
    Path("exported.yaml").write_text(r.out)
    assert tyk("plan", "exported.yaml", "--detailed-exitcode").code == 0
    r = tyk("export", "--owner", "payments-team")
    Path("exported.yaml").write_text(r.out)
    assert "prune: owned" in r.out
    p = tyk("plan", "exported.yaml", "--detailed-exitcode")
    assert p.code == 0, p.out
    r = tyk("export", "--developer", "bob@example.com")
    assert "bob@example.com" in r.out and "carol" not in r.out


def test_export_after_apply_round_trips(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    for owner in ("payments-team", "analytics-team"):
        Path(f"{owner}.yaml").write_text(tyk("export", "--owner", owner).out)
    r = tyk("plan", "payments-team.yaml", "--detailed-exitcode")
    assert r.code == 0, r.out


# ---- connection, usage -----------------------------------------------------------------


def test_usage_errors_exit_1(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("plan", "manifests", "--no-such-option").code == 1
    assert tyk("apply").code == 1
    assert tyk("apply", "manifests", "--plan", "x.json").code == 1
    assert tyk("plan").code == 1
    assert tyk("plan", "manifests", "--format", "yaml").code == 1
    assert tyk("frobnicate").code == 1
    assert tyk("--help").code == 0


def test_no_dashboard_is_a_clear_error(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_URL")
    r = tyk("plan", "manifests")
    assert r.code == 1
    assert "TYK_DASHBOARD_URL" in r.err and "--sandbox" in r.err


def test_no_secret_names_the_variable(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_SECRET")
    r = tyk("plan", "manifests")
    assert r.code == 1
    assert "TYK_DASHBOARD_SECRET" in r.err


def test_secret_file(dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_SECRET")
    Path("secret").write_text(dash.secret + "\n")
    os.chmod("secret", 0o600)
    r = tyk("plan", "manifests", "--secret-file", "secret")
    assert r.code == 0, r.err
    assert "can be read by other users" not in r.err
    os.chmod("secret", 0o644)
    monkeypatch.setenv("TYK_DASHBOARD_SECRET_FILE", "secret")
    r = tyk("plan", "manifests")
    assert r.code == 0
    assert "can be read by other users" in r.err
    assert_no_secrets(dash, r.out, r.err)


def test_wrong_secret_exit_1_without_echo(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", "wrong-CANARY-0000")
    r = tyk("plan", "manifests", "-vv")
    assert r.code == 1
    assert "401" in r.err
    assert "wrong-CANARY-0000" not in r.all


def test_connection_options_after_the_command(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYK_DASHBOARD_URL")
    r = tyk("plan", "--dashboard", dash.url, "manifests")
    assert r.code == 0


def test_insecure_is_loud(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--insecure")
    assert "NOT verified" in r.err


def test_cleartext_warning_for_remote_http() -> None:
    from tyksync.connection import _warn_cleartext

    with capture_logs() as logs:
        _warn_cleartext("http://127.0.0.1:3000")
        _warn_cleartext("https://dash.example.com")
        assert logs.records == []
        _warn_cleartext("http://dash.example.com")
        assert "in clear" in logs.messages[0]


def test_sandbox_flag_keeps_state_between_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tyk: Tyk
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYK_DASHBOARD_URL", raising=False)
    shutil.copytree(EXAMPLES, tmp_path / "manifests")
    assert tyk("plan", "manifests", "--sandbox", "--detailed-exitcode").code == 2
    assert tyk("apply", "manifests", "--sandbox", "--auto-approve").code == 0
    assert Path(".tyksync/sandbox.json").is_file()
    assert tyk("plan", "manifests", "--sandbox", "--detailed-exitcode").code == 0
    r = tyk(
        "plan", "manifests", "--sandbox", "--sandbox-state", "other.json", "--detailed-exitcode"
    )
    assert r.code == 2


# ---- hardening found in review -------------------------------------------------------


def test_partial_export_never_prunes(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("export", "--owner", "payments-team", "--developer", "carol@example.com")
    assert "prune: none" in r.out
    Path("carol.yaml").write_text(r.out)
    assert tyk("plan", "carol.yaml", "--detailed-exitcode").code == 0
    r = tyk("export", "--developer", "nobody@example.com")
    assert r.code == 0 and "no developer with the email" in r.err


def test_sandbox_flag_wins_over_a_dashboard_in_the_environment(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--sandbox", "--sandbox-state", "s.json")
    assert r.code == 0, r.err
    assert "sandbox:s.json" in r.out
    assert dash.counts() == {}
    r = tyk("plan", "manifests", "--sandbox", "--dashboard", dash.url)
    assert r.code == 1 and "choose one" in r.err


def test_state_folder_keeps_itself_out_of_git(dash: Sandbox, tyk: Tyk) -> None:
    assert tyk("apply", "manifests", "--auto-approve").code == 0
    assert Path(".tyksync/.gitignore").read_text().splitlines()[-1] == "*"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:abc", "http://127.0.0.1:99999", "http://[::1", "ftp://x"]
)
def test_bad_dashboard_urls_are_clear_errors(dash: Sandbox, tyk: Tyk, url: str) -> None:
    r = tyk("plan", "manifests", "--dashboard", url)
    assert r.code == 1
    assert r.err.startswith("Error: the Dashboard URL")


def test_dashboard_url_with_api_suffix_gets_a_hint(dash: Sandbox, tyk: Tyk) -> None:
    r = tyk("plan", "manifests", "--dashboard", dash.url + "/api")
    assert r.code == 1 and "without /api" in r.err


def test_plan_out_to_an_impossible_place(dash: Sandbox, tyk: Tyk) -> None:
    Path("file").write_text("")
    r = tyk("plan", "manifests", "--out", "file/plan.json")
    assert r.code == 1 and r.err.startswith("Error: --out file/plan.json")


@pytest.mark.parametrize(
    "edit",
    ["[]", "null_request_id", "changed_action", "fields_list"],
)
def test_edited_or_broken_plan_files_are_refused(dash: Sandbox, tyk: Tyk, edit: str) -> None:
    tyk("plan", "manifests", "--out", "plan.json")
    data = json.loads(Path("plan.json").read_text())
    if edit == "[]":
        data = []
    elif edit == "null_request_id":
        next(a for a in data["actions"] if a["action"] == "approve")["request_id"] = None
    elif edit == "changed_action":
        data["actions"][0]["developer"]["id"] = "64a000000000000000000a05"
    else:
        data["actions"][0]["fields"] = []
    Path("plan.json").write_text(json.dumps(data))
    r = tyk("apply", "--plan", "plan.json")
    assert r.code == (3 if edit == "changed_action" else 1), r.err
    assert "internal error" not in r.err
    assert dash.mutating_calls() == 0


def test_secret_with_a_trailing_newline_works(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", dash.secret + "\r\n")
    assert tyk("plan", "manifests").code == 0


@pytest.mark.parametrize("bad", ["a newline inside", "a byte order mark"])
def test_secret_a_header_cannot_carry_is_refused_unquoted(
    dash: Sandbox, tyk: Tyk, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    secret = dash.secret
    spoilt = secret[:8] + "\n" + secret[8:] if bad == "a newline inside" else "\ufeff" + secret
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", spoilt)
    r = tyk("plan", "manifests", "-vv")
    assert r.code == 1
    assert "TYK_DASHBOARD_SECRET holds" in r.err
    assert secret[:8] not in r.all and secret[8:] not in r.all
    assert dash.counts() == {}


def test_redirects_are_not_followed(dash: Sandbox, tyk: Tyk) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def _go(self) -> None:
            self.send_response(302)
            self.send_header("Location", dash.url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PUT = do_POST = do_DELETE = _go

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = tyk(
            "apply",
            "manifests",
            "--auto-approve",
            "--dashboard",
            f"http://127.0.0.1:{server.server_port}",
        )
    finally:
        server.shutdown()
        server.server_close()
    assert r.code == 1
    assert "redirected" in r.err and dash.url in r.err
    assert dash.counts() == {}


@pytest.mark.dash(dialect="legacy")
def test_validate_online_refuses_multi_policy_on_a_legacy_dashboard(
    dash: Sandbox, tyk: Tyk
) -> None:
    r = tyk("validate", "manifests", "--online")
    assert r.code == 1
    assert "payments.yaml:14:" in r.err and "one policy per request" in r.err
    assert dash.mutating_calls() == 0
