"""Blinker signals for plan and step state changes; a failing receiver never breaks a plan."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from dynaflow import PlanningFailed, StepKind, World, signals

from .actions import Probe, Shape, receiving, step_of, trigger


class Collector:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, sender: Any, **kwargs: Any) -> None:
        with self.lock:
            self.received.append((sender, kwargs))

    def of(self, plan_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [kw for _, kw in self.received if kw["plan_id"] == plan_id]


def test_plan_state_changes_are_signalled(world: World) -> None:
    collector = Collector()
    with receiving(signals.plan_state_changed, collector):
        ok = trigger(world, Shape, ["seq", "a", "b"])
        failed = trigger(world, Shape, ["seq", "fail:f"])

    assert [(kw["state"], kw["result"]) for kw in collector.of(ok.id)] == [
        ("planned", "pending"),
        ("running", "pending"),
        ("stopped", "success"),
    ]
    assert [(kw["state"], kw["result"]) for kw in collector.of(failed.id)][-1] == (
        "paused",
        "error",
    )
    assert {sender for sender, _ in collector.received} == {world}


def test_a_planning_failure_is_signalled(world: World) -> None:
    collector = Collector()
    with receiving(signals.plan_state_changed, collector), pytest.raises(PlanningFailed) as info:
        world.trigger(Shape, ["seq", "a"], leaf="missing-kind")
    assert [(kw["state"], kw["result"]) for kw in collector.of(info.value.plan_id)] == [
        ("stopped", "error"),
    ]


def test_run_step_state_changes_are_signalled(world: World) -> None:
    collector = Collector()
    with receiving(signals.step_state_changed, collector):
        plan = trigger(world, Shape, ["seq", "a", "fail:f", "c"])

    changes = [(kw["step_id"], kw["state"]) for kw in collector.of(plan.id)]
    a, f = step_of(plan, "a"), step_of(plan, "f")
    assert changes == [(a.id, "running"), (a.id, "success"), (f.id, "running"), (f.id, "error")]
    first = collector.of(plan.id)[0]
    assert first["kind"] == StepKind.RUN
    assert first["action_class"] == a.action_class


def test_every_step_state_change_in_the_history_is_signalled(world: World) -> None:
    collector = Collector()
    with receiving(signals.step_state_changed, collector):
        plan = trigger(world, Shape, ["seq", "a", "b"], leaf="tracked")

    signalled = [(kw["step_id"], f"step {kw['state']}") for kw in collector.of(plan.id)]
    executed = {s.id for s in plan.steps if s.kind != StepKind.PLAN}
    recorded = [(h.step_id, h.event) for h in plan.history if h.step_id in executed]
    assert signalled == recorded


def test_a_failing_receiver_is_logged_and_execution_goes_on(
    world: World, probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    after = Collector()
    with (
        caplog.at_level(logging.ERROR, logger="dynaflow.signals"),
        receiving(signals.plan_state_changed, broken),
        receiving(signals.step_state_changed, broken),
        receiving(signals.step_state_changed, after),
    ):
        plan = trigger(world, Shape, ["seq", "a", "b"])

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("run") == ["a", "b"]
    assert len(after.of(plan.id)) == 4  # the other receiver got every change
    failures = [r for r in caplog.records if r.name == "dynaflow.signals"]
    assert failures, "the failing receiver was not logged"
    assert "execution goes on" in failures[0].getMessage()
    assert failures[0].exc_info[0] is ValueError


@pytest.mark.executors("inline")
def test_receivers_see_the_signalled_state_already_saved(world: World) -> None:
    """Receivers run after the change is committed. (Finalize steps are committed with their
    whole phase, so only run steps and the plan can be checked state by state.)"""
    seen: list[tuple[str, str, str]] = []

    def on_step(sender: World, **change: Any) -> None:
        if change["kind"] == StepKind.RUN:
            saved = sender.get_plan(change["plan_id"]).step(change["step_id"]).state
            seen.append(("step", change["state"], saved))

    def on_plan(sender: World, **change: Any) -> None:
        seen.append(("plan", change["state"], sender.get_plan(change["plan_id"]).state))

    with (
        receiving(signals.step_state_changed, on_step),
        receiving(signals.plan_state_changed, on_plan),
    ):
        plan = trigger(world, Shape, ["seq", "a", "fail:f"])

    assert (plan.state, plan.result) == ("paused", "error")
    assert [(kind, signalled) for kind, signalled, _ in seen] == [
        ("plan", "planned"),
        ("plan", "running"),
        ("step", "running"),
        ("step", "success"),
        ("step", "running"),
        ("step", "error"),
        ("plan", "paused"),
    ]
    assert [entry for entry in seen if entry[1] != entry[2]] == []
