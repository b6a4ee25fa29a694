"""The finalize phase of one plan, run by a worker: every finalize step not yet successful, in
planning order, inside one transaction (through the ``finalize_phase`` middleware chain). An
error rolls the whole transaction back; the error is then recorded in a new one and the plan
is paused."""

from __future__ import annotations

import logging

from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification
from dynaflow.execution_plan import StepError
from dynaflow.executor.base import CLAIMABLE
from dynaflow.executor.messages import Finalized, FinalizeResult
from dynaflow.executor.steps import error_of
from dynaflow.phases import PhaseContext
from dynaflow.rebuild import build_action
from dynaflow.runtime import PlanRuntime
from dynaflow.services import Services
from dynaflow.states import DONE_STEP_STATES, PlanResult, PlanState, StepState, plan_result
from dynaflow.transitions import Changes, DetachedStep

log = logging.getLogger("dynaflow.executor")

S = StepState


def finalize_task(services: Services, runtime: PlanRuntime) -> Finalized:
    """Run the finalize phase; report the plan's and the finalize steps' new states."""
    storage = services.storage
    plan_id = runtime.plan_id
    pending = [
        DetachedStep.of(runtime.steps[sid])
        for sid in runtime.finalize_order
        if runtime.steps[sid].state not in DONE_STEP_STATES
    ]
    changes = Changes(services.world, services.id, fenced=True)
    current: list[DetachedStep] = []

    def core(context: PhaseContext) -> None:
        for step in pending:
            started = now()
            changes.claim(plan_id, [step], CLAIMABLE, started)
            if not changes.write(storage).claimed:
                raise ConcurrentModification(
                    f"finalize step {step.id} of plan {plan_id} was changed by another world"
                )
            changes.running(plan_id, step)
            current[:] = [step]
            action = build_action(services, runtime, runtime.steps[step.id].action_id, step.id)
            services.chains.action(type(action), "finalize")(action)
            ended = now()
            duration = (ended - started).total_seconds()
            changes.step(plan_id, step, S.SUCCESS, ended, {"ended_at": ended, "duration": duration})
            changes.write(storage)
            current.clear()
        ended = now()
        changes.plan(
            plan_id,
            PlanState.RUNNING,
            PlanState.STOPPED,
            ended,
            {"ended_at": ended},
            result=plan_result(_states(runtime, pending)),
            parent=runtime.parent,
        )
        changes.write(storage)

    context = PhaseContext(services.world, plan_id, "finalize", storage)
    try:
        services.chains.phase("finalize_phase", core)(context)
    except BaseException as exc:  # user code: SystemExit in a finalizer is an error too
        if _lost(services, plan_id):  # fenced out: another world took the plan over
            lost = FinalizeResult(PlanState.RUNNING, PlanResult.PENDING, (), lost=True)
            return Finalized(plan_id, lost, runtime)
        failed = current[0] if current else None
        steps: tuple[tuple[int, StepState], ...] = ()
        result = plan_result([*(s.state for s in runtime.run_steps()), S.ERROR])
        try:
            steps = _record_failure(services, runtime, failed, error_of(exc))
        except Exception:
            log.exception("could not record the finalize failure of plan %s", plan_id)
        else:
            if failed is not None:
                log.info("step %s of plan %s failed: %s", failed.id, plan_id, exc)
            log.info("plan %s paused (%s) in world %s", plan_id, result, services.id)
        return Finalized(plan_id, FinalizeResult(PlanState.PAUSED, result, steps), runtime)
    changes.committed()
    states = tuple((step.id, step.state) for step in pending)
    result = plan_result(_states(runtime, pending))
    log.info("plan %s stopped (%s) in world %s", plan_id, result, services.id)
    return Finalized(plan_id, FinalizeResult(PlanState.STOPPED, result, states), runtime)


def _lost(services: Services, plan_id: str) -> bool:
    try:
        return services.storage.get_plan_record(plan_id).world_id != services.id
    except Exception:  # the database is away: not known to be lost; the failure is recorded
        return False


def _states(runtime: PlanRuntime, finalized: list[DetachedStep]) -> list[StepState]:
    """The plan's step states once ``finalized`` have their new states."""
    new = {step.id: step.state for step in finalized}
    return [new.get(sid, s.state) for sid, s in runtime.steps.items() if not s.barrier]


def _record_failure(
    services: Services, runtime: PlanRuntime, failed: DetachedStep | None, error: StepError
) -> tuple[tuple[int, StepState], ...]:
    """In a new transaction: the failed step (rolled back to where it was) errors, the plan
    pauses. Returns the failed step's new state."""
    storage, plan_id, at = services.storage, runtime.plan_id, now()
    changes = Changes(services.world, services.id, fenced=True)
    with storage.transaction():
        if failed is not None:
            failed.state = runtime.steps[failed.id].state
            changes.claim(plan_id, [failed], CLAIMABLE, at)
            changes.write(storage)
            changes.running(plan_id, failed)
            changes.step(
                plan_id,
                failed,
                S.ERROR,
                at,
                {"ended_at": at, "error": error.to_json()},
                {"error": error.to_json()},
            )
        changes.plan(
            plan_id,
            PlanState.RUNNING,
            PlanState.PAUSED,
            at,
            result=PlanResult.ERROR,
            parent=runtime.parent,
        )
        changes.write(storage)
    changes.committed()
    return ((failed.id, S.ERROR),) if failed is not None else ()
