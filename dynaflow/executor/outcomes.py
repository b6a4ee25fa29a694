"""Outcomes: record what a step's call came to, retry it under its policy, and conclude a plan
when nothing more runs (finalize, stop, rescue or pause)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from dynaflow import registry
from dynaflow.clock import now, seconds
from dynaflow.events import EVENT, RETRY
from dynaflow.exceptions import EventRejected, InvalidArgument
from dynaflow.execution_plan import StepError
from dynaflow.executor.base import EngineBase, Iteration
from dynaflow.executor.finalize import finalize_task
from dynaflow.executor.messages import Finalized
from dynaflow.executor.steps import StepOutcome
from dynaflow.operators.skip import call_on_skip, skip_closure
from dynaflow.persistence.base import EventRow
from dynaflow.rescue import Rescue, combine
from dynaflow.runtime import Cancel, PlanRuntime, StepRuntime
from dynaflow.states import DONE_STEP_STATES, PlanState, StepState, plan_result

log = logging.getLogger("dynaflow.executor")
S = StepState


class Outcomes(EngineBase):
    def on_step_done(self, outcome: StepOutcome, origin: PlanRuntime, it: Iteration) -> None:
        self.busy -= 1
        if not outcome.remote and self.elsewhere:
            self.local_done(origin.steps[outcome.step_id], outcome)
            if self.held:
                self.release_held(it)
        runtime = self.plans.get(outcome.plan_id)
        if runtime is None or runtime is not origin:
            # the plan ended here, or was dropped and taken up again since the step started
            # (a world declared dead): that run is not this runtime's to record
            log.warning("outcome for a plan this world no longer runs: %s", outcome)
            return
        step = runtime.steps[outcome.step_id]
        step.busy = False
        runtime.busy -= 1
        if self.limited and step.queue in self.limited:
            it.batch.topics.append(f"q {step.queue}")  # room for other worlds' steps
            self.room_freed(step.queue, it)
        if outcome.consumed is not None:
            it.batch.drop_events.append(outcome.consumed)
            step.timers.discard(outcome.consumed)
            self.resolve_event(it, outcome.consumed, None)
        for event_id in step.batch:  # handed over with it: handled with it
            it.batch.drop_events.append(event_id)
            self.resolve_event(it, event_id, None)
        step.batch = ()
        error = outcome.error
        if error is None and step.timed_out is not None:
            error, step.timed_out = StepError("Timeout", step.timed_out), None
        if error is not None and self._retry_later(runtime, step, outcome, error, it):
            return
        if error is not None:
            state = S.ERROR
        elif outcome.suspended:
            state = S.SUSPENDED if not runtime.halted else S.CANCELLED
        elif outcome.cancelling or step.cancel is Cancel.SENT:
            state = S.CANCELLED  # cancel() returned, or a later run(event) confirmed it
        else:
            state = S.SUCCESS
        fields: dict[str, Any] = {}
        if state != S.SUSPENDED:
            fields["ended_at"] = outcome.ended_at
            if outcome.started_at is not None:
                fields["started_at"] = outcome.started_at
                fields["duration"] = (outcome.ended_at - outcome.started_at).total_seconds()
        if error is None and outcome.output is not None:
            runtime.actions[outcome.action_id].output = outcome.output
            it.batch.outputs.append((outcome.plan_id, outcome.action_id, outcome.output))
        if outcome.progress is not None:
            fields["progress"] = outcome.progress
        detail = None
        if error is not None:
            fields["error"] = detail = error.to_json()
            detail = {"error": detail}
        it.changes.step(runtime.plan_id, step, state, outcome.ended_at, fields, detail)
        if error is None and not runtime.halted:
            self._queue_events(outcome, it)
        else:
            _reject_all(outcome, "the step that planned this event did not go on")
        if state == S.SUSPENDED:
            self.check_events = True  # events may be waiting for it
            if outcome.callback is not None:
                callback = self.suspend_callback(runtime.plan_id, step.id, outcome.callback)
                it.later(callback, runtime.plan_id)
        else:
            self.reject_waiting(runtime, step, it)
            if state == S.SUCCESS:
                runtime.completed(step.id)
        it.touched[outcome.plan_id] = runtime

    def _retry_later(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        outcome: StepOutcome,
        error: StepError,
        it: Iteration,
    ) -> bool:
        """Under the action's ``Retry`` policy, a failed attempt waits on a persisted timer
        (the step ``suspended``, no thread held) and runs again when it fires."""
        if runtime.halted or runtime.cancelling or outcome.cancelling:
            return False
        policy = registry.attribute(
            step.action_class, "retry", None, f"step {step.id} is not retried by its policy"
        )
        if policy is None:
            return False
        applies = outcome.retryable
        if applies is None:
            applies = policy.applies(outcome.exception)
        if not applies:
            return False
        if step.attempt >= policy.attempts:
            return False
        at = outcome.ended_at
        try:
            wait = seconds(policy.delay(step.attempt), f"{step.action_class}.retry.delay()")
        except (InvalidArgument, ArithmeticError) as exc:
            log.warning("step %s of plan %s is not retried: %s", step.id, runtime.plan_id, exc)
            return False
        due = at + timedelta(seconds=wait)
        detail = {"error": error.to_json(), "attempt": step.attempt, "retry_at": due.isoformat()}
        fields = {"error": detail["error"]}
        it.changes.step(runtime.plan_id, step, S.SUSPENDED, at, fields, detail, event="step error")
        it.batch.events.append(
            EventRow(runtime.plan_id, step.id, RETRY, {"attempt": step.attempt + 1}, at, due)
        )
        _reject_all(outcome, "the step that planned this event failed")
        it.touched[runtime.plan_id] = runtime
        return True

    def _queue_events(self, outcome: StepOutcome, it: Iteration) -> None:
        if outcome.requests:
            it.batch.requests.extend((outcome.plan_id, row) for row in outcome.requests)
            if self.requested is not None:
                it.later(self.requested, outcome.plan_id)
        for row, future in outcome.events:
            it.batch.events.append(row)
            if row.kind == EVENT:
                self.check_events = True
            if future is not None:
                it.later(self.register_sender(row, future))

    # -- concluding a plan ---------------------------------------------------------------------

    def conclude(self, runtime: PlanRuntime, it: Iteration) -> None:
        """Nothing runs and nothing is ready: wait for events, finalize, stop or pause."""
        run_steps = runtime.run_steps()
        waiting = [s for s in run_steps if s.state == S.SUSPENDED]
        if runtime.cancelling:
            if any(
                s.cancel is Cancel.DUE or (s.cancel_requested and self.cancellable(s))
                for s in waiting
            ):
                return  # a Cancellable step waits for its external work to stop
            at = now()
            for step in runtime.steps.values():
                if step.barrier or step.state not in (S.PENDING, S.ERROR, S.SUSPENDED):
                    continue
                it.changes.step(runtime.plan_id, step, S.CANCELLED, at, {"ended_at": at})
                self.reject_waiting(runtime, step, it)
            state, result = PlanState.STOPPED, plan_result(runtime.step_states())
        elif waiting:
            return  # suspended steps wait for their events: the plan goes on running
        elif self.stopping and not any(s.state == S.ERROR for s in run_steps):
            return  # shutting down with steps still to run: released, not paused
        elif all(step.state in DONE_STEP_STATES for step in run_steps):
            if any(runtime.steps[s].state not in DONE_STEP_STATES for s in runtime.finalize_order):
                if not self.stopping:
                    self._finalize(runtime, it)
                return  # (shutting down: released with its finalize still to do)
            state, result = PlanState.STOPPED, plan_result(runtime.step_states())
        else:
            rescue = self._rescue(runtime, it)
            if rescue is Rescue.SKIP:
                return  # skipped what failed; the plan goes on
            state = PlanState.STOPPED if rescue is Rescue.FAIL else PlanState.PAUSED
            result = plan_result([s.state for s in run_steps])
        at = now()
        fields = {"ended_at": at} if state == PlanState.STOPPED else {}
        it.changes.plan(
            runtime.plan_id,
            PlanState.RUNNING,
            state,
            at,
            fields,
            result=result,
            parent=runtime.parent,
        )
        self.end(runtime, it)

    def _finalize(self, runtime: PlanRuntime, it: Iteration) -> None:
        runtime.finalizing = True
        runtime.busy += 1
        self.counted(it, 1)
        services, dispatch = self.services, self.dispatch

        def task() -> Finalized:
            return finalize_task(services, runtime)

        def hand_out() -> None:
            self.uncounted(it)
            dispatch(task)

        it.later(hand_out, runtime.plan_id)

    def on_finalized(self, message: Finalized, it: Iteration) -> None:
        """The finalize phase ended (its changes are committed and signalled)."""
        self.busy -= 1
        runtime = self.plans.get(message.plan_id)
        if runtime is None or runtime is not message.origin:
            return
        runtime.busy -= 1
        runtime.finalizing = False
        if message.result.lost:
            self.lost(message.plan_id)
            return
        for step_id, state in message.result.steps:
            runtime.steps[step_id].state = state
        if runtime.parent is not None:  # its end told the parent step: deliver that event
            self.check_events = True
        self.end(runtime, it)

    # -- rescue ------------------------------------------------------------------------------

    def _rescue(self, runtime: PlanRuntime, it: Iteration) -> Rescue:
        """Apply the rescue strategy of the failed steps (with ``auto_rescue``): SKIP skips
        them (and what consumes their output) and the plan goes on, FAIL stops it, PAUSE waits
        for an operator. A plan is rescued again only if a different step failed."""
        failed = [s for s in runtime.run_steps() if s.state == S.ERROR]
        if not self.services.auto_rescue or not failed:
            return Rescue.PAUSE
        ids = {s.id for s in failed}
        if ids <= runtime.rescued:
            return Rescue.PAUSE  # the loop guard: these were rescued once already
        strategy = combine(self._strategy(runtime, s) for s in failed)
        if strategy is not Rescue.SKIP:
            return strategy
        plan = None
        for step in failed:
            if registry.attribute(step.action_class, "on_skip", None, "no on_skip() is called"):
                plan = plan or self.storage.load_plan(runtime.plan_id)
                try:
                    call_on_skip(self.services, plan, step.id)
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
        reason = {"reason": "rescue strategy SKIP"}
        for step_id, _ in closure:
            step = runtime.steps[step_id]
            it.changes.step(runtime.plan_id, step, S.SKIPPED, at, {"ended_at": at}, reason)
            self.reject_waiting(runtime, step, it)
        for step_id, _ in closure:
            runtime.completed(step_id)
        detail = {"strategy": "skip", "steps": sorted(ids)}
        it.changes.note(runtime.plan_id, at, "plan rescued", detail=detail)
        self.advance(runtime, it)
        return Rescue.SKIP

    def _strategy(self, runtime: PlanRuntime, step: StepRuntime) -> Rescue:
        """The step's action's rescue strategy, else its nearest ancestor's, else PAUSE."""
        action_id: int | None = step.action_id
        while action_id is not None:
            action = runtime.actions[action_id]
            strategy = registry.attribute(
                action.action_class, "rescue_strategy", Rescue.PAUSE, "the plan pauses"
            )
            if strategy is not None:
                return Rescue(strategy)
            action_id = action.parent_id
        return Rescue.PAUSE

    # -- defined by the timers part ----------------------------------------------------------

    def suspend_callback(self, plan_id: str, step_id: int, callback: Any) -> Any:
        raise NotImplementedError

    def register_sender(self, row: EventRow, future: Any) -> Any:
        raise NotImplementedError


def _reject_all(outcome: StepOutcome, why: str) -> None:
    for _, future in outcome.events:
        if future is not None and not future.done():
            future.set_exception(EventRejected(why))
