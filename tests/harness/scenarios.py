"""Seeded random fault scenarios: manifests, live state and a fault schedule from one seed.

Run by `tests/test_fault_scenarios.py` (a few hundred in CI) and
`scripts/fault_scenarios.py` (thousands, with figures); `tests/test_stateful.py` uses its
helpers. A scenario is a small world (3-8
developers, 2-5 policies, up to ~20 live requests), one to three owners' manifest files and
one fault profile. `run_scenario` drives tyksync as `tyksync apply` does (read live state,
resolve, plan, apply) against a sandbox over real HTTP with the faults on, until the plan is
empty, then checks the outcome against an oracle written from SPEC section 4, reading the
sandbox's store directly rather than through tyksync's client. Each scenario also runs
once without faults first: faults may cost applies, never change the end state or the keys
issued.

A fraction of the manifest files say `revoke: true` (SPEC section 11); the oracle then
checks that every key tyksync revoked belonged to a request it deleted under such a file,
and that a request it deleted under one, whose key could be told apart, left no valid key.

Every violation becomes a line in `ScenarioResult.problems` that names the seed, so a
failure is reproduced with `run_scenario(generate(seed), workdir)` (or
`scripts/fault_scenarios.py --only SEED`). Thread timing (parallel actions, racing applies)
is not seeded, so a rare failure may need a few runs.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path
from typing import Any

import yaml

from tyksync.applier import Applier, ApplyResult
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.errors import ManifestError, TyksyncError
from tyksync.journal import Journal
from tyksync.manifest import Manifests, load_manifests
from tyksync.models import OP_FIELD, OWNER_FIELD, RESERVED_PREFIX
from tyksync.pipeline import plan_live
from tyksync.plan import Plan
from tyksync.render import FORMATS, render
from tyksync.sandbox import CANARY_PREFIX, Faults, Sandbox
from tyksync.sandbox.store import Record, Store, request_policies
from tyksync.sandbox.wire import Dialect

from .capture import LogCapture, capture_logs

# A recognisable Dashboard secret: any output that contains it is a leak.
SECRET = "fault-scenario-secret-CANARY-7d1f20"
MAX_APPLIES = 5
# Planning reads go through the same faults; a read that still fails after the client's
# own retries is counted and the plan tried again, this many times in a row at most.
PLAN_ATTEMPTS = 10
CLIENT_RETRY = RetryPolicy(attempts=5, backoff=0.05, max_backoff=1.0, max_retry_after=2.0)
OWNERS = ("payments", "search", "ops-team")
FOREIGN_OWNER = "someone-else"  # a mark no manifest of the scenario uses
FIELD_VALUES = ("OPS-1", "OPS-2", "billing", "search", "v2 rollout", "")
PROFILES = ("drops", "flaky_5xx", "rate_limit", "resets", "invalid_json", "mixed", "paging", "none")
# The control profile is rare: the point is the faults.
PROFILE_WEIGHTS = (17, 17, 15, 13, 13, 15, 6, 4)
ALL_METHODS = ("GET", "POST", "PUT", "DELETE")
REVOKE_SHARE = 0.35  # manifest files with `revoke: true`

Identity = tuple[str, frozenset[str]]  # (developer id, policy `_id`s)

# Open bugs in tyksync that these scenarios run into, each pinned by a strict xfail test in
# test_fault_scenarios.py. A violation with exactly such a bug's signature is counted under
# its name (and printed by scripts/fault_scenarios.py) instead of failing the scenario.
# Empty now: add an entry, and its classification in run_scenario, for a new open bug.
KNOWN_BUGS: dict[str, str] = {}


# ---- the world ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySpec:
    db_id: str
    explicit_id: str  # "" when the policy has none (always so in the legacy dialect)
    name: str


@dataclass(frozen=True)
class DeveloperSpec:
    id: str
    email: str


@dataclass(frozen=True)
class Declaration:
    """One declared request, with the references as the manifest writes them."""

    developer: int  # index into Scenario.developers
    policies: tuple[int, ...]  # indexes into Scenario.policies, declared order
    policy_refs: tuple[str, ...]  # name, explicit id or _id, as written
    approved: bool | None  # None: from the file's defaults
    fields: dict[str, str] | None  # None: no `fields:` key
    single_form: bool  # `plan: X` rather than `plans: [X]` (one policy only)


@dataclass(frozen=True)
class ManifestSpec:
    filename: str
    owner: str
    prune: str | None  # None: key left out (means owned)
    defaults_approved: bool | None  # None: no `approved` under defaults
    defaults_fields: dict[str, str] | None
    developer_refs: dict[int, str]  # developer index -> key written under `developers:`
    declarations: tuple[Declaration, ...]
    revoke: bool = False  # `revoke: true`: deleting an approved request revokes its key

    @property
    def prune_mode(self) -> str:
        return self.prune or "owned"

    def effective_approved(self, d: Declaration) -> bool:
        if d.approved is not None:
            return d.approved
        return True if self.defaults_approved is None else self.defaults_approved

    def effective_fields(self, d: Declaration) -> dict[str, str]:
        return {**(self.defaults_fields or {}), **(d.fields or {})}


@dataclass(frozen=True)
class FaultProfile:
    name: str
    faults: dict[str, Any]  # keyword arguments of Faults (without the seed)

    def make(self, seed: int) -> Faults:
        return Faults(seed=seed, **self.faults)


@dataclass(frozen=True)
class Scenario:
    seed: int
    dialect: Dialect
    developers: tuple[DeveloperSpec, ...]
    policies: tuple[PolicySpec, ...]
    manifests: tuple[ManifestSpec, ...]
    live: tuple[dict[str, Any], ...]  # Store.add_request keyword arguments
    profile: FaultProfile
    reissue: bool
    parallelism: int
    concurrent: bool  # two applies race in the first round

    def policy_db_id(self, ref: str) -> str:
        """The `_id` a live request's policy reference means (an `_id` or explicit id)."""
        for p in self.policies:
            if ref in (p.db_id, p.explicit_id):
                return p.db_id
        return ref

    def record_identity(self, record: Mapping[str, Any]) -> Identity | None:
        """A stored request's identity, or None for a legacy (policy-less) request."""
        refs = request_policies(record)
        if not refs:
            return None
        return (str(record["by_user"]), frozenset(self.policy_db_id(r) for r in refs))

    def declared(self) -> dict[Identity, tuple[ManifestSpec, Declaration]]:
        out: dict[Identity, tuple[ManifestSpec, Declaration]] = {}
        for m in self.manifests:
            for d in m.declarations:
                identity = (
                    self.developers[d.developer].id,
                    frozenset(self.policies[i].db_id for i in d.policies),
                )
                out[identity] = (m, d)
        return out

    def describe(self) -> str:
        return (
            f"seed={self.seed} dialect={self.dialect} profile={self.profile.name} "
            f"{self.profile.faults} reissue={self.reissue} parallelism={self.parallelism} "
            f"concurrent={self.concurrent} "
            f"devs={len(self.developers)} policies={len(self.policies)} "
            f"files={len(self.manifests)} "
            f"declared={sum(len(m.declarations) for m in self.manifests)} live={len(self.live)}"
        )


