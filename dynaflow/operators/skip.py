"""What skipping a failed step takes with it, and the action's ``on_skip`` veto."""

from __future__ import annotations

import logging
from typing import Any

from dynaflow import registry
from dynaflow.exceptions import InvalidState, describe
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.rebuild import build_action
from dynaflow.runtime import PlanRuntime
from dynaflow.services import Services
from dynaflow.states import StepKind, StepState
from dynaflow.values import find_refs

log = logging.getLogger("dynaflow.operators")

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


def call_on_skip(services: Services, plan: ExecutionPlan, step_id: int) -> None:
    """Call the action's ``on_skip()`` hook, if it has one; its error vetoes the skip."""
    step = plan.step(step_id)
    hook = registry.attribute(step.action_class, "on_skip", None, "no on_skip() is called")
    if hook is None:
        return
    try:
        action = build_action(services, PlanRuntime(plan), step.action_id, step_id)
    except Exception:  # e.g. its input cannot be resolved: that may be why it is skipped
        log.warning("cannot call on_skip() of step %s of plan %s", step_id, plan.id, exc_info=True)
        return
    try:
        action.on_skip()  # type: ignore[attr-defined]
    except Exception as exc:
        raise InvalidState(
            f"{step.action_class}.on_skip() refused to skip step {step_id} of plan "
            f"{plan.id}: {type(exc).__name__}: {describe(exc)}; nothing was skipped"
        ) from exc
