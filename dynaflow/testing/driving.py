"""Driving a world's plans from a test: run them to their end, deliver events, find steps."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, overload

from dynaflow.action import Action
from dynaflow.clock import as_utc, now
from dynaflow.exceptions import InvalidArgument, InvalidState
from dynaflow.execution_plan import ExecutionPlan, PlanRecord, StepRecord
from dynaflow.executor import InlineExecutor
from dynaflow.executor.futures import Triggered
from dynaflow.persistence.base import ENDED_STATES
from dynaflow.registry import class_name
from dynaflow.states import PlanState, StepKind, StepState
from dynaflow.testing.clock import active_clock
from dynaflow.testing.probes import WAIT
from dynaflow.world import World

#: a plan, as a test holds it: its id, what ``trigger`` returned, or a snapshot
PlanLike = str | Triggered | ExecutionPlan | PlanRecord


def plan_id_of(plan: PlanLike) -> str:
    """The id of ``plan`` (an id, a ``Triggered``, an ``ExecutionPlan`` or a ``PlanRecord``)."""
    if isinstance(plan, str):
        return plan
    if isinstance(plan, Triggered):
        return plan.plan_id
    if isinstance(plan, ExecutionPlan | PlanRecord):
        return plan.id
    raise InvalidArgument(f"{plan!r} is not a plan: pass its id, a Triggered or an ExecutionPlan")


@overload
def run_until_done(world: World, plan: PlanLike, *, timeout: float = WAIT) -> ExecutionPlan: ...


@overload
def run_until_done(
    world: World, plan: None = None, *, timeout: float = WAIT
) -> list[ExecutionPlan]: ...


def run_until_done(
    world: World, plan: PlanLike | None = None, *, timeout: float = WAIT
) -> ExecutionPlan | list[ExecutionPlan]:
    """Run ``plan`` (every plan ``world`` runs if ``None``) until its execution ends: stopped,
    or paused awaiting an operator. Returns the plan (the list of plans) then.

    On an inline world, timers fire as they fall due: with a frozen clock
    (:func:`~dynaflow.testing.frozen_clock`) the clock is moved to each in turn, at most
    ``timeout`` seconds ahead; otherwise this waits for them, at most ``timeout`` seconds in
    all. A step waiting for an event with no timer pending fails at once (deliver the event
    first). Other worlds are waited for, ``timeout`` seconds at most. Raises
    :class:`TimeoutError`."""
    if plan is not None:
        ids = [plan_id_of(plan)]
    else:
        running = world.count_plans(state=PlanState.RUNNING)
        ids = [r.id for r in world.find_plans(state=PlanState.RUNNING, per_page=max(running, 1))]
    if isinstance(world.executor, InlineExecutor):
        for plan_id in ids:  # an inline world runs what it executes before returning
            if world.storage.get_plan_record(plan_id).state == PlanState.PLANNED:
                raise InvalidState(f"plan {plan_id} is planned, not executing: execute it first")
        _run_inline(world, ids, timeout)
    else:
        for plan_id in ids:
            world.follow(plan_id).result(timeout)
    plans = [world.get_plan(plan_id) for plan_id in ids]
    return plans[0] if plan is not None else plans


def deliver(
    world: World,
    plan: PlanLike,
    step: int | type[Action] | str,
    event: Any,
    *,
    timeout: float = WAIT,
) -> Any:
    """Send ``event`` to a run step of ``plan`` — ``step`` is its id, or the action class of
    its one run step — and wait until the step has handled it (on an inline world it has when
    ``world.event`` returns). Raises :class:`~dynaflow.EventRejected` if the step cannot take
    it, :class:`TimeoutError` after ``timeout`` seconds."""
    plan_id = plan_id_of(plan)
    if isinstance(step, bool):
        raise InvalidArgument(f"step must be a step id or an action class, got {step!r}")
    step_id = step if isinstance(step, int) else find_step(world.get_plan(plan_id), step).id
    return world.event(plan_id, step_id, event).result(timeout)


def find_step(
    plan: ExecutionPlan, action: type[Action] | str, kind: str = "run", **input: Any
) -> StepRecord:
    """The one ``kind`` step of the action of class ``action`` (a class, or its qualified or
    short name) whose input has the given values; :class:`~dynaflow.InvalidArgument` (listing
    the candidates) unless there is exactly one."""
    name = action if isinstance(action, str) else class_name(action)
    matching = {
        a.id
        for a in plan.actions
        if (a.action_class == name or a.action_class.endswith("." + name))
        and all(key in a.input and a.input[key] == value for key, value in input.items())
    }
    found = [s for s in plan.steps if s.action_id in matching and s.kind == StepKind(kind)]
    if len(found) != 1:
        wanted = f"{kind} step of {name}" + (f" with input {input}" if input else "")
        steps = ", ".join(f"{s.id} ({s.kind} {s.action_class})" for s in plan.steps)
        raise InvalidArgument(
            f"expected one {wanted} in plan {plan.id}, found {len(found)}; its steps: {steps}"
        )
    return found[0]


def _run_inline(world: World, ids: list[str], timeout: float) -> None:
    frozen = active_clock()
    budget = timeout
    while True:
        world.run_pending()
        waiting = [i for i in ids if world.storage.get_plan_record(i).state not in ENDED_STATES]
        if not waiting:
            return
        due = world.storage.next_due(world.id, after=now())
        if due is None:
            raise TimeoutError(_stuck(world, waiting))
        wait = (_utc(due) - now()).total_seconds()
        if wait > budget:
            raise TimeoutError(
                f"plan {waiting[0]} has not ended within {timeout}s: its next timer is due "
                f"at {_utc(due).isoformat()}"
            )
        budget -= wait
        if frozen is not None:
            frozen.move_to(_utc(due))
        else:
            threading.Event().wait(wait)  # real time: the timer falls due meanwhile


def _stuck(world: World, waiting: list[str]) -> str:
    plan = world.get_plan(waiting[0])
    suspended = [
        f"{s.id} ({s.action_class.rsplit('.', 1)[-1]})"
        for s in plan.steps
        if s.state == StepState.SUSPENDED
    ]
    if suspended:
        return (
            f"plan {plan.id} is {plan.state}: step(s) {', '.join(suspended)} wait for an event "
            "and no timer is pending; send it with deliver(world, plan, step, event)"
        )
    return f"plan {plan.id} is {plan.state} and nothing in this world can move it on"


def _utc(moment: datetime) -> datetime:
    converted = as_utc(moment)
    assert converted is not None
    return converted
