"""Timers and timeouts under a frozen clock, on both executors: a timer fires when it is due and
not before, survives the World that planned it, and a timeout errors a step that is still
waiting (or still running) when it falls due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dynaflow import Action, World

from .actions import PROBE, WAIT, Probe, states, step_of
from .waiting import (
    Flow,
    Waiter,
    advance,
    at,
    ended,
    expect,
    finish,
    frozen_clock,
    run_step_id,
    suspended,
)

threads_only = pytest.mark.executors("threads")


class Alarm(Action):
    """Plans one timer per entry of ``input["timers"]`` (``[event, delay]``), or one at an
    absolute time (``input["at"]``, ISO); records each timer as it fires, with the clock's time;
    finishes on the event ``"last"``."""

    def run(self, event: Any = None) -> None:
        from datetime import datetime

        from dynaflow.clock import now

        if event is None:
            for name, delay in self.input.get("timers", []):
                self.plan_event(name, delay=delay)
            if self.input.get("at"):
                self.plan_event("last", at=datetime.fromisoformat(self.input["at"]))
        else:
            PROBE.record("fired", event, now())
            count = len(PROBE.names("fired"))
            PROBE.event(f"fired:{count}").set()
            if event == "last":
                return
        self.suspend(lambda handle: PROBE.event("armed").set())


# -- timers ----------------------------------------------------------------------------------


def test_exactly_the_due_timers_fire(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Alarm, timers=[["first", 10], ["second", 20], ["last", 30]])
        probe.wait("armed")

        advance(world, clock, 9.5)
        assert probe.names("fired") == []
        advance(world, clock, 0.5)  # t=10
        expect(world, "fired:1")
        advance(world, clock, 19.5)  # t=29.5: the second is overdue, the last not yet due
        expect(world, "fired:2")
        assert probe.names("fired") == ["first", "second"]
        assert world.get_plan(triggered.plan_id).state == "running"
        advance(world, clock, 0.5)  # t=30
        plan = ended(world, triggered)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert [(c[1], c[2]) for c in probe.calls if c[0] == "fired"] == [
        ("first", at(10)),
        ("second", at(29.5)),
        ("last", at(30)),
    ]


def test_a_timer_at_an_absolute_time(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Alarm, at=at(3600).isoformat())
        probe.wait("armed")
        advance(world, clock, 3599)
        assert probe.names("fired") == []
        advance(world, clock, 1)
        plan = triggered.wait(timeout=WAIT)
    assert plan.result == "success"
    assert [(c[1], c[2]) for c in probe.calls if c[0] == "fired"] == [("last", at(3600))]


def test_a_timer_with_no_delay_fires_at_once(world: World, probe: Probe) -> None:
    with frozen_clock():
        plan = world.trigger(Alarm, timers=[["last", 0]]).wait(timeout=WAIT)
    assert plan.result == "success"
    assert [(c[1], c[2]) for c in probe.calls if c[0] == "fired"] == [("last", at(0))]


def test_timers_of_a_plan_are_rows_until_they_fire(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Alarm, timers=[["last", 60]])
        probe.wait("armed")
        (row,) = world.storage.plan_events(triggered.plan_id)
        assert (row.payload, row.due_at) == ("last", at(60))
        advance(world, clock, 60)
        triggered.wait(timeout=WAIT)
    assert world.storage.plan_events(triggered.plan_id) == []


@pytest.mark.sql
def test_a_timer_survives_a_world_restart(world_factory: Any, probe: Probe) -> None:
    with frozen_clock() as clock:
        first = world_factory()
        triggered = first.trigger(Flow, "w", inputs={"w": {"timer": 300}})
        suspended("w")
        first.close(timeout=WAIT)

        # the plan is released: still running, owned by no world, its timer persisted
        client = world_factory(executor=None)
        plan = client.get_plan(triggered.plan_id)
        assert plan.state == "running"
        assert plan.record.world_id is None
        assert states(plan) == {"w": "suspended"}
        assert [(r.payload, r.due_at) for r in client.storage.plan_events(plan.id)] == [
            ("timer", at(300))
        ]
        assert "plan released" in [h.event for h in plan.history]

        second = world_factory()  # adopts the released plan
        advance(second, clock, 299)
        assert states(second.get_plan(plan.id)) == {"w": "suspended"}
        advance(second, clock, 1)
        done = finish(second, plan.id)

    assert (done.state, done.result) == ("stopped", "success")
    assert probe.names("start") == ["w"]  # not run again from the start
    assert [c[2] for c in probe.calls if c[0] == "event"] == ["timer"]
    assert probe.names("finalize") == ["w"]
    assert done.record.world_id == second.id


@pytest.mark.sql
def test_an_event_queued_while_no_world_runs_the_plan_is_delivered_after_restart(
    world_factory: Any, probe: Probe
) -> None:
    first = world_factory()
    triggered = first.trigger(Waiter, name="w")
    suspended("w")
    step_id = run_step_id(first, triggered.plan_id, "w")
    first.close(timeout=WAIT)

    client = world_factory(executor=None)
    queued = client.event(triggered.plan_id, step_id, "finish")
    assert queued.result(timeout=WAIT) is None  # resolved once queued
    assert [r.payload for r in client.storage.plan_events(triggered.plan_id)] == ["finish"]

    second = world_factory()
    done = finish(second, triggered.plan_id)
    assert (done.state, done.result) == ("stopped", "success")
    assert [c[2] for c in probe.calls if c[0] == "event"] == ["finish"]


# -- timeouts --------------------------------------------------------------------------------


def test_a_timeout_errors_a_suspended_step(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Flow, "w", inputs={"w": {"timeout": 30}})
        suspended("w")
        advance(world, clock, 29)
        assert states(world.get_plan(triggered.plan_id)) == {"w": "suspended"}
        advance(world, clock, 1)
        plan = triggered.wait(timeout=WAIT)

    assert (plan.state, plan.result) == ("paused", "error")
    step = step_of(plan, "w")
    assert step.state == "error"
    assert (step.error.class_name, step.error.message) == ("Timeout", "timeout exceeded after 30 s")
    assert step.ended_at == at(30)
    assert world.storage.plan_events(plan.id) == []


def test_a_timeout_is_dropped_when_the_step_finished_first(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        # b keeps the plan running here, so a's timeout does fall due while the plan runs
        triggered = world.trigger(Flow, ["con", "a", "b"], inputs={"a": {"timeout": 30}})
        suspended("a")
        suspended("b")
        a, b = (run_step_id(world, triggered.plan_id, name) for name in "ab")
        advance(world, clock, 10)
        world.event(triggered.plan_id, a, "finish").result(timeout=WAIT)

        advance(world, clock, 20)  # a's timeout falls due
        world.event(triggered.plan_id, b, "ping").result(timeout=WAIT)  # it was looked at
        suspended("b", 1)
        during = world.get_plan(triggered.plan_id)
        assert states(during) == {"a": "success", "b": "suspended"}
        assert step_of(during, "a").error is None
        assert world.storage.plan_events(triggered.plan_id) == []

        world.event(triggered.plan_id, b, "finish")
        plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")


def test_a_plan_that_ends_before_its_timeout_leaves_nothing_queued(
    world: World, probe: Probe
) -> None:
    with frozen_clock():
        triggered = world.trigger(Flow, "w", inputs={"w": {"timeout": 30}})
        suspended("w")
        world.event(triggered.plan_id, run_step_id(world, triggered.plan_id, "w"), "finish")
        plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert world.storage.plan_events(plan.id) == []


class SlowWork(Action):
    """Schedules a timeout and suspends; the event ``"work"`` runs until ``release``."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.schedule_timeout(5)
            self.suspend(lambda handle: PROBE.event("suspended:slow:0").set())
        with PROBE.running_step("slow"):
            PROBE.wait("release")
        self.output["worked"] = True


