"""A stateful property test: manifests edited, the Dashboard changed behind tyksync's back,
faults switched on and off, plans and applies in any order.

The machine keeps two manifest files (owners team-a and team-b) in memory and writes them
before every plan. Against a sandbox over real HTTP it checks, after every step:
- no output captured so far (rendered plans, outcomes, errors, logs, the journal) holds the
  Dashboard secret, an issued key or a sandbox canary;
- every key in the key sink was really issued;
and at the moments that matter:
- a plan deletes only what SPEC section 4 allows, and approves/replaces only requests of
  declared identities; planning the same state twice gives the same plan;
- an apply (faults on or off) deletes only what SPEC section 4 allows, in particular never
  a request without this owner's mark under `prune: owned` unless it is a duplicate of a
  declared identity or its developer is listed under `prune: developers`; and issues keys
  only for declared `approved: true` identities, at most one each;
- converging (faults off, at most MAX_APPLIES applies) ends with one live request per
  declared identity, approved where declared so, with the declared fields unless it is an
  approved one that only --reissue would replace. Duplicates are reduced to one whatever
  the prune mode (the prune mode governs undeclared requests only).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from harness import scenarios as sc
from harness.capture import capture_logs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tyksync.applier import Applier
from tyksync.client import DashboardClient, RetryPolicy
from tyksync.errors import ManifestError, TyksyncError
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.manifest import load_manifests
from tyksync.models import OWNER_FIELD, RESERVED_PREFIX
from tyksync.plan import Plan
from tyksync.render import FORMATS, render
from tyksync.sandbox import CANARY_PREFIX, Faults, Sandbox
from tyksync.sandbox.store import Record, request_policies

SECRET = "stateful-dashboard-secret-CANARY-41c9e2"
MAX_APPLIES = 5
PLAN_ATTEMPTS = 10
NO_WAIT = RetryPolicy(attempts=5, backoff=0.0, max_backoff=0.0, max_retry_after=0.0)

# A fixed world: ids are constants so that a run is the same run every time.
DEVELOPERS = tuple((f"6500000000000000000000d{i}", f"dev{i}@example.com") for i in range(4))
# (_id, explicit id, name): explicit ids on two, so live requests can name them either way.
POLICIES = (
    ("6500000000000000000000b0", "gold", "Gold"),
    ("6500000000000000000000b1", "", "Silver"),
    ("6500000000000000000000b2", "reports", "Reports"),
)
FILES = {"a": "team-a", "b": "team-b"}
MARKS = (None, "team-a", "team-b", "someone-else")  # owner marks of out-of-band requests
ALL_METHODS = ("GET", "POST", "PUT", "DELETE")
FAULT_PROFILES: dict[str, dict[str, Any]] = {
    "none": {},
    "flaky_5xx": {"error_rates": dict.fromkeys(ALL_METHODS, 0.2)},
    "drops": {"drop_after_write": 0.5},
    "rate_limit": {"rate_limit": dict.fromkeys(ALL_METHODS, 0.25), "retry_after": 1},
    "resets": {"reset_before": 0.15},
    "invalid_json": {"invalid_json": 0.25},
}

Identity = tuple[str, frozenset[str]]  # (developer id, policy _ids)

fields_st = st.dictionaries(
    st.sampled_from(("ticket", "team")), st.sampled_from(("A", "B", "")), max_size=2
)
policies_st = st.sets(st.integers(0, len(POLICIES) - 1), min_size=1, max_size=2)


@dataclass
class Decl:
    approved: bool
    fields: dict[str, str]
    ref_style: int  # which reference to write for each policy: name, _id or explicit id


@dataclass
class ManifestModel:
    owner: str
    prune: str = "owned"
    decls: dict[Identity, Decl] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # developers written as `dev: []`

    def data(self) -> dict[str, Any]:
        emails = dict(DEVELOPERS)
        developers: dict[str, list[dict[str, Any]]] = {
            emails[d]: [] for d in sorted(self.listed | {i[0] for i in self.decls})
        }
        for (dev, pols), decl in sorted(self.decls.items(), key=lambda kv: _sort_key(kv[0])):
            refs = [_policy_ref(p, decl.ref_style) for p in sorted(pols)]
            # `plan: X` and `plans: [X]` are one identity; write both forms.
            entry: dict[str, Any] = (
                {"plan": refs[0]} if len(refs) == 1 and decl.ref_style % 2 else {"plans": refs}
            )
            entry.update(approved=decl.approved, fields=dict(decl.fields))
            developers[emails[dev]].append(entry)
        return {"version": 1, "owner": self.owner, "prune": self.prune, "developers": developers}


def _policy_ref(db_id: str, style: int) -> str:
    _, explicit, name = next(p for p in POLICIES if p[0] == db_id)
    return (name, db_id, explicit or name)[style % 3]


def _sort_key(identity: Identity) -> tuple[str, tuple[str, ...]]:
    return identity[0], tuple(sorted(identity[1]))


def _canonical(ref: str) -> str:
    return next((p[0] for p in POLICIES if ref in (p[0], p[1])), ref)


def _identity(record: Mapping[str, Any]) -> Identity | None:
    refs = request_policies(record)
    return (record["by_user"], frozenset(map(_canonical, refs))) if refs else None


def _user_fields(record: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in record["fields"].items() if not k.startswith(RESERVED_PREFIX)}


class TyksyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="tyksync-stateful-"))
        self.sandbox = Sandbox(SECRET).start()
        with self.sandbox.store.batch():
            for dev_id, email in DEVELOPERS:
                self.sandbox.store.add_developer(email, id=dev_id)
            for db_id, explicit, name in POLICIES:
                self.sandbox.store.add_policy(name, id=explicit, db_id=db_id)
        self.client = DashboardClient(self.sandbox.url, SECRET, retry=NO_WAIT, sleep=lambda _: None)
        self.files = {key: ManifestModel(owner) for key, owner in FILES.items()}
        self.profile = "none"
        self.journal_path = self.tmp / "journal.jsonl"
        self.journal = Journal(self.journal_path)
        self.sink_path = self.tmp / "keys.jsonl"
        self.sink = KeySink(self.sink_path)
        self.keys_captured = 0
        self.outputs: list[str] = []
        # Every log record, debug included (`-vv`), is searched for secrets too.
        self.closing = contextlib.ExitStack()
        self.logs = self.closing.enter_context(capture_logs(isolate=True))
        self.next_id = 0
        # Requests created out of band without any owner mark: the ones `prune: owned`
        # must never delete (unless they duplicate a declared identity, or a
        # `prune: developers` file lists their developer).
        self.unowned: set[str] = set()
        self.out_of_band: set[str] = set()  # every request made behind tyksync's back

    def teardown(self) -> None:
        self.closing.close()
        self.journal.close()
        self.sink.close()
        self.client.close()
        self.sandbox.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- the manifests ---------------------------------------------------------------------

    @initialize(
        decls=st.lists(
            st.tuples(
                st.sampled_from(sorted(FILES)),
                st.integers(0, len(DEVELOPERS) - 1),
                policies_st,
                st.booleans(),
                fields_st,
            ),
            min_size=1,
            max_size=5,
        ),
        live=st.lists(
            st.tuples(st.integers(0, 7), st.booleans(), st.sampled_from(MARKS), st.booleans()),
            max_size=5,
        ),
    )
    def start(
        self,
        decls: list[tuple[str, int, set[int], bool, dict[str, str]]],
        live: list[tuple[int, bool, str | None, bool]],
    ) -> None:
        """Start from a few declarations and live requests, some of them for declared
        identities: rules that edit or duplicate declarations need some to work on."""
        for file, dev, pols, approved, fields in decls:
            self.declare(file, dev, pols, approved, fields, ref_style=dev)
        declared = sorted(self.declared(), key=_sort_key)
        for pick, approved, mark, same_fields in live:
            identity = declared[pick % len(declared)]
            fields = self.declared()[identity][1].fields if same_fields else {"ticket": "OLD"}
            self._add(identity[0], identity[1], approved, mark, dict(fields), explicit=same_fields)

    def declared(self) -> dict[Identity, tuple[ManifestModel, Decl]]:
        return {i: (m, d) for m in self.files.values() for i, d in m.decls.items()}

    @rule(
        file=st.sampled_from(sorted(FILES)),
        dev=st.integers(0, len(DEVELOPERS) - 1),
        pols=policies_st,
        approved=st.booleans(),
        fields=fields_st,
        ref_style=st.integers(0, 2),
    )
    def declare(
        self,
        file: str,
        dev: int,
        pols: set[int],
        approved: bool,
        fields: dict[str, str],
        ref_style: int,
    ) -> None:
        identity = (DEVELOPERS[dev][0], frozenset(POLICIES[p][0] for p in pols))
        if identity not in self.declared():  # declaring one twice is a manifest error
            self.files[file].decls[identity] = Decl(approved, fields, ref_style)

    @precondition(lambda self: bool(self.declared()))
    @rule(data=st.data())
    def undeclare(self, data: st.DataObject) -> None:
        identity = data.draw(st.sampled_from(sorted(self.declared(), key=_sort_key)))
        del self.declared()[identity][0].decls[identity]

    @precondition(lambda self: bool(self.declared()))
    @rule(data=st.data())
    def flip_approved(self, data: st.DataObject) -> None:
        identity = data.draw(st.sampled_from(sorted(self.declared(), key=_sort_key)))
        decl = self.declared()[identity][1]
        decl.approved = not decl.approved

    @precondition(lambda self: bool(self.declared()))
    @rule(data=st.data(), fields=fields_st)
    def change_fields(self, data: st.DataObject, fields: dict[str, str]) -> None:
        identity = data.draw(st.sampled_from(sorted(self.declared(), key=_sort_key)))
        self.declared()[identity][1].fields = fields

    @rule(
        file=st.sampled_from(sorted(FILES)), prune=st.sampled_from(("owned", "developers", "none"))
    )
    def change_prune(self, file: str, prune: str) -> None:
        self.files[file].prune = prune

    @rule(file=st.sampled_from(sorted(FILES)), dev=st.integers(0, len(DEVELOPERS) - 1))
    def toggle_listed(self, file: str, dev: int) -> None:
        self.files[file].listed ^= {DEVELOPERS[dev][0]}

    # ---- the Dashboard, out of band ------------------------------------------------------------

    def _add(
        self,
        dev_id: str,
        pol_ids: Iterable[str],
        approved: bool,
        mark: str | None,
        fields: dict[str, str],
        explicit: bool,
    ) -> None:
        refs = [
            next((p[1] for p in POLICIES if p[0] == db_id and p[1] and explicit), db_id)
            for db_id in sorted(pol_ids)
        ]
        fields = {**fields, **({OWNER_FIELD: mark} if mark else {})}
        self.next_id += 1
        record = self.sandbox.store.add_request(
            dev_id, refs, approved=approved, fields=fields, id=f"{self.next_id:024x}"
        )
        self.out_of_band.add(record["id"])
        if mark is None:
            self.unowned.add(record["id"])

    @rule(
        dev=st.integers(0, len(DEVELOPERS) - 1),
        pols=policies_st,
        approved=st.booleans(),
        mark=st.sampled_from(MARKS),
        fields=fields_st,
        explicit=st.booleans(),
    )
    def create_out_of_band(
        self,
        dev: int,
        pols: set[int],
        approved: bool,
        mark: str | None,
        fields: dict[str, str],
        explicit: bool,
    ) -> None:
        self._add(
            DEVELOPERS[dev][0], (POLICIES[p][0] for p in pols), approved, mark, fields, explicit
        )

    @precondition(lambda self: bool(self.declared()))
    @rule(
        data=st.data(),
        approved=st.booleans(),
        mark=st.sampled_from(MARKS),
        same_fields=st.booleans(),
        explicit=st.booleans(),
    )
    def duplicate_out_of_band(
        self,
        data: st.DataObject,
        approved: bool,
        mark: str | None,
        same_fields: bool,
        explicit: bool,
    ) -> None:
        """A request for a declared identity, beside whatever is there already."""
        identity = data.draw(st.sampled_from(sorted(self.declared(), key=_sort_key)))
        fields = self.declared()[identity][1].fields if same_fields else {"ticket": "OOB"}
        self._add(identity[0], identity[1], approved, mark, dict(fields), explicit)

    @rule(dev=st.integers(0, len(DEVELOPERS) - 1), approved=st.booleans())
    def legacy_out_of_band(self, dev: int, approved: bool) -> None:
        self.next_id += 1
        record = self.sandbox.store.add_request(
            DEVELOPERS[dev][0], for_api="api-legacy", approved=approved, id=f"{self.next_id:024x}"
        )
        self.out_of_band.add(record["id"])
        self.unowned.add(record["id"])

    # These two pick from the Dashboard's state, which tyksync's (faulted) applies shaped:
    # they draw a plain number and index with it, so that Hypothesis sees the same draws
    # whatever the state, and no precondition depends on it.
    @rule(pick=st.integers(0, 1000))
    def approve_out_of_band(self, pick: int) -> None:
        pending = [r["id"] for r in self.sandbox.store.requests() if not r["approved"]]
        if pending:
            self.sandbox.store.approve(pending[pick % len(pending)])

    @rule(pick=st.integers(0, 1000))
    def delete_out_of_band(self, pick: int) -> None:
        ids = [r["id"] for r in self.sandbox.store.requests()]  # creation order
        if ids:
            victim = ids[pick % len(ids)]
            self.sandbox.store.delete_request(victim)
            self.unowned.discard(victim)

    @rule(profile=st.sampled_from(sorted(FAULT_PROFILES)))
    def switch_faults(self, profile: str) -> None:
        self.profile = profile
        self.sandbox.faults = Faults(seed=self.next_id, **FAULT_PROFILES[profile])

    # ---- tyksync --------------------------------------------------------------------------------

    def _manifests(self) -> Path:
        folder = self.tmp / "manifests"
        folder.mkdir(exist_ok=True)
        for key, model in self.files.items():
            (folder / f"{key}.yaml").write_text(sc.dump_yaml(model.data()), encoding="utf-8")
        return folder

    def _plan(self) -> Plan | None:
        """Plan as `tyksync plan` does; None when reads kept failing under the faults."""
        manifests = load_manifests([self._manifests()])
        for _ in range(PLAN_ATTEMPTS):
            try:
                plan = sc.plan_once(self.client, manifests, reissue=False)
            except ManifestError:
                raise  # the machine wrote something invalid: a bug in this test
            except TyksyncError as e:
                self.outputs.append(str(e))
                continue
            text = StringIO()
            for fmt in FORMATS:
                render(plan, text, fmt)
            self.outputs.append(text.getvalue())
            self._check_plan(plan)
            return plan
        return None

    def _allowed_to_delete(self, record: Mapping[str, Any]) -> bool:
        """SPEC section 4, with the manifests as they are now."""
        identity = _identity(record)
        if identity is not None and identity in self.declared():
            return True  # a duplicate, or replaced
        owner = record["fields"].get(OWNER_FIELD)
        for m in self.files.values():
            listed = m.listed | {i[0] for i in m.decls}
            if m.prune == "developers" and record["by_user"] in listed:
                return True
            if m.prune == "owned" and request_policies(record) and owner == m.owner:
                return True
        return False

    def _check_plan(self, plan: Plan) -> None:
        live = {r["id"]: r for r in self.sandbox.store.requests()}
        declared = self.declared()
        for a in plan.actions:
            if a.action in ("approve", "replace"):
                assert a.request_id is not None
                assert _identity(live[a.request_id]) in declared, a
            if a.action == "approve":
                assert not live[a.request_id]["approved"], a
            if a.action == "create":
                identity = (a.developer.id, frozenset(p.id for p in a.policies))
                assert identity in declared, a
                assert not [r for r in live.values() if _identity(r) == identity], a
            if a.action == "delete":
                assert a.request_id is not None
                assert self._allowed_to_delete(live[a.request_id]), a

    def _apply(self, plan: Plan) -> None:
        before = {r["id"]: r for r in self.sandbox.store.requests()}
        keys_before = set(sc.developer_keys(self.sandbox.store))
        intents = {i for i, (_, d) in self.declared().items() if d.approved}
        try:
            # One action at a time: the faults then hit the same calls in every run.
            applier = Applier(self.client, key_sink=self.sink, journal=self.journal, parallelism=1)
            result = applier.apply(plan)
        except TyksyncError as e:  # the applier reports failures in outcomes; never raises
            raise AssertionError(f"apply raised: {e}") from e
        self.keys_captured += result.keys_captured
        self.outputs.extend(f"{o.status} {o.detail} {o!r}" for o in result.outcomes)
        self.outputs.append(repr(result))

        after = {r["id"] for r in self.sandbox.store.requests()}
        for rid in before.keys() - after:
            assert self._allowed_to_delete(before[rid]), (
                f"deleted {rid} ({before[rid]}), which SPEC section 4 does not allow"
                + (" (it carries no owner mark)" if rid in self.unowned else "")
            )
            self.unowned.discard(rid)
        new_keys = Counter(
            identity
            for key, identity in sc.developer_keys(self.sandbox.store).items()
            if key not in keys_before
        )
        for identity, count in new_keys.items():
            assert identity in intents, f"key issued for {identity}, not declared approved"
            assert count == 1, f"{count} keys issued for {identity} in one apply"

    @rule()
    def plan(self) -> None:
        first = self._plan()
        second = self._plan()
        if first is not None and second is not None:
            # Same manifests, same live state: the same plan, in the same order.
            assert first.to_data() == second.to_data()

    @rule()
    def apply(self) -> None:
        plan = self._plan()
        if plan is not None:
            self._apply(plan)

    @rule()
    def converge(self) -> None:
        self.sandbox.faults = Faults()
        for applies in range(MAX_APPLIES + 1):
            plan = self._plan()
            assert plan is not None, "planning without faults failed"
            if not plan.has_changes:
                break
            assert applies < MAX_APPLIES, f"not converged: {[a.to_data() for a in plan.actions]}"
            self._apply(plan)
        self.sandbox.faults = Faults(seed=self.next_id, **FAULT_PROFILES[self.profile])

        by_identity: dict[Identity | None, list[Record]] = {}
        for r in self.sandbox.store.requests():
            by_identity.setdefault(_identity(r), []).append(r)
        for identity, (_model, decl) in self.declared().items():
            lives = by_identity.get(identity, [])
            assert lives, f"no live request for declared {identity}"
            assert len(lives) == 1, f"duplicates for declared {identity}: {lives}"
            assert any(
                (r["approved"] or not decl.approved)
                and (r["approved"] or _user_fields(r) == decl.fields)
                for r in lives
            ), f"no request for {identity} is in the declared state {decl}: {lives}"
        for rid in self.unowned:
            assert rid in {r["id"] for r in self.sandbox.store.requests()}, rid

    # ---- always ---------------------------------------------------------------------------------

    @invariant()
    def nothing_secret_in_any_output(self) -> None:
        text = "\n".join(self.outputs + self.logs.messages)
        if self.journal_path.exists():
            text += self.journal_path.read_text(encoding="utf-8")
        for secret in (SECRET, CANARY_PREFIX, *self.sandbox.store.issued_keys()):
            assert secret not in text, f"{secret[:10]}... leaked into output"

    @invariant()
    def key_sink_holds_only_issued_keys(self) -> None:
        lines = self.sink_path.read_text(encoding="utf-8").splitlines()
        issued = set(self.sandbox.store.issued_keys())
        assert len(lines) == self.keys_captured
        assert all(json.loads(line)["key"] in issued for line in lines)


TyksyncMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,  # real HTTP on loopback: step times vary with the machine
    derandomize=True,  # CI runs the same sequences every time
    database=None,
)
TestTyksyncStateful = TyksyncMachine.TestCase
