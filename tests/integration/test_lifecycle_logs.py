"""The lifecycle at INFO through standard ``logging`` (docs/observability.md lists each line):
worlds up and down, plans started, taken over and ended, steps failed — each under its logger
(``dynaflow.world``, ``dynaflow.executor``, ``dynaflow.cluster``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dynaflow import Action, PlanningFailed, Retry, World

from .actions import WAIT, Shape, step_of, trigger
from .failing import Graph, force_running
from .test_takeover import DEAD, dead_world, take_over
from .waiting import Flow, advance, frozen_clock, run_step_id, suspended

pytestmark = pytest.mark.storages("memory", "sqlite")


def logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    """The messages at INFO and above of ``logger``, in order."""
    return [
        r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= logging.INFO
    ]


@pytest.fixture(autouse=True)
def info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="dynaflow")
    return caplog


def test_a_world_logs_when_it_is_up_and_down(world_factory: Any, caplog: Any) -> None:
    world = world_factory(queues={"default": 2, "slow": 1})
    world_id = world.id
    world.close()
    assert logged(caplog, "dynaflow.world") == [
        f"world {world_id} up (pid {__import__('os').getpid()}, queues default=2, slow=1) on "
        f"{world.url}",
        f"world {world_id} down",
    ]


def test_a_client_world_logs_nothing_of_the_kind(world_factory: Any, caplog: Any) -> None:
    world_factory(executor=None).close()
    assert logged(caplog, "dynaflow.world") == []


def test_a_plan_logs_its_start_and_its_end(world: World, caplog: Any) -> None:
    plan = trigger(world, Shape, ["seq", "a", "b"])
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {plan.id} started in world {world.id}",
        f"plan {plan.id} stopped (success) in world {world.id}",
    ]


def test_a_plan_that_ends_with_its_finalize_phase_logs_its_end(world: World, caplog: Any) -> None:
    plan = trigger(world, Shape, ["seq", "a"], leaf="tracked")  # run and finalize steps
    assert plan.result == "success"
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {plan.id} started in world {world.id}",
        f"plan {plan.id} stopped (success) in world {world.id}",
    ]


def test_a_failed_step_and_the_paused_plan_are_logged(world: World, caplog: Any) -> None:
    plan = trigger(world, Shape, ["seq", "a", "fail:f"])
    f = step_of(plan, "f").id
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {plan.id} started in world {world.id}",
        f"step {f} of plan {plan.id} failed: disk full on f",
        f"plan {plan.id} paused (error) in world {world.id}",
    ]


def test_a_failed_finalizer_and_the_paused_plan_are_logged(world: World, caplog: Any) -> None:
    plan = world.trigger(Graph, ["seq", "badfin:x"]).wait(WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    x = step_of(plan, "x", "finalize").id
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {plan.id} started in world {world.id}",
        f"step {x} of plan {plan.id} failed: finalize of x failed",
        f"plan {plan.id} paused (error) in world {world.id}",
    ]


def test_a_cancelled_plan_is_logged_as_stopped_cancelled(world: World, caplog: Any) -> None:
    triggered = world.trigger(Flow, "w")
    suspended("w")
    world.cancel(triggered.plan_id).result(timeout=WAIT)
    assert logged(caplog, "dynaflow.executor")[-1] == (
        f"plan {triggered.plan_id} stopped (cancelled) in world {world.id}"
    )


def test_a_planning_failure_is_logged(world: World, caplog: Any) -> None:
    with pytest.raises(PlanningFailed) as failed:
        world.trigger(Shape, ["seq", "a"], leaf="missing-kind")
    assert logged(caplog, "dynaflow.world")[-1] == (
        f"plan {failed.value.plan_id} stopped (error) in planning: 'missing-kind'"
    )


class Refused(Action):
    retry = Retry(attempts=2, initial=10.0, on=(ConnectionError,))

    def run(self) -> None:
        raise ConnectionError("connection refused")


@pytest.mark.executors("inline")
def test_a_failed_attempt_that_will_be_retried_says_so(world: World, caplog: Any) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Refused)
        advance(world, clock, 10)
        plan = triggered.wait(WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    step = next(s for s in plan.steps if s.kind == "run").id
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {plan.id} started in world {world.id}",
        f"step {step} of plan {plan.id} failed (retried later): connection refused",
        f"step {step} of plan {plan.id} failed: connection refused",
        f"plan {plan.id} paused (error) in world {world.id}",
    ]


def test_a_takeover_is_logged(world_factory: Any, caplog: Any) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", "idem:i"])
    dead_world(world, heartbeat_age=31)
    force_running(world, planned, ["i"], DEAD)
    caplog.clear()

    assert take_over(world, planned.id).result == "success"
    cluster = logged(caplog, "dynaflow.cluster")
    assert f"taking over plan {planned.id} from world {DEAD} (lease expired)" in cluster
    assert any(line.startswith(f"world {DEAD} is dead (no heartbeat since ") for line in cluster)
    assert logged(caplog, "dynaflow.executor") == [
        f"plan {planned.id} taken over in world {world.id}",
        f"plan {planned.id} stopped (success) in world {world.id}",
    ]


@pytest.mark.storages("sqlite")
def test_a_released_plan_is_adopted_and_logged(world_factory: Any, caplog: Any) -> None:
    first = world_factory()
    triggered = first.trigger(Flow, "w")
    suspended("w")
    first.close(timeout=WAIT)
    caplog.clear()

    second = world_factory()
    second.event(triggered.plan_id, run_step_id(second, triggered.plan_id, "w"), "finish")
    assert second.follow(triggered.plan_id).result(timeout=WAIT).result == "success"
    assert f"adopting plan {triggered.plan_id} (released by a world that shut down)" in logged(
        caplog, "dynaflow.cluster"
    )
    assert f"plan {triggered.plan_id} taken over in world {second.id}" in logged(
        caplog, "dynaflow.executor"
    )


def test_a_step_ended_by_abnormal_termination_is_logged_as_failed(
    world_factory: Any, caplog: Any
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", "n"])  # not idempotent
    dead_world(world, heartbeat_age=31)
    force_running(world, planned, ["n"], DEAD)
    caplog.clear()

    plan = take_over(world, planned.id)
    assert (plan.state, plan.result) == ("paused", "error")
    n = step_of(plan, "n").id
    assert logged(caplog, "dynaflow.executor") == [
        f"step {n} of plan {plan.id} failed: abnormal termination: world {DEAD} stopped while "
        "the step ran; it is not marked idempotent, so it is not run again on its own",
        f"plan {plan.id} taken over in world {world.id}",
        f"plan {plan.id} paused (error) in world {world.id}",
    ]
