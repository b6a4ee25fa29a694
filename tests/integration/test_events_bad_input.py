"""Mistakes a user can make with suspend, events, timers, polling, cancel and halt: each raises
a dynaflow error naming the problem (or errors the step with it), and nothing is half-done."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from dynaflow import (
    Action,
    EventRejected,
    InvalidArgument,
    InvalidState,
    NotJSON,
    PlanningFailed,
    Polling,
    UnknownPlan,
    World,
)

from .actions import WAIT, Probe, states, trigger
from .waiting import Flow, Waiter, run_step_id, suspended

#: for mistakes caught before anything reaches the storage: both executors, one storage
in_memory = pytest.mark.storages("memory")

# -- events ----------------------------------------------------------------------------------


@in_memory
def test_an_event_that_is_not_json(world: World, probe: Probe) -> None:
    triggered = world.trigger(Waiter, name="w")
    suspended("w")
    step_id = run_step_id(world, triggered.plan_id, "w")
    with pytest.raises(NotJSON, match=f"event for step {step_id} of plan {triggered.plan_id}"):
        world.event(triggered.plan_id, step_id, {"when": datetime(2030, 1, 1)})
    assert world.storage.plan_events(triggered.plan_id) == []
    assert probe.names("event") == []
    assert states(world.get_plan(triggered.plan_id)) == {"w": "suspended"}


def test_an_event_for_an_unknown_plan(world: World) -> None:
    with pytest.raises(EventRejected, match="no execution plan with id 'no-such-plan'"):
        world.event("no-such-plan", 1, "hello")


def test_an_event_for_an_unknown_step(world: World) -> None:
    triggered = world.trigger(Waiter, name="w")
    suspended("w")
    with pytest.raises(EventRejected, match=f"plan {triggered.plan_id} has no step 999"):
        world.event(triggered.plan_id, 999, "hello")
    assert world.storage.plan_events(triggered.plan_id) == []


def test_an_event_for_a_step_that_is_not_a_run_step(world: World) -> None:
    triggered = world.trigger(Waiter, name="w")
    suspended("w")
    plan = world.get_plan(triggered.plan_id)
    (plan_step,) = [s for s in plan.steps if s.kind == "plan"]
    with pytest.raises(EventRejected, match="is a plan step; only run steps take events"):
        world.event(plan.id, plan_step.id, "hello")


# -- suspend ---------------------------------------------------------------------------------


class SuspendsWhilePlanning(Action):
    def plan(self) -> None:
        self.plan_self()
        self.suspend()

    def run(self, event: Any = None) -> None:
        pass


@in_memory
def test_suspend_outside_run(world: World, probe: Probe) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(SuspendsWhilePlanning)
    assert isinstance(info.value.cause, InvalidState)
    assert "suspend() can only be called while" in str(info.value.cause)
    assert "runs (in run())" in str(info.value.cause)
    with pytest.raises(InvalidState, match="suspend"):
        Waiter().suspend()


class SuspendsWithoutEventParameter(Action):
    def run(self) -> None:
        self.output["before"] = True
        self.suspend()


@in_memory
def test_suspend_from_a_run_without_an_event_parameter(world: World) -> None:
    plan = trigger(world, SuspendsWithoutEventParameter)
    (step,) = plan.run_steps()
    assert (plan.state, plan.result) == ("paused", "error")
    assert step.error.class_name == "ConfigurationError"
    assert "run() takes no event parameter, so it cannot suspend" in step.error.message
    assert "run(self, event=None)" in step.error.message
    assert plan.action(step.action_id).output == {}


# -- timers and timeouts ---------------------------------------------------------------------


class PlansEvent(Action):
    """Calls plan_event (or schedule_timeout) with the input's arguments."""

    def run(self, event: Any = None) -> None:
        if self.input.get("timeout") is not None:
            self.schedule_timeout(self.input["timeout"])
        else:
            at = self.input.get("at")
            self.plan_event(
                {1, 2} if self.input.get("set_event") else "x",
                self.input.get("delay"),
                at=datetime.fromisoformat(at) if at else None,
            )
        self.suspend()


