"""Environments (SPEC section 13): one set of manifests, several Dashboards, over real HTTP.

Two sandboxes stand for staging and prod: the same developers and policy names, with
different ids, so that a plan that resolved a name against the wrong Dashboard shows.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import Tyk, canary

from tyksync.config import load_config
from tyksync.errors import ConfigError
from tyksync.plan_schema import plan_json_schema
from tyksync.sandbox import Faults, Sandbox

NAMES = ("staging", "prod")
SECRET_VARS = {"staging": "TYK_STAGING_SECRET", "prod": "TYK_PROD_SECRET"}

MANIFEST = """\
version: 1
owner: team
developers:
  alice@example.com:
    - plan: Gold
      fields: {ticket: OPS-1}
  bob@example.com:
    - plan: Silver
      environments: [staging]
"""


class Env:
    """One environment's sandbox Dashboard, and the ids it gave the shared names."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sb = Sandbox(canary(f"{name}-secret"))
        store = self.sb.store
        self.developers = {
            email: store.add_developer(email)["id"]
            for email in ("alice@example.com", "bob@example.com")
        }
        self.policies = {name: store.add_policy(name)["_id"] for name in ("Gold", "Silver")}

    def requests(self) -> list[dict[str, Any]]:
        return self.sb.store.requests()