# ---- generation --------------------------------------------------------------------------


def _object_id(rng: random.Random) -> str:
    # A letter up front keeps the id from ever looking like a number to a YAML reader.
    return "a" + f"{rng.getrandbits(92):023x}"


def _fields(rng: random.Random) -> dict[str, str]:
    keys = rng.sample(("ticket", "team", "purpose"), rng.randint(1, 2))
    return {k: rng.choice(FIELD_VALUES) for k in keys}


def _profile(rng: random.Random) -> FaultProfile:
    name = rng.choices(PROFILES, weights=PROFILE_WEIGHTS)[0]
    every = dict.fromkeys(ALL_METHODS, 0.2)
    faults: dict[str, Any]
    if name == "drops":
        faults = {"drop_after_write": round(rng.uniform(0.2, 0.6), 2)}
    elif name == "flaky_5xx":
        faults = {"error_rates": every}
    elif name == "rate_limit":
        rate = round(rng.uniform(0.1, 0.3), 2)
        faults = {
            "rate_limit": dict.fromkeys(ALL_METHODS, rate),
            "retry_after": rng.choice((0, 1)),
        }
    elif name == "resets":
        faults = {"reset_before": round(rng.uniform(0.05, 0.2), 2)}
    elif name == "invalid_json":
        faults = {"invalid_json": round(rng.uniform(0.1, 0.3), 2)}
    elif name == "mixed":
        faults = {
            "drop_after_write": 0.2,
            "error_rates": dict.fromkeys(ALL_METHODS, 0.1),
            "rate_limit": dict.fromkeys(ALL_METHODS, 0.05),
            "retry_after": rng.choice((0, 1)),
            "reset_before": 0.05,
            "invalid_json": 0.1,
        }
    elif name == "paging":
        # A Dashboard that refuses or truncates "everything" listings makes the client walk
        # the pages, while creates and deletes move items between them.
        flag = rng.choice(("cap_all_pages", "refuse_all_pages"))
        faults = {flag: True, "error_rates": dict.fromkeys(ALL_METHODS, 0.1)}
    else:
        faults = {}
    return FaultProfile(name, faults)


