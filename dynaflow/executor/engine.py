"""The scheduler core shared by the threaded and the inline executor.

One scheduler iteration at a time owns the runtimes of executing plans. Workers run user code
and report outcomes to the inbox; each iteration turns every message it has into one
:class:`~dynaflow.persistence.Batch` — step states, outputs, history, queued events and the
claims of the steps that became ready or were woken — and commits it in one transaction (group
commit). Claimed steps are dispatched only after that commit, and entering ``running`` is a
compare-and-set, so a step never runs twice at once.
"""

from __future__ import annotations

import logging
import queue
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from dynaflow import registry, signals
from dynaflow.action import Cancellable
from dynaflow.clock import now
from dynaflow.events import EVENT, RETRY, TIMEOUT, SuspendedHandle
from dynaflow.exceptions import (
    ConcurrentModification,
    EventRejected,
    InvalidState,
    UnknownPlan,
)
from dynaflow.execution_plan import StepError
from dynaflow.executor.finalize import finalize_task
from dynaflow.executor.runtime import PlanRuntime, StepRuntime
from dynaflow.executor.steps import NO_EVENT, StepOutcome, run_step
from dynaflow.operators import call_on_skip, skip_closure
from dynaflow.persistence.base import Batch, Claim, EventRow, HistoryRow, PlanUpdate, StepUpdate
from dynaflow.rescue import Rescue, combine
from dynaflow.states import (
    DONE_STEP_STATES,
    FINISHED_STEP_STATES,
    PlanResult,
    PlanState,
    StepState,
    plan_result,
)

if TYPE_CHECKING:
    from dynaflow.world import World

log = logging.getLogger("dynaflow.executor")

S = StepState
CLAIMABLE = frozenset({S.PENDING, S.ERROR})
EARLY_VERDICTS = 100_000
SUSPENDED = frozenset({S.SUSPENDED})
EXECUTABLE = frozenset({PlanState.PLANNED, PlanState.PAUSED})
RUNNING_PLAN = frozenset({PlanState.RUNNING})
Task = Callable[[], Any]
After = list[Callable[[], None]]


class _Iteration:
    """What one scheduler iteration collects before it commits."""

    __slots__ = ("after", "batch", "claims", "touched", "wakes")

    def __init__(self) -> None:
        self.batch = Batch()
        self.after: After = []
        self.touched: dict[str, PlanRuntime] = {}
        #: (runtime, step ids) claimed from pending/error
        self.claims: list[tuple[PlanRuntime, list[int]]] = []
        #: (plan id, step id) -> (runtime, event payload, event id, cancel call)
        self.wakes: dict[tuple[str, int], tuple[PlanRuntime, Any, int | None, bool]] = {}