@pytest.fixture
def envs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Env]]:
    """staging and prod running, tyksync.toml naming both, ./manifests/team.yaml, and
    each secret in its variable; section 2's variables unset."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "TYK_DASHBOARD_URL",
        "TYK_DASHBOARD_SECRET",
        "TYK_DASHBOARD_SECRET_FILE",
        "TYKSYNC_ENV",
        "NO_COLOR",
    ):
        monkeypatch.delenv(name, raising=False)
    made = {name: Env(name) for name in NAMES}
    assert made["staging"].policies["Gold"] != made["prod"].policies["Gold"]
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "team.yaml").write_text(MANIFEST)
    for env in made.values():
        env.sb.start()
        monkeypatch.setenv(SECRET_VARS[env.name], env.sb.secret)
    write_config(tmp_path, made)
    try:
        yield made
    finally:
        for env in made.values():
            env.sb.stop()


def write_config(where: Path, envs: dict[str, Env], extra: str = "") -> None:
    text = "".join(
        f'[environments.{env.name}]\ndashboard = "{env.sb.url}"\n'
        f'secret_env = "{SECRET_VARS[env.name]}"\nmanifests = ["manifests"]\n\n'
        for env in envs.values()
    )
    (where / "tyksync.toml").write_text(text + extra)


def no_calls(envs: dict[str, Env]) -> bool:
    return all(env.sb.counts() == {} for env in envs.values())


def planned_policies(plan: dict[str, Any]) -> dict[str, list[str]]:
    """developer email -> the policy ids of its creates."""
    return {
        a["developer"]["email"]: [p["id"] for p in a["policies"]]
        for a in plan["actions"]
        if a["action"] == "create"
    }


# ---- one plan per environment ----------------------------------------------------------


def test_each_environment_resolves_names_against_its_own_dashboard(
    envs: dict[str, Env], tyk: Tyk
) -> None:
    r = tyk("plan", "--all-envs", "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert list(data) == ["environments"]
    assert list(data["environments"]) == ["staging", "prod"]  # the file's order
    staging, prod = (data["environments"][n] for n in NAMES)
    for plan in (staging, prod):
        jsonschema.validate(plan, plan_json_schema())
    assert staging["dashboard"] == envs["staging"].sb.url
    assert prod["dashboard"] == envs["prod"].sb.url
    # The same manifest, each environment's own ids.
    assert planned_policies(staging) == {
        "alice@example.com": [envs["staging"].policies["Gold"]],
        "bob@example.com": [envs["staging"].policies["Silver"]],
    }
    # bob's request is limited to staging: prod does not see it.
    assert planned_policies(prod) == {"alice@example.com": [envs["prod"].policies["Gold"]]}
    assert all(env.sb.mutating_calls() == 0 for env in envs.values())


def test_text_and_markdown_show_each_plan_under_its_name(envs: dict[str, Env], tyk: Tyk) -> None:
    text = tyk("plan", "--all-envs")
    assert text.code == 0, text.err
    lines = text.out.splitlines()
    assert lines[0] == "== staging =="
    assert lines[1] == f"Dashboard: {envs['staging'].sb.url}"
    prod_at = lines.index("== prod ==")
    assert lines[prod_at - 1] == ""  # a blank line between two environments
    assert lines[prod_at + 1] == f"Dashboard: {envs['prod'].sb.url}"
    assert "bob@example.com" in "\n".join(lines[:prod_at])
    assert "bob@example.com" not in "\n".join(lines[prod_at:])

    md = tyk("plan", "--all-envs", "--format", "markdown")
    assert md.code == 0, md.err
    assert md.out.startswith("## staging\n\n### tyksync plan\n")
    assert "\n\n## prod\n\n### tyksync plan\n" in md.out


def test_env_selects_one_and_tyksync_env_names_the_default(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = tyk("plan", "--env", "prod")
    assert r.code == 0, r.err
    assert r.out.startswith("== prod ==\n")
    assert "== staging ==" not in r.out
    assert envs["staging"].sb.counts() == {}

    monkeypatch.setenv("TYKSYNC_ENV", "staging")
    r = tyk("plan", "--format", "json")
    assert r.code == 0, r.err
    assert list(json.loads(r.out)["environments"]) == ["staging"]
    r = tyk("plan", "--env", "prod", "--format", "json")  # --env wins over TYKSYNC_ENV
    assert list(json.loads(r.out)["environments"]) == ["prod"]


def test_apply_converges_every_environment(envs: dict[str, Env], tyk: Tyk) -> None:
    r = tyk("apply", "--all-envs", "--auto-approve", "--key-sink", "keys.jsonl")
    assert r.code == 0, r.all
    assert r.out.startswith("== staging ==\n")
    assert "\n== prod ==\n" in r.out
    assert r.out.count("Apply complete") == 2
    for env in envs.values():
        held = {(q["by_user"], tuple(q["apply_policies"]), q["approved"]) for q in env.requests()}
        expected = {(env.developers["alice@example.com"], (env.policies["Gold"],), True)}
        if env.name == "staging":
            expected.add((env.developers["bob@example.com"], (env.policies["Silver"],), True))
        assert held == expected
    # Each key's line says which environment's Dashboard issued it.
    sunk = [json.loads(line) for line in Path("keys.jsonl").read_text().splitlines()]
    assert sorted(k["environment"] for k in sunk) == ["prod", "staging", "staging"]

    again = tyk("plan", "--all-envs", "--detailed-exitcode")
    assert again.code == 0, again.all
    assert again.out.count("No changes.") == 2


def test_apply_format_json_is_one_object_per_run(envs: dict[str, Env], tyk: Tyk) -> None:
    r = tyk("apply", "--all-envs", "--auto-approve", "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert list(data["environments"]) == ["staging", "prod"]
    assert data["environments"]["staging"]["counts"]["done"] == 2
    assert data["environments"]["prod"]["counts"]["done"] == 1
    assert "== staging ==" in r.err  # the plans go to stderr


def test_exit_code_is_the_highest_across_environments(envs: dict[str, Env], tyk: Tyk) -> None:
    assert tyk("apply", "--env", "staging", "--auto-approve").code == 0
    # staging matches (0), prod has changes (2).
    assert tyk("plan", "--all-envs", "--detailed-exitcode").code == 2
    # prod also deletes a request it manages, over --max-deletes: refused (3) wins.
    prod = envs["prod"]
    prod.sb.store.add_request(
        prod.developers["bob@example.com"],
        [prod.policies["Gold"]],
        fields={"tyksync_owner": "team"},
    )
    r = tyk("plan", "--all-envs", "--detailed-exitcode", "--max-deletes", "0")
    assert r.code == 3, r.all
    assert "prod: apply will refuse this plan" in r.err
    assert tyk("plan", "--env", "staging", "--detailed-exitcode", "--max-deletes", "0").code == 0


# ---- before any call -------------------------------------------------------------------


def test_a_missing_secret_fails_before_any_call(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYK_PROD_SECRET")
    for command in (
        ("plan", "--all-envs"),
        ("apply", "--all-envs", "--auto-approve"),
        ("validate", "--online", "--all-envs"),
        ("export", "--all-envs"),
    ):
        r = tyk(*command)
        assert r.code == 1, r.all
        assert "environment prod: no Dashboard secret: the variable TYK_PROD_SECRET" in r.err
        assert "tyksync.toml: environments.prod.secret_env" in r.err
        assert r.out == ""
    # staging comes first and is fine: it was not called either.
    assert no_calls(envs)

    monkeypatch.delenv("TYK_STAGING_SECRET")
    r = tyk("plan", "--all-envs")
    assert "TYK_STAGING_SECRET" in r.err and "TYK_PROD_SECRET" in r.err  # all at once
    assert no_calls(envs)


def test_section_two_variables_are_not_an_environments_secret(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TYK_PROD_SECRET")
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", envs["prod"].sb.secret)
    monkeypatch.setenv("TYK_DASHBOARD_URL", envs["staging"].sb.url)
    r = tyk("plan", "--env", "prod")
    assert r.code == 1
    assert "TYK_PROD_SECRET" in r.err
    assert no_calls(envs)


def test_a_secret_file_from_the_config(envs: dict[str, Env], tyk: Tyk, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "prod").write_text(envs["prod"].sb.secret + "\n")
    (secrets / "prod").chmod(0o600)
    (tmp_path / "tyksync.toml").write_text(
        f'[environments.prod]\ndashboard = "{envs["prod"].sb.url}"\n'
        'secret_file = "secrets/prod"\nmanifests = ["manifests"]\n'
        "[environments.staging]\nsandbox = true\n"
    )
    r = tyk("plan", "--env", "prod", "--detailed-exitcode")
    assert r.code == 2, r.all
    (secrets / "prod").unlink()
    r = tyk("plan", "--env", "prod")
    assert r.code == 1
    assert "environment prod: secret file" in r.err
    assert "tyksync.toml: environments.prod.secret_file" in r.err


def test_plain_http_to_another_host_is_refused_before_any_call(
    envs: dict[str, Env], tyk: Tyk, tmp_path: Path
) -> None:
    write_config(
        tmp_path,
        {"staging": envs["staging"]},
        '[environments.prod]\ndashboard = "http://dash.example.invalid"\n'
        'secret_env = "TYK_PROD_SECRET"\nmanifests = ["manifests"]\n',
    )
    r = tyk("plan", "--all-envs")
    assert r.code == 1
    assert "environment prod: the Dashboard is plain http:// to a host other than" in r.err
    assert no_calls(envs)


def test_max_response_mb_reaches_every_environment(envs: dict[str, Env], tyk: Tyk) -> None:
    # The second environment is the big one: an option that reached only the first fails.
    prod = envs["prod"]
    alice, gold = prod.developers["alice@example.com"], prod.policies["Gold"]
    prod.sb.store.add_requests(
        {"developer_id": alice, "policies": [gold], "fields": {"pad": "x" * 300}}
        for _ in range(3000)
    )
    r = tyk("plan", "--all-envs", "--max-response-mb", "1")
    assert r.code == 1
    assert "environment prod: GET /api/portal/requests" in r.err
    assert "larger than 1 MiB" in r.err


CONFIG_ERRORS = [
    ("[environments.prod]\nsecret_env = 'X'\n", "environments.prod: missing key 'dashboard'"),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\n",
        "environments.prod: needs exactly one of 'secret_env'",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 'X'\n"
        "secret_file = 'f'\n",
        "environments.prod: needs exactly one of 'secret_env'",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 42\n",
        "environments.prod.secret_env: must be a string, got an integer",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 'X'\ntimeout = '5'\n",
        "environments.prod.timeout: must be a number of seconds, got a string",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 'X'\nsecret = 'Y'\n",
        "environments.prod.secret: unknown key (allowed: dashboard, secret_env",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 'X'\n"
        "manifests = 'manifests'\n",
        "environments.prod.manifests: must be a non-empty list of paths, got a string",
    ),
    (
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_env = 'X'\ninsecure = 1\n",
        "environments.prod.insecure: must be true or false, got an integer",
    ),
    (
        "[environments.prod]\ndashboard = 'ftp://d.example'\nsecret_env = 'X'\n",
        "environments.prod.dashboard: must be an http(s)://host[:port] URL",
    ),
    (
        "[environments.prod]\nsandbox = true\nsecret_env = 'X'\n",
        "environments.prod.secret_env: not for a sandbox environment",
    ),
    ("[environmnets.prod]\nsandbox = true\n", "environmnets: unknown key (allowed: environments)"),
    ("environments = 3\n", "environments: must be a table of environments, got an integer"),
    ("[environments.'a b']\nsandbox = true\n", 'environments."a b": an environment name is'),
    ("[environments.prod\nsandbox = true\n", "not valid TOML: "),
]


@pytest.mark.parametrize(("text", "message"), CONFIG_ERRORS)
def test_config_errors_name_the_file_and_the_key_before_any_call(
    envs: dict[str, Env], tyk: Tyk, tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "tyksync.toml").write_text(text)
    r = tyk("plan", "--env", "prod")
    assert r.code == 1
    assert f"tyksync.toml: {message}" in r.err, r.err
    assert no_calls(envs)


def test_config_errors_are_reported_at_once_and_never_quote_a_value(tmp_path: Path) -> None:
    secret = canary("pasted-secret")
    path = tmp_path / "tyksync.toml"
    path.write_text(
        f"[environments.prod]\ndashboard = 'https://user:{secret}@d.example'\n"
        f"secret_env = '{secret}'\n[environments.staging]\nsecret_env = 1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert secret not in text
    assert "environments.prod.dashboard: carries credentials" in text
    assert "environments.prod.secret_env: must be the NAME of the environment variable" in text
    assert "environments.staging.secret_env: must be a string" in text
    assert "environments.staging: missing key 'dashboard'" in text


def test_config_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "tyksync.toml").write_text(
        "[environments.prod]\ndashboard = 'https://d.example'\nsecret_file = 's'\n"
        "ca_bundle = 'ca.pem'\nmanifests = ['m', '/abs']\n"
    )
    env = load_config(folder / "tyksync.toml").environments["prod"]
    assert env.secret_file == folder / "s"
    assert env.ca_bundle == folder / "ca.pem"
    assert env.manifests == (folder / "m", Path("/abs"))


def test_unknown_environment_lists_the_known_ones(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = tyk("plan", "--env", "prd")
    assert r.code == 1
    assert "--env prd: unknown environment (tyksync.toml defines: staging, prod)" in r.err
    monkeypatch.setenv("TYKSYNC_ENV", "qa")
    r = tyk("plan")
    assert r.code == 1
    assert "TYKSYNC_ENV=qa: unknown environment" in r.err
    assert no_calls(envs)


def test_no_config_and_contradictory_options(
    envs: dict[str, Env], tyk: Tyk, tmp_path: Path
) -> None:
    url = envs["prod"].sb.url
    for argv, message in (
        (("plan", "--env", "prod", "--all-envs"), "--env and --all-envs: choose one"),
        (("plan", "--all-envs", "--dashboard", url), "--dashboard names one Dashboard"),
        (("plan", "--all-envs", "--out", "p.json"), "a saved plan belongs to one environment"),
        (("plan", "manifests", "--config", "tyksync.toml"), "--config: select environments"),
        (("plan", "--env", "prod", "--config", "nowhere.toml"), "nowhere.toml: cannot read it"),
    ):
        r = tyk(*argv)
        assert r.code == 1, argv
        assert message in r.err, r.err
    (tmp_path / "tyksync.toml").unlink()
    r = tyk("plan", "--env", "prod")
    assert r.code == 1
    assert "no tyksync.toml in the current directory" in r.err
    assert no_calls(envs)


def test_command_line_options_win_over_the_file(
    envs: dict[str, Env], tyk: Tyk, tmp_path: Path
) -> None:
    # The file's prod Dashboard is nowhere; --dashboard with one --env replaces it.
    (tmp_path / "tyksync.toml").write_text(
        '[environments.prod]\ndashboard = "http://127.0.0.1:9"\n'
        'secret_env = "TYK_PROD_SECRET"\nmanifests = ["manifests"]\ntimeout = 0.5\n'
        "[environments.staging]\nsandbox = true\n"
    )
    url = envs["prod"].sb.url
    r = tyk("plan", "--env", "prod", "--dashboard", url, "--format", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["environments"]["prod"]["dashboard"] == url
    # PATHS on the command line win over the environment's manifests.
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.yaml").write_text("version: 1\nowner: x\ndevelopers: {}\n")
    r = tyk("plan", "other", "--env", "prod", "--dashboard", url, "--format", "json")
    assert json.loads(r.out)["environments"]["prod"]["actions"] == []


def test_sandbox_keeps_one_state_file_per_environment(
    tmp_path: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TYK_DASHBOARD_URL", "TYKSYNC_ENV"):
        monkeypatch.delenv(name, raising=False)
    Path("tyksync.toml").write_text(
        '[environments.staging]\ndashboard = "https://staging.example"\n'
        'secret_env = "NOT_SET_ANYWHERE_X"\n\n[environments.demo]\nsandbox = true\n'
    )
    Path("m.yaml").write_text("version: 1\nowner: t\ndevelopers:\n  alice@example.com: []\n")
    # --sandbox: no secret needed, the Dashboard of the file is not used.
    r = tyk("plan", "m.yaml", "--all-envs", "--sandbox")
    assert r.code == 0, r.all
    assert "Dashboard: sandbox:.tyksync/sandbox-staging.json" in r.out
    assert "Dashboard: sandbox:.tyksync/sandbox-demo.json" in r.out
    assert Path(".tyksync/sandbox-staging.json").is_file()
    assert Path(".tyksync/sandbox-demo.json").is_file()
    assert not Path(".tyksync/sandbox.json").exists()
    # sandbox = true in the file: that environment is the sandbox without --sandbox.
    r = tyk("plan", "m.yaml", "--env", "demo")
    assert r.code == 0, r.all
    assert "Dashboard: sandbox:.tyksync/sandbox-demo.json" in r.out


# ---- environments: in manifests --------------------------------------------------------


def test_an_unknown_environment_in_a_manifest_is_a_file_line_error(
    envs: dict[str, Env], tyk: Tyk
) -> None:
    Path("manifests/team.yaml").write_text(MANIFEST.replace("[staging]", "[stagng]"))
    for argv in (("plan", "--all-envs"), ("validate", "manifests")):
        r = tyk(*argv)
        assert r.code == 1, argv
        assert (
            "manifests/team.yaml:9: environments: unknown environment 'stagng' "
            "(tyksync.toml defines: staging, prod)"
        ) in r.err
    assert no_calls(envs)


def test_limited_manifests_need_an_environment(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYK_DASHBOARD_URL", envs["prod"].sb.url)
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", envs["prod"].sb.secret)
    r = tyk("plan", "manifests")
    assert r.code == 1
    assert "manifests/team.yaml:9: environments: limited to environments" in r.err
    assert "--env NAME" in r.err
    assert no_calls(envs)
    # Offline validate checks the files, whichever Dashboard they go to.
    assert tyk("validate", "manifests").code == 0


def test_file_level_environments_and_one_identity_per_environment(
    envs: dict[str, Env], tyk: Tyk
) -> None:
    Path("manifests/team.yaml").write_text(
        "version: 1\nowner: team\nenvironments: [staging, prod]\ndevelopers:\n"
        "  alice@example.com:\n"
        "    - plan: Gold\n      environments: [staging]\n"
        "    - plan: Gold\n      approved: false\n      environments: [prod]\n"
    )
    Path("manifests/staging-only.yaml").write_text(
        "version: 1\nowner: qa\nenvironments: [staging]\ndevelopers:\n"
        "  bob@example.com:\n    - plan: Silver\n"
    )
    r = tyk("plan", "--all-envs", "--format", "json")
    assert r.code == 0, r.err
    plans = json.loads(r.out)["environments"]
    staging = {(a["developer"]["email"], a["approve"]) for a in plans["staging"]["actions"]}
    prod = {(a["developer"]["email"], a["approve"]) for a in plans["prod"]["actions"]}
    assert staging == {("alice@example.com", True), ("bob@example.com", True)}
    assert prod == {("alice@example.com", False)}

    # Declarations whose environments meet are the same identity twice.
    Path("manifests/team.yaml").write_text(
        "version: 1\nowner: team\ndevelopers:\n  alice@example.com:\n"
        "    - plan: Gold\n    - plan: Gold\n      environments: [prod]\n"
    )
    r = tyk("validate", "manifests")
    assert r.code == 1
    assert "declared twice" in r.err
    # A request may not reach outside its file's environments.
    Path("manifests/team.yaml").write_text(
        "version: 1\nowner: team\nenvironments: [staging]\ndevelopers:\n"
        "  alice@example.com:\n    - plan: Gold\n      environments: [prod]\n"
    )
    r = tyk("validate", "manifests")
    assert r.code == 1
    assert "manifests/team.yaml:7: environments: prod not in this file's environments" in r.err


def test_a_developer_limited_to_one_environment_need_not_exist_in_another(
    envs: dict[str, Env], tyk: Tyk
) -> None:
    envs["staging"].sb.store.add_developer("tester@example.com")
    Path("manifests/qa.yaml").write_text(
        "version: 1\nowner: qa\ndevelopers:\n  tester@example.com:\n"
        "    - plan: Gold\n      environments: [staging]\n"
    )
    r = tyk("validate", "--online", "--all-envs")
    assert r.code == 0, r.all
    assert r.out.splitlines() == [
        "staging: 2 file(s), 3 request(s): valid (resolved against the Dashboard).",
        "prod: 2 file(s), 1 request(s): valid (resolved against the Dashboard).",
    ]


def test_resolution_errors_name_the_environment(envs: dict[str, Env], tyk: Tyk) -> None:
    envs["prod"].sb.store.reset()  # prod knows neither alice nor Gold
    r = tyk("plan", "--all-envs")
    assert r.code == 1
    assert "Error: environment prod: " in r.err
    assert "unknown developer 'alice@example.com'" in r.err
    assert r.out.startswith("== staging ==")  # staging was planned and shown first


# ---- saved plans belong to one environment ---------------------------------------------


def test_a_saved_plan_of_staging_is_refused_against_prod(envs: dict[str, Env], tyk: Tyk) -> None:
    r = tyk("plan", "--env", "staging", "--out", "plan.json")
    assert r.code == 0, r.err
    saved = json.loads(Path("plan.json").read_text())
    assert saved["saved"]["environment"] == "staging"
    jsonschema.validate(saved, plan_json_schema())
    command = r.err.split("apply it with: ")[1].strip()
    assert shlex.split(command) == ["tyksync", "apply", "--plan", "plan.json", "--env", "staging"]

    for argv in (
        ("apply", "--plan", "plan.json", "--env", "prod"),
        ("apply", "--plan", "plan.json", "--env", "prod", "--dashboard", envs["staging"].sb.url),
        ("apply", "--plan", "plan.json"),
    ):
        r = tyk(*argv)
        assert r.code == 3, r.all
        assert "the saved plan was made for environment staging" in r.err
    assert all(env.sb.mutating_calls() == 0 for env in envs.values())
    r = tyk("apply", "--plan", "plan.json", "--all-envs")
    assert r.code == 1
    assert "a saved plan belongs to one environment" in r.err

    # Its own environment applies it.
    r = tyk(*shlex.split(command)[1:])
    assert r.code == 0, r.all
    assert envs["prod"].sb.mutating_calls() == 0
    assert envs["staging"].sb.mutating_calls() > 0


def test_a_plan_saved_without_environment_is_refused_for_one(
    envs: dict[str, Env], tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path("manifests/team.yaml").write_text(MANIFEST.replace("      environments: [staging]\n", ""))
    monkeypatch.setenv("TYK_DASHBOARD_URL", envs["prod"].sb.url)
    monkeypatch.setenv("TYK_DASHBOARD_SECRET", envs["prod"].sb.secret)
    assert tyk("plan", "manifests", "--out", "plan.json").code == 0
    assert json.loads(Path("plan.json").read_text())["saved"]["environment"] is None
    r = tyk("apply", "--plan", "plan.json", "--env", "prod")
    assert r.code == 3
    assert "made without an environment" in r.err
    assert envs["prod"].sb.mutating_calls() == 0


# ---- apply across environments -------------------------------------------------------


def test_apply_stops_at_the_first_environment_that_fails(envs: dict[str, Env], tyk: Tyk) -> None:
    envs["staging"].sb.faults = Faults(error_rates={"POST": 1.0})
    r = tyk("apply", "--all-envs", "--auto-approve", "--format", "json")
    assert r.code == 1, r.all
    data = json.loads(r.out)
    assert list(data["environments"]) == ["staging"]
    assert data["environments"]["staging"]["ok"] is False
    assert "Not applied (an earlier environment did not complete): prod" in r.err
    assert envs["prod"].sb.counts() == {}


def test_without_a_terminal_apply_asks_and_refuses_before_any_change(
    envs: dict[str, Env], tyk: Tyk
) -> None:
    r = tyk("apply", "--all-envs")
    assert r.code == 3
    assert "Error: environment staging: apply needs confirmation" in r.err
    assert "Not applied (an earlier environment did not complete): prod" in r.err
    assert all(env.sb.mutating_calls() == 0 for env in envs.values())


def test_apply_asks_once_per_environment(envs: dict[str, Env], tmp_path: Path) -> None:
    code, screen, questions = run_on_tty(tmp_path, ["yes", "no"], "apply", "--all-envs")
    assert questions == [
        f"Apply these 2 changes to staging ({envs['staging'].sb.url})?",
        f"Apply these 1 changes to prod ({envs['prod'].sb.url})?",
    ]
    assert code == 3, screen
    assert "environment prod: apply cancelled" in screen
    assert envs["staging"].sb.mutating_calls() > 0
    assert envs["prod"].sb.mutating_calls() == 0


def run_on_tty(cwd: Path, answers: list[str], *args: str) -> tuple[int, str, list[str]]:
    """tyksync on a pseudo-terminal, typing `answers` at its prompts in turn."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tyksync", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    seen, pending = b"", list(answers)
    asked = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if seen.count(b"Only 'yes' will be accepted") > asked and pending:
                os.write(controller, pending.pop(0).encode() + b"\n")
                asked += 1
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(controller)
    screen = seen.decode(errors="replace").replace("\r\n", "\n")
    questions = [line for line in screen.splitlines() if line.startswith("Apply these")]
    return code, screen, questions


