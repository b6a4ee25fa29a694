"""One step in isolation: :func:`run_step` calls an action's ``run`` and :func:`finalize_step`
its ``finalize``, the way the executor does (input rebuilt and validated, middleware chains,
output dumped and validated), with the outputs its input refers to stubbed."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dynaflow import registry
from dynaflow.action import Action
from dynaflow.events import TIMEOUT, TIMER, SuspendedHandle
from dynaflow.exceptions import InvalidArgument
from dynaflow.execution_plan import ActionRecord, ExecutionPlan, PlanRecord, StepRecord
from dynaflow.executor.steps import NO_EVENT
from dynaflow.executor.steps import run_step as engine_run_step
from dynaflow.phases import PhaseContext
from dynaflow.rebuild import build_action
from dynaflow.runtime import PlanRuntime
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.testing.planning import PlannedAction
from dynaflow.values import OutputRef, find_refs, resolve, to_json
from dynaflow.world import World

#: the default of ``event``: the step's first call, ``run()`` (``run(None)`` if it takes events)
FIRST: Any = NO_EVENT

#: what ``outputs_of`` is keyed by: an action id, a planned action, an action class or its name
OutputKey = int | PlannedAction | type[Action] | str


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer a ``run`` call planned (``plan_event``): ``event`` is delivered to ``run(event)``
    ``delay`` seconds after the call, at ``due``."""

    event: Any
    due: datetime
    delay: float


@dataclass(frozen=True, slots=True)
class StepRun:
    """What one ``run`` call came to: the output it left and, if it suspended, what it waits
    for. ``send(event)`` and ``fire()`` make the next call, as the executor would."""

    action_class: type[Action]
    #: the input ``run`` saw (references resolved), as JSON
    input: dict[str, Any]
    #: the output after the call, as JSON (what would be saved)
    output: dict[str, Any]
    #: the call ended with ``suspend()``: the step waits for an event or a timer
    suspended: bool
    #: timers the call planned, in the order it planned them
    timers: tuple[Timer, ...] = ()
    #: seconds of the ``schedule_timeout`` the call set, if it set one
    timeout: float | None = None
    #: the suspend callback (not called: call it with a handle of your own to test it)
    callback: Callable[[SuspendedHandle], Any] | None = None
    _again: Callable[[Any, dict[str, Any]], StepRun] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def done(self) -> bool:
        """The step finished (it did not suspend)."""
        return not self.suspended

    def send(self, event: Any) -> StepRun:
        """The next call: ``run(event)`` with the output this call left."""
        if not self.suspended:
            raise InvalidArgument(
                f"{self.action_class.__qualname__} finished without suspending; its step takes "
                "no more events"
            )
        assert self._again is not None
        return self._again(event, self.output)

    def fire(self, timer: Timer | None = None) -> StepRun:
        """The next call with ``timer``'s event (the first timer this call planned if
        ``None``): what happens when the timer falls due."""
        if timer is None:
            if not self.timers:
                raise InvalidArgument(
                    f"{self.action_class.__qualname__} planned no timer in this call"
                )
            timer = self.timers[0]
        return self.send(timer.event)


def run_step(
    action: type[Action] | PlannedAction,
    input: Mapping[str, Any] | Any = None,
    *,
    outputs_of: Mapping[OutputKey, Any] | None = None,
    output: Mapping[str, Any] | Any = None,
    event: Any = FIRST,
    world: World | None = None,
) -> StepRun:
    """Call ``run`` of ``action`` (a class, or a :class:`PlannedAction` from
    :func:`~dynaflow.testing.plan_only`, whose input is used) once, and return what came of it.

    ``input`` is the action's input (a dict, or its ``Input`` model); output references in it
    are resolved from ``outputs_of`` (keyed by the producing action's class, its id or its
    planned action; values are outputs). ``output`` is the output saved by earlier calls;
    ``event`` the event this call handles. An exception ``run`` raises is raised here.
    ``world`` is what ``self.world`` is (a throwaway in-memory world if ``None``) and whose
    middleware wraps the call."""
    cls, action_id, given = _target(action, input, "run")
    resolved = _resolved_input(cls, action_id, given, outputs_of)
    runtime = _runtime(cls, action_id, resolved, output, StepKind.RUN)
    with _world(world) as used:
        outcome = engine_run_step(
            used.services, runtime, 1, action_id, event=event, progress_in_outcome=False
        )
    if outcome.exception is not None:
        raise outcome.exception
    saved = runtime.actions[action_id].output
    timers = tuple(
        Timer(row.payload, row.due_at, (row.due_at - row.created_at).total_seconds())
        for row, _ in outcome.events
        if row.kind == TIMER and row.due_at is not None
    )
    timeouts = [row.payload["seconds"] for row, _ in outcome.events if row.kind == TIMEOUT]

    def again(next_event: Any, saved_output: dict[str, Any]) -> StepRun:
        return run_step(
            cls,
            given,
            outputs_of=outputs_of,
            output=saved_output,
            event=next_event,
            world=world,
        )

    return StepRun(
        action_class=cls,
        input=resolved,
        output=outcome.output if outcome.output is not None else saved,
        suspended=outcome.suspended,
        timers=timers,
        timeout=timeouts[-1] if timeouts else None,
        callback=outcome.callback,
        _again=again,
    )


