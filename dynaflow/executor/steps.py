"""Worker-side code: rebuild an action from its persisted data and run one phase of it."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from dynaflow import registry
from dynaflow.action import CONTEXT_KEY, Action
from dynaflow.clock import now
from dynaflow.exceptions import DynaflowError, NotJSON
from dynaflow.execution_plan import StepError
from dynaflow.values import resolve, to_json

if TYPE_CHECKING:
    from dynaflow.executor.runtime import PlanRuntime
    from dynaflow.world import World


class InvalidInput(DynaflowError, ValueError):
    """An action's resolved input failed its ``Input`` model."""


@dataclass(slots=True)
class StepOutcome:
    plan_id: str
    step_id: int
    action_id: int
    started_at: datetime | None
    ended_at: datetime
    #: the new output (JSON), or None when unchanged
    output: dict[str, Any] | None
    error: StepError | None = None


def build_action(world: World, runtime: PlanRuntime, action_id: int, step_id: int) -> Action:
    """An instance of the action with resolved, validated input and its saved output."""
    data = runtime.actions[action_id]
    cls = registry.resolve(data.action_class)
    action: Action = cls.__new__(cls)
    action.id = action_id
    action.plan_id = runtime.plan_id
    action.step_id = step_id
    action.world = world
    action.triggering_action = None
    action.has_planned_self = True
    action._planner = None
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
                + "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}"
                    for err in exc.errors()
                )
            ) from None
    else:
        action.input = {k: v for k, v in raw.items() if k != CONTEXT_KEY}
    saved = data.output
    action.output = cls.Output.model_construct(**saved) if cls.Output is not None else dict(saved)
    return action


def dump_output(action: Action) -> dict[str, Any]:
    """The action's output as JSON, validated against ``Output`` when it has one."""
    cls = type(action)
    where = f"output of {cls.action_class_name}#{action.id}"
    output = action.output
    if cls.Output is not None:
        data = output.__dict__ if isinstance(output, cls.Output) else output
        if isinstance(data, BaseModel):
            data = data.model_dump()
        try:
            output = cls.Output.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(
                f"{where} is invalid: "
                + "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or '(output)'}: {err['msg']}"
                    for err in exc.errors()
                )
            ) from None
    if not isinstance(output, dict):
        raise NotJSON(f"{where} must be a dict (or the Output model), got {type(output).__name__}")
    encoded: dict[str, Any] = to_json(output, where)
    return encoded


def error_of(exc: BaseException) -> StepError:
    return StepError.from_exception(
        exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )


def run_step(world: World, runtime: PlanRuntime, step_id: int, action_id: int) -> StepOutcome:
    """Run one run step (user code, through the run middleware chain); never raises."""
    started = runtime.steps[step_id].started_at
    saved = runtime.actions[action_id].output
    try:
        action = build_action(world, runtime, action_id, step_id)
        world.chain(type(action), "run")(action)
        output = dump_output(action)
    except BaseException as exc:  # user code: SystemExit in run() is a step error
        return StepOutcome(runtime.plan_id, step_id, action_id, started, now(), None, error_of(exc))
    return StepOutcome(
        runtime.plan_id, step_id, action_id, started, now(), output if output != saved else None
    )


def call_run(action: Action, *args: Any) -> Any:
    return action.run(*args)  # type: ignore[attr-defined]


def call_finalize(action: Action) -> Any:
    return action.finalize()  # type: ignore[attr-defined]