def generate(seed: int) -> Scenario:
    """One scenario, entirely determined by `seed`."""
    rng = random.Random(seed)
    dialect: Dialect = "legacy" if rng.random() < 0.15 else "modern"
    developers = tuple(
        DeveloperSpec(_object_id(rng), f"dev{i}@example.com") for i in range(rng.randint(3, 8))
    )
    policies = tuple(
        PolicySpec(
            _object_id(rng),
            f"pol-{i}" if dialect == "modern" and rng.random() < 0.6 else "",
            f"Plan {i}",
        )
        for i in range(rng.randint(2, 5))
    )

    # Declared identities: unique across every file (declaring one twice is an error).
    # A legacy Dashboard keeps one policy per request, so only single-policy ones there.
    max_size = 1 if dialect == "legacy" else min(3, len(policies))
    wanted = rng.randint(2, 10)
    identities: list[tuple[int, tuple[int, ...]]] = []
    seen: set[tuple[int, frozenset[int]]] = set()
    for _ in range(wanted * 4):
        if len(identities) == wanted:
            break
        size = min(max_size, rng.choices((1, 2, 3), weights=(60, 30, 10))[0])
        dev = rng.randrange(len(developers))
        pols = tuple(rng.sample(range(len(policies)), size))
        key = (dev, frozenset(pols))
        if key not in seen:
            seen.add(key)
            identities.append((dev, pols))

    owners = rng.sample(OWNERS, rng.randint(1, 3))
    files: list[tuple[str, str]] = []  # (filename, owner); an owner may span two files
    for owner in owners:
        files.append((f"{owner}.yaml", owner))
        if rng.random() < 0.2:
            files.append((f"{owner}-more.yml", owner))
    assigned: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in files]
    for identity in identities:
        assigned[rng.randrange(len(files))].append(identity)

    manifests = []
    for (filename, owner), ids in zip(files, assigned, strict=True):
        refs: dict[int, str] = {}
        for dev, _ in ids:
            refs.setdefault(dev, _developer_ref(rng, developers[dev]))
        for dev in rng.sample(range(len(developers)), rng.randint(0, 2)):
            refs.setdefault(dev, _developer_ref(rng, developers[dev]))  # listed, `dev: []`
        declarations = tuple(_declaration(rng, dev, pols, policies) for dev, pols in ids)
        manifests.append(
            ManifestSpec(
                filename=filename,
                owner=owner,
                prune=rng.choice((None, "owned", "owned", "developers", "none")),
                defaults_approved=rng.choice((None, None, True, False)),
                defaults_fields=_fields(rng) if rng.random() < 0.25 else None,
                developer_refs=refs,
                declarations=declarations,
                # Drawn from a stream of its own, so that every other draw of a seed (and
                # so every scenario measured before revocation existed) stays as it was.
                revoke=random.Random(f"{seed}/revoke/{filename}").random() < REVOKE_SHARE,
            )
        )

    scenario = Scenario(
        seed=seed,
        dialect=dialect,
        developers=developers,
        policies=policies,
        manifests=tuple(manifests),
        live=(),
        profile=_profile(rng),
        reissue=rng.random() < 0.2,
        parallelism=rng.choice((1, 4, 4)),
        concurrent=rng.random() < 0.1,
    )
    return _with_live(scenario, rng)


def _developer_ref(rng: random.Random, dev: DeveloperSpec) -> str:
    roll = rng.random()
    if roll < 0.25:
        return dev.id
    if roll < 0.4:
        return dev.email.upper()  # emails match case-insensitively
    return dev.email


def _declaration(
    rng: random.Random, dev: int, pols: tuple[int, ...], policies: tuple[PolicySpec, ...]
) -> Declaration:
    refs = []
    for i in pols:
        p = policies[i]
        choices = [p.name, p.name, p.db_id] + ([p.explicit_id] if p.explicit_id else [])
        refs.append(rng.choice(choices))
    return Declaration(
        developer=dev,
        policies=pols,
        policy_refs=tuple(refs),
        approved=rng.choice((None, None, True, True, False)),
        fields=_fields(rng) if rng.random() < 0.4 else None,
        single_form=len(pols) == 1 and rng.random() < 0.7,
    )


def _with_live(scenario: Scenario, rng: random.Random) -> Scenario:
    """Pre-existing requests: for declared identities (pending or approved, owned by the
    right owner, another one or nobody, same or other fields, duplicates), for undeclared
    ones, and legacy `for_api` ones."""
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    live: list[dict[str, Any]] = []
    legacy = scenario.dialect == "legacy"
    marks = [m.owner for m in scenario.manifests] + [FOREIGN_OWNER, "", ""]

    def refs_for(pols: Iterable[str]) -> list[str]:
        out = []
        for db_id in pols:
            p = next(p for p in scenario.policies if p.db_id == db_id)
            out.append(p.explicit_id if p.explicit_id and rng.random() < 0.4 else p.db_id)
        rng.shuffle(out)
        return out

    def add(dev_id: str, pols: Iterable[str], fields: dict[str, str]) -> None:
        mark = rng.choice(marks)
        fields = dict(fields)
        if mark:
            fields[OWNER_FIELD] = mark
            if rng.random() < 0.5:
                fields[OP_FIELD] = f"{rng.getrandbits(64):016x}"
        refs = refs_for(pols)
        live.append(
            {
                "id": _object_id(rng),  # fixed, so a control run has the same ids
                "developer_id": dev_id,
                "policies": refs,
                "approved": rng.random() < 0.4,
                "fields": fields,
                "date_created": base + timedelta(minutes=rng.randrange(100_000)),
                # Dashboards before 2.9 store a single policy in for_plan only.
                "for_plan_only": len(refs) == 1 and rng.random() < 0.3,
            }
        )

    for identity, (manifest, decl) in scenario.declared().items():
        if rng.random() < 0.4:
            continue
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            same = rng.random() < 0.6
            add(identity[0], identity[1], manifest.effective_fields(decl) if same else _fields(rng))
    declared = set(scenario.declared())
    for _ in range(rng.randint(0, 5)):
        dev = rng.choice(scenario.developers).id
        size = 1 if legacy else rng.randint(1, min(2, len(scenario.policies)))
        pols = frozenset(p.db_id for p in rng.sample(scenario.policies, size))
        if (dev, pols) not in declared:
            add(dev, pols, _fields(rng) if rng.random() < 0.5 else {})
    for _ in range(rng.choice((0, 0, 1, 2))):
        live.append(
            {
                "id": _object_id(rng),
                "developer_id": rng.choice(scenario.developers).id,
                "for_api": f"api-{rng.getrandbits(32):08x}",
                "approved": rng.random() < 0.5,
                "fields": {OWNER_FIELD: rng.choice(marks)} if rng.random() < 0.3 else {},
                "date_created": base + timedelta(minutes=rng.randrange(100_000)),
            }
        )
    rng.shuffle(live)
    return dataclasses.replace(scenario, live=tuple(live[:20]))


