"""The GitHub Action's steps, run here as a runner would run them (SPEC 14).

`ActionRun` reads action.yml and runs the `run:` steps it is asked for, each with the env
that action.yml gives that step (its `${{ }}` expressions resolved from the inputs, the
outputs of earlier steps and a made-up `github` context) and nothing else from this
process. Steps that `uses:` another action are simulated: `upload` copies what
actions/upload-artifact would upload into a local artifact store.

`gh` is a stub (`STUB_GH`, put first on PATH): it records every call (argv, stdin and its
whole environment) as a JSON line, and answers from a JSON state file the calls the
scripts make: a PR's comments (listed two to a page, created, edited), the pulls of a
commit, the artifacts listing, `run download` from the artifact store.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .capture import CliResult

ROOT = Path(__file__).resolve().parent.parent.parent
ACTION = ROOT / "action.yml"
BOT = "github-actions[bot]"

STUB_GH = f"""#!{sys.executable}
import json, os, shutil, sys
from pathlib import Path

state_path = Path(os.environ["STUB_GH_STATE"])
args = sys.argv[1:]
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["STUB_GH_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": args, "stdin": stdin, "env": dict(os.environ)}}) + "\\n")
state = json.loads(state_path.read_text())


def option(name):
    return args[args.index(name) + 1] if name in args else None


def fail(message):
    sys.stderr.write("gh stub: " + message + "\\n")
    sys.exit(1)


if args[:2] == ["run", "download"]:
    source = Path(os.environ["STUB_GH_STORE"]) / args[2] / option("--name")
    if not source.is_dir():
        fail("no such artifact")
    shutil.copytree(source, option("--dir"))
    sys.exit(0)
if args[0] != "api":
    fail("unexpected call " + " ".join(args))
method = option("--method") or "GET"
endpoint = next(a for a in args if a.startswith("repos/"))
path, _, query = endpoint.partition("?")
parts = path.split("/")
if method == "GET" and parts[3:4] == ["issues"] and parts[5:] == ["comments"]:
    mine = [c for c in state["comments"] if c["issue"] == int(parts[4])]
    pages = [mine[i:i + 2] for i in range(0, len(mine), 2)] or [[]]
    sys.stdout.write("".join(json.dumps(page) for page in pages))  # --paginate, no separator
elif method == "POST" and parts[3:4] == ["issues"] and parts[5:] == ["comments"]:
    state["next_id"] += 1
    comment = {{"id": state["next_id"], "issue": int(parts[4]), "user": {{"login": "{BOT}"}},
               "body": json.loads(stdin)["body"],
               "html_url": "https://github.example/pr/" + parts[4] + "#c" + str(state["next_id"])}}
    state["comments"].append(comment)
    print(json.dumps(comment))
elif method == "PATCH" and parts[3:5] == ["issues", "comments"]:
    comment = next((c for c in state["comments"] if c["id"] == int(parts[5])), None)
    if comment is None:
        fail("404")
    comment["body"] = json.loads(stdin)["body"]
    print(json.dumps(comment))
elif method == "GET" and parts[3:4] == ["commits"] and parts[5:] == ["pulls"]:
    print(json.dumps(state["pulls"]))
elif method == "GET" and parts[3:5] == ["actions", "artifacts"]:
    name = query.split("name=")[1].split("&")[0]
    found = [a for a in state["artifacts"] if a["name"] == name]
    print(json.dumps({{"total_count": len(found), "artifacts": found}}))
else:
    fail("unexpected call " + method + " " + endpoint)