@in_memory
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"delay": -1}, "plan_event(delay=-1): the delay must be a number >= 0"),
        ({"delay": "soon"}, "plan_event(delay='soon')"),
        ({}, "plan_event() takes either delay= (seconds) or at= (a datetime)"),
        ({"delay": 5, "at": "2030-01-01T00:00:00+00:00"}, "takes either delay="),
        ({"at": "2030-01-01T00:00:00"}, "needs a timezone-aware datetime"),
        ({"timeout": 0}, "schedule_timeout(0) must be a number > 0"),
    ],
    ids=["negative-delay", "delay-not-a-number", "neither", "both", "naive-at", "zero-timeout"],
)
def test_plan_event_with_a_bad_delay(world: World, arguments: dict[str, Any], message: str) -> None:
    plan = trigger(world, PlansEvent, **arguments)
    (step,) = plan.run_steps()
    assert step.state == "error"
    assert step.error.class_name == "InvalidArgument"
    assert message in step.error.message
    assert world.storage.plan_events(plan.id) == []


@in_memory
def test_a_timer_event_that_is_not_json(world: World) -> None:
    plan = trigger(world, PlansEvent, delay=1, set_event=True)
    (step,) = plan.run_steps()
    assert step.error.class_name == "NotJSON"
    assert "event planned by" in step.error.message
    assert world.storage.plan_events(plan.id) == []


# -- cancel and halt -------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["cancel", "halt"])
def test_cancel_or_halt_of_an_unknown_plan(world: World, operation: str) -> None:
    with pytest.raises(UnknownPlan, match="no execution plan with id 'no-such-plan'"):
        getattr(world, operation)("no-such-plan")
    with pytest.raises(UnknownPlan):
        getattr(world, operation)(42)


@pytest.mark.parametrize("operation", ["cancel", "halt"])
def test_cancel_or_halt_of_a_stopped_plan(world: World, operation: str) -> None:
    plan = trigger(world, Flow, "noop:n")
    assert (plan.state, plan.result) == ("stopped", "success")
    with pytest.raises(InvalidState, match=f"already stopped .*nothing to {operation}"):
        getattr(world, operation)(plan.id)
    after = world.get_plan(plan.id)
    assert (after.state, after.result) == ("stopped", "success")
    assert after.history == plan.history


@pytest.mark.parametrize("operation", ["cancel", "halt"])
def test_cancel_or_halt_of_a_plan_already_cancelled(world: World, operation: str) -> None:
    triggered = world.trigger(Waiter, name="w")
    suspended("w")
    world.cancel(triggered.plan_id).result(timeout=WAIT)
    with pytest.raises(InvalidState, match="already stopped"):
        getattr(world, operation)(triggered.plan_id)


# -- polling ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"poll_intervals": ()}, "poll_intervals must be a non-empty sequence of seconds"),
        ({"poll_intervals": []}, "poll_intervals must be a non-empty sequence of seconds"),
        ({"poll_intervals": (1, 0)}, "poll_intervals must hold numbers of seconds > 0"),
        ({"poll_intervals": (1, "2")}, "poll_intervals must hold numbers of seconds > 0"),
        ({"attempts_before_next_interval": 0}, "attempts_before_next_interval must be >= 1"),
        ({"poll_max_retries": -1}, "poll_max_retries must be >= 0"),
    ],
    ids=["empty-tuple", "empty-list", "zero", "not-a-number", "no-attempts", "negative-retries"],
)
def test_a_polling_class_with_bad_intervals(attributes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        type("BadPoller", (Polling, Action), dict(attributes))


class NeverDone(Polling, Action):
    poll_intervals = (3600,)

    def invoke_external_task(self) -> str:
        return "job-1"

    def poll_external_task(self) -> str:
        return "job-1"

    def done(self) -> bool:
        return False


@in_memory
def test_an_event_a_polling_step_does_not_expect(world: World) -> None:
    triggered = world.trigger(NeverDone)
    plan = world.get_plan(triggered.plan_id)
    (step,) = plan.run_steps()
    world.event(plan.id, step.id, "hello")
    plan = world.follow(plan.id).result(timeout=WAIT)
    (step,) = plan.run_steps()
    assert step.error.class_name == "InvalidArgument"
    assert "got an unexpected event 'hello' while polling" in step.error.message