# ---- materialising a scenario ---------------------------------------------------------------


class _QuotingDumper(yaml.SafeDumper):
    """Every string double-quoted, and no anchors: tyksync's loader refuses aliases, and a
    24-hex id such as `1234e567...` would be a float to a YAML 1.2 reader."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _quoted(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


_QuotingDumper.add_representer(str, _quoted)


def manifest_data(scenario: Scenario, m: ManifestSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": 1, "owner": m.owner}
    if m.prune is not None:
        doc["prune"] = m.prune
    if m.revoke:
        doc["revoke"] = True
    defaults: dict[str, Any] = {}
    if m.defaults_approved is not None:
        defaults["approved"] = m.defaults_approved
    if m.defaults_fields is not None:
        defaults["fields"] = dict(m.defaults_fields)
    if defaults:
        doc["defaults"] = defaults
    developers: dict[str, list[dict[str, Any]]] = {ref: [] for ref in m.developer_refs.values()}
    for d in m.declarations:
        entry: dict[str, Any] = (
            {"plan": d.policy_refs[0]} if d.single_form else {"plans": list(d.policy_refs)}
        )
        if d.approved is not None:
            entry["approved"] = d.approved
        if d.fields is not None:
            entry["fields"] = dict(d.fields)
        developers[m.developer_refs[d.developer]].append(entry)
    doc["developers"] = developers
    return doc


def dump_yaml(data: Any) -> str:
    """YAML that tyksync's strict loader reads back as `data`."""
    return yaml.dump(data, Dumper=_QuotingDumper, sort_keys=False, width=200)