state_path.write_text(json.dumps(state))
"""


@dataclass
class GitHub:
    """What the stub `gh` serves and records, under `root`."""

    root: Path

    def __post_init__(self) -> None:
        self.bin = self.root / "bin"
        self.bin.mkdir(parents=True)
        gh = self.bin / "gh"
        gh.write_text(STUB_GH, encoding="utf-8")
        gh.chmod(0o755)
        self.state_path = self.root / "state.json"
        self.log = self.root / "calls.jsonl"
        self.store = self.root / "artifacts"
        self.store.mkdir()
        self.state = {"comments": [], "pulls": [], "artifacts": [], "next_id": 1000}

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(value))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def methods(self) -> list[str]:
        """`METHOD endpoint` of each `gh api` call, `run download` for the others."""
        out = []
        for call in self.calls():
            argv = call["argv"]
            if argv[0] == "api":
                method = argv[argv.index("--method") + 1] if "--method" in argv else "GET"
                endpoint = next(a for a in argv[1:] if a.startswith("repos/"))
                out.append(f"{method} {endpoint}")
            else:
                out.append(" ".join(argv[:2]))
        return out

    def comments(self) -> list[dict[str, Any]]:
        return list(self.state["comments"])

    def add_artifact(self, name: str, run_id: int, head_sha: str, created_at: str) -> None:
        state = self.state
        state["artifacts"].append(
            {
                "id": 5000 + len(state["artifacts"]),
                "name": name,
                "expired": False,
                "created_at": created_at,
                "workflow_run": {"id": run_id, "head_sha": head_sha},
            }
        )
        self.state = state


@dataclass
class ActionRun:
    """One workflow run of the action: its inputs, its context and its steps' outputs."""

    github: GitHub
    workspace: Path
    inputs: dict[str, str]
    run_id: int = 100
    event: str = "pull_request"
    pr: int | None = 7
    sha: str = "c" * 40
    token: str = "ghs_token-CANARY-0000"
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    results: dict[str, CliResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.action = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
        defaults = {k: str(v.get("default", "")) for k, v in self.action["inputs"].items()}
        unknown = set(self.inputs) - set(defaults)
        assert not unknown, f"not inputs of action.yml: {unknown}"
        self.inputs = {**defaults, **self.inputs}
        self.temp = self.github.root / f"runner-temp-{self.run_id}"
        self.temp.mkdir(exist_ok=True)
        self.summary = self.temp / "summary.md"
        # What install.sh would have made: this interpreter and its tyksync.
        self.outputs["install"] = {
            "tyksync": str(Path(sys.executable).with_name("tyksync")),
            "python": sys.executable,
        }

    def step(self, step_id: str) -> dict[str, Any]:
        for step in self.action["runs"]["steps"]:
            if step.get("id") == step_id:
                return dict(step)
        raise KeyError(step_id)

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", lambda m: self._expression(m.group(1)), text)

    def _expression(self, expr: str) -> str:
        """The expressions action.yml's env, with and run use: a name, or `name || 'x'`."""
        name, _, fallback = (part.strip() for part in expr.partition("||"))
        value = self._value(name)
        if not value and fallback:
            assert re.fullmatch(r"'[^']*'", fallback), expr
            return fallback[1:-1]
        return value

    def _value(self, name: str) -> str:
        words = name.split(".")
        if words[0] == "inputs":
            return self.inputs[words[1]]
        if words[0] == "steps" and words[2] == "outputs":
            return self.outputs.get(words[1], {}).get(words[3], "")
        known = {
            "github.action_path": str(ROOT),
            "github.token": self.token,
            "github.event.pull_request.number": "" if self.pr is None else str(self.pr),
            "runner.temp": str(self.temp),
        }
        assert name in known, f"the test runner does not know ${{{{ {name} }}}}"
        return known[name]

    def base_env(self) -> dict[str, str]:
        """What a runner gives every step; nothing of this process's environment (the
        test's own TYK_DASHBOARD_* included) but PATH and HOME."""
        return {
            "PATH": f"{self.github.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.github.root),
            "LANG": "C.UTF-8",
            "RUNNER_TEMP": str(self.temp),
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.example",
            "GITHUB_REPOSITORY": "acme/access",
            "GITHUB_RUN_ID": str(self.run_id),
            "GITHUB_SHA": self.sha,
            "GITHUB_EVENT_NAME": self.event,
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_ACTION_PATH": str(ROOT),
            "STUB_GH_STATE": str(self.github.state_path),
            "STUB_GH_LOG": str(self.github.log),
            "STUB_GH_STORE": str(self.github.store),
        }

    def env_of(self, step_id: str) -> dict[str, str]:
        """The env action.yml gives this step, resolved."""
        return {k: self.resolve(str(v)) for k, v in (self.step(step_id).get("env") or {}).items()}

    def run(self, step_id: str) -> CliResult:
        """Run a `run:` step with bash, as the runner would; its outputs are kept."""
        step = self.step(step_id)
        assert step.get("shell") == "bash", step
        output = self.temp / f"output-{step_id}"
        output.write_text("")
        env = {**self.base_env(), **self.env_of(step_id), "GITHUB_OUTPUT": str(output)}
        cwd = self.workspace / self.resolve(str(step.get("working-directory", ".")))
        proc = subprocess.run(
            ["bash", "-e", "-c", self.resolve(step["run"])],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.outputs[step_id] = dict(
            line.split("=", 1) for line in output.read_text().splitlines() if "=" in line
        )
        result = CliResult((step_id,), proc.returncode, proc.stdout, proc.stderr)
        self.results[step_id] = result
        return result

    def upload(self, step_id: str) -> Path:
        """What actions/upload-artifact does for this step: the files of `with.path`, in
        the store under this run and `with.name`."""
        step = self.step(step_id)
        assert step["uses"].startswith("actions/upload-artifact@"), step
        name = self.resolve(step["with"]["name"])
        target = self.github.store / str(self.run_id) / name
        for line in self.resolve(step["with"]["path"]).splitlines():
            source = Path(line.strip())
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target / source.name)
        return target

    def everything_printed(self) -> str:
        """Every step's stdout and stderr, its outputs and the job summary."""
        texts = [r.all for r in self.results.values()]
        texts.append(json.dumps(self.outputs))
        if self.summary.exists():
            texts.append(self.summary.read_text())
        return "\n".join(texts)
