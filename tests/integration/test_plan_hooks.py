"""Execution-plan hooks: ``on_success``, ``on_failure``, ``on_stopped`` and ``on_paused`` on
action classes, called once per change of the plan to stopped or paused, after the commit, in
planning order, through the ``hook`` middleware chain; a failing hook is logged and recorded in
the history, and changes nothing else."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dynaflow import (
    Action,
    ConfigurationError,
    ExecutionPlan,
    Middleware,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
    World,
)
from dynaflow.executor import InlineExecutor

from .actions import PROBE, WAIT, Probe
from .waiting import Waiter, finish, run_step_id


class Recording:
    """A mixin (not an Action): every hook records (kind, name, plan state, plan result)."""

    def _record(self, kind: str, plan: ExecutionPlan) -> None:
        action: Any = self
        PROBE.record("hook", (kind, action.input.get("name"), plan.state, plan.result))

    def on_success(self, plan: ExecutionPlan) -> None:
        self._record("on_success", plan)

    def on_failure(self, plan: ExecutionPlan) -> None:
        self._record("on_failure", plan)

    def on_stopped(self, plan: ExecutionPlan) -> None:
        self._record("on_stopped", plan)

    def on_paused(self, plan: ExecutionPlan) -> None:
        self._record("on_paused", plan)


class Leaf(Recording, Action):
    """Fails while ``input["fail"]`` is set and the probe event ``fixed`` is not."""

    def run(self) -> None:
        if self.input.get("fail") and not PROBE.event("fixed").is_set():
            raise RuntimeError(f"{self.input['name']} failed")
        self.output["ran"] = self.input["name"]


class Quiet(Action):
    """No hooks: only the actions that define them are called."""

    def run(self) -> None:
        pass


class Deploy(Recording, Action):
    def plan(self, fail: bool = False) -> None:
        self.plan_self(name="deploy")
        first = self.plan_action(Leaf, name="first")
        self.plan_action(Quiet)
        self.plan_action(Leaf, name="second", fail=fail, after=first.output["ran"])

    def run(self) -> None:
        pass


class Stops(Recording, Action):
    rescue_strategy = Rescue.FAIL

    def run(self) -> None:
        raise RuntimeError("stop at once")


class WaitingHooked(Recording, Waiter):
    pass


class BrokenHook(Action):
    def run(self) -> None:
        self.output["done"] = True

    def on_success(self, plan: ExecutionPlan) -> None:
        raise ValueError(f"mail server down for {plan.id}")

    def on_stopped(self, plan: ExecutionPlan) -> None:
        PROBE.record("hook", ("on_stopped", "broken", plan.state, plan.result))


class FailsToPlan(Recording, Action):
    def plan(self) -> None:
        self.plan_self(name="root")
        self.plan_action(Leaf, name="planned child")
        raise RuntimeError("inventory unreachable")


def hooks(probe: Probe) -> list[tuple[str, str, str, str]]:
    return [(k, n, str(s), str(r)) for k, n, s, r in probe.names("hook")]


def hook_history(plan: ExecutionPlan) -> list[tuple[str, Any]]:
    return [
        (h.event, (h.detail or {}).get("action_id"))
        for h in plan.history
        if h.event.startswith("hook ")
    ]


def test_a_success_calls_on_success_then_on_stopped_in_planning_order(world: World) -> None:
    plan = world.trigger(Deploy).wait(WAIT)  # hooks have run before the plan's future resolves
    assert plan.result == PlanResult.SUCCESS
    stopped = ("stopped", "success")
    assert hooks(PROBE) == [
        (kind, name, *stopped)
        for name in ("deploy", "first", "second")
        for kind in ("on_success", "on_stopped")
    ]
    history = world.get_plan(plan.id)
    ids = [a.id for a in plan.actions if a.action_class.endswith(".Leaf")]
    root = plan.actions[0].id
    assert hook_history(history) == [
        ("hook on_success", root),
        ("hook on_stopped", root),
        ("hook on_success", ids[0]),
        ("hook on_stopped", ids[0]),
        ("hook on_success", ids[1]),
        ("hook on_stopped", ids[1]),
    ]
    assert {h.world_id for h in history.history if h.event.startswith("hook ")} == {world.id}


def test_each_pause_calls_on_paused_once_and_the_cancel_on_failure(world: World) -> None:
    plan = world.trigger(Deploy, fail=True).wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    paused = [("on_paused", n, "paused", "error") for n in ("deploy", "first", "second")]
    assert hooks(PROBE) == paused

    assert world.resume(plan.id).result(WAIT).state == PlanState.PAUSED  # fails again
    assert hooks(PROBE) == paused * 2

    cancelled = world.cancel(plan.id).result(WAIT)
    assert cancelled.result == PlanResult.CANCELLED
    assert hooks(PROBE)[6:] == [
        (kind, name, "stopped", "cancelled")
        for name in ("deploy", "first", "second")
        for kind in ("on_failure", "on_stopped")
    ]


def test_resuming_to_success_calls_on_success(world: World) -> None:
    plan = world.trigger(Deploy, fail=True).wait(WAIT)
    PROBE.event("fixed").set()
    assert world.resume(plan.id).result(WAIT).result == PlanResult.SUCCESS
    assert [h for h in hooks(PROBE) if h[0] != "on_paused"] == [
        (kind, name, "stopped", "success")
        for name in ("deploy", "first", "second")
        for kind in ("on_success", "on_stopped")
    ]


def test_an_error_stop_calls_on_failure(world: World) -> None:
    plan = world.trigger(Stops, name="s").wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert hooks(PROBE) == [
        ("on_failure", "s", "stopped", "error"),
        ("on_stopped", "s", "stopped", "error"),
    ]


def test_cancelling_a_plan_that_never_ran_calls_its_hooks(world: World) -> None:
    planned = world.plan(Leaf, name="never")
    world.cancel(planned.id).result(WAIT)
    assert hooks(PROBE) == [
        ("on_failure", "never", "stopped", "cancelled"),
        ("on_stopped", "never", "stopped", "cancelled"),
    ]


def test_a_halt_of_a_waiting_plan_calls_on_failure(world: World) -> None:
    triggered = world.trigger(WaitingHooked, name="w")
    assert hooks(PROBE) == []  # running, suspended: no change to stopped or paused yet
    world.halt(triggered.plan_id).result(WAIT)
    assert hooks(PROBE) == [
        ("on_failure", "w", "stopped", "cancelled"),
        ("on_stopped", "w", "stopped", "cancelled"),
    ]


def test_a_failing_hook_is_logged_and_recorded_and_changes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="dynaflow.hooks"):
        plan = world.trigger(BrokenHook).wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert hooks(PROBE) == [("on_stopped", "broken", "stopped", "success")]  # still called
    history = world.get_plan(plan.id).history
    (failed,) = [h for h in history if h.event == "hook on_success failed"]
    assert failed.detail is not None
    assert failed.detail["error"]["class_name"] == "ValueError"
    assert failed.detail["error"]["message"] == f"mail server down for {plan.id}"
    assert "Traceback" in failed.detail["error"]["traceback"]
    assert failed.detail["action_class"] == BrokenHook.action_class_name
    assert [h.event for h in history if h.event.startswith("hook ")] == [
        "hook on_success failed",
        "hook on_stopped",
    ]
    assert "BrokenHook#1.on_success() raised for plan" in caplog.text
    assert world.trigger(BrokenHook).wait(WAIT).result == PlanResult.SUCCESS  # world goes on


def test_a_failed_planning_calls_the_hooks_of_what_was_planned(world: World) -> None:
    with pytest.raises(PlanningFailed):
        world.trigger(FailsToPlan)
    assert hooks(PROBE) == [
        (kind, name, "stopped", "error")
        for name in ("root", "planned child")
        for kind in ("on_failure", "on_stopped")
    ]


class AroundHooks(Middleware):
    def __init__(self, name: str) -> None:
        self.name = name

    def hook(self, action: Action, call_next: Any, kind: str, plan: Any) -> Any:
        PROBE.record("mw", (self.name, type(action).__name__, kind, plan.id))
        return call_next(kind, plan)


class Audited(Leaf):
    middleware = [AroundHooks("class")]


def test_hooks_go_through_the_hook_middleware_chain(world_factory: Any) -> None:
    world = world_factory(middleware=[AroundHooks("world")])
    plan = world.trigger(Audited, name="a").wait(WAIT)
    assert PROBE.names("mw") == [
        (layer, "Audited", kind, plan.id)
        for kind in ("on_success", "on_stopped")
        for layer in ("world", "class")
    ]
    assert [h[0] for h in hooks(PROBE)] == ["on_success", "on_stopped"]


class Vetoing(Middleware):
    def hook(self, action: Action, call_next: Any, kind: str, plan: Any) -> Any:
        raise PermissionError(f"no {kind} for you")


def test_a_hook_middleware_that_raises_is_recorded_as_the_hook_failing(
    world_factory: Any,
) -> None:
    world = world_factory(middleware=[Vetoing()])
    plan = world.trigger(Leaf, name="v").wait(WAIT)
    assert plan.result == PlanResult.SUCCESS
    assert hooks(PROBE) == []
    events = [h.event for h in world.get_plan(plan.id).history if h.event.startswith("hook")]
    assert events == ["hook on_success failed", "hook on_stopped failed"]


def test_a_hook_that_does_not_take_the_plan_is_refused_when_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Careless.on_success must take the plan"):

        class Careless(Action):
            def on_success(self) -> None:  # type: ignore[override]
                pass


@pytest.mark.sql
def test_the_world_that_stops_the_plan_calls_its_hooks(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    triggered = client.trigger(WaitingHooked, name="remote")
    if isinstance(worker.executor, InlineExecutor):
        worker.run_pending()
    step_id = run_step_id(client, triggered.plan_id, "remote")
    worker.event(triggered.plan_id, step_id, "finish")
    plan = finish(worker, triggered.plan_id)
    assert plan.result == PlanResult.SUCCESS
    history = worker.get_plan(plan.id).history
    assert {h.world_id for h in history if h.event.startswith("hook ")} == {worker.id}
    assert [h[0] for h in hooks(PROBE)] == ["on_success", "on_stopped"]


class Cleanup(Action):
    def run(self) -> None:
        PROBE.record("cleanup", self.input["after"])


class CleansUp(Action):
    rescue_strategy = Rescue.FAIL

    def run(self) -> None:
        raise RuntimeError("half done")

    def on_failure(self, plan: ExecutionPlan) -> None:
        PROBE.record("follow-up", self.world.trigger(Cleanup, after=plan.id).plan_id)


def test_a_hook_may_trigger_a_follow_up_plan(world: World) -> None:
    plan = world.trigger(CleansUp).wait(WAIT)
    (follow_up,) = PROBE.names("follow-up")
    done = world.follow(follow_up).result(WAIT)
    assert (plan.result, done.result) == (PlanResult.ERROR, PlanResult.SUCCESS)
    assert PROBE.names("cleanup") == [plan.id]
