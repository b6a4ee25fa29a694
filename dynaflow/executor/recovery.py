"""Starting and recovering plans: execute a planned or paused plan, take over one a world left
running (its interrupted steps re-run or error), release plans at shutdown."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from typing import Any

from dynaflow import registry, signals
from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification, InvalidState, UnknownPlan
from dynaflow.execution_plan import StepError
from dynaflow.executor.base import EXECUTABLE, EngineBase, Iteration
from dynaflow.executor.messages import Execute, Message, RetryStep, Takeover, error_json
from dynaflow.runtime import PlanRuntime
from dynaflow.states import (
    DONE_STEP_STATES,
    FINISHED_STEP_STATES,
    PlanResult,
    PlanState,
    StepState,
)
from dynaflow.transitions import Changes

log = logging.getLogger("dynaflow.executor")
S = StepState


class Recovery(EngineBase):
    def claim_together(self, messages: list[Message], it: Iteration) -> list[Message]:
        """Several plans to start at once (a batch of requests): claim them in one
        transaction, a savepoint each (one commit, not one per plan). Returns the messages with
        those first; :meth:`start` takes their claims from :attr:`claimed`."""
        if sum(1 for m in messages if isinstance(m, Execute)) < 2:  # the usual iteration
            return messages
        named = Counter(getattr(m, "plan_id", None) for m in messages)
        together = [
            m
            for m in messages
            if isinstance(m, Execute)
            and m.takeover is None
            and named[m.plan_id] == 1  # nothing else in this batch about the plan
            and m.plan_id not in self.plans
        ]
        if len(together) < 2:
            return messages
        missing = [m.plan_id for m in together if m.plan is None]
        loaded = self.storage.load_plans(missing) if missing else {}
        claims: dict[int, PlanRuntime | BaseException] = {}
        plans = {id(m): m.plan or loaded.get(m.plan_id) for m in together}
        # only plans that can start: any other goes its own way (and says why)
        together = [m for m in together if (p := plans[id(m)]) is None or p.state in EXECUTABLE]
        if len(together) < 2:
            return messages
        shared = Changes(self.services.world, self.world_id)
        try:
            with self.storage.transaction():
                answered: list[int] = []  # the requests claimed plans answer: deleted at once
                for message in together:
                    plan = plans[id(message)]
                    if plan is None:
                        claims[id(message)] = UnknownPlan(message.plan_id)
                        continue
                    if message.request is not None:
                        answered.append(message.request)
                    claims[id(message)] = self._claim_plan(
                        message.plan_id, replace(message, plan=plan, request=None), it, shared
                    )
                self.storage.delete_requests(answered)
                written = shared.write(self.storage)
                if written.plan_conflicts or written.step_conflicts:
                    raise ConcurrentModification("another world started one of them first")
        except (ConcurrentModification, InvalidState, UnknownPlan):
            # another world was first for one of them: none is claimed here, and each is
            # claimed on its own (one write for all of them, no savepoint per plan)
            return messages
        it.changes.after.extend(shared.after)
        # committed: the plans claimed are this world's (kept if the iteration fails later)
        for message in together:
            claim = claims[id(message)]
            if isinstance(claim, PlanRuntime):
                self.plans[message.plan_id] = claim
        self.claimed.update(claims)
        first = set(map(id, together))
        return together + [m for m in messages if id(m) not in first]

    def start(self, message: Execute, it: Iteration) -> None:
        """Run a planned or paused plan (``only``: of its failed steps, re-run just this one),
        or take over a running one (``takeover``)."""
        plan_id, future = message.plan_id, message.future
        claim = self.claimed.pop(id(message), None)
        if claim is None:
            runtime = self.plans.get(plan_id)
            if runtime is not None:  # already executing (or a halted one finishing a step)
                self.answer(message.request, None)  # a second execute request: it follows this
                runtime.futures.append(future)
                return
            try:
                claim = self._claim_plan(plan_id, message, it)
            except (ConcurrentModification, InvalidState, UnknownPlan) as exc:
                claim = exc
        if isinstance(claim, BaseException):
            self.answer(message.request, claim)
            if message.follow_if_taken and not isinstance(claim, UnknownPlan):
                self.follow(plan_id, future)  # another world started it first
            else:
                future.set_exception(claim)
            return
        runtime = claim
        log.info(
            "plan %s %s in world %s",
            plan_id,
            "taken over" if message.takeover else "started",
            self.world_id,
        )
        runtime.futures.append(future)
        self.plans[plan_id] = runtime
        it.touched[plan_id] = runtime
        for step_id, queue in runtime.adopted.items():  # taken over while another world ran it
            step = runtime.steps[step_id]
            step.busy = True
            runtime.busy += 1
            self.busy += 1
            self.remote_busy[queue] = self.remote_busy.get(queue, 0) + 1
            self.remote[(plan_id, step_id)] = runtime
        runtime.adopted.clear()
        if any(s.state == S.SUSPENDED for s in runtime.steps.values()):
            self.check_events = True
            self.next_due = _earliest(self.next_due, self.storage.next_due(self.world_id))
            for row in self.storage.plan_events(plan_id):
                if row.due_at is not None and row.step_id in runtime.steps and row.id is not None:
                    runtime.steps[row.step_id].timers.add(row.id)

    def answer(self, request: int | None, error: BaseException | None) -> None:
        """Answer a request from another process (if there is one)."""
        if request is not None:
            self.storage.answer_request(request, error_json(error))

    def _claim_plan(
        self, plan_id: str, message: Execute, it: Iteration, shared: Changes | None = None
    ) -> PlanRuntime:
        """Make this world the plan's owner, in its own transaction (which also deletes the
        request it answers); its signal goes out with the iteration's. With ``shared`` (not
        for a takeover) the changes only go there: the caller writes them, with others."""
        takeover, only = message.takeover, message.only
        plan = message.plan
        if plan is None:
            plan = self.storage.load_plan(plan_id, history=False)
        at = now()
        changes = shared if shared is not None else Changes(self.services.world, self.world_id)
        rerun: Collection[int] | None = None if only is None else (only,)
        failed: list[tuple[int, str]] = []
        if takeover is not None:
            if plan.state != PlanState.RUNNING:
                raise InvalidState(
                    f"plan {plan_id} is {plan.state}; only a running plan is taken over"
                )
            runtime = PlanRuntime(plan, rerun=())
            changes.plan_fields(
                plan_id,
                PlanState.RUNNING,
                {"world_id": self.world_id},
                owner=takeover.from_world,
                history="plan running",
                at=at,
                detail={"from": takeover.from_world},
            )
            changes.signal_plan(plan_id, PlanState.RUNNING, plan.result)
            if signals.plan_taken_over.receivers:
                changes.later(
                    _taken_over(self.services.world, plan_id, takeover.from_world), plan_id
                )
        elif plan.state in EXECUTABLE:
            runtime = PlanRuntime(plan, rerun)
            fields: dict[str, Any] = {"world_id": self.world_id}
            if plan.started_at is None:
                fields["started_at"] = at
            changes.plan(
                plan_id, plan.state, PlanState.RUNNING, at, fields, result=PlanResult.PENDING
            )
        else:
            raise InvalidState(
                f"plan {plan_id} is {plan.state}; only planned or paused plans can be "
                "executed (a stopped plan is finished, a running one is already executing)"
            )
        if shared is not None:
            assert takeover is None and message.request is None
            return runtime
        with self.storage.transaction():
            if message.request is not None:
                self.storage.delete_requests([message.request])
            if takeover is not None:  # with the claim: steps other worlds run stay theirs
                failed = self._recover_interrupted(runtime, takeover, at, changes)
            written = changes.write(self.storage)
            if written.plan_conflicts:
                raise ConcurrentModification(
                    f"plan {plan_id} was started by another world first; wait for it with "
                    "world.get_plan()"
                )
            if written.step_conflicts:
                raise ConcurrentModification(
                    f"steps of plan {plan_id} changed while it was being taken over"
                )
        for step_id, error in failed:
            log.info("step %s of plan %s failed: %s", step_id, plan_id, error)
        it.changes.after.extend(changes.after)
        return runtime

    def _recover_interrupted(
        self, runtime: PlanRuntime, takeover: Takeover, at: datetime, changes: Changes
    ) -> list[tuple[int, str]]:
        """Steps left ``running`` by a world that died: an ``idempotent`` action runs again,
        any other errors with "abnormal termination" (and its rescue strategy applies).
        Returns the steps that errored, with their error message."""
        failed: list[tuple[int, str]] = []
        gone = takeover.from_world
        if gone == self.world_id:
            cause = "its outcome could not be recorded (a scheduler iteration of this world failed)"
        else:
            cause = f"world {gone} stopped while the step ran"
        taken, dropped = self.storage.adopt_runs(runtime.plan_id, self.world_id)
        elsewhere = {int(row.args["step_id"]): row for row in taken}
        never = {int(row.args["step_id"]) for row in dropped}
        for step in runtime.steps.values():
            if step.barrier or step.state != S.RUNNING:
                continue
            row = elsewhere.get(step.id)
            if row is not None:  # another world runs it (or ran it): its answer comes here
                runtime.adopted[step.id] = row.queue or step.queue
                continue
            if step.id in never:  # offered, and nobody took it: it never started
                reason = f"offered by world {gone}, never taken; it runs now"
                changes.step(runtime.plan_id, step, S.PENDING, at, None, {"reason": reason})
                continue
            again = registry.attribute(
                step.action_class, "idempotent", False, "it is not run again (not idempotent)"
            )
            if again:
                reason = f"interrupted: {cause}; idempotent, so it runs again"
                changes.step(runtime.plan_id, step, S.PENDING, at, None, {"reason": reason})
            else:
                error = StepError(
                    "AbnormalTermination",
                    f"abnormal termination: {cause}; it is not marked idempotent, so it is not "
                    "run again on its own",
                ).to_json()
                fields = {"ended_at": at, "error": error}
                changes.step(runtime.plan_id, step, S.ERROR, at, fields, {"error": error})
                failed.append((step.id, error["message"]))
                runtime.blocked.add(step.id)
        runtime.refresh_ready()
        return failed

    def on_retry_step(self, message: RetryStep, it: Iteration) -> None:
        """``World.retry`` of a step of a plan running here: run it again now."""
        plan_id, step_id, future = message.plan_id, message.step_id, message.future
        runtime = self.plans.get(plan_id)
        if runtime is None:  # ended meanwhile: run it as a paused plan
            self.start(Execute(plan_id, future, only=step_id), it)
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

    def resync(self, it: Iteration) -> None:
        """Plans whose steps another world changed under this one (an operator's skip in
        another process, say): take the steps' states from the database and go on from there;
        a plan this world no longer owns is dropped here, its futures following it elsewhere."""
        stale, self.stale = self.stale, set()
        for plan_id in sorted(stale):
            runtime = self.plans.get(plan_id)
            if runtime is None:
                continue
            plan = self.storage.load_plan(plan_id, history=False)
            if plan.state != PlanState.RUNNING or plan.record.world_id != self.world_id:
                log.warning("plan %s is no longer run by this world; following it", plan_id)
                del self.plans[plan_id]
                for future in runtime.futures:
                    self.follow(plan_id, future)
                continue
            for record in plan.steps:
                step = runtime.steps.get(record.id)
                if step is None or step.busy or step.state == record.state:
                    continue
                log.warning(
                    "step %s of plan %s was changed by another world: %s, not %s",
                    record.id,
                    plan_id,
                    record.state,
                    step.state,
                )
                was_done = step.state in DONE_STEP_STATES
                step.state = StepState(record.state)
                if step.state == StepState.ERROR:
                    runtime.blocked.add(step.id)  # failed elsewhere: left to the rescue
                else:
                    runtime.blocked.discard(step.id)
                if step.state in DONE_STEP_STATES and not was_done:
                    runtime.completed(step.id)
                if step.state in FINISHED_STEP_STATES:
                    self.reject_waiting(runtime, step, it)
            runtime.refresh_ready()
            it.touched[plan_id] = runtime

    def release_plans(self) -> None:
        """On shutdown: plans with nothing running are released (still ``running``, with no
        owner) for the next executor world to adopt; suspended steps keep waiting for their
        persisted events and timers. Plans whose steps still run keep this world as owner, for
        crash recovery to take over."""
        self.stopping = True
        it = self.iteration()
        released = False
        for runtime in list(self.plans.values()):
            if runtime.busy:
                continue
            # only a plan this world still owns: one taken over meanwhile is not ours to touch
            changes = Changes(self.services.world, self.world_id)
            plan_id = runtime.plan_id
            changes.plan_fields(plan_id, PlanState.RUNNING, {"world_id": None}, owner=self.world_id)
            with self.storage.transaction():
                if not changes.write(self.storage).plan_conflicts:
                    reason = {"reason": "world shut down"}
                    changes.note(plan_id, now(), "plan released", detail=reason)
                    changes.write(self.storage)
                    released = True
            self.end(runtime, it)
        self.committed(it, set())
        if released:  # the other executor worlds adopt them at once
            self.storage.notify(["x *"])

    def fail_all(self, exc: BaseException) -> None:
        """The scheduler cannot go on (the database failed): end every waiting future."""
        for runtime in list(self.plans.values()):
            for future in runtime.futures:
                if not future.done():
                    future.set_exception(exc)
        self.plans.clear()


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return min(a, b)


def _taken_over(world: Any, plan_id: str, from_world: str | None) -> Any:
    return lambda: signals.emit(
        signals.plan_taken_over, world, plan_id=plan_id, from_world=from_world
    )