class SlowAndWaiting(Action):
    def plan(self) -> None:
        self.plan_action(SlowWork)
        self.plan_action(Waiter, name="w")


@threads_only
def test_a_timeout_errors_a_step_still_running_when_it_falls_due(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(SlowAndWaiting)
        suspended("slow")
        suspended("w")
        plan = world.get_plan(triggered.plan_id)
        slow = next(s.id for s in plan.run_steps() if s.action_class.endswith("SlowWork"))
        world.event(triggered.plan_id, slow, "work")
        probe.wait("arrived:slow")

        clock.tick(timedelta(seconds=5))
        # waking w goes through the due events in order: the timeout is seen first
        world.event(triggered.plan_id, run_step_id(world, triggered.plan_id, "w"), "ping")
        suspended("w", 1)
        probe.event("release").set()
        world.event(triggered.plan_id, run_step_id(world, triggered.plan_id, "w"), "finish")
        done = triggered.wait(timeout=WAIT)

    step = done.step(slow)
    assert (done.state, done.result) == ("paused", "error")
    assert step.state == "error"
    assert (step.error.class_name, step.error.message) == ("Timeout", "timeout exceeded after 5 s")
    assert done.action(step.action_id).output == {}  # the late result is not kept


class Chain(Action):
    """Each run plans the next timer, 10 ms ahead, until it has run ``input["links"]`` times."""

    def run(self, event: Any = None) -> None:
        self.output["runs"] = self.output.get("runs", 0) + 1
        if self.output["runs"] < self.input["links"]:
            self.plan_event("next", delay=0.01)
            self.suspend()


@threads_only
@pytest.mark.storages("memory")  # what is measured is the scheduler thread, not the storage
def test_timers_fire_on_time_on_the_threaded_executor(world: World) -> None:
    """Real time, on purpose: what is measured is the scheduler thread's own sleep, which a
    frozen clock does not reach. Five 10 ms timers in a row take a small fraction of the bound
    when each fires when due (they took about 1 s each when they waited for the scheduler's
    1 s tick instead)."""
    plan = world.trigger(Chain, links=6).wait(timeout=2)
    assert plan.result == "success"
