"""Hostile values from user code and callers: exceptions that cannot be printed, delays no clock
can reach, step ids of the wrong type. Each ends in a recorded error or a library exception; no
plan is left stuck and every future resolves."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dynaflow import (
    Action,
    EventRejected,
    InvalidArgument,
    PlanningFailed,
    PlanResult,
    PlanState,
    Retry,
    StepKind,
    StepState,
    UnknownStep,
    World,
)

from .actions import WAIT, trigger


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class RunRaisesUnprintable(Action):
    def run(self) -> None:
        raise Unprintable()


class FinalizeRaisesUnprintable(Action):
    def run(self) -> None:
        pass

    def finalize(self) -> None:
        raise Unprintable()


class PlanRaisesUnprintable(Action):
    def plan(self) -> None:
        raise Unprintable()


def the_step(plan: Any, kind: str) -> Any:
    [step] = [s for s in plan.steps if s.kind == kind]
    return step


def test_a_run_error_that_cannot_be_printed_is_recorded(world: World) -> None:
    plan = trigger(world, RunRaisesUnprintable)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = the_step(plan, StepKind.RUN)
    assert step.state == StepState.ERROR
    assert step.error.class_name == "Unprintable"
    assert "unprintable Unprintable" in step.error.message
    assert "RuntimeError" in step.error.message


def test_a_finalize_error_that_cannot_be_printed_pauses_the_plan(world: World) -> None:
    plan = trigger(world, FinalizeRaisesUnprintable)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = the_step(plan, StepKind.FINALIZE)
    assert step.state == StepState.ERROR
    assert step.error.class_name == "Unprintable"


@pytest.mark.executors("inline")
def test_a_plan_error_that_cannot_be_printed_stops_the_plan_with_its_step_in_error(
    world: World,
) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(PlanRaisesUnprintable)
    assert isinstance(info.value.cause, Unprintable)
    assert "unprintable Unprintable" in str(info.value)
    plan = world.get_plan(info.value.plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    step = the_step(plan, StepKind.PLAN)
    assert step.state == StepState.ERROR
    assert step.error.class_name == "Unprintable"


# -- delays no clock can reach -----------------------------------------------------------------


#: values JSON cannot carry as input, by name
VALUES: dict[str, Any] = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan, "1e12": 1e12}


class PlansEvent(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.plan_event("tick", delay=VALUES.get(self.input["delay"], self.input["delay"]))
            self.suspend()


class SchedulesTimeout(Action):
    def run(self) -> None:
        self.schedule_timeout(VALUES.get(self.input["seconds"], self.input["seconds"]))


@pytest.mark.parametrize("delay", ["inf", "-inf", "nan", "1e12", -1, True, "5"])
def test_plan_event_with_an_unreachable_delay_errors_the_step_with_invalid_argument(
    world: World, delay: Any
) -> None:
    plan = trigger(world, PlansEvent, delay=delay)
    step = the_step(plan, StepKind.RUN)
    assert step.state == StepState.ERROR
    assert step.error.class_name == "InvalidArgument"
    assert "plan_event(delay=" in step.error.message


@pytest.mark.executors("inline")
@pytest.mark.parametrize("seconds", ["inf", "nan", "1e12", 0, -3])
def test_schedule_timeout_with_an_unreachable_time_errors_the_step(
    world: World, seconds: Any
) -> None:
    plan = trigger(world, SchedulesTimeout, seconds=seconds)
    step = the_step(plan, StepKind.RUN)
    assert step.state == StepState.ERROR
    assert step.error.class_name == "InvalidArgument"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 1e12},
        {"max_delay": 1e12},
        {"initial": math.inf},
        {"max_delay": math.nan},
        {"backoff": math.inf},
        {"backoff": math.nan},
        {"jitter": math.nan},
    ],
)
def test_retry_policies_refuse_delays_no_clock_can_reach(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument, match="Retry"):
        Retry(**kwargs)


def test_a_huge_backoff_waits_max_delay_and_never_overflows() -> None:
    policy = Retry(attempts=100, initial=1, backoff=1e300, max_delay=30)
    assert [policy.delay(n) for n in (1, 2, 3, 99)] == [1, 30, 30, 30]


class FailsTwiceThenWorks(Action):
    retry = Retry(attempts=3, initial=0, backoff=1e300, max_delay=0)
    calls = 0

    def run(self) -> None:
        type(self).calls += 1
        if type(self).calls < 3:
            raise ConnectionError("flaky")


class Unrelated(Action):
    def run(self) -> None:
        pass


def test_a_huge_backoff_does_not_strand_its_plan_or_another(world: World) -> None:
    FailsTwiceThenWorks.calls = 0
    first = world.trigger(FailsTwiceThenWorks)
    second = world.trigger(Unrelated)
    assert first.wait(WAIT).result == PlanResult.SUCCESS
    assert second.wait(WAIT).result == PlanResult.SUCCESS


# -- step ids of the wrong type --------------------------------------------------------------


class Fails(Action):
    def run(self) -> None:
        raise ValueError("no")


@pytest.mark.parametrize("bad", ["2", 2.0, 2.5, True, 2**70, -1, 0, None])
def test_step_ids_must_be_ints_in_range_everywhere(world: World, bad: Any) -> None:
    plan = trigger(world, Fails)
    assert plan.state == PlanState.PAUSED
    with pytest.raises(UnknownStep):
        world.skip(plan.id, bad)
    with pytest.raises(UnknownStep):
        world.retry(plan.id, bad)
    with pytest.raises(EventRejected):
        world.event(plan.id, bad, "x")
    assert world.event(plan.id, bad, "x", optional=True).result(WAIT) is None
    after = world.get_plan(plan.id)
    assert (after.state, [s.state for s in after.steps]) == (
        plan.state,
        [s.state for s in plan.steps],
    )