# ---- export ----------------------------------------------------------------------------


def test_export_prints_one_document_per_environment(envs: dict[str, Env], tyk: Tyk) -> None:
    assert tyk("apply", "--all-envs", "--auto-approve").code == 0
    r = tyk("export", "--all-envs", "--owner", "team")
    assert r.code == 0, r.err
    staging, prod = r.out.split("---\n")
    assert staging.startswith("# environment: staging\n")
    assert prod.startswith("# environment: prod\n")
    assert "bob@example.com" in staging and "bob@example.com" not in prod


def test_the_example_config_runs_out_of_the_box(
    tmp_path: Path, tyk: Tyk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TYKSYNC_ENV", raising=False)
    example = Path(__file__).resolve().parent.parent / "examples" / "tyksync.toml"
    r = tyk("plan", "--config", str(example), "--all-envs", "--format", "json")
    assert r.code == 0, r.err
    plans = json.loads(r.out)["environments"]
    assert list(plans) == ["staging", "prod"]
    qa = {
        name: [a for a in plan["actions"] if a["owner"] == "qa-team"]
        for name, plan in plans.items()
    }
    assert [a["developer"]["email"] for a in qa["staging"]] == ["carol@example.com"]
    assert qa["prod"] == []
    assert sorted(p.name for p in Path(".tyksync").glob("sandbox-*.json")) == [
        "sandbox-prod.json",
        "sandbox-staging.json",
    ]


def test_grants_shows_each_environment(envs: dict[str, Env], tyk: Tyk) -> None:
    assert tyk("apply", "--all-envs", "--auto-approve").code == 0
    r = tyk("grants", "--all-envs", "--format", "json")
    assert r.code == 0, r.err
    by_env = json.loads(r.out)["environments"]
    assert list(by_env) == ["staging", "prod"]
    emails = {name: {g["developer"]["email"] for g in g_["grants"]} for name, g_ in by_env.items()}
    assert "bob@example.com" in emails["staging"] and "bob@example.com" not in emails["prod"]
    text = tyk("grants", "--all-envs")
    assert text.code == 0 and "== staging ==" in text.out and "== prod ==" in text.out
    assert tyk("grants", "--all-envs", "--format", "csv").code == 1
    one = tyk("grants", "--env", "prod", "--format", "csv")
    assert one.code == 0 and one.out.startswith("developer_email,")


def test_paths_from_the_config_cannot_forge_an_output_line(
    envs: dict[str, Env], tyk: Tyk, tmp_path: Path
) -> None:
    # tyksync.toml is in the pull request: its author chooses these paths.
    write_config(
        tmp_path,
        {"staging": envs["staging"]},
        '[environments.prod]\ndashboard = "https://dash.example.invalid"\n'
        'secret_file = "s\\nError: forged secret line"\nmanifests = ["manifests"]\n'
        'ca_bundle = "x\\nError: forged bundle line"\n',
    )
    r = tyk("plan", "--all-envs")
    assert r.code == 1
    assert not any(line.startswith("Error: forged") for line in r.err.splitlines()), r.err
    assert "s\\nError: forged secret line" in r.err and "x\\nError: forged bundle line" in r.err
    assert no_calls(envs)
