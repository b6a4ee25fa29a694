"""Stopping plans run here: cancel (pending steps cancelled, Cancellable steps told, running
ones finish) and halt (stop at once, whatever runs)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from dynaflow import registry
from dynaflow.action import Cancellable
from dynaflow.clock import now
from dynaflow.events import EVENT
from dynaflow.exceptions import EventRejected
from dynaflow.executor.base import EngineBase, Iteration
from dynaflow.executor.messages import Cancel, Halt
from dynaflow.operators.offline import stop_offline
from dynaflow.runtime import Cancel as StepCancel
from dynaflow.runtime import StepRuntime
from dynaflow.states import PlanState, StepKind, StepState, plan_result

S = StepState


class Stopping(EngineBase):
    def on_cancel(self, message: Cancel, it: Iteration) -> None:
        plan_id, future = message.plan_id, message.future
        runtime = self.plans.get(plan_id)
        if runtime is None:  # it ended, or another world runs it: cancel in the database
            self._stop_offline(plan_id, future, "cancel")
            return
        runtime.futures.append(future)
        if runtime.cancelling or runtime.halted:
            return
        runtime.cancelling = True
        runtime.ready.clear()
        at = now()
        for step in runtime.steps.values():
            if step.barrier or step.kind != StepKind.RUN:
                continue
            step.cancel = StepCancel.REQUESTED
            cancellable = self.cancellable(step)
            if step.state == S.SUSPENDED and not step.busy and not cancellable:
                it.changes.step(plan_id, step, S.CANCELLED, at, {"ended_at": at})
                self.reject_waiting(runtime, step, it)
            elif cancellable and step.state in (S.SUSPENDED, S.RUNNING):
                step.cancel, step.abort = StepCancel.DUE, message.abort
        it.changes.note(plan_id, at, "plan cancelling")
        it.touched[plan_id] = runtime

    def on_halt(self, message: Halt, it: Iteration) -> None:
        plan_id, future = message.plan_id, message.future
        runtime = self.plans.get(plan_id)
        if runtime is None:
            self._stop_offline(plan_id, future, "halt")
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
                self.resolve_event(it, row.id, EventRejected(f"plan {plan_id} was halted"))
        for step in runtime.steps.values():
            if step.barrier or step.busy or step.kind == StepKind.PLAN:
                continue
            if step.state in (S.PENDING, S.ERROR, S.SUSPENDED):
                it.changes.step(plan_id, step, S.CANCELLED, at, {"ended_at": at})
                step.waiting_events.clear()
        result = plan_result(runtime.step_states())
        it.changes.plan(
            plan_id,
            PlanState.RUNNING,
            PlanState.STOPPED,
            at,
            {"ended_at": at},
            {"reason": "halted"},
            result=result,
            parent=runtime.parent,
        )
        runtime.futures.append(future)
        self.end(runtime, it, keep=runtime.busy > 0)

    def _stop_offline(self, plan_id: str, future: Future[Any], operation: str) -> None:
        """Cancel or halt a plan no executor runs (planned, paused, or released)."""
        try:
            stop_offline(self.services, plan_id, operation)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(plan_id)

    def cancellable(self, step: StepRuntime) -> bool:
        if step.cancellable is None:
            cls = registry.find(step.action_class, "it is not told of the cancel (not Cancellable)")
            step.cancellable = cls is not None and issubclass(cls, Cancellable)
        return step.cancellable
