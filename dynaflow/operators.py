"""Operator actions on plans that no executor is running (planned, paused, or released by a
world that shut down): done directly in the database, in one transaction."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dynaflow.clock import now
from dynaflow.exceptions import ConcurrentModification, InvalidState
from dynaflow.persistence.base import Batch, HistoryRow, PlanUpdate, StepUpdate
from dynaflow.states import PlanState, StepKind, StepState, plan_result
from dynaflow.values import find_refs

if TYPE_CHECKING:
    from dynaflow.world import World

log = logging.getLogger("dynaflow.operators")

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


SKIPPABLE = frozenset({StepState.PENDING, StepState.ERROR})


def skip_closure(
    steps: list[tuple[int, str, int, StepState]],
    inputs: dict[int, Any],
    failed: list[int],
) -> list[tuple[int, StepState]]:
    """The steps skipping ``failed`` takes with it, as ``(step_id, current state)``.

    ``steps`` are ``(step_id, kind, action_id, state)``; ``inputs`` the actions' encoded inputs.
    An action whose input references (transitively) the output of a skipped action is skipped
    too — its run and finalize steps — as is the failed action's own finalize step. Steps that
    are merely ordered after a skipped one are left: they run after resume.
    """
    action_of = {step_id: action_id for step_id, _, action_id, _ in steps}
    skipped_actions = {action_of[step_id] for step_id in failed}
    producers = {aid: {ref.action_id for ref in find_refs(data)} for aid, data in inputs.items()}
    changed = True
    while changed:
        changed = False
        for action_id, sources in producers.items():
            if action_id not in skipped_actions and sources & skipped_actions:
                skipped_actions.add(action_id)
                changed = True
    chosen = set(failed)
    return [
        (step_id, state)
        for step_id, kind, action_id, state in steps
        if kind != StepKind.PLAN
        and state in SKIPPABLE
        and (step_id in chosen or action_id in skipped_actions)
    ]


def skip_offline(world: World, plan_id: str, step_id: int) -> None:
    """Skip an errored step of a paused plan, with everything that consumes its output, in one
    transaction; ``on_skip()`` of the action runs first and may veto it by raising."""
    storage = world.storage
    plan = storage.load_plan(plan_id)
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
    call_on_skip(world, plan, step_id)
    at = now()
    closure = skip_closure(
        [(s.id, s.kind, s.action_id, s.state) for s in plan.steps],
        {a.id: a.input for a in plan.actions},
        [step_id],
    )
    batch = Batch()
    for skipped_id, state in closure:
        batch.steps.append(
            StepUpdate(plan_id, skipped_id, state, StepState.SKIPPED, {"ended_at": at})
        )
        batch.history.append(
            HistoryRow(
                plan_id,
                at,
                "step skipped",
                skipped_id,
                world.id,
                {"because_of": step_id} if skipped_id != step_id else None,
            )
        )
    skipped = {sid for sid, _ in closure}
    states = [
        StepState.SKIPPED if s.id in skipped else s.state
        for s in plan.steps
        if s.kind != StepKind.PLAN
    ]
    batch.plans.append(
        PlanUpdate(plan_id, frozenset({PlanState.PAUSED}), {"result": plan_result(states)})
    )
    with storage.transaction():
        result = storage.write(batch)
        if result.plan_conflicts or result.step_conflicts:
            raise ConcurrentModification(
                f"plan {plan_id} changed while step {step_id} was being skipped; nothing was "
                "skipped; look at the plan again and retry"
            )


def call_on_skip(world: World, plan: Any, step_id: int) -> None:
    """Call the action's ``on_skip()`` hook, if it has one; its error vetoes the skip."""
    from dynaflow import registry
    from dynaflow.executor.runtime import PlanRuntime
    from dynaflow.executor.steps import build_action

    step = plan.step(step_id)
    cls = registry.resolve(step.action_class)
    hook = getattr(cls, "on_skip", None)
    if hook is None:
        return
    try:
        action = build_action(world, PlanRuntime(plan), step.action_id, step_id)
    except Exception:  # e.g. its input cannot be resolved: that may be why it is skipped
        log.warning("cannot call on_skip() of step %s of plan %s", step_id, plan.id, exc_info=True)
        return
    try:
        action.on_skip()  # type: ignore[attr-defined]
    except Exception as exc:
        raise InvalidState(
            f"{step.action_class}.on_skip() refused to skip step {step_id} of plan "
            f"{plan.id}: {type(exc).__name__}: {exc}; nothing was skipped"
        ) from exc
