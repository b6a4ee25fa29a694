"""Scheduling: claim the steps that became ready, dispatch the claimed ones to workers."""

from __future__ import annotations

import logging
from typing import Any

from dynaflow.clock import now
from dynaflow.executor.base import CLAIMABLE, SUSPENDED, EngineBase, Iteration
from dynaflow.executor.messages import StepDone
from dynaflow.executor.steps import NO_EVENT, run_step
from dynaflow.runtime import Cancel, PlanRuntime, StepRuntime
from dynaflow.states import StepState

log = logging.getLogger("dynaflow.executor")
S = StepState


class Scheduling(EngineBase):
    def advance(self, runtime: PlanRuntime, it: Iteration) -> None:
        """Claim what is ready (or tell Cancellable steps of a cancelled plan); when nothing
        runs, conclude."""
        if runtime.halted:
            if runtime.busy == 0:  # its last step's outcome is in this batch: resolve after it
                self.plans.pop(runtime.plan_id, None)
                self.end(runtime, it, keep=True)
            return
        if runtime.cancelling:
            for step in runtime.steps.values():
                if step.cancel is Cancel.DUE and step.state == S.SUSPENDED and not step.busy:
                    step.cancel = Cancel.SENT
                    self.wake(runtime, step, None, None, True, it)
        elif runtime.ready and not self.stopping:
            ids = sorted(runtime.ready)
            runtime.ready.clear()
            steps = [runtime.steps[step_id] for step_id in ids]
            if self.elsewhere:  # other worlds serve these queues: spread the steps
                steps = self.spread(runtime, steps, it)
                ids = [step.id for step in steps]
                if not steps:
                    return
            limited = self.limited
            if limited and any(step.queue in limited for step in steps):
                by_queue: dict[str | None, list[StepRuntime]] = {}
                for step in steps:
                    key = step.queue if step.queue in limited else None
                    by_queue.setdefault(key, []).append(step)
                for queue, group in by_queue.items():
                    it.changes.claim(runtime.plan_id, list(group), CLAIMABLE, now(), queue)
            else:
                it.changes.claim(runtime.plan_id, list(steps), CLAIMABLE, now())
            for step in steps:
                step.busy = True
            runtime.busy += len(ids)
            self.counted(it, len(ids))
            it.claims.append((runtime, ids))
            return
        if runtime.busy == 0 and not runtime.finalizing:
            self.conclude(runtime, it)

    def wake(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        payload: Any,
        event_id: int | None,
        cancel: bool,
        it: Iteration,
    ) -> None:
        """Claim a suspended step to run it again: with an event, a retry, or its cancel()."""
        step.busy = True
        step.handling = event_id
        step.waiting_events.discard(event_id or 0)
        runtime.busy += 1
        self.counted(it, 1)
        it.changes.claim(runtime.plan_id, [step], SUSPENDED, now())
        it.wakes[(runtime.plan_id, step.id)] = (runtime, payload, event_id, cancel)
        it.touched[runtime.plan_id] = runtime

    def dispatch_claimed(
        self,
        it: Iteration,
        claimed: set[tuple[str, int]],
        deferred: set[tuple[str, int]] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """After the commit: hand the steps whose claim held to workers; those their queue
        had no room for wait until it has."""
        for runtime, ids in it.claims:
            for step_id in ids:
                step = runtime.steps[step_id]
                self.uncounted(it)
                key = (runtime.plan_id, step_id)
                offered = key in it.offered
                if key in claimed:
                    if offered:  # another world runs it: its answer comes back as RemoteDone
                        self.remote[key] = runtime
                        it.changes.running(runtime.plan_id, step)
                        step.started_at = now()
                    else:
                        self._run(runtime, step, it, NO_EVENT, None, False)
                    continue
                if offered:
                    self.remote_busy[step.queue] = max(0, self.remote_busy.get(step.queue, 1) - 1)
                else:
                    self.local_busy[step.queue] = max(0, self.local_busy.get(step.queue, 1) - 1)
                if deferred and key in deferred:
                    self._no_room(runtime, step)
                else:
                    self._unclaimed(runtime, step)
        for (plan_id, step_id), (runtime, payload, event_id, cancel) in it.wakes.items():
            step = runtime.steps[step_id]
            self.uncounted(it)
            if (plan_id, step_id) in claimed:
                self._run(runtime, step, it, payload, event_id, cancel)
            else:
                self._unclaimed(runtime, step)

    def _run(
        self,
        runtime: PlanRuntime,
        step: StepRuntime,
        it: Iteration,
        event: Any,
        event_id: int | None,
        cancel: bool,
    ) -> None:
        it.changes.running(runtime.plan_id, step)
        step.started_at = now()
        services, step_id, action_id = self.services, step.id, step.action_id

        def task() -> StepDone:
            outcome = run_step(services, runtime, step_id, action_id, event, event_id, cancel)
            return StepDone(outcome, runtime)

        task.queue = step.queue  # type: ignore[attr-defined]
        self.dispatch(task)

    def _no_room(self, runtime: PlanRuntime, step: StepRuntime) -> None:
        """The step's queue is at its limit: it stays ready, and is claimed again once a step
        of that queue ends (here, or in another world: notified, or seen on the next tick)."""
        step.busy = False
        runtime.busy -= 1
        self.busy -= 1
        runtime.ready.add(step.id)
        self.waiting_room.setdefault(step.queue, set()).add(runtime.plan_id)

    def room_freed(self, queue: str | None, it: Iteration) -> None:
        """Steps of ``queue`` (``None``: of any) may have room now: touch the plans waiting."""
        queues = list(self.waiting_room) if queue is None else [queue]
        for name in queues:
            for plan_id in self.waiting_room.pop(name, ()):
                runtime = self.plans.get(plan_id)
                if runtime is not None:
                    it.touched[plan_id] = runtime

    def _unclaimed(self, runtime: PlanRuntime, step: StepRuntime) -> None:
        log.warning(
            "step %s of plan %s was not claimable (changed elsewhere)", step.id, runtime.plan_id
        )
        step.busy = False
        step.handling = None
        step.batch = ()
        runtime.busy -= 1
        self.busy -= 1
        self.stale.add(runtime.plan_id)  # read it again next iteration, and go on from there
