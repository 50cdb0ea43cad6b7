"""The applier: the only code that writes to the Dashboard.

Order: creates (with their approvals), then approvals, then deletes, so access is granted
before it is taken away. A replace creates the new request in the first phase and deletes
the old one in the last, only once the new one exists.

Never two requests for one intent: every create carries a one-time `tyksync_op` mark. When a
create's or an approval's answer is lost, live state is read again and the outcome settled
from it before anything is sent a second time.

Issued keys go to the key sink, never to logs, the journal or the result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from tyksync.client import DashboardClient
from tyksync.errors import AlreadyProcessed, AnswerLost, ApiError, Refused, TyksyncError
from tyksync.journal import Journal
from tyksync.keysink import KeySink
from tyksync.models import OP_FIELD, OWNER_FIELD, KeyRequest
from tyksync.plan import Action, Plan

log = logging.getLogger("tyksync.apply")

Status = Literal["done", "failed", "skipped"]
T = TypeVar("T")
SETTLE_TRIES = 3
# Seconds to wait between reads when a write timed out and may still be in flight.
PATIENCE = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: Status
    detail: str
    new_request_id: str | None = None
    key_issued: bool = False
    key_captured: bool = False


@dataclass
class ApplyResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status == "done" for o in self.outcomes)

    def by_status(self, status: Status) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def keys_issued(self) -> int:
        return sum(1 for o in self.outcomes if o.key_issued)

    @property
    def keys_captured(self) -> int:
        return sum(1 for o in self.outcomes if o.key_captured)


class _Failed(Exception):
    """One action's failure, with a message for the person reading the summary."""

    def __init__(self, message: str, *, key_issued: bool = False) -> None:
        super().__init__(message)
        self.key_issued = key_issued


@dataclass(frozen=True)
class _Approval:
    issued: bool
    captured: bool
    note: str = ""


