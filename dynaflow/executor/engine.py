"""The scheduler core shared by the threaded and the inline executor.

One thread (the scheduler) owns the runtimes of executing plans. Workers run user code and
report outcomes to the scheduler's inbox; each scheduler iteration turns every outcome it has
into one :class:`~dynaflow.persistence.Batch` — step states, outputs, history and the claims of
the steps that became ready — and commits it in one transaction (group commit). Claimed steps
are dispatched only after that commit, and entering ``running`` is a compare-and-set, so a step
never runs twice at once.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dynaflow import signals
from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification, InvalidState, UnknownPlan
from dynaflow.execution_plan import StepError
from dynaflow.executor.runtime import PlanRuntime, StepRuntime
from dynaflow.executor.steps import StepOutcome, build_action, error_of, run_step
from dynaflow.persistence.base import Batch, Claim, HistoryRow, PlanUpdate, StepUpdate
from dynaflow.phases import PhaseContext
from dynaflow.states import DONE_STEP_STATES, PlanState, StepState, plan_result

if TYPE_CHECKING:
    from dynaflow.executor.futures import PlanFuture
    from dynaflow.world import World

log = logging.getLogger("dynaflow.executor")

CLAIMABLE = frozenset({StepState.PENDING, StepState.ERROR})
EXECUTABLE = frozenset({PlanState.PLANNED, PlanState.PAUSED})
Task = Callable[[], Any]


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

    # -- called from any thread ------------------------------------------------------------

    def execute(self, plan_id: str, future: PlanFuture) -> None:
        self.inbox.put(("execute", plan_id, future))

    # -- scheduler thread ------------------------------------------------------------------

    def drain(self) -> list[tuple[Any, ...]]:
        messages = []
        while True:
            try:
                messages.append(self.inbox.get_nowait())
            except queue.Empty:
                return messages

    def process(self, messages: list[tuple[Any, ...]]) -> None:
        """One iteration: apply ``messages``, commit one batch, dispatch what became ready."""
        batch = Batch()
        after: list[Callable[[], None]] = []
        touched: dict[str, PlanRuntime] = {}
        for message in messages:
            kind = message[0]
            if kind == "execute":
                self._start(message[1], message[2], touched)
            elif kind == "done":
                self._step_done(message[1], batch, after, touched)
            elif kind == "finalized":
                self._finalized(message[1], message[2], after)
            elif kind == "call":
                message[1]()
        claims: list[tuple[PlanRuntime, list[int]]] = []
        for runtime in touched.values():
            if runtime.plan_id in self.plans:
                self._advance(runtime, batch, after, claims)
        if batch:
            result = self.storage.write(batch)
            for conflict in result.step_conflicts:
                log.warning("lost a step update (another world changed it first): %s", conflict)
            for runtime, ids in claims:
                self._dispatch_claimed(runtime, ids, result.claimed, after)
        for callback in after:
            callback()

    def _start(self, plan_id: str, future: PlanFuture, touched: dict[str, PlanRuntime]) -> None:
        runtime = self.plans.get(plan_id)
        if runtime is not None:  # already executing here: wait for the same end
            runtime.futures.append(future)
            return
        try:
            plan = self.storage.load_plan(plan_id)
            if plan.state not in EXECUTABLE:
                raise InvalidState(
                    f"plan {plan_id} is {plan.state}; only planned or paused plans can be "
                    "executed (a stopped plan is finished, a running one is already executing)"
                )
            runtime = PlanRuntime(plan)
            at = now()
            fields: dict[str, Any] = {"state": PlanState.RUNNING, "world_id": self.world.id}
            if plan.started_at is None:
                fields["started_at"] = at
            with self.storage.transaction():
                if not self.storage.update_plan(plan_id, fields, EXECUTABLE):
                    raise ConcurrentModification(
                        f"plan {plan_id} was started by another world first; wait for it with "
                        "world.get_plan()"
                    )
                self.storage.add_history(
                    [HistoryRow(plan_id, at, "plan running", world_id=self.world.id)]
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
        touched[plan_id] = runtime
        signals.emit(
            signals.plan_state_changed,
            self.world,
            plan_id=plan_id,
            state=PlanState.RUNNING,
            result=plan.result,
        )

    def _step_done(
        self,
        outcome: StepOutcome,
        batch: Batch,
        after: list[Callable[[], None]],
        touched: dict[str, PlanRuntime],
    ) -> None:
        self.busy -= 1
        runtime = self.plans.get(outcome.plan_id)
        if runtime is None:
            log.warning("outcome for a plan this world no longer runs: %s", outcome)
            return
        step = runtime.steps[outcome.step_id]
        step.busy = False
        runtime.busy -= 1
        fields: dict[str, Any] = {"ended_at": outcome.ended_at}
        if outcome.started_at is not None:
            fields["duration"] = (outcome.ended_at - outcome.started_at).total_seconds()
        if outcome.error is None:
            state = StepState.SUCCESS
            detail = None
            if outcome.output is not None:
                runtime.actions[outcome.action_id].output = outcome.output
                batch.outputs.append((outcome.plan_id, outcome.action_id, outcome.output))
            runtime.completed(step.id)
        else:
            state = StepState.ERROR
            fields["error"] = detail = outcome.error.to_json()
        batch.steps.append(
            StepUpdate(outcome.plan_id, outcome.step_id, StepState.RUNNING, state, fields)
        )
        batch.history.append(
            HistoryRow(
                outcome.plan_id,
                outcome.ended_at,
                f"step {state}",
                outcome.step_id,
                self.world.id,
                {"error": detail} if detail else None,
            )
        )
        step.state = state
        touched[outcome.plan_id] = runtime
        self._signal_step(after, runtime, step)

    def _advance(
        self,
        runtime: PlanRuntime,
        batch: Batch,
        after: list[Callable[[], None]],
        claims: list[tuple[PlanRuntime, list[int]]],
    ) -> None:
        if runtime.ready and not runtime.draining and not self.stopping:
            ids = sorted(runtime.ready)
            runtime.ready.clear()
            batch.claims.append(Claim(runtime.plan_id, ids, CLAIMABLE, self.world.id, now()))
            for step_id in ids:
                runtime.steps[step_id].busy = True
            runtime.busy += len(ids)
            self.busy += len(ids)
            claims.append((runtime, ids))
        elif runtime.busy == 0 and not runtime.finalizing:
            self._conclude(runtime, batch, after)

    def _dispatch_claimed(
        self,
        runtime: PlanRuntime,
        ids: list[int],
        claimed: set[tuple[str, int]],
        after: list[Callable[[], None]],
    ) -> None:
        for step_id in ids:
            step = runtime.steps[step_id]
            if (runtime.plan_id, step_id) not in claimed:
                log.warning(
                    "step %s of plan %s was not claimable (changed elsewhere)",
                    step_id,
                    runtime.plan_id,
                )
                step.busy = False
                runtime.busy -= 1
                self.busy -= 1
                continue
            step.state = StepState.RUNNING
            step.started_at = now()
            self._signal_step(after, runtime, step)
            self.dispatch(_run_task(self.world, runtime, step))

    def _conclude(
        self, runtime: PlanRuntime, batch: Batch, after: list[Callable[[], None]]
    ) -> None:
        """Nothing runs and nothing is ready: finalize, stop or pause the plan."""
        plan_id = runtime.plan_id
        run_steps = runtime.run_steps()
        if all(step.state in DONE_STEP_STATES for step in run_steps):
            pending = [
                sid
                for sid in runtime.finalize_order
                if runtime.steps[sid].state != StepState.SUCCESS
            ]
            if pending and not runtime.draining and not self.stopping:
                runtime.finalizing = True
                runtime.busy += 1
                self.busy += 1
                after.append(lambda: self.dispatch(lambda: _finalize_task(self.world, runtime)))
                return
            if not pending:
                state = PlanState.STOPPED
                result = plan_result(runtime.step_states())
            else:
                state, result = PlanState.PAUSED, plan_result([s.state for s in run_steps])
        else:
            state = PlanState.PAUSED
            result = plan_result([step.state for step in run_steps])
        at = now()
        fields: dict[str, Any] = {"state": state, "result": result}
        if state == PlanState.STOPPED:
            fields["ended_at"] = at
        batch.plans.append(PlanUpdate(plan_id, frozenset({PlanState.RUNNING}), fields))
        batch.history.append(HistoryRow(plan_id, at, f"plan {state}", world_id=self.world.id))
        self._end(runtime, state, result, after)

    def _finalized(
        self,
        plan_id: str,
        outcome: tuple[PlanState, Any, list[tuple[int, StepState]]],
        after: list[Callable[[], None]],
    ) -> None:
        self.busy -= 1
        runtime = self.plans.get(plan_id)
        if runtime is None:
            return
        runtime.busy -= 1
        runtime.finalizing = False
        state, result, changes = outcome
        for step_id, step_state in changes:
            step = runtime.steps[step_id]
            step.state = step_state
            self._signal_step(after, runtime, step)
        self._end(runtime, state, result, after)

    def _end(
        self, runtime: PlanRuntime, state: PlanState, result: Any, after: list[Callable[[], None]]
    ) -> None:
        del self.plans[runtime.plan_id]

        def finish() -> None:
            signals.emit(
                signals.plan_state_changed,
                self.world,
                plan_id=runtime.plan_id,
                state=state,
                result=result,
            )
            for future in runtime.futures:
                if not future.done():
                    future.set_result(runtime.plan_id)

        after.append(finish)

    def _signal_step(
        self, after: list[Callable[[], None]], runtime: PlanRuntime, step: StepRuntime
    ) -> None:
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

    def pause_idle_plans(self) -> None:
        """On shutdown: plans with nothing running are paused (resume them later); plans whose
        steps still run stay ``running`` for crash recovery to take over."""
        self.stopping = True
        batch = Batch()
        after: list[Callable[[], None]] = []
        for runtime in list(self.plans.values()):
            if runtime.busy:
                continue
            at = now()
            result = plan_result([s.state for s in runtime.run_steps()])
            batch.plans.append(
                PlanUpdate(
                    runtime.plan_id,
                    frozenset({PlanState.RUNNING}),
                    {"state": PlanState.PAUSED, "result": result},
                )
            )
            batch.history.append(
                HistoryRow(
                    runtime.plan_id,
                    at,
                    "plan paused",
                    world_id=self.world.id,
                    detail={"reason": "world shut down"},
                )
            )
            self._end(runtime, PlanState.PAUSED, result, after)
        if batch:
            self.storage.write(batch)
        for callback in after:
            callback()

    def fail_all(self, exc: BaseException) -> None:
        """The scheduler cannot go on (the database failed): end every waiting future."""
        for runtime in list(self.plans.values()):
            for future in runtime.futures:
                if not future.done():
                    future.set_exception(exc)
        self.plans.clear()


def _run_task(world: World, runtime: PlanRuntime, step: StepRuntime) -> Task:
    step_id, action_id = step.id, step.action_id

    def task() -> tuple[Any, ...]:
        return ("done", run_step(world, runtime, step_id, action_id))

    return task


def _finalize_task(world: World, runtime: PlanRuntime) -> tuple[Any, ...]:
    """Run every finalize step not yet successful, in planning order, in one transaction (through
    the finalize_phase middleware chain); on error record it in a new transaction and pause."""
    storage = world.storage
    plan_id = runtime.plan_id
    pending = [
        sid for sid in runtime.finalize_order if runtime.steps[sid].state != StepState.SUCCESS
    ]
    current: list[int] = []

    def core(context: PhaseContext) -> None:
        for step_id in pending:
            step = runtime.steps[step_id]
            started = now()
            result = storage.write(
                Batch(claims=[Claim(plan_id, [step_id], CLAIMABLE, world.id, started)])
            )
            if not result.claimed:
                raise ConcurrentModification(
                    f"finalize step {step_id} of plan {plan_id} was changed by another world"
                )
            current[:] = [step_id]
            action = build_action(world, runtime, step.action_id, step_id)
            world.chain(type(action), "finalize")(action)
            ended = now()
            storage.write(
                Batch(
                    steps=[
                        StepUpdate(
                            plan_id,
                            step_id,
                            StepState.RUNNING,
                            StepState.SUCCESS,
                            {"ended_at": ended, "duration": (ended - started).total_seconds()},
                        )
                    ],
                    history=[HistoryRow(plan_id, ended, "step success", step_id, world.id)],
                )
            )
            current.clear()
        states = [StepState.SUCCESS if sid in pending else s.state for sid, s in _real(runtime)]
        ended = now()
        storage.write(
            Batch(
                plans=[
                    PlanUpdate(
                        plan_id,
                        frozenset({PlanState.RUNNING}),
                        {
                            "state": PlanState.STOPPED,
                            "result": plan_result(states),
                            "ended_at": ended,
                        },
                    )
                ],
                history=[HistoryRow(plan_id, ended, "plan stopped", world_id=world.id)],
            )
        )

    context = PhaseContext(world, plan_id, "finalize")
    try:
        world.phase_chain("finalize_phase", core)(context)
    except BaseException as exc:  # user code: SystemExit in a finalizer is an error too
        error = error_of(exc)
        failed = current[0] if current else None
        try:
            _record_finalize_failure(world, runtime, failed, error)
        except Exception:
            log.exception("could not record the finalize failure of plan %s", plan_id)
        changes = [(failed, StepState.RUNNING), (failed, StepState.ERROR)] if failed else []
        run_states = [s.state for s in runtime.run_steps()]
        return (
            "finalized",
            plan_id,
            (PlanState.PAUSED, plan_result([*run_states, StepState.ERROR]), changes),
        )
    states = [StepState.SUCCESS if sid in pending else s.state for sid, s in _real(runtime)]
    return (
        "finalized",
        plan_id,
        (
            PlanState.STOPPED,
            plan_result(states),
            [(sid, state) for sid in pending for state in (StepState.RUNNING, StepState.SUCCESS)],
        ),
    )


def _real(runtime: PlanRuntime) -> list[tuple[int, StepRuntime]]:
    return [(sid, s) for sid, s in runtime.steps.items() if not s.barrier]


def _record_finalize_failure(
    world: World, runtime: PlanRuntime, step_id: int | None, error: StepError
) -> None:
    storage = world.storage
    plan_id = runtime.plan_id
    at = now()
    batch = Batch(
        plans=[
            PlanUpdate(
                plan_id,
                frozenset({PlanState.RUNNING}),
                {"state": PlanState.PAUSED, "result": "error"},
            )
        ],
        history=[HistoryRow(plan_id, at, "plan paused", world_id=world.id)],
    )
    with storage.transaction():
        if step_id is not None:
            # the rolled-back transaction took the step back to where it was: record the attempt
            storage.write(Batch(claims=[Claim(plan_id, [step_id], CLAIMABLE, world.id, at)]))
            batch.steps.append(
                StepUpdate(
                    plan_id,
                    step_id,
                    StepState.RUNNING,
                    StepState.ERROR,
                    {"ended_at": at, "error": error.to_json()},
                )
            )
            batch.history.insert(
                0,
                HistoryRow(
                    plan_id, at, "step error", step_id, world.id, {"error": error.to_json()}
                ),
            )
        storage.write(batch)
