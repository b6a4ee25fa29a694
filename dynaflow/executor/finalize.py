"""The finalize phase of one plan, run by a worker: every finalize step not yet successful, in
planning order, inside one transaction (through the ``finalize_phase`` middleware chain). An
error rolls the whole transaction back; the error is then recorded in a new one and the plan
is paused."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification
from dynaflow.execution_plan import StepError
from dynaflow.executor.runtime import PlanRuntime, StepRuntime
from dynaflow.executor.steps import build_action, error_of
from dynaflow.persistence.base import Batch, Claim, HistoryRow, PlanUpdate, StepUpdate
from dynaflow.phases import PhaseContext
from dynaflow.states import PlanResult, PlanState, StepState, plan_result

if TYPE_CHECKING:
    from dynaflow.world import World

log = logging.getLogger("dynaflow.executor")

CLAIMABLE = frozenset({StepState.PENDING, StepState.ERROR})


def finalize_task(world: World, runtime: PlanRuntime) -> tuple[Any, ...]:
    """Run every finalize step not yet successful, in planning order, in one transaction (through
    the finalize_phase middleware chain); on error record it in a new transaction and pause."""
    storage = world.storage
    plan_id = runtime.plan_id
    pending = [
        sid
        for sid in runtime.finalize_order
        if runtime.steps[sid].state not in (StepState.SUCCESS, StepState.SKIPPED)
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
            runtime,
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
        runtime,
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
                {"state": PlanState.PAUSED, "result": PlanResult.ERROR},
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
