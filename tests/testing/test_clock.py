"""The frozen clock: time moves only when the test moves it; advance() fires each timer of the
attached worlds at its own due time, one after another."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from dynaflow import InvalidArgument, World, signals
from dynaflow.clock import now
from dynaflow.testing import T0, Probe, active_clock, frozen_clock, receiving

from .actions import Job


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_fixture_freezes_at_t0_and_the_world_is_attached(
    dynaflow_world: World, dynaflow_clock
) -> None:
    assert now() == T0 == dynaflow_clock.now
    assert dynaflow_clock.worlds == [dynaflow_world]
    assert active_clock() is dynaflow_clock


def test_advance_fires_each_timer_at_its_own_time(
    dynaflow_world: World, dynaflow_clock, dynaflow_probe: Probe
) -> None:
    # polls 1 s apart twice, then 5 s apart: due at t=1, t=2 and t=7
    triggered = dynaflow_world.trigger(Job, polls=3)
    assert dynaflow_probe.names("poll") == []

    assert dynaflow_clock.advance(1.5) == at(1.5)
    assert dynaflow_probe.names("poll") == [at(1)]
    dynaflow_clock.advance(10)

    assert dynaflow_probe.names("poll") == [at(1), at(2), at(7)]
    assert dynaflow_clock.now == at(11.5)
    plan = dynaflow_world.get_plan(triggered.plan_id)
    assert (plan.state, plan.result) == ("stopped", "success")


def test_tick_and_move_to_only_move_the_clock(
    dynaflow_world: World, dynaflow_clock, dynaflow_probe: Probe
) -> None:
    dynaflow_world.trigger(Job, polls=1)
    dynaflow_clock.tick(5)
    dynaflow_clock.move_to(at(6))
    assert dynaflow_probe.names("poll") == []

    dynaflow_clock.run_worlds()  # the overdue poll runs now, at t=6
    assert dynaflow_probe.names("poll") == [at(6)]


def test_advance_to_next_timer_fires_one(
    dynaflow_world: World, dynaflow_clock, dynaflow_probe: Probe
) -> None:
    triggered = dynaflow_world.trigger(Job, polls=2)

    assert dynaflow_clock.advance_to_next_timer() == at(1)
    assert dynaflow_probe.names("poll") == [at(1)]
    assert dynaflow_clock.advance_to_next_timer() == at(2)
    # done: the timeout timer (60 s) went with the step
    assert dynaflow_world.get_plan(triggered.plan_id).result == "success"
    assert dynaflow_clock.advance_to_next_timer() is None
    assert dynaflow_clock.now == at(2)


def test_a_threaded_world_is_woken(dynaflow_probe: Probe) -> None:
    def on_step(sender: World, **change: Any) -> None:
        if change["state"] == "suspended":  # saved, with its timer
            dynaflow_probe.event("suspended").set()

    with (
        frozen_clock() as clock,
        World("memory://", executor="threads", workers=2) as world,
        receiving(signals.step_state_changed, on_step),
    ):
        clock.attach(world)
        triggered = world.trigger(Job, polls=1)
        dynaflow_probe.wait("suspended")
        clock.advance(1)
        plan = triggered.wait(timeout=10)
    assert dynaflow_probe.names("poll") == [at(1)]
    assert plan.result == "success"


def test_the_clock_only_moves_forward(dynaflow_clock) -> None:
    with pytest.raises(InvalidArgument, match="only moves forward"):
        dynaflow_clock.move_to(at(-1))
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        dynaflow_clock.move_to(datetime(2030, 1, 2))
    with pytest.raises(InvalidArgument, match="advance"):
        dynaflow_clock.advance(-1)


def test_a_clock_of_its_own_start_and_nesting() -> None:
    assert active_clock() is None
    with frozen_clock("2031-06-01 08:00:00") as outer:
        assert now().isoformat() == "2031-06-01T08:00:00+00:00"
        with frozen_clock(T0) as inner:
            assert active_clock() is inner
        assert active_clock() is outer
    assert active_clock() is None
