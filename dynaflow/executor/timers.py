"""Events, timers and timeouts: deliver queued events to suspended steps, fire due timers,
error steps whose timeout passed, and tell event senders what came of their events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from dynaflow import registry
from dynaflow.clock import now
from dynaflow.events import EVENT, RETRY, TIMEOUT, SuspendedHandle
from dynaflow.exceptions import EventRejected
from dynaflow.execution_plan import StepError
from dynaflow.executor.base import EngineBase, Iteration
from dynaflow.executor.messages import EventSent, FailSuspended
from dynaflow.executor.steps import NO_EVENT, error_of
from dynaflow.persistence.base import EventRow
from dynaflow.runtime import PlanRuntime, StepRuntime
from dynaflow.states import FINISHED_STEP_STATES, StepState

log = logging.getLogger("dynaflow.executor")
S = StepState
#: verdicts kept for events whose sender's message has not arrived yet
EARLY_VERDICTS = 100_000


class Timers(EngineBase):
    def on_event_sent(self, message: EventSent, it: Iteration) -> None:
        plan_id, step_id, event_id, future = (
            message.plan_id,
            message.step_id,
            message.event_id,
            message.future,
        )
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
            it.batch.unowned.add(plan_id)  # not run here: no ownership to check
            it.batch.drop_events.append(event_id)
            rejection = EventRejected(
                f"step {step_id} of plan {plan_id} finished ({step.state}) before it "
                "handled this event"
            )
            it.later(lambda: future.set_exception(rejection))  # once the drop is saved
        elif not future.done():
            future.set_result(None)  # queued: whoever runs the plan will deliver it

    def deliver_events(self, it: Iteration) -> None:
        """Hand each suspended step its oldest deliverable event; apply due timeouts; reject
        events for steps that finished."""
        self.check_events = False
        at = now()
        dropped = set(it.batch.drop_events)  # handled in this iteration, not yet deleted
        batches: dict[tuple[str, int], list[EventRow]] = {}
        for row in self.storage.due_events(self.world_id, at):
            if row.id in dropped:
                continue
            runtime = self.plans.get(row.plan_id)
            assert row.id is not None
            if runtime is None or runtime.halted:
                continue
            step = runtime.steps.get(row.step_id)
            if step is None or step.state in FINISHED_STEP_STATES:
                it.batch.drop_events.append(row.id)
                if row.kind == EVENT:
                    why = (
                        f"step {row.step_id} of plan {row.plan_id} is "
                        f"{step.state if step else 'unknown'}; it takes no more events"
                    )
                    self.resolve_event(it, row.id, EventRejected(why))
                continue
            if row.id == step.handling or row.id in step.batch:
                continue
            if row.kind == EVENT and self._in_batches(step):
                if step.state == S.SUSPENDED and not step.busy:
                    batches.setdefault((row.plan_id, row.step_id), []).append(row)
                else:
                    step.waiting_events.add(row.id)
                continue
            self._deliver(runtime, step, row, it)
        for (plan_id, step_id), rows in batches.items():
            runtime, step = self.plans[plan_id], self.plans[plan_id].steps[step_id]
            if step.state == S.SUSPENDED and not step.busy and (plan_id, step_id) not in it.wakes:
                first, *rest = [row.id for row in rows if row.id is not None]
                step.batch = tuple(rest)
                step.woken_by = (EVENT, rows[0].created_at)
                step.waiting_events.difference_update(rest)
                self.wake(runtime, step, [row.payload for row in rows], first, False, it)
            else:
                step.waiting_events.update(row.id for row in rows if row.id is not None)
        # a timer already due but not deliverable now (its step runs) is looked at again when
        # the step suspends, not on every iteration: only later timers set the next wake-up
        if self.refresh_due or (self.next_due is not None and self.next_due <= at):
            self.refresh_due = False
            self.next_due = self.storage.next_due(self.world_id, after=at)

    def _in_batches(self, step: StepRuntime) -> bool:
        """Whether the step's action class takes its sent events in batches (a list)."""
        if step.batches is None:
            step.batches = bool(
                registry.attribute(step.action_class, "event_batches", False, "one at a time")
            )
        return step.batches

    def _deliver(
        self, runtime: PlanRuntime, step: StepRuntime, row: EventRow, it: Iteration
    ) -> None:
        assert row.id is not None
        free = step.state == S.SUSPENDED and not step.busy
        free = free and (row.plan_id, row.step_id) not in it.wakes
        if row.kind == RETRY:
            if free:
                step.attempt = int((row.payload or {}).get("attempt", 2))
                step.woken_by = None
                self.wake(runtime, step, NO_EVENT, row.id, False, it)
            elif step.state != S.SUSPENDED:
                it.batch.drop_events.append(row.id)
        elif row.kind == TIMEOUT:
            it.batch.drop_events.append(row.id)
            message = f"timeout exceeded after {(row.payload or {}).get('seconds')} s"
            if step.busy:
                step.timed_out = message
            elif free:
                self.fail_step(runtime, step, StepError("Timeout", message), it)
        elif free:
            step.woken_by = (row.kind, row.due_at or row.created_at)
            self.wake(runtime, step, row.payload, row.id, False, it)
        elif row.kind == EVENT:
            step.waiting_events.add(row.id)

    def fail_step(
        self, runtime: PlanRuntime, step: StepRuntime, error: StepError, it: Iteration
    ) -> None:
        """A suspended step errors without running (a timeout, a failing suspend callback)."""
        at = now()
        detail = error.to_json()
        fields = {"ended_at": at, "error": detail}
        it.changes.step(runtime.plan_id, step, S.ERROR, at, fields, {"error": detail})
        self.reject_waiting(runtime, step, it)
        it.touched[runtime.plan_id] = runtime

    def on_fail_suspended(self, message: FailSuspended, it: Iteration) -> None:
        runtime = self.plans.get(message.plan_id)
        if runtime is None:
            return
        step = runtime.steps[message.step_id]
        if step.state == S.SUSPENDED and not step.busy:
            self.fail_step(runtime, step, message.error, it)

    def reject_waiting(self, runtime: PlanRuntime, step: StepRuntime, it: Iteration) -> None:
        """The step finished: events sent to it that it never took are rejected, and the
        timers it planned for itself are dropped (a resumed step plans its own again)."""
        if step.timers:
            it.batch.drop_events.extend(sorted(step.timers - {step.handling}))
            step.timers.clear()
        if not step.waiting_events:
            return
        for event_id in sorted(step.waiting_events):
            it.batch.drop_events.append(event_id)
            why = (
                f"step {step.id} of plan {runtime.plan_id} finished ({step.state}) before "
                "it handled this event"
            )
            self.resolve_event(it, event_id, EventRejected(why))
        step.waiting_events.clear()

    def resolve_event(self, it: Iteration, event_id: int, error: BaseException | None) -> None:
        future = self.event_futures.pop(event_id, None)
        if future is None:
            # handled before its sender's message arrived (the row was seen first): keep the
            # verdict for event_sent; bounded, as events from other processes have no sender
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

        it.later(resolve)

    def register_sender(self, row: EventRow, future: Future[Any]) -> Callable[[], None]:
        """After the commit of an event a step sent: its sender's future follows it here."""

        def register() -> None:
            assert row.id is not None
            if row.plan_id in self.plans:
                self.event_futures[row.id] = future
            elif not future.done():
                future.set_result(None)

        return register

    def suspend_callback(
        self, plan_id: str, step_id: int, callback: Callable[[SuspendedHandle], Any]
    ) -> Callable[[], None]:
        """Call a suspend callback once the suspension is committed; if it raises, the step
        errors."""
        world, inbox = self.services.world, self.inbox

        def call() -> None:
            try:
                callback(SuspendedHandle(world, plan_id, step_id))
            except BaseException as exc:
                log.exception("suspend callback of step %s of plan %s failed", step_id, plan_id)
                inbox.put(FailSuspended(plan_id, step_id, error_of(exc)))
                self.check_events = True

        return call
