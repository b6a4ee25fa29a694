"""Operator actions on plans that no executor is running (planned, paused, or released by a
world that shut down): done directly in the database, in one transaction."""

from __future__ import annotations

from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification, InvalidState
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.membership import alive
from dynaflow.operators.skip import call_on_skip, skip_closure
from dynaflow.persistence.base import HistoryRow
from dynaflow.services import Services
from dynaflow.states import PlanState, StepKind, StepState, plan_result
from dynaflow.transitions import Changes, DetachedStep

#: step states an offline stop cancels (a running step of a dead world runs no more)
STOPPABLE = frozenset({StepState.PENDING, StepState.ERROR, StepState.SUSPENDED, StepState.RUNNING})


def check_stoppable(plan_id: str, state: PlanState, result: object, operation: str) -> None:
    """Raise unless ``operation`` (cancel, halt) makes sense for a plan in ``state``."""
    if state == PlanState.STOPPED:
        raise InvalidState(
            f"plan {plan_id} is already stopped (result {result}); there is nothing to {operation}"
        )


def stop_offline(
    services: Services, plan_id: str, operation: str, note: HistoryRow | None = None
) -> None:
    """Cancel every step that has not finished and stop the plan with result ``cancelled``;
    ``note`` (the operator's history row) is written first, in the same transaction."""
    storage = services.storage
    plan = storage.load_plan(plan_id)
    check_stoppable(plan_id, plan.state, plan.result, operation)
    owner = plan.record.world_id
    if (
        plan.state == PlanState.RUNNING
        and owner not in (None, services.id)
        and alive(storage, owner) is not None
    ):
        raise InvalidState(
            f"plan {plan_id} is being executed by world {owner}; {operation} it "
            "through a World whose executor runs it"
        )
    at = now()
    changes = Changes(services.world, services.id)
    changes.batch.history.extend([note] if note else [])
    steps = _steps(plan)
    for step in steps:
        if step.state in STOPPABLE:
            changes.step(plan_id, step, StepState.CANCELLED, at, {"ended_at": at})
    changes.batch.drop_events = [row.id for row in storage.plan_events(plan_id) if row.id]
    changes.plan(
        plan_id,
        plan.state,
        PlanState.STOPPED,
        at,
        {"ended_at": at},
        {"reason": operation},
        result=plan_result([s.state for s in steps]),
        owner=owner,
        parent=(plan.parent_id, plan.parent_step_id) if plan.parent_id is not None else None,
    )
    _commit(services, changes, f"plan {plan_id} changed while it was being {operation}ed")


def skip_offline(
    services: Services, plan_id: str, step_id: int, note: HistoryRow | None = None
) -> None:
    """Skip an errored step of a paused plan, with everything that consumes its output, in one
    transaction (``note``, the operator's history row, first); ``on_skip()`` of the action runs
    first and may veto it by raising."""
    plan = services.storage.load_plan(plan_id)
    step = plan.step(step_id)
    if plan.state != PlanState.PAUSED:
        raise InvalidState(
            f"plan {plan_id} is {plan.state}; steps can only be skipped in a paused plan "
            "(wait for it to pause, or cancel it)"
        )
    if step.state != StepState.ERROR:
        raise InvalidState(
            f"step {step_id} of plan {plan_id} is {step.state}; only a step in error can be skipped"
        )
    call_on_skip(services, plan, step_id)
    at = now()
    steps = _steps(plan)
    by_id = {s.id: s for s in steps}
    closure = skip_closure(
        [(s.id, s.kind, s.action_id, s.state) for s in plan.steps],
        {a.id: a.input for a in plan.actions},
        [step_id],
    )
    changes = Changes(services.world, services.id)
    changes.batch.history.extend([note] if note else [])
    for skipped_id, _ in closure:
        why = {"because_of": step_id} if skipped_id != step_id else None
        changes.step(plan_id, by_id[skipped_id], StepState.SKIPPED, at, {"ended_at": at}, why)
    result = plan_result([s.state for s in steps])
    changes.plan_fields(plan_id, PlanState.PAUSED, {"result": result})
    _commit(
        services,
        changes,
        f"plan {plan_id} changed while step {step_id} was being skipped; nothing was skipped",
    )


def _steps(plan: ExecutionPlan) -> list[DetachedStep]:
    """The plan's run and finalize steps, as records a transition can change."""
    return [DetachedStep.of(s) for s in plan.steps if s.kind != StepKind.PLAN]


def _commit(services: Services, changes: Changes, conflict: str) -> None:
    """Write ``changes`` in one transaction; any conflict rolls all of it back."""
    with services.storage.transaction():
        result = changes.write(services.storage)
        if result.plan_conflicts or result.step_conflicts:  # raising rolls everything back
            raise ConcurrentModification(f"{conflict}; look at the plan again and retry")
        services.storage.notify(f"p {u.plan_id}" for u in changes.batch.plans)
    changes.committed()
