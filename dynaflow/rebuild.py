"""Rebuilding an action from its persisted data, for its run, finalize, ``on_skip`` or plan
hook call."""

from __future__ import annotations

import copy

from pydantic import ValidationError

from dynaflow import registry
from dynaflow.action import CONTEXT_KEY, Action
from dynaflow.exceptions import InvalidInput, MissingOutputKey
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.runtime import PlanRuntime
from dynaflow.services import Services
from dynaflow.values import resolve, validation_problems, with_refs_as_objects


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


def build_unvalidated(services: Services, plan: ExecutionPlan, action_id: int) -> Action:
    """An instance of the action for a plan hook: its input with the references resolved
    where their producers set them (else left as references), and its saved output, neither
    validated (a hook may be called for a plan whose steps never ran)."""
    data = plan.action(action_id)
    cls: type[Action] = registry.resolve(data.action_class)
    action = cls.instance(services.world, plan.id, action_id, None, services.storage)
    outputs = {a.id: a.output for a in plan.actions}
    try:
        raw = resolve(data.input, outputs.__getitem__, f"input of {data.action_class}#{action_id}")
    except (MissingOutputKey, KeyError):
        raw = with_refs_as_objects(data.input)
    action.raw_input = raw
    fields = {k: v for k, v in raw.items() if k != CONTEXT_KEY}
    action.input = cls.Input.model_construct(**fields) if cls.Input is not None else fields
    saved = copy.deepcopy(data.output) if data.output else {}
    action.output = cls.Output.model_construct(**saved) if cls.Output is not None else saved
    return action
