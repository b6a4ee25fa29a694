"""Mistakes a user can make: each raises a dynaflow error naming the problem, and the database
stays consistent (nothing half-written, nothing run that should not have)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from dynaflow import (
    Action,
    ConfigurationError,
    DynaflowError,
    InvalidState,
    PlanningFailed,
    PlanResult,
    PlanState,
    StepKind,
    StepState,
    UnknownPlan,
    World,
    WorldClosed,
    registry,
)

from .actions import WAIT, Echo, Noop, Probe, action_id, events_of, states, step_of, trigger


def assert_nothing_ran(plan: Any, probe: Probe) -> None:
    assert probe.calls == []
    for step in plan.steps:
        if step.kind != StepKind.PLAN:
            assert step.state == StepState.PENDING and step.started_at is None


# -- not an action class ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [object, Noop(), "integration.actions.Noop", print, BaseModel, None],
    ids=["class", "instance", "name", "function", "model", "none"],
)
@pytest.mark.executors("inline")  # refused before anything is planned
def test_triggering_something_that_is_not_an_action_class(world: Any, target: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        world.trigger(target)
    assert "is not an Action class" in str(info.value)
    assert "dynaflow.Action" in str(info.value)
    with pytest.raises(ConfigurationError):
        world.plan(target)
    assert world.count_plans() == 0


# -- planning mistakes -----------------------------------------------------------------------


class NeedsHost(Action):
    def plan(self, host: str, *, size: int = 1) -> None:
        self.plan_self(host=host, size=size)

    def run(self) -> None:
        pass


class WrongArguments(Action):
    def plan(self) -> None:
        self.plan_action(Noop, name="planned-first")
        self.plan_action(NeedsHost, "h1", colour="red")
        self.plan_action(Noop, name="never-planned")


@pytest.mark.executors("inline")  # planning only: the executor plays no part
def test_plan_action_with_arguments_the_child_does_not_accept(world: Any, probe: Probe) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(WrongArguments)

    cause = info.value.cause
    assert isinstance(cause, DynaflowError)
    assert NeedsHost.action_class_name in str(cause)
    assert "colour" in str(cause)
    assert NeedsHost.action_class_name in str(info.value)
    plan = world.get_plan(info.value.plan_id)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert plan.ended_at is not None
    assert_nothing_ran(plan, probe)
    needs_host = [s for s in plan.steps if s.action_class == NeedsHost.action_class_name]
    assert [(s.kind, s.state) for s in needs_host] == [(StepKind.PLAN, StepState.ERROR)]
    assert "colour" in needs_host[0].error.message
    root_step = plan.steps[0]
    assert root_step.state == StepState.ERROR
    assert NeedsHost.action_class_name in root_step.error.message
    assert not any(a.input.get("name") == "never-planned" for a in plan.actions)
    assert plan.error is not None and "colour" in plan.error.message
    assert events_of(plan, None)[-1] == "plan planning failed"


class PlansAString(Action):
    def plan(self) -> None:
        self.plan_action("integration.actions.Noop")  # type: ignore[arg-type]


@pytest.mark.executors("inline")  # planning only: the executor plays no part
def test_plan_action_with_something_that_is_not_an_action_class(world: Any) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(PlansAString)
    assert "'integration.actions.Noop' is not an Action class" in str(info.value.cause)


class Machine(Action):
    class Input(BaseModel):
        name: str
        cpus: int
        memory_gb: float
        tags: list[str] = []

    def run(self) -> None:
        pass


@pytest.mark.executors("inline")  # planning only: the executor plays no part
def test_input_validation_failure_lists_every_bad_field(world: Any, probe: Probe) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(Machine, name="web", cpus="four", tags="not-a-list")

    message = str(info.value)
    for field in ("cpus", "memory_gb", "tags"):
        assert f"{field}: " in message, field
    assert "name: " not in message
    plan = world.get_plan(info.value.plan_id)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert_nothing_ran(plan, probe)
    assert plan.steps[0].error.class_name == "PlanningError"
    assert "cpus" in plan.steps[0].error.message


class Exploding(Action):
    def plan(self, name: str) -> None:
        self.plan_self(name=name)
        if name == "bad":
            raise KeyError("inventory")

    def run(self) -> None:
        pass


class PlansTwo(Action):
    def plan(self) -> None:
        self.plan_action(Exploding, "good")
        self.plan_action(Exploding, "bad")


def test_a_planning_error_aborts_and_is_recorded_on_the_failing_plan_step(
    world: Any, probe: Probe
) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(PlansTwo)

    assert isinstance(info.value.cause, KeyError)
    plan_id = info.value.plan_id
    assert plan_id in str(info.value)
    plan = world.get_plan(plan_id)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert_nothing_ran(plan, probe)
    plan_steps = {
        a.input.get("name", "root"): s
        for a in plan.actions
        for s in plan.steps
        if s.action_id == a.id and s.kind == StepKind.PLAN
    }
    assert plan_steps["good"].state == StepState.SUCCESS
    bad = plan_steps["bad"]
    assert (bad.state, bad.error.class_name) == ("error", "KeyError")
    assert bad.error.message == "'inventory'"
    assert 'raise KeyError("inventory")' in bad.error.traceback
    assert plan_steps["root"].state == StepState.ERROR
    assert world.find_plans(state="stopped", result="error")[0].id == plan_id


class Swallows(Action):
    """Catches its child's planning error and plans on."""

    def plan(self) -> None:
        try:
            self.plan_action(Exploding, "bad")  # plans its own run step, then raises
        except KeyError:
            pass
        self.plan_action(Noop, name="after")