def write_manifests(scenario: Scenario, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for m in scenario.manifests:
        (folder / m.filename).write_text(dump_yaml(manifest_data(scenario, m)), encoding="utf-8")
    return folder


def build_sandbox(scenario: Scenario) -> Sandbox:
    """A started sandbox holding the scenario's world, faults off."""
    sandbox = Sandbox(SECRET, dialect=scenario.dialect).start()
    store = sandbox.store
    with store.batch():
        for d in scenario.developers:
            store.add_developer(d.email, id=d.id)
        for p in scenario.policies:
            store.add_policy(p.name, id=p.explicit_id, db_id=p.db_id)
        store.add_requests(scenario.live)
    return sandbox


# ---- running -------------------------------------------------------------------------------


class SleepRecorder:
    """The client's sleep: records what it was asked to wait, waits for nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class ScenarioResult:
    seed: int
    profile: str
    applies: int | None  # applies until the plan was empty; None: not within MAX_APPLIES
    concurrent: bool = False
    failed_plan_reads: int = 0
    duplicates: int = 0  # extra live requests for declared identities at the end
    missing: int = 0  # declared identities with no live request at the end
    reapply_mutating_calls: int = 0
    keys_issued: int = 0  # keys tyksync issued during the scenario
    creates_committed: int = 0
    creates_committed_twice: int = 0  # intents (tyksync_op marks) stored more than once
    approve_intents: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    sleeps: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0
    # The live requests at the end, with new ones' ids blanked, and the keys issued by
    # identity: what a run with faults must share with its fault-free control run.
    end_state: Counter[tuple[Any, ...]] = field(default_factory=Counter)
    new_keys: Counter[Identity] = field(default_factory=Counter)
    revoked: list[str] = field(default_factory=list)  # requests whose key was revoked
    tolerated: int = 0  # extra requests for declared identities SPEC lets tyksync keep
    known: set[str] = field(default_factory=set)  # KNOWN_BUGS this scenario ran into

    def violation(self, message: str, known: str | None = None) -> None:
        """A broken invariant; one that is the signature of an open bug is counted apart."""
        if known is None:
            self.problems.append(message)
        else:
            self.known.add(known)


def plan_once(
    client: DashboardClient, manifests: Manifests, *, reissue: bool, dashboard: str = ""
) -> Plan:
    return plan_live(client, manifests, dashboard=dashboard, reissue=reissue)


def plan_with_retries(
    client: DashboardClient, manifests: Manifests, *, reissue: bool, attempts: int = PLAN_ATTEMPTS
) -> tuple[Plan | None, int, list[str]]:
    """(plan or None, failed attempts, their error messages): a read that fails despite
    the client's retries is one failed attempt; give up after `attempts`."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            return plan_once(client, manifests, reissue=reissue), len(errors), errors
        except TyksyncError as e:
            if not _is_read_failure(e):
                raise
            errors.append(str(e))
    return None, len(errors), errors


def _is_read_failure(e: TyksyncError) -> bool:
    # A ManifestError here means the generator wrote something invalid: not a fault.
    return not isinstance(e, ManifestError)


def developer_keys(store: Store) -> dict[str, Identity]:
    """Every key the store ever issued (revoked ones too), by the identity it was issued
    for."""
    return {k["key"]: (str(k["developer_id"]), frozenset(k["policies"])) for k in store.issued()}


class CommitLog:
    """Watches the sandbox commit creates: how often each one-time `tyksync_op` mark was
    stored. Two commits with one mark are one intent created twice (SPEC section 5), which
    the end state alone cannot show: the applier deletes the spare one again."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.ops: Counter[str] = Counter()
        store = sandbox.store
        original = store.create_request

        def create_request(**kwargs: Any) -> Record:
            record = original(**kwargs)
            op = record["fields"].get(OP_FIELD)
            if op:
                self.ops[op] += 1
            return record

        # The route handler calls `store.create_request(...)`: an instance attribute wins.
        setattr(store, "create_request", create_request)  # noqa: B010


def run_scenario(scenario: Scenario, workdir: Path) -> ScenarioResult:
    """Run one scenario to convergence and check it; never raises on a violation.

    The same scenario runs first without faults (and without a racing apply): faults may
    cost applies, but the end state and the keys issued must be those of the control run.
    """
    control = _run(
        dataclasses.replace(scenario, profile=FaultProfile("none", {}), concurrent=False),
        workdir / "control",
    )
    result = _run(scenario, workdir / "faulted")
    result.problems.extend(f"control run: {p}" for p in control.problems)
    if result.end_state != control.end_state:
        only_faulted = result.end_state - control.end_state
        only_control = control.end_state - result.end_state
        result.violation(
            "end state differs from the fault-free run: only with faults "
            f"{sorted(only_faulted.elements())}, only without {sorted(only_control.elements())}",
        )
    if result.revoked != control.revoked:
        result.problems.append(
            f"keys revoked differ from the fault-free run: of requests {result.revoked} with "
            f"faults, {control.revoked} without"
        )
    if result.new_keys != control.new_keys:
        result.violation(
            f"keys issued differ from the fault-free run: {dict(result.new_keys)} with faults, "
            f"{dict(control.new_keys)} without",
        )
    result.wall += control.wall
    result.problems = [f"[{scenario.describe()}] {p}" for p in result.problems]
    return result


def _run(scenario: Scenario, workdir: Path) -> ScenarioResult:
    started = time.perf_counter()
    result = ScenarioResult(
        seed=scenario.seed,
        profile=scenario.profile.name,
        applies=None,
        concurrent=scenario.concurrent,
    )
    sandbox = build_sandbox(scenario)
    commits = CommitLog(sandbox)
    sleeper = SleepRecorder()
    # Two clients when two applies race: each its own connection pool, as two CI jobs.
    clients = [
        DashboardClient(
            sandbox.url, SECRET, retry=CLIENT_RETRY, sleep=sleeper, rng=random.Random(seed)
        )
        for seed in range(scenario.seed, scenario.seed + (2 if scenario.concurrent else 1))
    ]
    # Every record, debug included (what `-vv` prints), is kept for the leak check, and
    # kept from pytest's and the script's output.
    try:
        with capture_logs(isolate=True) as logs:
            _drive(scenario, sandbox, clients, workdir, result, logs)
    except Exception as e:  # a crash is a finding too: report it with the seed
        result.problems.append(f"crashed: {type(e).__name__}: {e}")
    finally:
        for client in clients:
            client.close()
        sandbox.stop()
    result.creates_committed = sum(commits.ops.values())
    result.creates_committed_twice = sum(1 for n in commits.ops.values() if n > 1)
    if result.creates_committed_twice:
        result.problems.append(
            f"{result.creates_committed_twice} create intents committed more than once"
        )
    result.sleeps = sleeper.calls
    _check_retry_after(scenario, result)
    result.wall = time.perf_counter() - started
    return result


def _drive(
    scenario: Scenario,
    sandbox: Sandbox,
    clients: list[DashboardClient],
    workdir: Path,
    result: ScenarioResult,
    logs: LogCapture,
) -> None:
    client = clients[0]
    manifests = load_manifests([write_manifests(scenario, workdir / "manifests")])
    before = {r["id"]: r for r in sandbox.store.requests()}
    keys_before = set(developer_keys(sandbox.store))
    journal_path = workdir / "journal.jsonl"
    journal = Journal(journal_path)
    outputs: list[str] = []  # everything a person running tyksync would get to see

    def plan_or_fail(c: DashboardClient) -> Plan | None:
        plan, failed, errors = plan_with_retries(c, manifests, reissue=scenario.reissue)
        result.failed_plan_reads += failed
        outputs.extend(errors)
        if plan is None:
            result.problems.append(f"planning failed {PLAN_ATTEMPTS} times in a row: {errors[-1]}")
        else:
            outputs.append(_rendered(plan))
        return plan

    def apply(c: DashboardClient, plan: Plan) -> None:
        applied = Applier(c, journal=journal, parallelism=scenario.parallelism).apply(plan)
        outputs.append(_outcomes_text(applied))

    sandbox.faults = scenario.profile.make(scenario.seed)
    applies = 0
    try:
        while True:
            plan = plan_or_fail(client)
            if plan is None:
                return
            if not plan.has_changes:
                result.applies = applies
                break
            if applies == MAX_APPLIES:
                result.problems.append(
                    f"not converged after {MAX_APPLIES} applies; still planned: "
                    + "; ".join(f"{a.action} {a.request_id} ({a.reason})" for a in plan.actions)
                )
                return
            rival = plan_or_fail(clients[-1]) if applies == 0 and len(clients) > 1 else None
            if rival is not None:
                # Two applies of the same manifests from the same live state at once, as
                # two CI jobs racing on one merge: they must still end with one request
                # (and one key) per identity.
                racer = threading.Thread(target=apply, args=(clients[-1], rival))
                racer.start()
                apply(client, plan)
                racer.join()
            else:
                apply(client, plan)
            applies += 1

        # The converged state, applied again with the faults still on: nothing may be sent.
        sandbox.reset_counts()
        plan = plan_or_fail(client)
        if plan is None:
            return
        if plan.has_changes:
            result.problems.append(
                f"the plan came back after converging: {[a.action for a in plan.actions]}"
            )
        apply(client, plan)
        result.reapply_mutating_calls = sandbox.mutating_calls()
        if result.reapply_mutating_calls:
            result.problems.append(
                f"re-apply of the converged state sent {result.reapply_mutating_calls} "
                "mutating calls"
            )
    finally:
        result.faults = sandbox.fault_counts()
        sandbox.faults = Faults()
        journal.close()
        outputs.append(journal_path.read_text(encoding="utf-8") if journal_path.exists() else "")
        outputs.extend(logs.messages)
        check_outcome(scenario, sandbox, before, keys_before, result)
        _check_no_leaks(sandbox, outputs, result)


def _rendered(plan: Plan) -> str:
    out = StringIO()
    for fmt in FORMATS:
        render(plan, out, fmt)
    return out.getvalue()


def _outcomes_text(applied: ApplyResult) -> str:
    return "\n".join(f"{o.status} {o.detail} {o!r}" for o in applied.outcomes)


# ---- the oracle ----------------------------------------------------------------------------


def _deletable(scenario: Scenario, record: Mapping[str, Any]) -> bool:
    """May SPEC section 4 delete this request, with these manifests?

    A duplicate or replaced request of a declared identity (owned or not); an undeclared
    one under `prune: developers` listing its developer; an undeclared one with
    policies under `prune: owned` carrying that file's owner.
    """
    identity = scenario.record_identity(record)
    if identity is not None and identity in scenario.declared():
        return True
    return _prunable(scenario, record)


def _prunable(scenario: Scenario, record: Mapping[str, Any]) -> bool:
    owner = record["fields"].get(OWNER_FIELD)
    for m in scenario.manifests:
        listed = {scenario.developers[i].id for i in m.developer_refs}
        if m.prune_mode == "developers" and record["by_user"] in listed:
            return True
        if m.prune_mode == "owned" and request_policies(record) and owner == m.owner:
            return True
    return False


def _keep_rank(r: Mapping[str, Any], owner: str) -> tuple[bool, bool]:
    """SPEC's first two keep criteria: approved, then carrying the declaring owner."""
    return (not r["approved"], r["fields"].get(OWNER_FIELD) != owner)


def _user_fields(record: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in record["fields"].items() if not k.startswith(RESERVED_PREFIX)}


def check_outcome(
    scenario: Scenario,
    sandbox: Sandbox,
    before: dict[str, Record],
    keys_before: set[str],
    result: ScenarioResult,
) -> None:
    problems = result.problems
    declared = scenario.declared()
    now = {r["id"]: r for r in sandbox.store.requests()}
    by_identity: dict[Identity, list[Record]] = {}
    for r in now.values():
        identity = scenario.record_identity(r)
        if identity is not None:
            by_identity.setdefault(identity, []).append(r)

    # Per declared identity: one request kept, in the declared state. SPEC section 4 lets
    # tyksync delete a duplicate it does not own ("may"); tyksync does, except under
    # `prune: none`, which touches nothing unowned. So other requests for the identity may
    # remain only if they were there before, do not carry the declaring file's owner mark,
    # and that file says `prune: none`. Any other extra is a duplicate.
    for identity, (m, d) in declared.items():
        lives = by_identity.get(identity, [])
        name = _name(scenario, identity)
        if not lives:
            result.missing += 1
            problems.append(f"no live request for declared {name}")
            continue
        tolerated: list[Record] = []  # duplicates are deleted whatever the prune mode
        touchable = len(lives) - len(tolerated)
        if touchable > 1:
            result.duplicates += touchable - 1
            problems.append(f"{len(lives)} live requests for declared {name}: duplicates")
        result.tolerated += len(lives) - 1 - max(0, touchable - 1)

        def in_declared_state(r: Record, m: ManifestSpec = m, d: Declaration = d) -> bool:
            if m.effective_approved(d) and not r["approved"]:
                return False
            old = before.get(r["id"])
            kept_approved = old is not None and old["approved"] and not scenario.reissue
            return kept_approved or _user_fields(r) == m.effective_fields(d)

        if not any(in_declared_state(r) for r in lives):
            problems.append(f"no live request for {name} is in the declared state: {lives}")
        # Keep order: approved first, then this owner's. An approved request is never
        # replaced without --reissue, so the best of those there before survives.
        existing = [r for r in before.values() if scenario.record_identity(r) == identity]
        if existing and not scenario.reissue:
            best = min(_keep_rank(r, m.owner) for r in existing)
            group = {r["id"] for r in existing if _keep_rank(r, m.owner) == best}
            if best[0] is False and not group & {r["id"] for r in lives}:
                problems.append(f"{name}: none of the approved {sorted(group)} was kept")

    # Nothing the spec protects was touched; nothing the spec prunes was left.
    for rid, old in before.items():
        if _deletable(scenario, old):
            continue
        if rid not in now:
            problems.append(f"deleted {rid} ({_describe_record(old)}), which no rule allows")
        elif now[rid] != old:
            problems.append(f"changed unmanaged {rid}: {old} -> {now[rid]}")
    for rid, r in now.items():
        identity = scenario.record_identity(r)
        if identity in declared:
            continue
        if _prunable(scenario, r):
            problems.append(f"left prunable {rid} ({_describe_record(r)})")
        if rid not in before:
            problems.append(f"created {rid} for an undeclared identity ({_describe_record(r)})")

    # Keys: tyksync approves only requests of declared identities with `approved: true`,
    # and only pending ones (an approved request is never approved again; without
    # --reissue it is never replaced). A lost approval answer is settled by reading the
    # request back, never by approving again. So each such identity gets at most one new
    # key, exactly one when no approved request for it existed before, and every other
    # identity none. --reissue replaces an approved request whose fields differ: still
    # at most one new key per identity, since the replacement is the kept request after.
    intents = {i for i, (m, d) in declared.items() if m.effective_approved(d)}
    result.approve_intents = len(intents)
    pre_approved = {scenario.record_identity(r) for r in before.values() if r["approved"]}
    issued = Counter(
        identity
        for key, identity in developer_keys(sandbox.store).items()
        if key not in keys_before
    )
    result.keys_issued = sum(issued.values())
    for identity, count in issued.items():
        bound = 1 if identity in intents else 0
        if count > bound:
            problems.append(f"{count} keys issued for {_name(scenario, identity)} (bound {bound})")
    for identity in intents - pre_approved:
        if issued[identity] != 1:
            problems.append(
                f"{issued[identity]} keys issued for {_name(scenario, identity)}, "
                "declared approved with no approved request before: expected exactly 1"
            )
    if result.keys_issued > result.approve_intents:
        problems.append(f"{result.keys_issued} keys for {result.approve_intents} approve-intents")
    result.new_keys = issued
    _check_revocations(scenario, sandbox, before, keys_before, result)
    result.end_state = Counter(
        (
            r["id"] if r["id"] in before else "new",
            _name(scenario, scenario.record_identity(r)) + r["for_api"],
            r["approved"],
            tuple(sorted(_user_fields(r).items())),
            r["fields"].get(OWNER_FIELD, ""),
        )
        for r in now.values()
    )


def _revoke_flags(scenario: Scenario, record: Mapping[str, Any]) -> list[bool]:
    """`revoke` of each file that may govern deleting `record`: the declaring file for a
    declared identity (a duplicate, a replace), else each file whose prune rule covers it
    (the first of them decides; the oracle does not guess which)."""
    identity = scenario.record_identity(record)
    declared = scenario.declared()
    if identity is not None and identity in declared:
        return [declared[identity][0].revoke]
    owner = record["fields"].get(OWNER_FIELD)
    flags = []
    for m in scenario.manifests:
        listed = {scenario.developers[i].id for i in m.developer_refs}
        by_developer = m.prune_mode == "developers" and record["by_user"] in listed
        by_owner = m.prune_mode == "owned" and request_policies(record) and owner == m.owner
        if by_developer or by_owner:
            flags.append(m.revoke)
    return flags


def _check_revocations(
    scenario: Scenario,
    sandbox: Sandbox,
    before: dict[str, Record],
    keys_before: set[str],
    result: ScenarioResult,
) -> None:
    """SPEC section 11: a key is revoked only when tyksync deleted the approved request that
    issued it under `revoke: true`; and such a delete leaves no valid key when the key could
    be told apart (the developer held one key with that policy set, and no other approved
    request of that identity)."""
    now = {r["id"] for r in sandbox.store.requests()}
    issued = sandbox.store.issued()
    keys_per_set = Counter(
        (k["developer_id"], frozenset(k["policies"])) for k in issued if k["key"] in keys_before
    )
    approved_per_identity = Counter(
        scenario.record_identity(r) for r in before.values() if r["approved"]
    )
    for k in issued:
        request = before.get(k["request_id"])
        deleted = k["request_id"] not in now
        name = f"key of request {k['request_id']}"
        if k["revoked"]:
            result.revoked.append(k["request_id"])
            if request is None or not deleted or not any(_revoke_flags(scenario, request)):
                result.problems.append(f"{name} revoked, which no rule allows")
            continue
        if request is None or not deleted or not request["approved"]:
            continue
        flags = _revoke_flags(scenario, request)
        identity = scenario.record_identity(request)
        told_apart = (
            identity is not None
            and keys_per_set[(k["developer_id"], frozenset(k["policies"]))] == 1
            and approved_per_identity[identity] == 1
        )
        if flags and all(flags) and told_apart:
            result.problems.append(
                f"{name}: deleted under revoke: true, its key told apart, and still valid"
            )
    result.revoked.sort()


def _check_no_leaks(sandbox: Sandbox, outputs: list[str], result: ScenarioResult) -> None:
    text = "\n".join(outputs)
    secrets = [SECRET, CANARY_PREFIX, *sandbox.store.issued_keys()]
    leaked = [s[:12] + "..." for s in secrets if s in text]
    if leaked:
        result.problems.append(f"secrets in output: {leaked}")


def _check_retry_after(scenario: Scenario, result: ScenarioResult) -> None:
    """A 429's Retry-After is what the client waits: with 429s answered, the recorded sleeps
    include exactly that many seconds (backoff sleeps are drawn from a continuous range)."""
    if scenario.profile.name != "rate_limit" or not result.faults.get("rate_limit"):
        return
    wait = float(scenario.profile.faults["retry_after"])
    if wait not in result.sleeps:
        result.problems.append(f"429 with Retry-After {wait} never waited {wait}s")


def _name(scenario: Scenario, identity: Identity | None) -> str:
    if identity is None:
        return "(legacy)"
    dev = next((d.email for d in scenario.developers if d.id == identity[0]), identity[0])
    names = sorted(p.name for p in scenario.policies if p.db_id in identity[1])
    return f"({dev}, {names})"


def _describe_record(r: Mapping[str, Any]) -> str:
    return (
        f"by {r['by_user']}, policies {request_policies(r)}, for_api {r['for_api']!r}, "
        f"approved {r['approved']}, fields {r['fields']}"
    )


# ---- many scenarios ---------------------------------------------------------------------------


@dataclass
class Summary:
    scenarios: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    profiles: Counter[str] = field(default_factory=Counter)
    applies: Counter[str] = field(default_factory=Counter)  # "0".."5", ">5"
    duplicates: int = 0
    missing: int = 0
    tolerated: int = 0
    reapply_mutating_calls: int = 0
    keys_issued: int = 0
    keys_revoked: int = 0
    approve_intents: int = 0
    creates_committed: int = 0
    creates_committed_twice: int = 0
    concurrent: int = 0
    failed_plan_reads: int = 0
    problems: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)  # scenarios per KNOWN_BUGS entry
    slow_seeds: list[int] = field(default_factory=list)  # more than 3 applies to converge
    scenario_seconds: float = 0.0

    def add(self, r: ScenarioResult) -> None:
        self.scenarios += 1
        self.faults.update(r.faults)
        self.profiles[r.profile] += 1
        self.applies[str(r.applies) if r.applies is not None else f">{MAX_APPLIES}"] += 1
        self.duplicates += r.duplicates
        self.missing += r.missing
        self.tolerated += r.tolerated
        self.reapply_mutating_calls += r.reapply_mutating_calls
        self.keys_issued += r.keys_issued
        self.keys_revoked += len(r.revoked)
        self.approve_intents += r.approve_intents
        self.creates_committed += r.creates_committed
        self.creates_committed_twice += r.creates_committed_twice
        self.concurrent += r.concurrent
        self.failed_plan_reads += r.failed_plan_reads
        self.problems.extend(r.problems)
        self.known.update(r.known)
        if r.applies is None or r.applies > 3:
            self.slow_seeds.append(r.seed)
        self.scenario_seconds += r.wall

    def within(self, applies: int) -> int:
        return sum(n for k, n in self.applies.items() if k.isdigit() and int(k) <= applies)
