"""Middleware through the World: registration, order, every hook, and the context middleware."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest
from pydantic import BaseModel

from dynaflow import (
    Action,
    ConfigurationError,
    ContextMiddleware,
    Middleware,
    PlanningFailed,
    StepState,
    World,
)
from dynaflow.phases import PhaseContext

from .actions import PROBE, WAIT, Probe, trigger


class Around(Middleware):
    """Records ``(name, "run>")`` / ``(name, "run<")`` around ``run``."""

    name = "around"

    def run(self, action: Action, call_next: Any, *args: Any) -> Any:
        PROBE.record(self.name, "run>")
        try:
            return call_next(*args)
        finally:
            PROBE.record(self.name, "run<")


class WorldMw(Around):
    name = "world"


class BaseMw(Around):
    name = "base"


class ChildMw(Around):
    name = "child"


class Audited(Action):
    middleware = [BaseMw]

    def run(self) -> None:
        PROBE.record("user", type(self).__name__)


class AuditedChild(Audited):
    middleware = [ChildMw]


def test_world_middleware_is_outermost_and_class_middleware_is_inherited(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(middleware=[WorldMw])
    plan = trigger(world, AuditedChild)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls == [
        ("world", "run>"),
        ("base", "run>"),
        ("child", "run>"),
        ("user", "AuditedChild"),
        ("child", "run<"),
        ("base", "run<"),
        ("world", "run<"),
    ]

    probe.reset()
    trigger(world, Audited)  # the base class does not get its subclass's middleware
    assert [c[0] for c in probe.calls] == ["world", "base", "user", "base", "world"]


def test_use_orders_class_middleware_and_a_missing_reference_raises(
    world: World, probe: Probe
) -> None:
    class First(Around):
        name = "first"

    class Second(Around):
        name = "second"

    class Third(Around):
        name = "third"

    class Replacement(Around):
        name = "replacement"

    class Ordered(Action):
        middleware = [First]

        def run(self) -> None:
            PROBE.record("user", "run")

    Ordered.use(Second, before=First)
    Ordered.use(Third, after=First)
    trigger(world, Ordered)
    assert [c[0] for c in probe.calls] == [
        "second",
        "first",
        "third",
        "user",
        "third",
        "first",
        "second",
    ]

    with pytest.raises(ConfigurationError, match="not in the stack"):
        Ordered.use(Replacement, before=WorldMw)
    with pytest.raises(ConfigurationError, match="not in the stack"):
        Ordered.use(Replacement, replace=ChildMw)

    # a later registration changes the chain of the same world
    Ordered.use(Replacement, replace=First)
    probe.reset()
    trigger(world, Ordered)
    assert [c[0] for c in probe.calls] == [
        "second",
        "replacement",
        "third",
        "user",
        "third",
        "replacement",
        "second",
    ]


def test_world_middleware_with_a_bad_reference_is_refused() -> None:
    with World("memory://", executor="inline", middleware=[WorldMw]) as world:
        with pytest.raises(ConfigurationError, match="not in the stack"):
            world.middleware.use(ChildMw, after=BaseMw)
        world.middleware.use(ChildMw, before=WorldMw)
        assert [type(m) for m in world.middleware][-2:] == [ChildMw, WorldMw]
    with pytest.raises(ConfigurationError, match="not a Middleware"):
        World("memory://", executor="inline", middleware=[print])  # type: ignore[list-item]


class EveryHook(Middleware):
    """Records entering and leaving every hook; changes what plan and run see and give."""

    def plan_phase(self, plan: PhaseContext, call_next: Any) -> Any:
        PROBE.record("plan_phase>", plan.phase)
        result = call_next()
        PROBE.record("plan_phase<")
        return result

    def plan(self, action: Action, call_next: Any, *args: Any, **kwargs: Any) -> Any:
        PROBE.record("plan>", type(action).__name__)
        result = call_next(*args, owner="ops", **kwargs)  # adds an argument
        PROBE.record("plan<", type(action).__name__)
        return result

    def run(self, action: Action, call_next: Any, *args: Any) -> Any:
        PROBE.record("run>", action.input["owner"])
        result = call_next(*args)
        action.output["stamped"] = True  # changes what is saved
        PROBE.record("run<")
        return result

    def finalize_phase(self, plan: PhaseContext, call_next: Any) -> Any:
        PROBE.record("finalize_phase>", plan.phase)
        result = call_next()
        PROBE.record("finalize_phase<")
        return result

    def finalize(self, action: Action, call_next: Any) -> Any:
        PROBE.record("finalize>")
        result = call_next()
        PROBE.record("finalize<")
        return result


class Owned(Action):
    def plan(self, name: str, owner: str = "nobody") -> None:
        PROBE.record("user plan", owner)
        self.plan_self(name=name, owner=owner)

    def run(self) -> None:
        PROBE.record("user run")
        self.output["done"] = True

    def finalize(self) -> None:
        PROBE.record("user finalize")


def test_every_hook_wraps_its_phase(world_factory: Any, probe: Probe) -> None:
    world = world_factory(middleware=[EveryHook])
    plan = trigger(world, Owned, "m1")

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls == [
        ("plan_phase>", "plan"),
        ("plan>", "Owned"),
        ("user plan", "ops"),
        ("plan<", "Owned"),
        ("plan_phase<",),
        ("run>", "ops"),
        ("user run",),
        ("run<",),
        ("finalize_phase>", "finalize"),
        ("finalize>",),
        ("user finalize",),
        ("finalize<",),
        ("finalize_phase<",),
    ]
    assert plan.actions[0].input == {"name": "m1", "owner": "ops"}
    assert plan.actions[0].output == {"done": True, "stamped": True}


class Refuse(Middleware):
    def plan_phase(self, plan: PhaseContext, call_next: Any) -> Any:
        raise PermissionError("planning is frozen today")


def test_a_plan_phase_middleware_that_raises_fails_planning(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(middleware=[Refuse])
    with pytest.raises(PlanningFailed) as info:
        world.trigger(Owned, "m1")
    assert isinstance(info.value.cause, PermissionError)
    assert probe.calls == []
    plan = world.get_plan(info.value.plan_id)
    assert (plan.state, plan.result) == ("stopped", "error")


class RefuseRun(Middleware):
    def run(self, action: Action, call_next: Any, *args: Any) -> Any:
        raise PermissionError(f"{type(action).__name__} may not run today")


def test_a_run_middleware_that_raises_fails_the_step(world_factory: Any, probe: Probe) -> None:
    world = world_factory(middleware=[RefuseRun])
    plan = trigger(world, Owned, "m1")
    assert (plan.state, plan.result) == ("paused", "error")
    (step,) = plan.run_steps()
    assert step.state == StepState.ERROR
    assert (step.error.class_name, step.error.message) == (
        "PermissionError",
        "Owned may not run today",
    )
    assert ("user run",) not in probe.calls


# -- context middleware ----------------------------------------------------------------------

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
USER: contextvars.ContextVar[str] = contextvars.ContextVar("user")


class InContext(Action):
    class Input(BaseModel):
        name: str

    def run(self) -> None:
        PROBE.record("run", REQUEST_ID.get(None), USER.get(None), self.context)
        self.output["request_id"] = REQUEST_ID.get(None)

    def finalize(self) -> None:
        PROBE.record("finalize", REQUEST_ID.get(None), USER.get(None))


class DictInContext(Action):
    def run(self) -> None:
        PROBE.record("input", dict(self.input))


def plan_as(world: World, request_id: str, action_class: type[Action], **kwargs: Any) -> str:
    """Plan in a context where ``REQUEST_ID`` is set; the caller's context stays untouched."""

    def plan() -> str:
        REQUEST_ID.set(request_id)
        return world.plan(action_class, **kwargs).id

    return contextvars.copy_context().run(plan)