@pytest.mark.executors("inline")  # planning only
def test_a_planning_error_aborts_even_when_the_parent_catches_it(world: Any, probe: Probe) -> None:
    plan = world.plan(Swallows)
    assert plan.steps_of(Exploding, "plan")[0].state == StepState.ERROR
    assert (plan.state, plan.result) == ("stopped", "error")
    with pytest.raises(PlanningFailed):
        world.trigger(Swallows)
    assert probe.calls == []


def test_world_plan_records_a_planning_error_without_raising(world: Any, probe: Probe) -> None:
    plan = world.plan(PlansTwo)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert plan.error.class_name == "KeyError"
    with pytest.raises(InvalidState, match="stopped"):
        world.execute(plan.id).result(timeout=WAIT)
    assert_nothing_ran(world.get_plan(plan.id), probe)


# -- run-time mistakes -----------------------------------------------------------------------


class NotJSONOutput(Action):
    def run(self) -> None:
        self.output["created"] = datetime(2030, 1, 1)


class ListOutput(Action):
    def run(self) -> None:
        self.output = ["a", "b"]


class AfterNotJSON(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(NotJSONOutput)
            self.plan_action(Noop, name="after")


def test_an_output_that_is_not_json_fails_the_step(world: Any, probe: Probe) -> None:
    plan = trigger(world, AfterNotJSON)

    assert (plan.state, plan.result) == ("paused", "error")
    step = plan.steps_of(NotJSONOutput, "run")[0]
    assert step.state == StepState.ERROR
    assert step.error.class_name == "NotJSON"
    assert NotJSONOutput.action_class_name in step.error.message
    assert "['created']" in step.error.message
    assert "datetime" in step.error.message
    assert plan.action(step.action_id).output == {}
    assert step_of(plan, "after").state == StepState.PENDING
    assert probe.calls == []


def test_an_output_that_is_not_a_dict_fails_the_step(world: Any) -> None:
    plan = trigger(world, ListOutput)
    (step,) = plan.run_steps()
    assert (step.state, step.error.class_name) == ("error", "NotJSON")
    assert ListOutput.action_class_name in step.error.message
    assert "list" in step.error.message


class SetsNothing(Action):
    def run(self) -> None:
        self.output["other"] = {"a": 1}


class ReadsMissingKey(Action):
    def plan(self) -> None:
        producer = self.plan_action(SetsNothing)
        self.plan_action(Noop, name="fine")
        self.plan_action(Noop, name="consumer", uuid=producer.output["other"]["b"]["c"])


def test_a_reference_to_a_key_the_producer_never_sets(world: Any, probe: Probe) -> None:
    plan = trigger(world, ReadsMissingKey)

    assert (plan.state, plan.result) == ("paused", "error")
    assert plan.steps_of(SetsNothing, "run")[0].state == StepState.SUCCESS
    consumer = step_of(plan, "consumer")
    assert consumer.state == StepState.ERROR
    assert consumer.error.class_name == "MissingOutputKey"
    producer_id = plan.steps_of(SetsNothing, "run")[0].action_id
    assert f"{SetsNothing.action_class_name}#{producer_id} output['other']['b']" in (
        consumer.error.message
    )
    assert f"#{action_id(plan, 'consumer')}" in consumer.error.message
    assert probe.names("run") == ["fine"]


# -- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("plan_id", ["no-such-plan", "00000000-0000-0000-0000-000000000000", 42])
@pytest.mark.executors("inline")  # a read: the executor plays no part
def test_get_plan_of_an_unknown_id(world: Any, plan_id: Any) -> None:
    with pytest.raises(UnknownPlan) as info:
        world.get_plan(plan_id)
    assert repr(plan_id) in str(info.value)
    assert "find_plans" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_executing_an_unknown_plan(world: Any) -> None:
    with pytest.raises(UnknownPlan, match="no-such-plan"):
        world.execute("no-such-plan").result(timeout=WAIT)


# -- a closed world --------------------------------------------------------------------------


def test_using_a_world_after_close(world_factory: Any, backend: Any) -> None:
    world = world_factory()
    plan = trigger(world, Noop, name="before-close")
    world.close()
    world.close()  # closing twice is harmless
    assert world.closed

    calls = [
        lambda: world.plan(Noop, name="x"),
        lambda: world.trigger(Noop, name="x"),
        lambda: world.execute(plan.id),
        lambda: world.get_plan(plan.id),
        lambda: world.find_plans(),
        lambda: world.count_plans(),
        lambda: world.run_pending(),
    ]
    for call in calls:
        with pytest.raises(WorldClosed, match="World is closed"):
            call()

    if backend.storage != "memory":  # what was written before close is still there
        reopened = world_factory()
        assert reopened.get_plan(plan.id).state == "stopped"
        assert reopened.count_plans() == 1


# -- an action class the process does not know -----------------------------------------------


class Forgettable(Action):
    def run(self) -> None:
        self.output["ran"] = True


class UsesForgettable(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Noop, name="a")
            self.plan_action(Forgettable, name="f")


@pytest.fixture
def forget() -> Iterator[Any]:
    """``forget(cls)`` unregisters an action class until the end of the test (or ``restore()``)."""
    removed: dict[str, type[Action]] = {}

    def forget(cls: type[Action]) -> None:
        removed[cls.action_class_name] = registry._by_name.pop(cls.action_class_name)

    def restore() -> None:
        registry._by_name.update(removed)
        removed.clear()

    forget.restore = restore  # type: ignore[attr-defined]
    yield forget
    restore()


def test_a_plan_whose_action_class_is_unknown_lists_shows_and_fails_clearly(
    world: Any, forget: Any
) -> None:
    plan_id = world.plan(UsesForgettable).id
    name, root_name = Forgettable.action_class_name, UsesForgettable.action_class_name
    forget(Forgettable)
    forget(UsesForgettable)

    listed = world.find_plans(action=root_name)
    assert [(r.id, r.label, r.state) for r in listed] == [(plan_id, "UsesForgettable", "planned")]
    shown = world.get_plan(plan_id)
    assert [a.action_class for a in shown.actions] == [root_name, Noop.action_class_name, name]

    plan = world.execute(plan_id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    (step,) = plan.steps_of(name, "run")
    assert step.state == StepState.ERROR
    assert step.error.class_name == "UnknownActionClass"
    assert repr(name) in step.error.message
    assert "dynaflow.actions" in step.error.message
    assert states(plan)["a"] == "success"

    forget.restore()  # the plugin is installed: the paused plan runs on
    done = world.execute(plan_id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert done.action(step.action_id).output == {"ran": True}


# -- more planning mistakes ------------------------------------------------------------------


class Target(Action):
    def run(self) -> None:
        self.output["v"] = 1


class PlanSelfTwice(Action):
    def plan(self) -> None:
        self.plan_self(attempt=1)
        self.plan_self(attempt=2)

    def run(self) -> None:
        pass


class WaitsForItself(Action):
    """Its child runs first (a sequence) but reads the parent's output: a cycle."""

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Echo, name="child", value=self.output["v"])
            self.plan_self()

    def run(self) -> None:
        self.output["v"] = 1


class PlansWhileRunning(Action):
    def run(self) -> None:
        self.plan_action(Target)


@pytest.mark.parametrize(
    ("action_class", "kwargs", "cause", "message"),
    [
        (Target, {"when": datetime(2030, 1, 1)}, "NotJSON", "['when'] is a datetime.datetime"),
        (Target, {"ids": {1, 2}}, "NotJSON", "['ids'] is a builtins.set"),
        (PlanSelfTwice, {}, "PlanningError", "called plan_self() twice"),
        (WaitsForItself, {}, "PlanningError", "form a cycle"),
    ],
    ids=["datetime", "set", "plan-self-twice", "cycle"],
)
@pytest.mark.executors("inline")  # planning only: the executor plays no part
def test_planning_mistakes_fail_planning_with_a_clear_cause(
    world: Any, probe: Probe, action_class: Any, kwargs: Any, cause: str, message: str
) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(action_class, **kwargs)
    assert type(info.value.cause).__name__ == cause
    assert message in str(info.value.cause)
    assert isinstance(info.value.cause, DynaflowError)
    plan = world.get_plan(info.value.plan_id)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert message in plan.error.message
    assert_nothing_ran(plan, probe)


def test_planning_outside_plan_fails_the_step(world: Any) -> None:
    plan = trigger(world, PlansWhileRunning)
    (step,) = plan.run_steps()
    assert (step.state, step.error.class_name) == ("error", "PlanningError")
    assert "plan_action() can only be called while" in step.error.message
    assert PlansWhileRunning.action_class_name in step.error.message


class CoreForBrokenPlugin(Action):
    def plan(self, host: str) -> None:
        self.plan_self(host=host)


class BrokenPlugin(Action):
    subscribe = CoreForBrokenPlugin

    def plan(self, hostname: str) -> None:  # not the core action's arguments
        self.plan_self(hostname=hostname)


@pytest.mark.executors("inline")  # planning only: the executor plays no part
def test_a_subscriber_that_cannot_take_the_core_arguments_fails_planning(world: Any) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(CoreForBrokenPlugin, host="h1")
    assert BrokenPlugin.action_class_name in str(info.value.cause)
    plan = world.get_plan(info.value.plan_id)
    broken = plan.steps_of(BrokenPlugin)
    assert [(s.kind, s.state) for s in broken] == [("plan", "error")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "processes"}, "executor"),
        ({"workers": 0}, "workers"),
        ({"workers": "4"}, "workers"),
    ],
)
def test_a_world_with_bad_options_is_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        World("memory://", **options)