class Engine:
    def __init__(self, world: World, dispatch: Callable[[Task], None]) -> None:
        self.world = world
        self.storage = world.storage
        self.dispatch = dispatch
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.plans: dict[str, PlanRuntime] = {}
        #: tasks handed to workers whose outcome is not back yet
        self.busy = 0
        self.stopping = False
        #: futures of ``World.event`` senders, by event id
        self.event_futures: dict[int, Future[Any]] = {}
        #: events handled (None) or rejected before their sender's future was registered
        self.early_verdicts: OrderedDict[int, BaseException | None] = OrderedDict()
        #: look for deliverable events in the next iteration
        self.check_events = False
        #: the earliest due time of a timer of a plan run here
        self.next_due: datetime | None = None

    # -- called from any thread ------------------------------------------------------------

    def execute(
        self,
        plan_id: str,
        future: Future[Any],
        adopt_from: str | EllipsisType | None = ...,
        only: int | None = None,
    ) -> None:
        """Run a planned or paused plan (``only``: of its failed steps, re-run just this one);
        with ``adopt_from``, take over a running plan from that world (``None``: released)."""
        self.inbox.put(("execute", plan_id, future, adopt_from, only))

    def event_sent(self, plan_id: str, step_id: int, event_id: int, future: Future[Any]) -> None:
        self.inbox.put(("event", plan_id, step_id, event_id, future))

    def timers_due(self) -> bool:
        return self.next_due is not None and self.next_due <= now()

    # -- scheduler iterations --------------------------------------------------------------

    def drain(self) -> list[tuple[Any, ...]]:
        messages = []
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                return messages

    def process(self, messages: list[tuple[Any, ...]]) -> None:
        """One iteration: apply ``messages``, deliver due events, commit one batch, dispatch."""
        it = _Iteration()
        for message in messages:
            kind = message[0]
            if kind == "done":
                self._step_done(message[1], message[2], it)
            elif kind == "execute":
                self._start(message[1], message[2], message[3], message[4], it)
            elif kind == "retry":
                self._retry_now(message[1], message[2], message[3], it)
            elif kind == "event":
                self._event_sent(message[1], message[2], message[3], message[4], it)
            elif kind == "finalized":
                self._finalized(message[1], message[2], message[3], it)
            elif kind == "cancel":
                self._cancel(message[1], message[2], message[3], it)
            elif kind == "halt":
                self._halt(message[1], message[2], it)
            elif kind == "fail":
                self._fail_suspended(message[1], message[2], message[3], it)
            elif kind == "call":
                message[1]()
        if self.check_events or self.timers_due():
            self._deliver_events(it)
        for runtime in list(it.touched.values()):
            if self.plans.get(runtime.plan_id) is runtime:
                self._advance(runtime, it)
        if it.batch:
            result = self.storage.write(it.batch)
            for conflict in result.step_conflicts:
                log.warning("lost a step update (another world changed it first): %s", conflict)
            self._dispatch_claimed(it, result.claimed)
            for row in it.batch.events:
                owner = self.plans.get(row.plan_id)
                if row.due_at is not None and owner is not None and row.id is not None:
                    step = owner.steps.get(row.step_id)
                    if step is not None:
                        step.timers.add(row.id)
                if row.due_at is None:
                    self.check_events = True  # queued with an outcome: deliver next iteration
                elif self.next_due is None or row.due_at < self.next_due:
                    self.next_due = row.due_at
        for callback in it.after:
            callback()

    # -- starting plans --------------------------------------------------------------------

    def _start(
        self,
        plan_id: str,
        future: Future[Any],
        adopt_from: str | EllipsisType | None,
        only: int | None,
        it: _Iteration,
    ) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is not None:  # already executing (or a halted one finishing a step) here
            runtime.futures.append(future)
            return
        try:
            plan = self.storage.load_plan(plan_id)
            owner: str | EllipsisType | None
            if adopt_from is not ...:  # released by a world that shut down, or left by a dead one
                expect, owner = RUNNING_PLAN, adopt_from
            elif plan.state in EXECUTABLE:
                expect, owner = EXECUTABLE, ...
            else:
                raise InvalidState(
                    f"plan {plan_id} is {plan.state}; only planned or paused plans can be "
                    "executed (a stopped plan is finished, a running one is already executing)"
                )
            rerun: bool | int = False if adopt_from is not ... else (True if only is None else only)
            runtime = PlanRuntime(plan, rerun)
            at = now()
            fields: dict[str, Any] = {"state": PlanState.RUNNING, "world_id": self.world.id}
            if plan.started_at is None:
                fields["started_at"] = at
            if plan.state == PlanState.PAUSED:
                fields["result"] = PlanResult.PENDING
            recovered = self._recover_interrupted(runtime, adopt_from, at)
            with self.storage.transaction():
                if not self.storage.update_plan(plan_id, fields, expect, owner):
                    raise ConcurrentModification(
                        f"plan {plan_id} was started by another world first; wait for it with "
                        "world.get_plan()"
                    )
                detail = {"from": adopt_from} if adopt_from is not ... else None
                recovered.history.insert(
                    0,
                    HistoryRow(plan_id, at, "plan running", world_id=self.world.id, detail=detail),
                )
                if self.storage.write(recovered).step_conflicts:
                    raise ConcurrentModification(
                        f"steps of plan {plan_id} changed while it was being taken over"
                    )
        except (UnknownPlan, InvalidState, ConcurrentModification) as exc:
            future.set_exception(exc)
            return
        except Exception as exc:
            log.exception("could not start plan %s", plan_id)
            future.set_exception(exc)
            return
        runtime.futures.append(future)
        self.plans[plan_id] = runtime
        it.touched[plan_id] = runtime
        if any(s.state == S.SUSPENDED for s in runtime.steps.values()):
            self.check_events = True
            self.next_due = _earliest(self.next_due, self.storage.next_due(self.world.id))
            for row in self.storage.plan_events(plan_id):
                if row.due_at is not None and row.step_id in runtime.steps and row.id is not None:
                    runtime.steps[row.step_id].timers.add(row.id)
        self._signal_plan(it.after, plan_id, PlanState.RUNNING, plan.result)

    def _recover_interrupted(
        self, runtime: PlanRuntime, adopt_from: str | EllipsisType | None, at: datetime
    ) -> Batch:
        """Steps left ``running`` by a world that died: an ``idempotent`` action runs again,
        any other errors with "abnormal termination" (and its rescue strategy applies)."""
        batch = Batch()
        if adopt_from is ...:
            return batch
        for step in runtime.steps.values():
            if step.barrier or step.state != S.RUNNING:
                continue
            try:
                again = bool(registry.resolve(step.action_class).idempotent)
            except Exception:
                again = False
            if again:
                batch.steps.append(StepUpdate(runtime.plan_id, step.id, S.RUNNING, S.PENDING))
                batch.history.append(
                    HistoryRow(
                        runtime.plan_id, at, "step pending", step.id, self.world.id,
                        {"reason": f"interrupted when world {adopt_from} stopped; idempotent, "
                         "so it runs again"},
                    )
                )  # fmt: skip
                step.state = S.PENDING
            else:
                error = StepError(
                    "AbnormalTermination",
                    f"abnormal termination: world {adopt_from} stopped while the step ran; it "
                    "is not marked idempotent, so it is not run again on its own",
                )
                batch.steps.append(
                    StepUpdate(
                        runtime.plan_id, step.id, S.RUNNING, S.ERROR,
                        {"ended_at": at, "error": error.to_json()},
                    )
                )  # fmt: skip
                batch.history.append(
                    HistoryRow(
                        runtime.plan_id, at, "step error", step.id, self.world.id,
                        {"error": error.to_json()},
                    )
                )  # fmt: skip
                step.state = S.ERROR
                runtime.blocked.add(step.id)
        runtime.refresh_ready()
        return batch

    # -- step outcomes ---------------------------------------------------------------------

    def _step_done(self, outcome: StepOutcome, origin: PlanRuntime, it: _Iteration) -> None:
        self.busy -= 1
        runtime = self.plans.get(outcome.plan_id)
        if runtime is None or runtime is not origin:
            # the plan ended here, or was dropped and taken up again since the step started
            # (a world declared dead): that run is not this runtime's to record
            log.warning("outcome for a plan this world no longer runs: %s", outcome)
            return
        batch = it.batch
        step = runtime.steps[outcome.step_id]
        step.busy = False
        runtime.busy -= 1
        if outcome.consumed is not None:
            batch.drop_events.append(outcome.consumed)
            step.timers.discard(outcome.consumed)
            self._resolve_event(it.after, outcome.consumed, None)
        error = outcome.error
        if error is None and step.timed_out is not None:
            error, step.timed_out = StepError("Timeout", step.timed_out), None
        if error is not None and self._retry_later(runtime, step, outcome, error, it):
            return
        fields: dict[str, Any] = {}
        if error is not None:
            state = S.ERROR
        elif outcome.suspended:
            state = S.SUSPENDED if not runtime.halted else S.CANCELLED
        elif outcome.cancelling or step.cancel_sent:
            state = S.CANCELLED  # cancel() returned, or a later run(event) confirmed it
        else:
            state = S.SUCCESS
        if state != S.SUSPENDED:
            fields["ended_at"] = outcome.ended_at
            if outcome.started_at is not None:
                fields["started_at"] = outcome.started_at
                fields["duration"] = (outcome.ended_at - outcome.started_at).total_seconds()
        if error is None and outcome.output is not None:
            runtime.actions[outcome.action_id].output = outcome.output
            batch.outputs.append((outcome.plan_id, outcome.action_id, outcome.output))
        if error is not None:
            fields["error"] = error.to_json()
        batch.steps.append(StepUpdate(outcome.plan_id, outcome.step_id, S.RUNNING, state, fields))
        batch.history.append(
            HistoryRow(
                outcome.plan_id,
                outcome.ended_at,
                f"step {state}",
                outcome.step_id,
                self.world.id,
                {"error": fields["error"]} if error is not None else None,
            )
        )
        step.state = state
        if error is None and not runtime.halted:
            self._queue_events(outcome, it)
        else:
            _reject_all(outcome.events, "the step that planned this event did not go on")
        if state == S.SUSPENDED:
            self.check_events = True  # events may be waiting for it
            if outcome.callback is not None:
                it.after.append(_callback(self, runtime.plan_id, step.id, outcome.callback))
        else:
            self._reject_waiting(runtime, step, it)
            if state == S.SUCCESS:
                runtime.completed(step.id)
        it.touched[outcome.plan_id] = runtime
        self._signal_step(it.after, runtime, step)

    def _retry_later(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        outcome: StepOutcome,
        error: StepError,
        it: _Iteration,
    ) -> bool:
        """Under the action's ``Retry`` policy, a failed attempt waits on a persisted timer
        (the step ``suspended``, no thread held) and runs again when it fires."""
        if runtime.halted or runtime.cancelling or outcome.cancelling:
            return False
        try:
            policy = registry.resolve(step.action_class).retry
        except Exception:
            return False
        if policy is None or not policy.applies(outcome.exception):
            return False
        if step.attempt >= policy.attempts:
            return False
        at = outcome.ended_at
        due = at + timedelta(seconds=policy.delay(step.attempt))
        detail = {"error": error.to_json(), "attempt": step.attempt, "retry_at": due.isoformat()}
        it.batch.steps.append(
            StepUpdate(runtime.plan_id, step.id, S.RUNNING, S.SUSPENDED, {"error": detail["error"]})
        )
        it.batch.history.append(
            HistoryRow(runtime.plan_id, at, "step error", step.id, self.world.id, detail)
        )
        it.batch.events.append(
            EventRow(runtime.plan_id, step.id, RETRY, {"attempt": step.attempt + 1}, at, due)
        )
        _reject_all(outcome.events, "the step that planned this event failed")
        step.state = S.SUSPENDED
        it.touched[runtime.plan_id] = runtime
        self._signal_step(it.after, runtime, step)
        return True

    def _queue_events(self, outcome: StepOutcome, it: _Iteration) -> None:
        for row, future in outcome.events:
            it.batch.events.append(row)
            if row.kind == EVENT:
                self.check_events = True
            if future is not None:
                it.after.append(_register(self, row, future))

    def _reject_waiting(self, runtime: PlanRuntime, step: StepRuntime, it: _Iteration) -> None:
        """The step finished: events sent to it that it never took are rejected, and the
        timers it planned for itself are dropped (a resumed step plans its own again)."""
        if step.timers:
            it.batch.drop_events.extend(sorted(step.timers - {step.handling}))
            step.timers.clear()
        if not step.waiting_events:
            return
        for event_id in sorted(step.waiting_events):
            it.batch.drop_events.append(event_id)
            self._resolve_event(
                it.after,
                event_id,
                EventRejected(
                    f"step {step.id} of plan {runtime.plan_id} finished ({step.state}) before "
                    "it handled this event"
                ),
            )
        step.waiting_events.clear()

    # -- events ----------------------------------------------------------------------------

    def _event_sent(
        self, plan_id: str, step_id: int, event_id: int, future: Future[Any], it: _Iteration
    ) -> None:
        if event_id in self.early_verdicts:
            error = self.early_verdicts.pop(event_id)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
            return
        if plan_id in self.plans:
            self.event_futures[event_id] = future
            self.check_events = True
            return
        # not run here: another world runs the plan, or it is paused, or it just ended
        try:
            step = self.storage.get_step(plan_id, step_id)
        except Exception as exc:
            future.set_exception(exc)
            return
        if step.state in FINISHED_STEP_STATES:
            it.batch.drop_events.append(event_id)
            rejection = EventRejected(
                f"step {step_id} of plan {plan_id} finished ({step.state}) before it "
                "handled this event"
            )
            it.after.append(lambda: future.set_exception(rejection))  # once the drop is saved
        elif not future.done():
            future.set_result(None)  # queued: whoever runs the plan will deliver it

    def _deliver_events(self, it: _Iteration) -> None:
        """Hand each suspended step its oldest deliverable event; apply due timeouts; reject
        events for steps that finished."""
        self.check_events = False
        at = now()
        dropped = set(it.batch.drop_events)  # handled in this iteration, not yet deleted
        for row in self.storage.due_events(self.world.id, at):
            if row.id in dropped:
                continue
            runtime = self.plans.get(row.plan_id)
            assert row.id is not None
            if runtime is None or runtime.halted:
                continue
            step = runtime.steps.get(row.step_id)
            key = (row.plan_id, row.step_id)
            if step is None or step.state in FINISHED_STEP_STATES:
                it.batch.drop_events.append(row.id)
                if row.kind == EVENT:
                    self._resolve_event(
                        it.after,
                        row.id,
                        EventRejected(
                            f"step {row.step_id} of plan {row.plan_id} is "
                            f"{step.state if step else 'unknown'}; it takes no more events"
                        ),
                    )
                continue
            if row.id == step.handling:
                continue
            if row.kind == RETRY:
                if step.state == S.SUSPENDED and not step.busy and key not in it.wakes:
                    step.attempt = int((row.payload or {}).get("attempt", 2))
                    self._wake(runtime, step, NO_EVENT, row.id, False, it)
                elif step.state != S.SUSPENDED:
                    it.batch.drop_events.append(row.id)
                continue
            if row.kind == TIMEOUT:
                it.batch.drop_events.append(row.id)
                seconds = (row.payload or {}).get("seconds")
                message = f"timeout exceeded after {seconds} s"
                if step.busy:
                    step.timed_out = message
                elif step.state == S.SUSPENDED and key not in it.wakes:
                    self._fail_step(runtime, step, StepError("Timeout", message), it)
                continue
            if step.state == S.SUSPENDED and not step.busy and key not in it.wakes:
                self._wake(runtime, step, row.payload, row.id, False, it)
            elif row.kind == EVENT:
                step.waiting_events.add(row.id)
        # a timer already due but not deliverable now (its step runs) is looked at again when
        # the step suspends, not on every iteration: only later timers set the next wake-up
        self.next_due = self.storage.next_due(self.world.id, after=at)

    def _wake(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        payload: Any,
        event_id: int | None,
        cancel: bool,
        it: _Iteration,
    ) -> None:
        step.busy = True
        step.handling = event_id
        step.waiting_events.discard(event_id or 0)
        runtime.busy += 1
        self.busy += 1
        it.batch.claims.append(Claim(runtime.plan_id, [step.id], SUSPENDED, self.world.id, now()))
        it.wakes[(runtime.plan_id, step.id)] = (runtime, payload, event_id, cancel)
        it.touched[runtime.plan_id] = runtime

    def _fail_step(
        self, runtime: PlanRuntime, step: StepRuntime, error: StepError, it: _Iteration
    ) -> None:
        """A suspended step errors without running (a timeout, a failing suspend callback)."""
        at = now()
        it.batch.steps.append(
            StepUpdate(
                runtime.plan_id,
                step.id,
                S.SUSPENDED,
                S.ERROR,
                {"ended_at": at, "error": error.to_json()},
            )
        )
        it.batch.history.append(
            HistoryRow(
                runtime.plan_id,
                at,
                "step error",
                step.id,
                self.world.id,
                {"error": error.to_json()},
            )
        )
        step.state = S.ERROR
        self._reject_waiting(runtime, step, it)
        it.touched[runtime.plan_id] = runtime
        self._signal_step(it.after, runtime, step)

    def _fail_suspended(self, plan_id: str, step_id: int, error: StepError, it: _Iteration) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is None:
            return
        step = runtime.steps[step_id]
        if step.state == S.SUSPENDED and not step.busy:
            self._fail_step(runtime, step, error, it)

    def _resolve_event(self, after: After, event_id: int, error: BaseException | None) -> None:
        future = self.event_futures.pop(event_id, None)
        if future is None:
            # handled before its sender's message arrived (the row was seen first): keep the
            # verdict for _event_sent; bounded, as events from other processes have no sender
            self.early_verdicts[event_id] = error
            while len(self.early_verdicts) > EARLY_VERDICTS:
                self.early_verdicts.popitem(last=False)
            return

        def resolve() -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        after.append(resolve)

    # -- operators: cancel and halt ---------------------------------------------------------

    def _cancel(self, plan_id: str, future: Future[Any], abort: bool, it: _Iteration) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is None:  # it ended, or another world runs it: cancel in the database
            self._operate_offline(plan_id, future, "cancel")
            return
        runtime.futures.append(future)
        if runtime.cancelling or runtime.halted:
            return
        runtime.cancelling = True
        runtime.ready.clear()
        at = now()
        for step in runtime.steps.values():
            if step.barrier or step.kind != _RUN:
                continue
            step.cancel_requested = True
            cancellable = self._cancellable(step)
            if step.state == S.SUSPENDED and not step.busy and not cancellable:
                it.batch.steps.append(
                    StepUpdate(plan_id, step.id, S.SUSPENDED, S.CANCELLED, {"ended_at": at})
                )
                it.batch.history.append(
                    HistoryRow(plan_id, at, "step cancelled", step.id, self.world.id)
                )
                step.state = S.CANCELLED
                self._reject_waiting(runtime, step, it)
                self._signal_step(it.after, runtime, step)
            elif cancellable and step.state in (S.SUSPENDED, S.RUNNING):
                step.cancel_due, step.abort = True, abort
        it.batch.history.append(HistoryRow(plan_id, at, "plan cancelling", world_id=self.world.id))
        it.touched[plan_id] = runtime

    def _halt(self, plan_id: str, future: Future[Any], it: _Iteration) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is None:
            self._operate_offline(plan_id, future, "halt")
            return
        if runtime.halted:
            future.set_result(plan_id)
            return
        runtime.halted = True
        runtime.ready.clear()
        at = now()
        for row in self.storage.plan_events(plan_id):
            assert row.id is not None
            it.batch.drop_events.append(row.id)
            if row.kind == EVENT:
                self._resolve_event(it.after, row.id, EventRejected(f"plan {plan_id} was halted"))
        for step in runtime.steps.values():
            if step.barrier or step.busy or step.kind == _PLAN:
                continue
            if step.state in (S.PENDING, S.ERROR, S.SUSPENDED):
                it.batch.steps.append(
                    StepUpdate(plan_id, step.id, step.state, S.CANCELLED, {"ended_at": at})
                )
                it.batch.history.append(
                    HistoryRow(plan_id, at, "step cancelled", step.id, self.world.id)
                )
                step.state = S.CANCELLED
                step.waiting_events.clear()
                self._signal_step(it.after, runtime, step)
        result = plan_result(runtime.step_states())
        it.batch.plans.append(
            PlanUpdate(
                plan_id,
                RUNNING_PLAN,
                {"state": PlanState.STOPPED, "result": result, "ended_at": at},
            )
        )
        it.batch.history.append(
            HistoryRow(
                plan_id, at, "plan stopped", world_id=self.world.id, detail={"reason": "halted"}
            )
        )
        runtime.futures.append(future)
        self._end(runtime, PlanState.STOPPED, result, it.after, keep=runtime.busy > 0)

    def _operate_offline(self, plan_id: str, future: Future[Any], operation: str) -> None:
        """Cancel or halt a plan no executor runs (planned, paused, or released)."""
        from dynaflow.operators import stop_offline

        try:
            stop_offline(self.world, plan_id, operation)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(plan_id)

    def _cancellable(self, step: StepRuntime) -> bool:
        if step.cancellable is None:
            try:
                step.cancellable = issubclass(registry.resolve(step.action_class), Cancellable)
            except Exception:
                step.cancellable = False
        return step.cancellable

    # -- advancing plans -------------------------------------------------------------------

    def _advance(self, runtime: PlanRuntime, it: _Iteration) -> None:
        if runtime.halted:
            if runtime.busy == 0:  # its last step's outcome is in this batch: resolve after it
                self.plans.pop(runtime.plan_id, None)
                futures, plan_id = list(runtime.futures), runtime.plan_id
                it.after.extend(_resolver(future, plan_id) for future in futures)
            return
        if runtime.cancelling:
            for step in runtime.steps.values():
                if step.cancel_due and step.state == S.SUSPENDED and not step.busy:
                    step.cancel_due = False
                    step.cancel_sent = True
                    self._wake(runtime, step, None, None, True, it)
        elif runtime.ready and not self.stopping:
            ids = sorted(runtime.ready)
            runtime.ready.clear()
            it.batch.claims.append(Claim(runtime.plan_id, ids, CLAIMABLE, self.world.id, now()))
            for step_id in ids:
                runtime.steps[step_id].busy = True
            runtime.busy += len(ids)
            self.busy += len(ids)
            it.claims.append((runtime, ids))
            return
        if runtime.busy == 0 and not runtime.finalizing:
            self._conclude(runtime, it)

    def _dispatch_claimed(self, it: _Iteration, claimed: set[tuple[str, int]]) -> None:
        for runtime, ids in it.claims:
            for step_id in ids:
                step = runtime.steps[step_id]
                if (runtime.plan_id, step_id) in claimed:
                    self._run(runtime, step, it.after, NO_EVENT, None, False)
                else:
                    self._unclaimed(runtime, step)
        for (plan_id, step_id), (runtime, payload, event_id, cancel) in it.wakes.items():
            step = runtime.steps[step_id]
            if (plan_id, step_id) in claimed:
                self._run(runtime, step, it.after, payload, event_id, cancel)
            else:
                self._unclaimed(runtime, step)

    def _run(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        after: After,
        event: Any,
        event_id: int | None,
        cancel: bool,
    ) -> None:
        step.state = S.RUNNING
        step.started_at = now()
        self._signal_step(after, runtime, step)
        world, step_id, action_id = self.world, step.id, step.action_id

        def task() -> tuple[Any, ...]:
            outcome = run_step(world, runtime, step_id, action_id, event, event_id, cancel)
            return ("done", outcome, runtime)

        self.dispatch(task)

    def _unclaimed(self, runtime: PlanRuntime, step: StepRuntime) -> None:
        log.warning(
            "step %s of plan %s was not claimable (changed elsewhere)", step.id, runtime.plan_id
        )
        step.busy = False
        step.handling = None
        runtime.busy -= 1
        self.busy -= 1

    def _conclude(self, runtime: PlanRuntime, it: _Iteration) -> None:
        """Nothing runs and nothing is ready: wait for events, finalize, stop or pause."""
        plan_id = runtime.plan_id
        run_steps = runtime.run_steps()
        waiting = [s for s in run_steps if s.state == S.SUSPENDED]
        if runtime.cancelling:
            if any(s.cancel_due or (s.cancel_requested and self._cancellable(s)) for s in waiting):
                return  # a Cancellable step waits for its external work to stop
            at = now()
            for step in runtime.steps.values():
                if step.barrier or step.state not in (S.PENDING, S.ERROR, S.SUSPENDED):
                    continue
                it.batch.steps.append(
                    StepUpdate(plan_id, step.id, step.state, S.CANCELLED, {"ended_at": at})
                )
                it.batch.history.append(
                    HistoryRow(plan_id, at, "step cancelled", step.id, self.world.id)
                )
                step.state = S.CANCELLED
                self._reject_waiting(runtime, step, it)
                self._signal_step(it.after, runtime, step)
            state, result = PlanState.STOPPED, plan_result(runtime.step_states())
        elif waiting:
            return  # suspended steps wait for their events: the plan goes on running
        elif self.stopping and not any(s.state == S.ERROR for s in run_steps):
            return  # shutting down with steps still to run: released, not paused
        elif all(step.state in DONE_STEP_STATES for step in run_steps):
            pending = [
                sid
                for sid in runtime.finalize_order
                if runtime.steps[sid].state not in DONE_STEP_STATES
            ]
            if pending and not self.stopping:
                runtime.finalizing = True
                runtime.busy += 1
                self.busy += 1
                world = self.world
                it.after.append(lambda: self.dispatch(lambda: finalize_task(world, runtime)))
                return
            if pending:
                return  # shutting down: the plan is released with its finalize still to do
            state, result = PlanState.STOPPED, plan_result(runtime.step_states())
        else:
            rescue = self._rescue(runtime, it)
            if rescue is Rescue.SKIP:
                return  # skipped what failed; the plan goes on
            state = PlanState.STOPPED if rescue is Rescue.FAIL else PlanState.PAUSED
            result = plan_result([s.state for s in run_steps])
        at = now()
        fields: dict[str, Any] = {"state": state, "result": result}
        if state == PlanState.STOPPED:
            fields["ended_at"] = at
        it.batch.plans.append(PlanUpdate(plan_id, RUNNING_PLAN, fields))
        it.batch.history.append(HistoryRow(plan_id, at, f"plan {state}", world_id=self.world.id))
        self._end(runtime, state, result, it.after)

    def _rescue(self, runtime: PlanRuntime, it: _Iteration) -> Rescue:
        """Apply the rescue strategy of the failed steps (with ``auto_rescue``): SKIP skips
        them (and what consumes their output) and the plan goes on, FAIL stops it, PAUSE waits
        for an operator. A plan is rescued again only if a different step failed."""
        failed = [s for s in runtime.run_steps() if s.state == S.ERROR]
        if not self.world.auto_rescue or not failed:
            return Rescue.PAUSE
        ids = {s.id for s in failed}
        if ids <= runtime.rescued:
            return Rescue.PAUSE  # the loop guard: these were rescued once already
        strategy = combine(self._strategy(runtime, s) for s in failed)
        if strategy is not Rescue.SKIP:
            return strategy
        plan = None
        for step in failed:
            if getattr(registry.resolve(step.action_class), "on_skip", None) is not None:
                plan = plan or self.storage.load_plan(runtime.plan_id)
                try:
                    call_on_skip(self.world, plan, step.id)
                except Exception:
                    log.warning("on_skip() vetoed the rescue of plan %s", runtime.plan_id)
                    return Rescue.PAUSE
        runtime.rescued |= ids
        at = now()
        closure = skip_closure(
            [(s.id, s.kind, s.action_id, s.state) for s in runtime.steps.values() if not s.barrier],
            {a.id: a.input for a in runtime.actions.values()},
            sorted(ids),
        )
        for step_id, state in closure:
            step = runtime.steps[step_id]
            it.batch.steps.append(
                StepUpdate(runtime.plan_id, step_id, state, S.SKIPPED, {"ended_at": at})
            )
            it.batch.history.append(
                HistoryRow(
                    runtime.plan_id,
                    at,
                    "step skipped",
                    step_id,
                    self.world.id,
                    {"reason": "rescue strategy SKIP"},
                )
            )
            step.state = S.SKIPPED
            self._reject_waiting(runtime, step, it)
            self._signal_step(it.after, runtime, step)
        for step_id, _ in closure:
            runtime.completed(step_id)
        it.batch.history.append(
            HistoryRow(
                runtime.plan_id,
                at,
                "plan rescued",
                world_id=self.world.id,
                detail={"strategy": "skip", "steps": sorted(ids)},
            )
        )
        self._advance(runtime, it)
        return Rescue.SKIP

    def _strategy(self, runtime: PlanRuntime, step: StepRuntime) -> Rescue:
        """The step's action's rescue strategy, else its nearest ancestor's, else PAUSE."""
        action_id: int | None = step.action_id
        while action_id is not None:
            action = runtime.actions[action_id]
            try:
                strategy = registry.resolve(action.action_class).rescue_strategy
            except Exception:
                return Rescue.PAUSE
            if strategy is not None:
                return Rescue(strategy)
            action_id = action.parent_id
        return Rescue.PAUSE

    def _retry_now(self, plan_id: str, step_id: int, future: Future[Any], it: _Iteration) -> None:
        """``World.retry`` of a step of a plan running here: run it again now."""
        runtime = self.plans.get(plan_id)
        if runtime is None:  # ended meanwhile: run it as a paused plan
            self._start(plan_id, future, ..., step_id, it)
            return
        step = runtime.steps.get(step_id)
        if step is None or step.state != S.ERROR or step.busy:
            future.set_exception(
                InvalidState(
                    f"step {step_id} of plan {plan_id} is "
                    f"{step.state if step else 'unknown'}; only a failed step can be retried"
                )
            )
            return
        runtime.blocked.discard(step_id)
        runtime.rescued.discard(step_id)
        runtime.ready.add(step_id)
        runtime.futures.append(future)
        it.touched[plan_id] = runtime

    def _finalized(
        self,
        plan_id: str,
        outcome: tuple[PlanState, Any, list[tuple[int, StepState]]],
        origin: PlanRuntime,
        it: _Iteration,
    ) -> None:
        self.busy -= 1
        runtime = self.plans.get(plan_id)
        if runtime is None or runtime is not origin:
            return
        runtime.busy -= 1
        runtime.finalizing = False
        state, result, changes = outcome
        for step_id, step_state in changes:
            step = runtime.steps[step_id]
            step.state = step_state
            self._signal_step(it.after, runtime, step)
        self._end(runtime, state, result, it.after)

    def _end(
        self, runtime: PlanRuntime, state: PlanState, result: Any, after: After, keep: bool = False
    ) -> None:
        if not keep:
            del self.plans[runtime.plan_id]
        futures = list(runtime.futures)
        runtime.futures.clear()

        def finish() -> None:
            self._emit_plan(runtime.plan_id, state, result)
            for future in futures:
                if not future.done():
                    future.set_result(runtime.plan_id)

        after.append(finish)

    # -- signals ---------------------------------------------------------------------------

    def _signal_plan(self, after: After, plan_id: str, state: PlanState, result: Any) -> None:
        after.append(lambda: self._emit_plan(plan_id, state, result))

    def _emit_plan(self, plan_id: str, state: PlanState, result: Any) -> None:
        signals.emit(
            signals.plan_state_changed, self.world, plan_id=plan_id, state=state, result=result
        )

    def _signal_step(self, after: After, runtime: PlanRuntime, step: StepRuntime) -> None:
        if not signals.step_state_changed.receivers:
            return
        kwargs = {
            "plan_id": runtime.plan_id,
            "step_id": step.id,
            "kind": step.kind,
            "action_class": step.action_class,
            "state": step.state,
        }
        after.append(lambda: signals.emit(signals.step_state_changed, self.world, **kwargs))

    # -- shutdown --------------------------------------------------------------------------

    def release_plans(self) -> None:
        """On shutdown: plans with nothing running are released (still ``running``, with no
        owner) for the next executor world to adopt; suspended steps keep waiting for their
        persisted events and timers. Plans whose steps still run keep this world as owner, for
        crash recovery to take over."""
        self.stopping = True
        it = _Iteration()
        storage = self.storage
        for runtime in list(self.plans.values()):
            if runtime.busy:
                continue
            released = HistoryRow(
                runtime.plan_id,
                now(),
                "plan released",
                world_id=self.world.id,
                detail={"reason": "world shut down"},
            )
            # only a plan this world still owns: one taken over meanwhile is not ours to touch
            with storage.transaction():
                if storage.update_plan(
                    runtime.plan_id, {"world_id": None}, RUNNING_PLAN, self.world.id
                ):
                    storage.add_history([released])
            self._end(runtime, PlanState.RUNNING, None, it.after)
        for callback in it.after:
            callback()

    def fail_all(self, exc: BaseException) -> None:
        """The scheduler cannot go on (the database failed): end every waiting future."""
        for runtime in list(self.plans.values()):
            for future in runtime.futures:
                if not future.done():
                    future.set_exception(exc)
        self.plans.clear()


