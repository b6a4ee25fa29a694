"""One plan's steps spread over several worlds (PostgreSQL): the world running the plan offers
steps of a slow queue to worlds with free threads, and records their outcomes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dynaflow import Action, World

from .actions import PROBE, WAIT

pytestmark = [pytest.mark.storages("postgres"), pytest.mark.executors("threads")]


class Blocked(Action):
    """Runs until ``release``; records the world it ran in."""

    def run(self) -> None:
        with PROBE.running_step(self.input["name"]):
            PROBE.wait("release")
        self.output["world"] = self.world.id


class IdempotentBlocked(Blocked):
    idempotent = True


class Many(Action):
    def plan(self, count: int, idempotent: bool = False) -> None:
        leaf = IdempotentBlocked if idempotent else Blocked
        with self.concurrence():
            for i in range(count):
                self.plan_action(leaf, name=f"s{i}")


def slow_queue(*worlds: World) -> None:
    """Let the worlds see each other's threads, and take the Blocked steps as slow (worth
    offering) without waiting for steps to show it."""
    for world in worlds:
        world.cluster.look_around()
        assert world.executor is not None
        for cls in (Blocked, IdempotentBlocked):
            world.executor.engine.run_time[cls.action_class_name] = 1.0


def test_a_wide_plan_runs_on_the_threads_of_several_worlds(world_factory: Any) -> None:
    owner = world_factory(queues={"default": 2})
    helper = world_factory(queues={"default": 2})
    slow_queue(owner, helper)
    triggered = owner.trigger(Many, 8)
    PROBE.wait_running(4)  # the owner has 2 threads: 2 steps run in the other world
    PROBE.event("release").set()
    plan = triggered.wait(WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    ran_in = [a.output["world"] for a in plan.actions if "world" in a.output]
    assert len(ran_in) == 8
    assert set(ran_in) == {owner.id, helper.id}
    # the owner claimed every step: it alone writes the plan
    assert {h.world_id for h in plan.history if h.event == "step running"} == {owner.id}


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_step_whose_world_dies_follows_the_takeover_rules(
    world_factory: Any, idempotent: bool
) -> None:
    owner = world_factory(queues={"default": 1})
    helper = world_factory(queues={"default": 1})
    slow_queue(owner, helper)
    triggered = owner.trigger(Many, 3, idempotent)  # 2 claimed here (1 thread), 1 offered
    PROBE.wait_running(2)  # one here, one in the helper
    owner.storage.release_requests(helper.id)  # what a heartbeat does once the helper is dead
    if idempotent:
        deadline = time.monotonic() + WAIT
        while not _history(owner, triggered.plan_id, "idempotent, so it runs again"):
            assert time.monotonic() < deadline, "the interruption was not recorded"
            time.sleep(0.01)
        PROBE.event("release").set()
        plan = triggered.wait(WAIT)
        assert plan.result == "success"
    else:
        # the owner records the interruption before anything is released
        deadline = time.monotonic() + WAIT
        while "AbnormalTermination" not in _errors(owner, triggered.plan_id):
            assert time.monotonic() < deadline, "the interruption was not recorded"
            time.sleep(0.01)
        PROBE.event("release").set()
        plan = triggered.wait(WAIT)
        assert (plan.state, plan.result) == ("paused", "error")
        (failed,) = [s for s in plan.steps if s.state == "error"]
        assert failed.error is not None and "abnormal termination" in failed.error.message
        assert f"world {helper.id} stopped while the step ran" in failed.error.message


def _errors(world: World, plan_id: str) -> str:
    return " ".join(
        s.error.class_name for s in world.get_plan(plan_id).steps if s.error is not None
    )


def _history(world: World, plan_id: str, text: str) -> bool:
    return any(text in str(h.detail) for h in world.get_plan(plan_id).history)
