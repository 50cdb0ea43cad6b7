"""The world of the crash and race trials: one manifest file and the live state it governs,
in a sandbox Dashboard, and the checks of the state an apply (or two, or a killed one)
leaves behind.

`build_world` seeds every kind of action (create, create without approval, approve,
replace, delete by prune, delete of a duplicate, and, with `revoke: true`, the revoke of
the key of an approved request pruned) beside requests that must stay as they are;
`check_final_state` compares the converged store with the declared intents, counting keys
per identity from every key the sandbox issued (deleting a request does not take its key
away; revoking does not unissue it), and checks that exactly the keys meant to be revoked
are; `read_journal` checks a journal is JSON lines holding no key.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tyksync.sandbox import Sandbox

from .capture import run_cli

SECRET = "crash-secret-CANARY-7f3a91"
OWNER = "crash-team"
OTHER_OWNER = "someone-else"

Identity = tuple[str, frozenset[str]]  # (developer id, policy `_id`s)
Phase = Literal["before", "during", "after"]

# ---- the world: live state and manifests -----------------------------------------------


@dataclass(frozen=True)
class WorldSpec:
    """How many identities of each kind the manifests declare (see `build_world`)."""

    creates: int = 24  # no live request; approved: true -> create, then approve
    pending_creates: int = 4  # no live request; approved: false -> create only
    approves: int = 4  # a pending owned request with the declared fields -> approve
    replaces: int = 3  # a pending owned request with other fields -> replace
    prunes: int = 3  # an owned request no manifest declares -> delete
    dups: int = 2  # two pending owned requests for one identity -> delete one, approve one
    kept: int = 6  # an approved owned request as declared -> nothing to do
    revoke: bool = True  # `revoke: true`: the approved prune's key is revoked too


@dataclass(frozen=True)
class Intent:
    declared: bool  # False: a request prune must delete
    approved: bool  # what the one request left must be (when declared)
    new_keys: int  # keys an apply must issue for it: 1 or 0, never more
    where: str  # its role, for messages


@dataclass
class World:
    sandbox: Sandbox
    manifests: Path
    intents: dict[Identity, Intent]
    untouched: dict[str, dict[str, Any]]  # requests out of scope, by id, as they started
    initial: dict[str, bool]  # request id -> approved, before any apply
    keys_before: Counter[Identity]
    policy_ids: dict[str, str]  # policy name -> `_id`
    to_revoke: set[str] = field(default_factory=set)  # raw keys an apply must revoke

    @property
    def url(self) -> str:
        return self.sandbox.url


def build_world(sb: Sandbox, root: Path, spec: WorldSpec = WorldSpec()) -> World:
    """Developers, policies and live requests in `sb`; one manifest file under `root`.

    Every kind of action is present (create, create without approval, approve, replace,
    delete by prune, delete of a duplicate), beside requests that must stay as they are
    (already as declared, of an unlisted developer, of another owner). Deletes stay under
    the 30% safety limit so that apply runs without --force, as CI would run it.
    """
    store = sb.store
    gold = store.add_policy("Gold", id="gold")["_id"]
    silver = store.add_policy("Silver", id="silver")["_id"]
    reports = store.add_policy("Reports", id="reports")["_id"]
    policy_ids = {"Gold": gold, "Silver": silver, "Reports": reports}
    intents: dict[Identity, Intent] = {}
    revoke = "revoke: true\n" if spec.revoke else ""
    lines = [f"version: 1\nowner: {OWNER}\nprune: owned\n{revoke}defaults:\n  approved: true\n"]
    lines.append("developers:\n")
    counter = iter(range(10_000))

    def developer(role: str) -> tuple[str, str]:
        email = f"{role}{next(counter):03d}@example.com"
        return store.add_developer(email)["id"], email

    def owned(ticket: str) -> dict[str, str]:
        return {"ticket": ticket, "tyksync_owner": OWNER}

    with store.batch():
        for i in range(spec.creates):
            dev, email = developer("create")
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: C-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "create")
            if i < spec.pending_creates:
                # A second identity of the same developer, left for a person to approve.
                lines.append(
                    "    - plans: [Silver, Reports]\n      approved: false\n"
                    f"      fields: {{ticket: P-{i}}}\n"
                )
                intents[(dev, frozenset({silver, reports}))] = Intent(
                    True, False, 0, "pending create"
                )
        for i in range(spec.approves):
            dev, email = developer("approve")
            store.add_request(dev, [gold], fields=owned(f"A-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: A-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "approve")
        for i in range(spec.replaces):
            dev, email = developer("replace")
            store.add_request(dev, [gold], fields=owned(f"OLD-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: R-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "replace")
        for i in range(spec.prunes):
            dev, email = developer("prune")
            # Its Reports request is no longer declared; the last one was approved (its key
            # stays valid after the delete, and must not be counted as a new one).
            store.add_request(dev, [reports], approved=i == spec.prunes - 1, fields=owned("X"))
            lines.append(f"  {email}:\n    - plan: Silver\n      fields: {{ticket: S-{i}}}\n")
            intents[(dev, frozenset({reports}))] = Intent(False, False, 0, "prune")
            intents[(dev, frozenset({silver}))] = Intent(True, True, 1, "create beside prune")
        for i in range(spec.dups):
            dev, email = developer("dup")
            store.add_request(dev, [gold], fields=owned(f"D-{i}"))
            store.add_request(dev, [gold], fields=owned(f"D-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: D-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 1, "duplicate")
        for i in range(spec.kept):
            dev, email = developer("kept")
            store.add_request(dev, [gold], approved=True, fields=owned(f"K-{i}"))
            lines.append(f"  {email}:\n    - plan: Gold\n      fields: {{ticket: K-{i}}}\n")
            intents[(dev, frozenset({gold}))] = Intent(True, True, 0, "kept")
        # Out of scope: an unlisted developer's own request, and another owner's.
        stranger, _ = developer("stranger")
        store.add_request(stranger, [gold], fields={"ticket": "mine"})
        store.add_request(stranger, [silver], fields={"tyksync_owner": OTHER_OWNER})

    root.mkdir(parents=True, exist_ok=True)
    (root / "crash.yaml").write_text("".join(lines), encoding="utf-8")
    untouched = {r["id"]: r for r in store.requests() if r["by_user"] == stranger}
    # The approved prune is the only request, and holds the only key, of its identity: its
    # key can be told apart, and `revoke: true` must revoke it.
    pruned_approved = {
        r["id"] for r in store.requests() if r["approved"] and r["fields"].get("ticket") == "X"
    }
    to_revoke = (
        {k["key"] for k in store.issued() if k["request_id"] in pruned_approved}
        if spec.revoke
        else set()
    )
    return World(
        sandbox=sb,
        manifests=root,
        intents=intents,
        untouched=untouched,
        initial={r["id"]: bool(r["approved"]) for r in store.requests()},
        keys_before=keys_by_identity(sb),
        policy_ids=policy_ids,
        to_revoke=to_revoke,
    )


# ---- reading the store ------------------------------------------------------------------


def _canonical(sb: Sandbox) -> dict[str, str]:
    """Policy reference (explicit `id` or `_id`) -> `_id`."""
    refs: dict[str, str] = {}
    for p in sb.store.policies():
        refs[p["_id"]] = p["_id"]
        if p["id"]:
            refs[p["id"]] = p["_id"]
    return refs


def request_identity(r: dict[str, Any], canonical: dict[str, str]) -> Identity:
    refs = r.get("apply_policies") or ([r["for_plan"]] if r.get("for_plan") else [])
    return (r["by_user"], frozenset(canonical.get(ref, ref) for ref in refs))


def requests_by_identity(sb: Sandbox) -> Counter[Identity]:
    canonical = _canonical(sb)
    return Counter(request_identity(r, canonical) for r in sb.store.requests())


def keys_by_identity(sb: Sandbox) -> Counter[Identity]:
    """Keys ever issued per identity: every approval issues one; deleting the request does
    not take it away (SPEC section 1), and a revoked key was issued all the same."""
    return Counter((k["developer_id"], frozenset(k["policies"])) for k in sb.store.issued())


def secrets_of(sb: Sandbox) -> list[str]:
    """What no output, log or journal may hold: every key issued, and every key id (the
    Dashboard's record of a key is a secret too: SPEC section 11)."""
    issued = sb.store.issued()
    return [k["key"] for k in issued] + [k["key_id"] for k in issued]


@dataclass
class Violations:
    """What the final state got wrong; empty lists when all is well."""

    duplicates: list[str] = field(default_factory=list)  # identities with 2+ requests
    missing: list[str] = field(default_factory=list)  # declared, no request
    not_pruned: list[str] = field(default_factory=list)  # undeclared owned, still there
    wrong_approval: list[str] = field(default_factory=list)
    extra_keys: list[str] = field(default_factory=list)  # more keys than the intent needs
    missing_keys: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # out-of-scope requests changed
    revocations: list[str] = field(default_factory=list)  # a key revoked, or left, wrongly

    def all(self) -> list[str]:
        return [
            *self.revocations,
            *self.duplicates,
            *self.missing,
            *self.not_pruned,
            *self.wrong_approval,
            *self.extra_keys,
            *self.missing_keys,
            *self.touched,
        ]


def check_final_state(world: World) -> tuple[Violations, int, int]:
    """Compare the converged store with the intents; also (keys issued, keys intended)."""
    sb = world.sandbox
    counts = requests_by_identity(sb)
    keys_now = keys_by_identity(sb)
    canonical = _canonical(sb)
    approved = {request_identity(r, canonical): bool(r["approved"]) for r in sb.store.requests()}
    v = Violations()
    issued = intended = 0
    for identity, intent in sorted(world.intents.items(), key=lambda kv: kv[1].where):
        name = f"{intent.where} {identity[0]}"
        n = counts.get(identity, 0)
        if intent.declared and n > 1:
            v.duplicates.append(f"{name}: {n} requests")
        elif intent.declared and n == 0:
            v.missing.append(f"{name}: no request")
        elif not intent.declared and n:
            v.not_pruned.append(f"{name}: {n} requests left")
        if intent.declared and n == 1 and approved[identity] != intent.approved:
            v.wrong_approval.append(f"{name}: approved={approved[identity]}")
        new = keys_now.get(identity, 0) - world.keys_before.get(identity, 0)
        issued += new
        intended += intent.new_keys
        if new > intent.new_keys:
            v.extra_keys.append(f"{name}: {new} keys issued, {intent.new_keys} needed")
        elif new < intent.new_keys:
            v.missing_keys.append(f"{name}: {new} keys issued, {intent.new_keys} needed")
    live = {r["id"]: r for r in sb.store.requests()}
    for request_id, before in world.untouched.items():
        if live.get(request_id) != before:
            v.touched.append(f"out-of-scope request {request_id} changed or deleted")
    for k in sb.store.issued():
        meant = k["key"] in world.to_revoke
        if meant and sb.store.key_valid(k["key"]):
            v.revocations.append(f"key of pruned request {k['request_id']} still valid")
        elif not meant and k["revoked"]:
            v.revocations.append(f"key of request {k['request_id']} revoked, not meant to be")
    return v, issued, intended


# ---- the journal ---------------------------------------------------------------------------


@dataclass
class JournalReport:
    lines: int = 0
    torn_last_line: bool = False
    errors: list[str] = field(default_factory=list)  # invalid lines other than a torn last
    events: list[dict[str, Any]] = field(default_factory=list)

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    @property
    def phase(self) -> Phase:
        """Where the kill landed: before any mutation was sent, during, or after the end."""
        if self.of("apply.end"):
            return "after"
        if any(str(e.get("event", "")).endswith(".sent") for e in self.events):
            return "during"
        return "before"


def read_journal(path: Path, secrets_: Sequence[str]) -> JournalReport:
    """Every line must be a JSON object, except possibly the last: each entry is written
    with one write(), so a kill can at worst leave the line being written partial, never
    an earlier one. No key (nor the secret) may appear anywhere in it."""
    report = JournalReport()
    if not path.exists():
        return report
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    for needle in secrets_:
        if needle and needle in text:
            report.errors.append("the journal holds a key or the secret")
            break
    chunks = raw.split(b"\n")
    complete, tail = chunks[:-1], chunks[-1]  # tail is b"" when the file ends with "\n"
    report.lines = len(complete) + (1 if tail else 0)
    for number, chunk in enumerate(complete, 1):
        try:
            entry = json.loads(chunk)
        except ValueError:
            report.errors.append(f"line {number} is not JSON: {chunk[:80]!r}")
            continue
        if not isinstance(entry, dict) or "event" not in entry or "run" not in entry:
            report.errors.append(f"line {number} is not a journal entry: {chunk[:80]!r}")
            continue
        report.events.append(entry)
    if tail:
        # A last line without its newline: the write the kill interrupted. Accepted if it
        # is a prefix of an entry, i.e. not valid JSON; a whole entry missing only its
        # newline is recorded too.
        try:
            report.events.append(json.loads(tail))
        except ValueError:
            report.torn_last_line = True
    return report


# ---- running tyksync ------------------------------------------------------------------------


def secret_file(directory: Path) -> Path:
    path = directory / "secret"
    if not path.exists():
        path.write_text(SECRET + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path


def converge(world: World, work: Path, max_applies: int = 3) -> tuple[int, list[str]]:
    """Apply until `plan --detailed-exitcode` says no changes; the applies it took (or
    max_applies + 1 when it never got there) and the output of each run, for messages."""
    common = ["--dashboard", world.url, "--secret-file", str(secret_file(work))]
    outputs: list[str] = []
    for n in range(1, max_applies + 1):
        journal = work / f"journal-followup-{n}.jsonl"
        applied = run_cli(
            ["apply", str(world.manifests), "--auto-approve", "--journal", str(journal), *common]
        )
        outputs.append(f"apply #{n} exited {applied.code}:\n{applied.all}")
        planned = run_cli(["plan", str(world.manifests), "--detailed-exitcode", *common])
        outputs.append(f"plan after apply #{n} exited {planned.code}:\n{planned.all}")
        if planned.code == 0:
            return n, outputs
    return max_applies + 1, outputs


def apply_command(world: World, journal: Path, parallelism: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tyksync",
        "apply",
        str(world.manifests),
        "--auto-approve",
        "--dashboard",
        world.url,
        "--journal",
        str(journal),
        "--parallelism",
        str(parallelism),
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYK_")}
    env["TYK_DASHBOARD_SECRET"] = SECRET
    env["NO_COLOR"] = "1"
    return env