_RUN, _PLAN = "run", "plan"


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _resolver(future: Future[Any], plan_id: str) -> Callable[[], None]:
    def resolve() -> None:
        if not future.done():
            future.set_result(plan_id)

    return resolve


def _reject_all(events: list[tuple[EventRow, Future[Any] | None]], why: str) -> None:
    for _, future in events:
        if future is not None and not future.done():
            future.set_exception(EventRejected(why))


def _register(engine: Engine, row: EventRow, future: Future[Any]) -> Callable[[], None]:
    def register() -> None:
        assert row.id is not None
        if row.plan_id in engine.plans:
            engine.event_futures[row.id] = future
        elif not future.done():
            future.set_result(None)

    return register


def _callback(
    engine: Engine, plan_id: str, step_id: int, callback: Callable[[SuspendedHandle], Any]
) -> Callable[[], None]:
    """Call a suspend callback once the suspension is committed; if it raises, the step errors."""

    def call() -> None:
        try:
            callback(SuspendedHandle(engine.world, plan_id, step_id))
        except BaseException as exc:
            from dynaflow.executor.steps import error_of

            log.exception("suspend callback of step %s of plan %s failed", step_id, plan_id)
            engine.inbox.put(("fail", plan_id, step_id, error_of(exc)))
            engine.check_events = True

    return call
