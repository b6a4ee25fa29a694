"""Rebuilding an action from its persisted data, for its run, finalize or ``on_skip`` call."""

from __future__ import annotations

import copy

from pydantic import ValidationError

from dynaflow import registry
from dynaflow.action import CONTEXT_KEY, Action
from dynaflow.exceptions import InvalidInput
from dynaflow.runtime import PlanRuntime
from dynaflow.services import Services
from dynaflow.values import resolve, validation_problems


def build_action(services: Services, runtime: PlanRuntime, action_id: int, step_id: int) -> Action:
    """An instance of the action with resolved, validated input and its saved output."""
    data = runtime.actions[action_id]
    cls: type[Action] = registry.resolve(data.action_class)
    action = cls.instance(services.world, runtime.plan_id, action_id, step_id, services.storage)
    where = f"input of {data.action_class}#{action_id}"
    raw = resolve(data.input, runtime.output_of, where)
    action.raw_input = raw
    if cls.Input is not None:
        fields = {k: v for k, v in raw.items() if k != CONTEXT_KEY}
        try:
            action.input = cls.Input.model_validate(fields)
        except ValidationError as exc:
            raise InvalidInput(
                f"{where} is invalid after resolving references: "
                + validation_problems(exc.errors())
            ) from None
    else:
        action.input = {k: v for k, v in raw.items() if k != CONTEXT_KEY}
    # a copy: run() may mutate nested values, and the saved output must stay as it was
    saved = copy.deepcopy(data.output) if data.output else {}
    action.output = cls.Output.model_construct(**saved) if cls.Output is not None else saved
    return action
