"""Worlds without an executor hand plans and operator requests to executor worlds through the
database (requests, answered by the world that takes them). Here both worlds live in this
process on one database; tests/cluster runs them as real processes."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import Action, ConfigurationError, InvalidState, UnknownWorld, World
from dynaflow.executor import InlineExecutor

from .actions import PROBE, WAIT, Shape, states
from .waiting import Flow, suspended

pytestmark = pytest.mark.sql


class Imported(Action):
    """A step for the ``imports`` queue."""

    queue = "imports"

    def run(self) -> None:
        self.output["done"] = True


def drive(*worlds: World) -> None:
    """Inline executors run only when called: let them take their requests."""
    for world in worlds:
        if isinstance(world.executor, InlineExecutor):
            world.run_pending()


def test_a_client_world_hands_its_plan_to_an_executor_world(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    spec = ["seq", "a", ["con", "b", "c"], "d"]
    triggered = client.trigger(Shape, spec)
    drive(worker)
    plan = triggered.wait(WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert states(plan) == {"a": "success", "b": "success", "c": "success", "d": "success"}
    assert {h.world_id for h in plan.history if h.event == "step running"} == {worker.id}
    assert client.waiting_requests() == []  # taken with the plan, in its transaction


def test_a_handed_plan_waits_for_an_executor_world(world_factory: Any) -> None:
    client = world_factory(executor=None)
    triggered = client.trigger(Shape, ["seq", "a"])
    with pytest.raises(TimeoutError):
        triggered.wait(0.05)
    assert client.get_plan(triggered.plan_id).state == "planned"
    (request,) = client.waiting_requests()
    assert (request.plan_id, request.kind, request.world_id) == (
        triggered.plan_id,
        "execute",
        None,
    )
    worker = world_factory()
    drive(worker)
    assert triggered.wait(WAIT).result == "success"


def test_a_world_leaves_a_plan_of_a_queue_it_does_not_serve(world_factory: Any) -> None:
    default_only = world_factory(queues={"default": 1})
    client = world_factory(executor=None)
    triggered = client.trigger(Imported)
    drive(default_only)
    with pytest.raises(TimeoutError):
        triggered.wait(0.3)
    (request,) = client.waiting_requests()
    assert request.declined == {default_only.id: "does not serve queue 'imports' (step 2)"}
    both = world_factory(queues={"default": 1, "imports": 1})
    drive(both)
    plan = triggered.wait(WAIT)
    assert plan.result == "success"
    assert {h.world_id for h in plan.history if h.event == "step running"} == {both.id}


def test_a_client_resumes_a_paused_plan_in_an_executor_world(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    PROBE.reset()
    plan = client.trigger(Shape, ["seq", "ok", "fail:bad"]).future
    drive(worker)
    paused = plan.result(WAIT)
    assert (paused.state, paused.result) == ("paused", "error")
    again = client.resume(paused.id)
    drive(worker)
    assert again.result(WAIT).state == "paused"  # it fails again, and pauses again
    assert PROBE.names("run").count("bad") == 2


@pytest.mark.executors("threads")
def test_cancel_from_a_client_is_done_by_the_world_that_runs_the_plan(
    world_factory: Any,
) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    triggered = worker.trigger(Flow, ["seq", "cwait:w"])
    suspended("w")
    stopped = client.cancel(triggered.plan_id).result(WAIT)
    assert (stopped.state, stopped.result) == ("stopped", "cancelled")
    assert ("cancel", "w") in PROBE.calls  # cancel() ran in the world that runs the plan
    assert triggered.wait(WAIT).state == "stopped"


@pytest.mark.executors("threads")
def test_halt_and_event_from_a_client(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    first = worker.trigger(Flow, ["seq", "w1"])
    suspended("w1")
    client.event(first.plan_id, _step(client, first.plan_id), "finish").result(WAIT)
    assert first.wait(WAIT).result == "success"
    second = worker.trigger(Flow, ["seq", "w2"])
    suspended("w2")
    halted = client.halt(second.plan_id).result(WAIT)
    assert (halted.state, halted.result) == ("stopped", "cancelled")


def test_an_operator_error_comes_back_to_the_client(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    plan = client.trigger(Shape, ["seq", "a"])
    drive(worker)
    plan.wait(WAIT)
    with pytest.raises(InvalidState, match="already stopped"):
        client.cancel(plan.plan_id)
    with pytest.raises(InvalidState, match="only a paused plan can be resumed"):
        client.resume(plan.plan_id)


def test_forget_a_world(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    with pytest.raises(UnknownWorld, match="no executor world with id 'nobody'"):
        client.forget_world("nobody")
    with pytest.raises(InvalidState, match="is alive"):
        client.forget_world(worker.id)
    client.forget_world(worker.id, force=True)
    assert worker.id not in {w.id for w in client.worlds()}


def test_worlds_show_queues_heartbeat_age_and_staleness(world_factory: Any) -> None:
    worker = world_factory(queues={"default": 2, "imports": 1})
    client = world_factory(executor=None)
    (row,) = [w for w in client.worlds() if w.id == worker.id]
    assert row.queues == {"default": 2, "imports": 1}
    assert 0 <= row.heartbeat_age < 30 and not row.stale


@pytest.mark.parametrize(
    "queues, message",
    [
        ({"default": 0}, "pool size must be an int >= 1"),
        ({"default": -2}, "pool size must be an int >= 1"),
        ({"default": True}, "pool size must be an int >= 1"),
        ({"": 1}, "queue name ''"),
        ({"a b": 1}, "queue name 'a b'"),
        ({}, "must map queue names to pool sizes"),
        (["default"], "must map queue names to pool sizes"),
    ],
)
def test_bad_queues_are_refused(queues: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        World("memory://", queues=queues)


def _step(world: World, plan_id: str) -> int:
    (step,) = [s for s in world.get_plan(plan_id).steps if s.kind == "run"]
    return int(step.id)