def test_context_is_captured_at_plan_time_and_restored_in_run_and_finalize(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(middleware=[ContextMiddleware(REQUEST_ID, USER)])
    plan_id = plan_as(world, "req-42", InContext, name="ctx")
    assert REQUEST_ID.get(None) is None

    plan = world.execute(plan_id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls == [
        ("run", "req-42", None, {"request_id": "req-42"}),
        ("finalize", "req-42", None),
    ]
    assert plan.actions[0].output == {"request_id": "req-42"}
    assert plan.actions[0].input == {"name": "ctx", "__context__": {"request_id": "req-42"}}
    assert REQUEST_ID.get(None) is None  # reset after run and finalize (inline: this thread)


def test_captured_context_is_kept_out_of_dict_input(world_factory: Any, probe: Probe) -> None:
    world = world_factory(middleware=[ContextMiddleware(REQUEST_ID)])
    plan_id = plan_as(world, "req-7", DictInContext, name="d")
    plan = world.execute(plan_id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls == [("input", {"name": "d"})]


def test_context_middleware_needs_a_variable() -> None:
    with pytest.raises(ConfigurationError, match="ContextVar"):
        ContextMiddleware()


@pytest.mark.executors("inline")
def test_context_values_must_be_json(world_factory: Any) -> None:
    world = world_factory(middleware=[ContextMiddleware(REQUEST_ID)])

    def plan() -> None:
        REQUEST_ID.set(object())  # type: ignore[arg-type]
        world.trigger(InContext, name="x")

    with pytest.raises(PlanningFailed) as info:
        contextvars.copy_context().run(plan)
    assert "context variable 'request_id' is a builtins.object" in str(info.value.cause)


def test_world_middleware_added_later_wraps_the_next_runs(world: World, probe: Probe) -> None:
    trigger(world, Audited)
    assert [c[0] for c in probe.calls] == ["base", "user", "base"]
    world.middleware.use(WorldMw)
    probe.reset()
    trigger(world, Audited)
    assert [c[0] for c in probe.calls] == ["world", "base", "user", "base", "world"]