class Applier:
    def __init__(
        self,
        client: DashboardClient,
        *,
        key_sink: KeySink | None = None,
        journal: Journal | None = None,
        parallelism: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self._sleep = sleep
        self.key_sink = key_sink
        self.journal = journal or Journal(None)
        self.parallelism = max(1, parallelism)

    def apply(self, plan: Plan) -> ApplyResult:
        result = ApplyResult()
        # A replace is a create here and a delete in the last phase; keyed by identity of
        # the action object so that two equal actions never share an outcome.
        replaced: dict[int, Outcome] = {}
        created = self._run(self._create, [a for a in plan.actions if a.creates])
        finished, approved_since_plan = self._approve_created(plan, created)
        for outcome in finished:
            if outcome.action.action == "replace":
                replaced[id(outcome.action)] = outcome
            else:
                result.outcomes.append(outcome)

        approvals = [a for a in plan.actions if a.action == "approve"]
        result.outcomes.extend(self._run(self._approve_existing, approvals))

        deletes: list[Action] = []
        for a in plan.actions:
            if a.action == "delete" and a.request_id in approved_since_plan:
                # A duplicate the plan saw pending now holds a key: someone else chose it.
                result.outcomes.append(
                    self._record(
                        a,
                        "skipped",
                        f"request {a.request_id} was approved since the plan was made "
                        "(a concurrent apply?); left for the next plan to settle",
                    )
                )
            elif a.action == "delete":
                deletes.append(a)
            elif a.action == "replace":
                outcome = replaced[id(a)]
                if outcome.status == "done":
                    deletes.append(a)
                else:
                    result.outcomes.append(
                        _with(outcome, detail=f"{outcome.detail}; the old request was kept")
                    )
        for outcome in self._run(self._delete, deletes):
            if outcome.action.action == "replace":
                outcome = _merge_replace(replaced[id(outcome.action)], outcome)
            result.outcomes.append(outcome)
        return result

    def _approve_created(
        self, plan: Plan, created: list[Outcome]
    ) -> tuple[list[Outcome], set[str]]:
        """Approve what the create phase made, unless a concurrent apply got there first.
        Also returns the requests the plan saw pending that were approved since.

        Two applies of the same manifests can both create a request for one identity. Each
        reads live state once, after its own creates: the earliest request of an identity
        (or an approved one) wins, and the others delete themselves rather than issue a
        second key. Everyone who looks after creating sees the earliest one, so all agree.
        """
        made = {id(o) for o in created if o.status == "done" and o.new_request_id}
        if not made:
            return created, set()
        try:
            live = self.client.list_requests()
        except TyksyncError as e:
            failed = [
                _with(
                    o,
                    status="failed",
                    detail=f"{o.detail}; reading live state to check for concurrent "
                    f"duplicates failed ({e}), so it was not approved; run apply again",
                )
                if id(o) in made
                else o
                for o in created
            ]
            return failed, set()
        # Requests the plan already deals with are no rivals, unless they were approved
        # since it was made: then another apply got there first.
        pending_then = {a.request_id for a in plan.actions if a.request_id and not a.approved}
        known = {a.request_id for a in plan.actions if a.request_id} | {
            w.request_id for w in plan.warnings if w.request_id
        }
        approved_since = {r.id for r in live if r.approved and r.id in pending_then}
        by_identity: dict[tuple[str, frozenset[str]], list[KeyRequest]] = {}
        for r in live:
            if r.id not in known or r.id in approved_since:
                by_identity.setdefault((r.developer_id, frozenset(r.policies)), []).append(r)
        by_id = {r.id: r for r in live}

        def finish(outcome: Outcome) -> Outcome:
            if id(outcome) not in made:
                return outcome
            return self._finish_create(outcome, by_identity, by_id)

        return self._run_outcomes(finish, created), approved_since

    def _finish_create(
        self,
        outcome: Outcome,
        by_identity: dict[tuple[str, frozenset[str]], list[KeyRequest]],
        by_id: dict[str, KeyRequest],
    ) -> Outcome:
        action, new_id = outcome.action, outcome.new_request_id
        assert new_id is not None
        wanted = frozenset(p.id for p in action.policies)
        mine = by_id.get(new_id)
        if mine is None:
            raise _Failed(
                f"created request {new_id}, but the Dashboard does not list it; not approved"
            )
        if frozenset(mine.policies) != wanted:
            # A Dashboard before 2.9 keeps only `for_plan`: approving would grant less than
            # declared and the next plan could never match it.
            self._delete_quietly(action, new_id)
            raise _Failed(
                f"the Dashboard kept {len(mine.policies)} of the {len(wanted)} policies of "
                f"request {new_id} (apply_policies unsupported?); deleted it, not approved"
            )
        rivals = by_identity.get((action.developer.id, wanted), [])
        winner = min(rivals, key=lambda r: (not r.approved, r.date_created, r.id), default=mine)
        if winner.id != new_id:
            return self._yield_to(action, new_id, winner)
        if not action.approve:
            return outcome
        try:
            approval = self._approve(action, new_id)
        except _Failed as e:
            return self._record(
                action,
                "failed",
                f"created request {new_id}, but approval failed: {e}",
                new_id,
                _lost_key(e),
            )
        return self._record(
            action,
            "done",
            f"created and approved request {new_id}{approval.note}",
            new_id,
            approval,
        )

    def _yield_to(self, action: Action, new_id: str, winner: KeyRequest) -> Outcome:
        """Another request for this identity came first: delete ours, and see the winner
        approved if it is what the manifest declares (every apply picks the same winner,
        so approving it can issue at most one key)."""
        self.journal.write("create.yield", action, request_id=new_id, kept=winner.id)
        self._delete_quietly(action, new_id)
        detail = (
            f"request {winner.id} for the same identity appeared meanwhile (a concurrent "
            f"apply?); kept it and deleted the new {new_id}"
        )
        if not action.approve or winner.approved or winner.user_fields != dict(action.fields):
            return self._record(action, "done", detail)
        approval = self._approve(action, winner.id)
        return self._record(action, "done", f"{detail}; approved it{approval.note}", None, approval)

    def _delete_quietly(self, action: Action, request_id: str) -> None:
        try:
            self.client.delete_request(request_id)
        except TyksyncError as e:
            raise _Failed(f"deleting the new request {request_id} failed: {e}") from None

    def _run(self, step: Callable[[Action], Outcome], actions: list[Action]) -> list[Outcome]:
        def guarded(action: Action) -> Outcome:
            try:
                return step(action)
            except _Failed as e:
                return self._record(action, "failed", str(e), approval=_lost_key(e))
            except TyksyncError as e:
                return self._record(action, "failed", str(e))

        return self._parallel(guarded, actions)

    def _run_outcomes(
        self, step: Callable[[Outcome], Outcome], outcomes: list[Outcome]
    ) -> list[Outcome]:
        def guarded(outcome: Outcome) -> Outcome:
            try:
                return step(outcome)
            except _Failed as e:
                detail = f"{outcome.detail}; {e}"
                return self._record(outcome.action, "failed", detail, approval=_lost_key(e))
            except TyksyncError as e:
                return self._record(outcome.action, "failed", f"{outcome.detail}; {e}")

        return self._parallel(guarded, outcomes)

    def _parallel(self, fn: Callable[[T], Outcome], items: list[T]) -> list[Outcome]:
        if self.parallelism == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            return list(pool.map(fn, items))

    # ---- steps -------------------------------------------------------------------------

    def _create(self, action: Action) -> Outcome:
        op = uuid.uuid4().hex
        fields = dict(action.fields)
        fields[OWNER_FIELD] = action.owner or ""
        fields[OP_FIELD] = op
        policy_ids = [p.id for p in action.policies]
        new_id: str | None = None
        for attempt in range(1, SETTLE_TRIES + 1):
            self.journal.write("create.sent", action, op=op, attempt=attempt)
            try:
                new_id = self.client.create_request(action.developer.id, policy_ids, fields)
                break
            except AnswerLost as e:
                self.journal.write("create.lost", action, op=op, detail=str(e))
                new_id = self._find_by_op(op, patient=e.in_flight)
                if new_id is not None:
                    log.info("create for %s settled: it was committed", action.developer.email)
                    break
                if e.in_flight:
                    # It may still land after we stopped looking: a second POST could make
                    # a second request for this intent. The next run finds it by its mark.
                    raise _Failed(
                        f"create: timed out, and no request marked {OP_FIELD}={op} appeared "
                        "while waiting; not sent again. Run apply again to settle"
                    ) from None
        if new_id is None:
            raise _Failed(
                f"create: no answer after {SETTLE_TRIES} tries and no request marked "
                f"{OP_FIELD}={op} found; run apply again to settle"
            )
        self.journal.write("create.done", action, op=op, request_id=new_id)
        return self._record(action, "done", f"created request {new_id}", new_id)

    def _approve_existing(self, action: Action) -> Outcome:
        assert action.request_id is not None
        approval = self._approve(action, action.request_id)
        return self._record(
            action, "done", f"approved request {action.request_id}{approval.note}", None, approval
        )

    def _approve(self, action: Action, request_id: str) -> _Approval:
        if self.key_sink is not None and self.key_sink.broken:
            raise _Failed(
                f"approve {request_id}: not sent, since the key sink failed and its key "
                "could not be captured"
            )
        lost = False  # an earlier try's answer was lost: it may be the one that issued a key
        for attempt in range(1, SETTLE_TRIES + 1):
            self.journal.write("approve.sent", action, request_id=request_id, attempt=attempt)
            try:
                key = self.client.approve_request(request_id)
            except AnswerLost as e:
                lost = True
                self.journal.write("approve.lost", action, request_id=request_id, detail=str(e))
                if self._approved_now(request_id, patient=e.in_flight):
                    return self._key_lost(action, request_id)
                continue  # not approved: a second PUT cannot issue a second key
            except ApiError as e:
                processed = isinstance(e, AlreadyProcessed)
                if processed and self._approved_now(request_id):
                    if lost:
                        return self._key_lost(action, request_id)
                    self.journal.write("approve.done", action, request_id=request_id)
                    return _Approval(False, False, " (it was already approved)")
                raise _Failed(f"approve {request_id}: {e}") from None
            try:
                captured = self._capture(action, request_id, key)
            except TyksyncError as e:
                self.journal.write("approve.done", action, request_id=request_id, key="sink failed")
                raise _Failed(
                    f"approved request {request_id}, but its key could not be captured: {e}; "
                    "rotate that key in the Dashboard",
                    key_issued=True,
                ) from None
            self.journal.write(
                "approve.done",
                action,
                request_id=request_id,
                key="captured" if captured else "not captured",
            )
            return _Approval(True, captured)
        raise _Failed(f"approve {request_id}: no answer after {SETTLE_TRIES} tries")

    def _key_lost(self, action: Action, request_id: str) -> _Approval:
        # Approved, but the key went down with the answer: it cannot be read back.
        self.journal.write("approve.done", action, request_id=request_id, key="lost")
        return _Approval(True, False, "; its key was issued but the answer was lost")

    def _delete(self, action: Action) -> Outcome:
        assert action.request_id is not None
        self.journal.write("delete.sent", action, request_id=action.request_id)
        existed = self.client.delete_request(action.request_id)
        self.journal.write("delete.done", action, request_id=action.request_id)
        detail = (
            f"deleted request {action.request_id}"
            if existed
            else (f"request {action.request_id} was already gone")
        )
        if action.approved:
            detail += " (the key it issued stays valid)"
        return self._record(action, "done", detail)

    # ---- helpers -----------------------------------------------------------------------

    def _find_by_op(self, op: str, *, patient: bool = False) -> str | None:
        """The request this create made, if live state shows it. `patient`: the create
        may still be in flight, so look a few more times before concluding."""
        waits = PATIENCE if patient else (0.0,)
        for wait in waits:
            if wait:
                self._sleep(wait)
            try:
                requests = self.client.list_requests()
            except TyksyncError as e:
                raise _Failed(
                    f"create: answer lost, and reading live state to settle it failed: {e}"
                ) from None
            for r in requests:
                if r.op == op:
                    return r.id
        return None

    def _approved_now(self, request_id: str, *, patient: bool = False) -> bool:
        waits = PATIENCE if patient else (0.0,)
        for wait in waits:
            if wait:
                self._sleep(wait)
            try:
                live = self.client.get_request(request_id)
            except TyksyncError as e:
                raise _Failed(
                    f"approve {request_id}: answer lost, and reading it back failed: {e}"
                ) from None
            if live is None:
                raise _Failed(f"approve {request_id}: the request no longer exists")
            if live.approved:
                return True
        return False

    def _capture(self, action: Action, request_id: str, key: str) -> bool:
        if self.key_sink is None:
            return False
        self.key_sink.write(
            developer=action.developer.email or action.developer.id,
            policies=[p.id for p in action.policies],
            request_id=request_id,
            key=key,
        )
        return True

    def _record(
        self,
        action: Action,
        status: Status,
        detail: str,
        new_id: str | None = None,
        approval: _Approval | None = None,
    ) -> Outcome:
        outcome = Outcome(
            action=action,
            status=status,
            detail=detail,
            new_request_id=new_id,
            key_issued=bool(approval and approval.issued),
            key_captured=bool(approval and approval.captured),
        )
        if status != "done":
            self.journal.write(f"{action.action}.{status}", action, detail=detail)
        return outcome


def _with(outcome: Outcome, **changes: object) -> Outcome:
    return dataclasses.replace(outcome, **changes)  # type: ignore[arg-type]


def _merge_replace(create: Outcome, delete: Outcome) -> Outcome:
    if delete.status == "done":
        return _with(create, detail=f"{create.detail}; {delete.detail}")
    return _with(
        create,
        status="failed",
        detail=f"{create.detail}; but the old request was not deleted: {delete.detail}",
    )


def check_safety(plan: Plan, *, force: bool, max_deletes: int | None) -> None:
    """Refuse a plan that deletes too much (exit 3). --force lifts the 30% rule; an
    explicit --max-deletes is a hard cap that --force does not lift."""
    deletes = plan.count("delete")  # a replace's delete is no loss: it has a successor
    if max_deletes is not None and deletes > max_deletes:
        raise Refused(
            f"the plan deletes {deletes} requests, more than --max-deletes {max_deletes}; "
            "review it and raise the cap if it is right"
        )
    if not force and plan.managed >= 10 and deletes * 10 > plan.managed * 3:
        raise Refused(
            f"the plan deletes {deletes} of {plan.managed} managed requests (over 30%); "
            "review it, then use --force to apply anyway"
        )


def _lost_key(e: _Failed) -> _Approval | None:
    return _Approval(True, False) if e.key_issued else None
