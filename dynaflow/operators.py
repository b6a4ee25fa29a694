"""Operator actions on plans that no executor is running (planned, paused, or released by a
world that shut down): done directly in the database, in one transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification, InvalidState
from dynaflow.persistence.base import Batch, HistoryRow, PlanUpdate, StepUpdate
from dynaflow.states import PlanState, StepKind, StepState, plan_result

if TYPE_CHECKING:
    from dynaflow.world import World

STOPPABLE = frozenset({StepState.PENDING, StepState.ERROR, StepState.SUSPENDED})


def check_stoppable(world: World, plan_id: str, operation: str) -> None:
    """Raise unless ``operation`` (cancel, halt) makes sense for the plan now."""
    record = world.storage.get_plan_record(plan_id)
    if record.state == PlanState.STOPPED:
        raise InvalidState(
            f"plan {plan_id} is already stopped (result {record.result}); there is nothing to "
            f"{operation}"
        )


def stop_offline(world: World, plan_id: str, operation: str) -> None:
    """Cancel every step that has not finished and stop the plan with result ``cancelled``."""
    storage = world.storage
    plan = storage.load_plan(plan_id)
    check_stoppable(world, plan_id, operation)
    if plan.state == PlanState.RUNNING and plan.record.world_id not in (None, world.id):
        raise InvalidState(
            f"plan {plan_id} is being executed by world {plan.record.world_id}; {operation} it "
            "through a World whose executor runs it"
        )
    at = now()
    batch = Batch()
    states = []
    for step in plan.steps:
        state = step.state
        if step.kind != StepKind.PLAN and state in STOPPABLE:
            batch.steps.append(
                StepUpdate(plan_id, step.id, state, StepState.CANCELLED, {"ended_at": at})
            )
            batch.history.append(HistoryRow(plan_id, at, "step cancelled", step.id, world.id))
            state = StepState.CANCELLED
        if step.kind != StepKind.PLAN:
            states.append(state)
    batch.drop_events = [row.id for row in storage.plan_events(plan_id) if row.id is not None]
    batch.plans.append(
        PlanUpdate(
            plan_id,
            frozenset({plan.state}),
            {"state": PlanState.STOPPED, "result": plan_result(states), "ended_at": at},
            plan.record.world_id,
        )
    )
    batch.history.append(
        HistoryRow(plan_id, at, "plan stopped", world_id=world.id, detail={"reason": operation})
    )
    with storage.transaction():
        result = storage.write(batch)
        if result.plan_conflicts or result.step_conflicts:  # raising rolls everything back
            raise ConcurrentModification(
                f"plan {plan_id} changed while it was being {operation}ed; look at it again "
                "(world.get_plan) and retry"
            )
