"""run_until_done runs plans to their end (moving a frozen clock from timer to timer, or
waiting for real ones), fails at once when only an event can move a plan on; deliver sends an
event to a step found by its class; find_step finds one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dynaflow import Action, EventRejected, InvalidArgument, InvalidState, World
from dynaflow.testing import (
    T0,
    Probe,
    deliver,
    find_step,
    plan_id_of,
    run_until_done,
)

from .actions import Approval, Job, Provision, Stack


class Waits(Action):
    """Suspends until any event; no timers."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()
        self.output["got"] = event


class QuickJob(Job):
    """Polls every 10 ms of real time."""

    poll_intervals = (0.01,)


def test_the_frozen_clock_moves_from_timer_to_timer(
    dynaflow_world: World, dynaflow_clock, dynaflow_probe: Probe
) -> None:
    triggered = dynaflow_world.trigger(Job, polls=3)

    plan = run_until_done(dynaflow_world, triggered)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert dynaflow_probe.names("poll") == [T0 + timedelta(seconds=s) for s in (1, 2, 7)]
    assert dynaflow_clock.now == T0 + timedelta(seconds=7)


def test_real_timers_are_waited_for(dynaflow_world: World, dynaflow_probe: Probe) -> None:
    triggered = dynaflow_world.trigger(QuickJob, polls=2)
    plan = run_until_done(dynaflow_world, triggered.plan_id, timeout=10)
    assert plan.result == "success"
    assert len(dynaflow_probe.names("poll")) == 2


def test_a_plan_waiting_for_an_event_fails_at_once(dynaflow_world: World) -> None:
    triggered = dynaflow_world.trigger(Waits)
    step = find_step(dynaflow_world.get_plan(triggered.plan_id), Waits)
    with pytest.raises(TimeoutError, match=rf"step\(s\) {step.id} \(Waits\) wait for an event"):
        run_until_done(dynaflow_world, triggered, timeout=3600)

    assert deliver(dynaflow_world, triggered, Waits, "go") is None
    plan = run_until_done(dynaflow_world, triggered)
    assert plan.result == "success"
    assert plan.action(step.action_id).output == {"got": "go"}


def test_a_timer_beyond_the_timeout_fails(dynaflow_world: World, dynaflow_clock) -> None:
    triggered = dynaflow_world.trigger(Approval)
    with pytest.raises(TimeoutError, match="not ended within 60s: its next timer is due at"):
        run_until_done(dynaflow_world, triggered, timeout=60)
    assert dynaflow_clock.now == T0  # not moved: the timer is too far


def test_reminders_then_an_answer(dynaflow_world: World, dynaflow_clock) -> None:
    triggered = dynaflow_world.trigger(Approval)
    dynaflow_clock.advance(2 * 3600)
    deliver(dynaflow_world, triggered, Approval, {"approved": False})

    plan = run_until_done(dynaflow_world, triggered)
    (step,) = plan.run_steps()
    assert plan.action(step.action_id).output == {"reminded": 2, "approved": False}


def test_deliver_by_step_id_and_to_a_finished_step(dynaflow_world: World) -> None:
    triggered = dynaflow_world.trigger(Waits)
    step = find_step(dynaflow_world.get_plan(triggered.plan_id), "Waits")
    deliver(dynaflow_world, triggered.plan_id, step.id, "first")
    with pytest.raises(EventRejected, match="it takes no more events"):
        deliver(dynaflow_world, triggered.plan_id, step.id, "second")


def test_every_running_plan(dynaflow_world: World, dynaflow_clock) -> None:
    first = dynaflow_world.trigger(Job, polls=1)
    second = dynaflow_world.trigger(Job, polls=2)
    done = dynaflow_world.trigger(Provision, "db")

    plans = run_until_done(dynaflow_world)

    assert {p.id: p.result for p in plans} == {first.plan_id: "success", second.plan_id: "success"}
    assert done.plan_id not in {p.id for p in plans}  # it had ended already
    assert run_until_done(dynaflow_world) == []


def test_a_planned_plan_is_not_run(dynaflow_world: World) -> None:
    plan = dynaflow_world.plan(Provision, "db")
    with pytest.raises(InvalidState, match="planned, not executing"):
        run_until_done(dynaflow_world, plan)


def test_a_threaded_world_is_waited_for(dynaflow_probe: Probe) -> None:
    with World("memory://", executor="threads", workers=2) as world:
        triggered = world.trigger(QuickJob, polls=2)
        plan = run_until_done(world, triggered)
    assert plan.result == "success"


def test_find_step_lists_the_candidates(dynaflow_world: World) -> None:
    plan = dynaflow_world.plan(Stack)
    app = find_step(plan, Provision, name="app")
    assert (app.kind, plan.action(app.action_id).input["name"]) == ("run", "app")
    assert find_step(plan, "Stack", kind="plan").action_id == 1

    with pytest.raises(InvalidArgument, match=r"expected one run step of .*Provision in plan"):
        find_step(plan, Provision)
    with pytest.raises(InvalidArgument, match=r"found 0; its steps: 1 \(plan .*Stack\), 2"):
        find_step(plan, Provision, name="nope")


def test_plan_id_of() -> None:
    with pytest.raises(InvalidArgument, match="is not a plan"):
        plan_id_of(42)  # type: ignore[arg-type]
    assert plan_id_of("abc") == "abc"
