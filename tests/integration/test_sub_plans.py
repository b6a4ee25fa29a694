"""Sub-plans: a SubPlans step plans its children in batches, runs at most ``concurrency`` of
them at once, waits suspended, and decides when they have all ended; cancel, halt and resume
reach the children. On both executors and every storage."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import (
    Action,
    ConfigurationError,
    PlanResult,
    PlanState,
    SubPlan,
    SubPlans,
    World,
)

from .actions import PROBE, WAIT
from .waiting import is_inline

#: children that fail: their ``n`` (cleared by the test to "fix the cause")
BROKEN: set[int] = set()


class Child(Action):
    def run(self) -> None:
        n = self.input["n"]
        with PROBE.running_step(f"child-{n}"):
            if self.input.get("gated"):
                PROBE.wait("release")
            if n in BROKEN:
                raise RuntimeError(f"child {n} is broken")
            self.output["double"] = 2 * n


class NotPlannable(Action):
    def plan(self, n: int) -> None:
        raise ValueError(f"cannot plan {n}")


class Parent(SubPlans, Action):
    batch_size = 5
    concurrency = 3

    def plan(self, count: int, gated: bool = False, bad: tuple[int, ...] = ()) -> None:
        self.plan_self(count=count, gated=gated, bad=list(bad))

    def create_sub_plans(self) -> Any:
        PROBE.record("create", self.input["count"])
        for n in range(self.input["count"]):
            if n in self.input["bad"]:
                yield SubPlan(NotPlannable, n)
            else:
                yield SubPlan(Child, n=n, gated=self.input["gated"])


class Unlimited(Parent):
    concurrency = None


class Finalizing(Action):
    def run(self) -> None:
        self.output["n"] = self.input["n"]

    def finalize(self) -> None:
        PROBE.record("finalized", self.input["n"])


class ParentOfFinalizing(SubPlans, Action):
    concurrency = 2

    def create_sub_plans(self) -> Any:
        for n in range(4):
            yield SubPlan(Finalizing, n=n)


class YieldsJunk(SubPlans, Action):
    def create_sub_plans(self) -> Any:
        yield ("not", "a", "SubPlan")


@pytest.fixture(autouse=True)
def _fixed() -> Any:
    BROKEN.clear()
    yield
    BROKEN.clear()


def children(world: World, plan_id: str) -> list[Any]:
    return world.find_plans(parent=plan_id, per_page=1000, order_by="created_at")


def test_children_run_at_most_concurrency_at_once_and_the_parent_counts_them(
    world: World,
) -> None:
    plan = world.trigger(Parent, 12).wait(WAIT)

    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    (output,) = [a.output for a in plan.actions if "sub_plans" in a.output]
    state = output["sub_plans"]
    assert (state["total"], state["planned"], state["started"], state["ended"]) == (12,) * 4
    assert state["counts"] == {"success": 12} and state["failed"] == {}
    kids = children(world, plan.id)
    assert len(kids) == 12 and world.count_plans(parent=plan.id) == 12
    step = next(s for s in plan.steps if s.kind == "run")
    assert {(k.parent_id, k.parent_step_id) for k in kids} == {(plan.id, step.id)}
    assert all((k.state, k.result) == ("stopped", "success") for k in kids)
    assert sorted(world.get_plan(k.id).actions[0].output["double"] for k in kids) == [
        2 * n for n in range(12)
    ]
    # recorded by the children themselves
    assert 1 <= PROBE.max_running <= 3
    # planned in batches of 5 (12 children: three batches, then nothing more to plan)
    assert PROBE.names("create") == [12, 12, 12]


@pytest.mark.executors("threads")
def test_the_limit_is_reached_and_the_next_batch_waits_for_room(world: World) -> None:
    triggered = world.trigger(Parent, 7, gated=True)
    PROBE.wait_running(3)
    # three run, two more are planned and wait (the batch of five); the rest is not planned yet
    assert world.count_plans(parent=triggered.plan_id) == 5
    assert world.count_plans(parent=triggered.plan_id, state="running") == 3
    parent = world.get_plan(triggered.plan_id)
    (output,) = [a.output for a in parent.actions if "sub_plans" in a.output]
    assert (output["sub_plans"]["started"], output["sub_plans"]["ended"]) == (3, 0)
    PROBE.event("release").set()
    plan = triggered.wait(WAIT)
    assert plan.result == PlanResult.SUCCESS
    assert PROBE.max_running == 3
    assert world.count_plans(parent=triggered.plan_id, result="success") == 7


def test_without_a_limit_every_child_starts_at_once(world: World) -> None:
    plan = world.trigger(Unlimited, 8).wait(WAIT)
    assert plan.result == PlanResult.SUCCESS
    assert world.count_plans(parent=plan.id, result="success") == 8


def test_failed_children_fail_the_parent_naming_them_and_resume_goes_down_to_them(
    world: World,
) -> None:
    BROKEN.update({2, 5})
    plan = world.trigger(Parent, 7).wait(WAIT)

    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    failed = {k.id for k in children(world, plan.id) if k.state == "paused"}
    assert len(failed) == 2
    step = next(s for s in plan.steps if s.state == "error")
    assert step.error is not None and step.error.class_name.endswith("SubPlansFailed")
    assert "2 of 7 sub-plans failed" in step.error.message
    assert all(child_id in step.error.message for child_id in failed)
    (output,) = [a.output for a in plan.actions if "sub_plans" in a.output]
    assert output["sub_plans"]["counts"] == {"paused": 2, "success": 5}

    # resuming the parent alone counts again: the children are still paused
    again = world.resume(plan.id).result(WAIT)
    assert (again.state, again.result) == ("paused", "error")

    BROKEN.clear()  # the cause is fixed: resume the parent and its paused children
    world.resume(plan.id, sub_plans=True).result(WAIT)
    if not is_inline(world):
        world.follow(plan.id).result(WAIT)
    done = world.get_plan(plan.id)
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert world.count_plans(parent=plan.id, result="success") == 7


def test_a_child_that_fails_to_plan_counts_as_failed(world: World) -> None:
    plan = world.trigger(Parent, 4, bad=(1,)).wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    (bad,) = world.find_plans(parent=plan.id, state="stopped", result="error")
    assert bad.error is not None and "cannot plan 1" in bad.error.message
    assert world.count_plans(parent=plan.id, result="success") == 3


@pytest.mark.executors("threads")
@pytest.mark.parametrize("operation", ["cancel", "halt"])
def test_cancel_and_halt_of_the_parent_reach_the_children(world: World, operation: str) -> None:
    triggered = world.trigger(Parent, 6, gated=True)
    PROBE.wait_running(3)
    getattr(world, operation)(triggered.plan_id).result(WAIT)
    PROBE.event("release").set()  # the running children finish their code
    plan = world.follow(triggered.plan_id).result(WAIT)
    assert plan.state == PlanState.STOPPED
    for kid in children(world, triggered.plan_id):
        world.follow(kid.id).result(WAIT)
    kids = children(world, triggered.plan_id)
    assert all(k.state == PlanState.STOPPED for k in kids)
    # the two planned children that never started were cancelled, not run
    assert sum(1 for k in kids if k.result == PlanResult.CANCELLED) >= 2
    assert world.count_plans(parent=triggered.plan_id) == 5


def test_bad_settings_and_bad_children_are_clear_errors() -> None:
    for bad in ({"concurrency": 0}, {"batch_size": 0}, {"batch_size": "5"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad))):
            type("Bad", (SubPlans, Action), bad)
    with pytest.raises(ConfigurationError, match="sub_plans_check_every"):
        type("Bad", (SubPlans, Action), {"sub_plans_check_every": 0})


def test_a_child_that_is_not_a_sub_plan_fails_the_step_naming_it(world: World) -> None:
    plan = world.trigger(YieldsJunk).wait(WAIT)
    (step,) = [s for s in plan.steps if s.state == "error"]
    assert step.error is not None and "must yield dynaflow.SubPlan" in step.error.message
    assert world.count_plans(parent=plan.id) == 0


def test_children_that_end_in_their_finalize_phase_wake_the_parent(world: World) -> None:
    plan = world.trigger(ParentOfFinalizing).wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert sorted(PROBE.names("finalized")) == [0, 1, 2, 3]