def finalize_step(
    action: type[Action] | PlannedAction,
    input: Mapping[str, Any] | Any = None,
    output: Mapping[str, Any] | Any = None,
    *,
    outputs_of: Mapping[OutputKey, Any] | None = None,
    world: World | None = None,
) -> Action:
    """Call ``finalize`` of ``action`` with ``input`` and the ``output`` its run left, inside
    the finalize phase's transaction on ``world``'s database (``self.connection`` is that
    transaction's connection on SQL storage; a throwaway in-memory world, with no connection,
    if ``None``). What it writes commits when it returns and rolls back if it raises; an
    exception is raised here. Called inside ``with world.transaction():``, it joins that
    transaction. Returns the action as finalize saw it."""
    cls, action_id, given = _target(action, input, "finalize")
    resolved = _resolved_input(cls, action_id, given, outputs_of)
    runtime = _runtime(cls, action_id, resolved, output, StepKind.FINALIZE)
    with _world(world) as used:
        services = used.services
        finalized = build_action(services, runtime, action_id, 1)

        def core(context: PhaseContext) -> None:
            services.chains.action(cls, "finalize")(finalized)

        context = PhaseContext(used, runtime.plan_id, "finalize", used.storage)
        services.chains.phase("finalize_phase", core)(context)
    return finalized


# -- internals -------------------------------------------------------------------------------


def _target(
    action: type[Action] | PlannedAction, input: Any, method: str
) -> tuple[type[Action], int, Any]:
    """``(class, action id, input)`` of what to call."""
    cls, action_id = action, 1
    if isinstance(action, PlannedAction):
        cls, action_id = registry.resolve(action.action_class), action.id
        input = action.input if input is None else input
    if not (isinstance(cls, type) and issubclass(cls, Action)):
        raise InvalidArgument(
            f"{cls!r} is not an Action class; pass an Action subclass or a PlannedAction"
        )
    if not callable(getattr(cls, method, None)):
        raise InvalidArgument(f"{cls.__qualname__} defines no {method}()")
    return cls, action_id, input


@contextmanager
def _world(world: World | None) -> Iterator[World]:
    if world is not None:
        yield world
        return
    with World("memory://", executor=None) as throwaway:
        yield throwaway


def _encoded_input(cls: type[Action], action_id: int, given: Any) -> dict[str, Any]:
    where = f"input of {cls.action_class_name}#{action_id}"
    encoded = to_json({} if given is None else given, where)
    if not isinstance(encoded, dict):
        raise InvalidArgument(f"{where} must be a dict or {cls.__qualname__}.Input")
    return encoded


def _resolved_input(
    cls: type[Action], action_id: int, given: Any, outputs_of: Mapping[OutputKey, Any] | None
) -> dict[str, Any]:
    """The input with every output reference replaced by the stubbed output it points at."""
    encoded = _encoded_input(cls, action_id, given)
    stubs = _Stubs(outputs_of or {}, f"input of {cls.__qualname__}")
    by_id = {ref.action_id: stubs.output_for(ref) for ref in find_refs(encoded)}
    resolved: dict[str, Any] = resolve(
        encoded, by_id.__getitem__, f"input of {cls.action_class_name}#{action_id}"
    )
    return resolved


def _runtime(
    cls: type[Action], action_id: int, input: dict[str, Any], output: Any, kind: StepKind
) -> PlanRuntime:
    """A one-step plan in memory: the action with its resolved input and saved output."""
    name = cls.action_class_name
    saved = to_json({} if output is None else output, f"output of {name}#{action_id}")
    if not isinstance(saved, dict):
        raise InvalidArgument(f"output of {name}#{action_id} must be a dict or its Output model")
    plan_id = str(uuid.uuid4())
    record = PlanRecord(
        id=plan_id,
        label=cls.__qualname__,
        state=PlanState.RUNNING,
        result=PlanResult.PENDING,
        root_action_class=name,
    )
    action = ActionRecord(action_id, name, input, saved)
    step = StepRecord(1, kind, action_id, name, StepState.RUNNING, queue=cls.queue, position=1)
    return PlanRuntime(ExecutionPlan(record, (action,), (step,)))


class _Stubs:
    """The outputs ``outputs_of`` gives, found for each reference."""

    def __init__(self, outputs_of: Mapping[OutputKey, Any], where: str) -> None:
        self.where = where
        self.by_id: dict[int, Any] = {}
        self.by_class: dict[str, Any] = {}
        for key, value in outputs_of.items():
            encoded = to_json(value, f"outputs_of[{key!r}]")
            if isinstance(key, PlannedAction):
                self.by_id[key.id] = encoded
            elif isinstance(key, int) and not isinstance(key, bool):
                self.by_id[key] = encoded
            elif isinstance(key, type) and issubclass(key, Action):
                self.by_class[key.action_class_name] = encoded
            elif isinstance(key, str):
                self.by_class[key] = encoded
            else:
                raise InvalidArgument(
                    f"outputs_of keys are action classes, their names, action ids or planned "
                    f"actions; got {key!r}"
                )

    def output_for(self, ref: OutputRef) -> Any:
        if ref.action_id in self.by_id:
            return self.by_id[ref.action_id]
        short = ref.action_class.rsplit(".", 1)[-1]
        for name in (ref.action_class, short):
            if name in self.by_class:
                return self.by_class[name]
        raise InvalidArgument(
            f"{self.where} refers to {ref.describe()}; give that output: "
            f"outputs_of={{{short}: {{...}}}}"
        )
