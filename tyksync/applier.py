"""The applier: the only code that writes to the Dashboard.

Order: creates (with their approvals), then approvals, then deletes, so access is granted
before it is taken away. A replace creates the new request in the first phase and deletes
the old one in the last, only once the new one exists.

Never two requests for one intent: every create carries a one-time `tyksync_op` mark. When a
create's or an approval's answer is lost, live state is read again and the outcome settled
from it before anything is sent a second time.

A delete that revokes (SPEC section 11) revokes first: the key is found again on a fresh
read of its developer by the label the plan shows (the plan holds no key id), the revoke's
lost answer is settled by reading the developer again, and a revoke that fails keeps the
request, so that the next apply tries again.

Issued keys go to the key sink, never to logs, the journal or the result.

Journal: before a phase sends anything, it announces every first attempt it may send, in one
write and one fsync (see journal.py); a worker journals only retries, outcomes and failures,
and a create, once done, announces the approval that may follow it.

Progress: `on_outcome` hears each action's final outcome as soon as it is known (from the
worker thread that finished it, so it must be thread-safe); `-v` logs each phase and each
action's start and end.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from tyksync.client import DashboardClient
from tyksync.errors import AlreadyProcessed, AnswerLost, ApiError, Interrupted, TyksyncError
from tyksync.journal import Entry, Journal
from tyksync.keysink import KeySink
from tyksync.models import (
    OP_FIELD,
    OWNER_FIELD,
    Developer,
    Identity,
    KeyRequest,
    PolicyIndex,
    key_label,
    survivor_order,
)
from tyksync.plan import Action, Plan
from tyksync.provenance import Provenance

log = logging.getLogger("tyksync.apply")

Status = Literal["done", "failed", "skipped"]
# What became of the key an approval issued (None: no key was issued). The journal records
# the same words; the key itself is never recorded anywhere but the key sink.
KeyStatus = Literal["captured", "not captured", "lost", "sink failed"]
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
    key: KeyStatus | None = None

    @property
    def key_issued(self) -> bool:
        return self.key is not None

    @property
    def key_captured(self) -> bool:
        return self.key == "captured"


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

    def __init__(self, message: str, *, key: KeyStatus | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class _Approval:
    key: KeyStatus | None
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
        on_outcome: Callable[[Outcome], None] | None = None,
        provenance: Provenance | None = None,
    ) -> None:
        self.client = client
        self._sleep = sleep
        # Where creates say they come from; without one, sources relative to here.
        self.provenance = provenance or Provenance.here()
        self.key_sink = key_sink
        self.journal = journal or Journal(None)
        self.parallelism = max(1, parallelism)
        # Called once per action with its final outcome, from a worker thread.
        self.on_outcome = on_outcome
        self._index: PolicyIndex | None = None
        self._index_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # while `apply` runs
        client.use_connections(self.parallelism)

    def apply(self, plan: Plan) -> ApplyResult:
        """Apply every action; the journal records the run's start and its end (or that it
        was interrupted, so a person knows to look at what was sent)."""
        self._index = None  # policies are read again for each plan applied
        self.journal.write("apply.start", None, dashboard=plan.dashboard, actions=len(plan.actions))
        try:
            # One pool for every phase: a phase's first calls went out only once it had
            # started its threads (~2 ms at 16, between phases that wait for each other).
            with ThreadPoolExecutor(self.parallelism, "tyksync-apply") as pool:
                self._pool = pool
                try:
                    result = self._apply(plan)
                finally:
                    self._pool = None  # phases run from this thread only: none is left
        except KeyboardInterrupt:
            self.journal.write("apply.interrupted", None)
            raise Interrupted(
                f"interrupted: what was sent is in the journal ({self.journal.path}); "
                "run apply again to finish, it converges"
            ) from None
        self.journal.write("apply.end", None, ok=result.ok)
        return result

    def _apply(self, plan: Plan) -> ApplyResult:
        result = ApplyResult()
        actions = plan.actions
        # A replace is a create here and a delete in the last phase: its create's outcome is
        # kept by the action's position in the plan until its delete is done.
        creating = [i for i, a in enumerate(actions) if a.creates]
        _phase(1, f"create {len(creating)} request(s), then approve those declared approved")
        # Each create's one-time mark is drawn now, so that the phase announces them all.
        ops = {id(actions[i]): uuid.uuid4().hex for i in creating}
        assert len(ops) == len(creating)
        self.journal.announce(
            "create.sent",
            [(actions[i], {"op": ops[id(actions[i])], "attempt": 1}) for i in creating],
        )
        created = self._run(
            lambda action: self._create(action, ops[id(action)]), [actions[i] for i in creating]
        )
        finished, approved_since_plan = self._approve_created(plan, created)
        replaced: dict[int, Outcome] = {}
        for i, outcome in zip(creating, finished, strict=True):
            if outcome.action.action == "replace":
                replaced[i] = outcome
            else:
                result.outcomes.append(outcome)

        approvals = [a for a in actions if a.action == "approve"]
        _phase(2, f"approve {len(approvals)} pending request(s)")
        self.journal.announce(
            "approve.sent", [(a, {"request_id": a.request_id, "attempt": 1}) for a in approvals]
        )
        result.outcomes.extend(self._run(self._approve_existing, approvals, final=_as_is))

        deleting: list[int] = []
        for i, a in enumerate(actions):
            if a.action == "delete" and a.request_id in approved_since_plan:
                # A duplicate the plan saw pending now holds a key: someone else chose it.
                skipped = self._record(
                    a,
                    "skipped",
                    f"request {a.request_id} was approved since the plan was made "
                    "(a concurrent apply?); left for the next plan to settle",
                )
                result.outcomes.append(self._report(skipped))
            elif a.action == "delete":
                deleting.append(i)
            elif a.action == "replace":
                if replaced[i].status == "done":
                    deleting.append(i)
                else:
                    kept = replaced[i]
                    result.outcomes.append(
                        self._report(_with(kept, detail=f"{kept.detail}; the old request was kept"))
                    )

        def settle_delete(n: int, outcome: Outcome) -> Outcome:
            i = deleting[n]
            return _merge_replace(replaced[i], outcome) if i in replaced else outcome

        _phase(3, f"delete {len(deleting)} request(s), the old one of each replace included")
        # A delete that revokes first announces itself once its revoke is done.
        self.journal.announce(
            "delete.sent",
            [
                (actions[i], {"request_id": actions[i].request_id})
                for i in deleting
                if not actions[i].revoke_key
            ],
        )
        result.outcomes.extend(
            self._run(self._delete, [actions[i] for i in deleting], final=settle_delete)
        )
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
        if not any(o.status == "done" and o.new_request_id for o in created):
            return [self._report(o) if _final_create(o) else o for o in created], set()
        try:
            # Policies too, not requests alone: a rival may name a policy by its explicit
            # `id` where ours names its `_id`, and only the policies tell that they agree.
            # All at once: every approval waits for them, and for the approvals' `*.sent`
            # lines (written by their creates: `_create`) to be on disk.
            with ThreadPoolExecutor(max_workers=2) as reader:
                announced = reader.submit(self.journal.sync)
                policies_read = reader.submit(self._policy_index, fresh=True)
                live_requests = self.client.list_requests()
                policies = policies_read.result()
        except TyksyncError as e:
            failed = [
                _with(
                    o,
                    status="failed",
                    detail=f"{o.detail}; reading live state to check for concurrent "
                    f"duplicates failed ({e}), so it was not approved; run apply again",
                )
                if _made(o)
                else o
                for o in created
            ]
            return [self._report(o) if _final_create(o) else o for o in failed], set()
        # Requests the plan already deals with are no rivals, unless they were approved
        # since it was made: then another apply got there first.
        pending_then = {a.request_id for a in plan.actions if a.request_id and not a.approved}
        known = {a.request_id for a in plan.actions if a.request_id} | {
            w.request_id for w in plan.warnings if w.request_id
        }
        approved_since = {r.id for r in live_requests if r.approved and r.id in pending_then}
        rivals: dict[Identity, list[KeyRequest]] = {}
        for r in live_requests:
            if r.id not in known or r.id in approved_since:
                rivals.setdefault(policies.identity(r), []).append(r)
        by_id = {r.id: r for r in live_requests}
        announced.result()  # a journal that cannot take it: nothing is sent

        def finish(outcome: Outcome) -> Outcome:
            if not _made(outcome):
                return outcome
            return self._finish_create(outcome, rivals, by_id)

        def final(_n: int, outcome: Outcome) -> Outcome | None:
            return outcome if _final_create(outcome) else None

        return self._run(finish, created, final=final), approved_since

    def _finish_create(
        self,
        outcome: Outcome,
        rivals: dict[Identity, list[KeyRequest]],
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
        winner = min(
            rivals.get((action.developer.id, wanted), []), key=survivor_order, default=mine
        )
        if winner.id != new_id:
            return self._yield_to(action, new_id, winner)
        if not action.approve:
            return outcome
        try:
            approval = self._approve(action, new_id, announced=True)
        except _Failed as e:
            return self._record(
                action,
                "failed",
                f"created request {new_id}, but approval failed: {e}",
                new_id,
                e.key,
            )
        return self._record(
            action,
            "done",
            f"created and approved request {new_id}{approval.note}",
            new_id,
            approval.key,
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
        return self._record(
            action, "done", f"{detail}; approved it{approval.note}", None, approval.key
        )

    def _delete_quietly(self, action: Action, request_id: str) -> None:
        try:
            self.client.delete_request(request_id)
        except TyksyncError as e:
            raise _Failed(f"deleting the new request {request_id} failed: {e}") from None

    def _run(
        self,
        step: Callable[[T], Outcome],
        items: list[T],
        *,
        final: Callable[[int, Outcome], Outcome | None] | None = None,
    ) -> list[Outcome]:
        """`step` over actions, or over the outcomes of an earlier phase, in parallel; a
        failure becomes that item's failed outcome (after the earlier phase's detail).

        `final(n, outcome)` turns item n's outcome into the action's final one (reported
        from the worker at once), or None when a later phase still has work on it."""

        def guarded(n: int, item: T) -> Outcome:
            action = item.action if isinstance(item, Outcome) else item
            assert isinstance(action, Action)
            # Described only when logged: an apply without -v would pay for it every call.
            # `_report` logs the end, once final.
            if not isinstance(item, Outcome) and log.isEnabledFor(logging.INFO):
                second_half = action.action == "replace" and step == self._delete
                note = ": deleting the old request" if second_half else ""
                log.info("start: %s%s", _describe(action), note)
            try:
                outcome = step(item)
            except (_Failed, TyksyncError) as e:
                detail = f"{item.detail}; {e}" if isinstance(item, Outcome) else str(e)
                key = e.key if isinstance(e, _Failed) else None
                outcome = self._record(action, "failed", detail, key=key)
            settled = None if final is None else final(n, outcome)
            return outcome if settled is None else self._report(settled)

        if self._pool is None or self.parallelism == 1 or len(items) <= 1:
            return [guarded(n, x) for n, x in enumerate(items)]
        # Each worker takes the next item until none is left. (A future an item cost the
        # main thread a wake-up an item, on the cores the calls need: issue 14.)
        outcomes: list[Outcome | None] = [None] * len(items)
        left = deque(range(len(items)))  # popleft is atomic: no item is taken twice
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    n = left.popleft()
                except IndexError:
                    return
                outcomes[n] = guarded(n, items[n])

        try:
            pending = {self._pool.submit(work) for _ in range(min(self.parallelism, len(items)))}
            while pending:
                # Timed: an interrupt that does not wake this wait (`interrupt_main`, a
                # SIGINT taken by a worker) is seen within 0.1 s, not at the phase's end.
                finished, pending = futures.wait(
                    pending, timeout=0.1, return_when=futures.FIRST_EXCEPTION
                )
                for worker in finished:
                    worker.result()  # a bug in a step: raised here
        finally:
            # An interrupt (even among the submits) or a bug: no call starts after it;
            # `apply` waits for the calls under way.
            stop.set()
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(items)
        return done

    def _report(self, outcome: Outcome) -> Outcome:
        """Hand an action's final outcome to `on_outcome`. Progress is for a person: a
        failure to show it (a closed pipe) must not stop the actions still to run."""
        if log.isEnabledFor(logging.INFO):
            log.info("end: %s: %s: %s", _describe(outcome.action), outcome.status, outcome.detail)
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception as e:
                log.warning("progress: could not report an outcome (%s)", type(e).__name__)
        return outcome

    # ---- steps -------------------------------------------------------------------------

    def _create(self, action: Action, op: str) -> Outcome:
        """The first attempt was announced with its phase, under `op`."""
        fields = dict(action.fields)
        fields[OWNER_FIELD] = action.owner or ""
        fields[OP_FIELD] = op
        fields.update(self.provenance.fields(action.declared_at))
        policy_ids = [p.id for p in action.policies]
        new_id: str | None = None
        for attempt in range(1, SETTLE_TRIES + 1):
            if attempt > 1:
                self.journal.write("create.sent", action, op=op, attempt=attempt)
            try:
                new_id = self.client.create_request(action.developer.id, policy_ids, fields)
                break
            except AnswerLost as e:
                self.journal.write("create.lost", action, op=op, detail=str(e))
                new_id = self._poll(lambda: self._find_by_op(op), patient=e.in_flight)
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
        # The approval that may follow is announced now, in the same write; the approvals
        # wait for one fsync that makes every such line durable (`_approve_created`). A
        # rival may win, or the live read fail: a `*.sent` line says "may have been sent".
        done: list[Entry] = [("create.done", action, {"op": op, "request_id": new_id})]
        if action.approve:
            done.append(("approve.sent", action, {"request_id": new_id, "attempt": 1}))
        self.journal.entries(done, sync=False)
        return self._record(action, "done", f"created request {new_id}", new_id)

    def _approve_existing(self, action: Action) -> Outcome:
        assert action.request_id is not None
        approval = self._approve(action, action.request_id, announced=True)
        return self._record(
            action,
            "done",
            f"approved request {action.request_id}{approval.note}",
            None,
            approval.key,
        )

    def _approve(self, action: Action, request_id: str, *, announced: bool = False) -> _Approval:
        """`announced`: the phase journaled the first attempt's `approve.sent` already."""
        if self.key_sink is not None and self.key_sink.broken:
            raise _Failed(
                f"approve {request_id}: not sent, since the key sink failed and its key "
                "could not be captured"
            )
        lost = False  # an earlier try's answer was lost: it may be the one that issued a key
        for attempt in range(1, SETTLE_TRIES + 1):
            if attempt > 1 or not announced:
                self.journal.write("approve.sent", action, request_id=request_id, attempt=attempt)
            try:
                key = self.client.approve_request(request_id)
            except AnswerLost as e:
                lost = True
                self.journal.write("approve.lost", action, request_id=request_id, detail=str(e))
                if self._poll(lambda: self._approved_now(request_id), patient=e.in_flight):
                    return self._approved(action, request_id, "lost")
                continue  # not approved: a second PUT cannot issue a second key
            except AlreadyProcessed as e:
                if not self._approved_now(request_id):
                    raise _Failed(f"approve {request_id}: {e}") from None
                if lost:
                    return self._approved(action, request_id, "lost")
                return self._approved(action, request_id, None)
            except ApiError as e:
                raise _Failed(f"approve {request_id}: {e}") from None
            try:
                status: KeyStatus = (
                    "captured" if self._capture(action, request_id, key) else "not captured"
                )
            except TyksyncError as e:
                self.journal.write("approve.done", action, request_id=request_id, key="sink failed")
                raise _Failed(
                    f"approved request {request_id}, but its key could not be captured: {e}; "
                    "rotate that key in the Dashboard",
                    key="sink failed",
                ) from None
            return self._approved(action, request_id, status)
        raise _Failed(f"approve {request_id}: no answer after {SETTLE_TRIES} tries")

    def _approved(self, action: Action, request_id: str, key: KeyStatus | None) -> _Approval:
        """Journal an approval; `key` None: it was approved already, and issued no key now."""
        if key is None:
            self.journal.write("approve.done", action, request_id=request_id)
            return _Approval(None, " (it was already approved)")
        self.journal.write("approve.done", action, request_id=request_id, key=key)
        # A lost answer took the key with it: it cannot be read back.
        note = "; its key was issued but the answer was lost" if key == "lost" else ""
        return _Approval(key, note)

    def _delete(self, action: Action) -> Outcome:
        assert action.request_id is not None
        revoked = ""
        if action.revoke_key:  # else its phase announced it
            revoked = self._revoke(action)
            self.journal.write("delete.sent", action, request_id=action.request_id)
        try:
            existed = self.client.delete_request(action.request_id)
        except TyksyncError as e:
            if not revoked:
                raise
            raise _Failed(
                f"{revoked}, but deleting request {action.request_id} failed: {e}"
            ) from None
        self.journal.write("delete.done", action, request_id=action.request_id)
        detail = (
            f"deleted request {action.request_id}"
            if existed
            else (f"request {action.request_id} was already gone")
        )
        if revoked:
            detail = f"{revoked}, then {detail}"
        elif action.approved:
            detail += " (the key it issued stays valid)"
        return self._record(action, "done", detail)

    # ---- revoking ----------------------------------------------------------------------

    def _revoke(self, action: Action) -> str:
        """Revoke the key the plan names by its label; what happened, for the detail.
        Raises _Failed (so the request is kept) when it cannot be done or told."""
        label, developer_id = action.revoke_key, action.developer.id
        assert label is not None and action.request_id is not None
        kept = "; the request was kept: run apply again"
        key_id = self._key_to_revoke(action, label, kept)
        if key_id is None:
            # Nothing is sent, but the journal says why the delete goes on without a revoke.
            self.journal.write("revoke.gone", action, request_id=action.request_id, key=label)
            return f"{label} was revoked already"
        for attempt in range(1, SETTLE_TRIES + 1):
            self.journal.write(
                "revoke.sent", action, request_id=action.request_id, key=label, attempt=attempt
            )
            try:
                existed = self.client.revoke_key(developer_id, key_id)
            except AnswerLost as e:
                self.journal.write(
                    "revoke.lost", action, request_id=action.request_id, key=label, detail=str(e)
                )
                look = functools.partial(self._revoked_now, developer_id, key_id, label, kept)
                if self._poll(look, patient=e.in_flight):
                    self.journal.write(
                        "revoke.done", action, request_id=action.request_id, key=label
                    )
                    return f"revoked {label} (its answer was lost; the key is gone)"
                continue  # still on the record: the revoke did not happen, send it again
            except TyksyncError as e:
                raise _Failed(f"revoking {label} failed: {e}{kept}") from None
            self.journal.write("revoke.done", action, request_id=action.request_id, key=label)
            return f"revoked {label}" if existed else f"{label} was revoked already"
        raise _Failed(f"revoking {label}: no answer after {SETTLE_TRIES} tries{kept}")

    def _key_to_revoke(self, action: Action, label: str, kept: str) -> str | None:
        """The id of the key labelled `label`, read afresh from its developer; None when
        it is gone and no other key grants the same policies (it was revoked since the
        plan). A key's policies never change, so the label that matched the policy set
        when planning still names that key; if it is gone while another key grants the
        same policies, that may be the same key under another id: nothing is guessed."""
        developer = self._developer(action.developer.id, label, kept)
        keys = developer.keys
        if keys is None:
            raise _Failed(f"revoke {label}: the Dashboard did not list the developer's keys{kept}")
        found = [k for k in keys if key_label(k) == label]
        if len(found) == 1:
            return found[0]
        if found:
            raise _Failed(f"revoke {label}: several keys of the developer bear that label{kept}")
        wanted = frozenset(p.id for p in action.policies)
        # A key may name a policy by its explicit `id`: compared canonically, as planned.
        if developer.keys_granting(wanted, self._policy_index()):
            raise _Failed(
                f"revoke {label}: that key is no longer on the developer's record, and another "
                f"key grants the same policies; nothing revoked{kept}"
            )
        return None

    def _revoked_now(
        self, developer_id: str, key_id: str, label: str, kept: str
    ) -> Literal[True] | None:
        developer = self._developer(developer_id, label, kept)
        if developer.keys is None:
            raise _Failed(f"revoke {label}: the Dashboard did not list the developer's keys{kept}")
        return True if key_id not in developer.keys else None

    def _policy_index(self, *, fresh: bool = False) -> PolicyIndex:
        """The Dashboard's policies, read once an apply (again when `fresh`): what tells
        that two names of a policy (`_id`, explicit `id`) are one."""
        with self._index_lock:
            if fresh or self._index is None:
                self._index = PolicyIndex(self.client.list_policies())
            return self._index

    def _developer(self, developer_id: str, label: str, kept: str) -> Developer:
        try:
            developer = self.client.developer(developer_id)
        except TyksyncError as e:
            raise _Failed(f"revoke {label}: reading the developer failed: {e}{kept}") from None
        if developer is None:
            raise _Failed(f"revoke {label}: the developer no longer exists{kept}")
        return developer

    # ---- helpers -----------------------------------------------------------------------

    def _poll(self, look: Callable[[], T | None], *, patient: bool) -> T | None:
        """`look` once, or, when a write timed out and may still be in flight, a few times
        over several seconds before concluding that it did not land."""
        for wait in PATIENCE if patient else (0.0,):
            if wait:
                self._sleep(wait)
            found = look()
            if found is not None:
                return found
        return None

    def _find_by_op(self, op: str) -> str | None:
        """The id of the request a create marked with `op` made, if live state shows it."""
        try:
            requests = self.client.list_requests()
        except TyksyncError as e:
            raise _Failed(
                f"create: answer lost, and reading live state to settle it failed: {e}"
            ) from None
        return next((r.id for r in requests if r.op == op), None)

    def _approved_now(self, request_id: str) -> Literal[True] | None:
        try:
            live = self.client.get_request(request_id)
        except TyksyncError as e:
            raise _Failed(
                f"approve {request_id}: answer lost, and reading it back failed: {e}"
            ) from None
        if live is None:
            raise _Failed(f"approve {request_id}: the request no longer exists")
        return True if live.approved else None

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
        key: KeyStatus | None = None,
    ) -> Outcome:
        outcome = Outcome(action, status, detail, new_request_id=new_id, key=key)
        if status != "done":
            self.journal.write(f"{action.action}.{status}", action, detail=detail)
        return outcome


def _phase(number: int, what: str) -> None:
    log.info("phase %d/3: %s", number, what)


def _describe(action: Action) -> str:
    """`create alice@example.com [Gold]` (log lines are escaped by the log filter)."""
    policies = ", ".join(p.name or p.id for p in action.policies)
    return f"{action.action} {action.developer.email or action.developer.id} [{policies}]"


def _as_is(_n: int, outcome: Outcome) -> Outcome:
    return outcome


def _final_create(outcome: Outcome) -> bool:
    """A plain create is final after the create phase; a replace only after its delete."""
    return outcome.action.action == "create"


def _made(outcome: Outcome) -> bool:
    """A create that made a request, still to be checked for rivals and approved."""
    return outcome.status == "done" and outcome.new_request_id is not None


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
