"""Singleton actions: at most one active plan per singleton class (or key), decided by the
database; the loser gets ``SingletonActive`` naming the active plan, or that plan with
``on_conflict="return"``. The key is given back by every stop and kept while paused."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import (
    Action,
    ConfigurationError,
    DynaflowError,
    PlanningFailed,
    PlanResult,
    PlanState,
    Rescue,
    SingletonActive,
    World,
)
from dynaflow.executor import InlineExecutor

from .actions import PROBE, WAIT
from .failing import force_running
from .test_takeover import DEAD, dead_world, take_over
from .waiting import Waiter, finish, run_step_id


class Reindex(Waiter):
    """One reindex at a time: waits for the event "finish"."""

    singleton = True


class SyncRepo(Waiter):
    """One sync per repository at a time."""

    singleton_key = lambda input: input["repo"]  # noqa: E731


class Nightly(Action):
    """Plans a Reindex among other work: the whole plan holds Reindex's key."""

    def plan(self) -> None:
        self.plan_action(Reindex, name="nested")


class FailingReindex(Action):
    singleton = True
    rescue_strategy = Rescue.FAIL

    def run(self) -> None:
        raise RuntimeError("index corrupt")


class PausingReindex(Action):
    singleton = True

    def run(self) -> None:
        raise RuntimeError("index corrupt")


class BadKey(Action):
    singleton_key = lambda input: input["missing"]  # noqa: E731

    def run(self) -> None:
        pass


class EmptyKey(Action):
    singleton_key = lambda input: ""  # noqa: E731

    def run(self) -> None:
        pass


class GatedReindex(Action):
    """Its plan() waits at ``BARRIER``: both callers' planning transactions are open at once."""

    singleton = True

    def plan(self) -> None:
        BARRIER.wait(WAIT)
        self.plan_self()

    def run(self) -> None:
        PROBE.record("ran", self.plan_id)


BARRIER = threading.Barrier(2)


@pytest.fixture(autouse=True)
def fresh_barrier() -> None:
    BARRIER.reset()


def done(world: World, plan_id: str, name: str) -> Any:
    """Send "finish" to the waiting step ``name`` and wait for the plan's end."""
    world.event(plan_id, run_step_id(world, plan_id, name), "finish")
    return finish(world, plan_id)


def test_a_second_plan_of_a_singleton_is_refused_while_the_first_is_active(
    world: World,
) -> None:
    first = world.trigger(Reindex, name="a")

    with pytest.raises(SingletonActive) as caught:
        world.trigger(Reindex, name="b")
    assert caught.value.plan_id == first.plan_id
    assert caught.value.key == Reindex.action_class_name
    assert f"is held by plan {first.plan_id}, which has not stopped" in str(caught.value)
    assert "on_conflict='return'" in str(caught.value)
    with pytest.raises(SingletonActive):
        world.plan(Reindex, name="c")
    assert world.count_plans() == 1

    assert done(world, first.plan_id, "a").result == PlanResult.SUCCESS
    second = world.trigger(Reindex, name="b")  # released when it stopped
    assert second.plan_id != first.plan_id
    assert done(world, second.plan_id, "b").result == PlanResult.SUCCESS


def test_on_conflict_return_gives_the_active_plan(world: World) -> None:
    first = world.trigger(Reindex, name="a")
    again = world.trigger(Reindex, name="other", on_conflict="return")
    assert again.plan_id == first.plan_id
    assert world.plan(Reindex, name="x", on_conflict="return").id == first.plan_id
    plan = done(world, first.plan_id, "a")
    assert again.wait(WAIT).id == plan.id
    assert world.count_plans() == 1


def test_a_planned_singleton_returned_is_executed_once(world: World) -> None:
    planned = world.plan(Reindex, name="p")
    triggered = world.trigger(Reindex, name="p", on_conflict="return")
    assert triggered.plan_id == planned.id
    assert done(world, planned.id, "p").result == PlanResult.SUCCESS
    assert triggered.wait(WAIT).result == PlanResult.SUCCESS


def test_singleton_key_allows_one_plan_per_key(world: World) -> None:
    one = world.trigger(SyncRepo, name="one", repo="core")
    other = world.trigger(SyncRepo, name="other", repo="docs")  # another key: runs alongside
    with pytest.raises(SingletonActive, match=r"SyncRepo:core' is held by plan"):
        world.trigger(SyncRepo, name="two", repo="core")
    assert world.count_plans() == 2
    assert done(world, one.plan_id, "one").result == PlanResult.SUCCESS
    two = world.trigger(SyncRepo, name="two", repo="core")
    for plan_id, name in ((other.plan_id, "other"), (two.plan_id, "two")):
        assert done(world, plan_id, name).result == PlanResult.SUCCESS


def test_a_singleton_planned_as_a_child_holds_the_key_for_its_plan(world: World) -> None:
    nightly = world.trigger(Nightly)
    with pytest.raises(SingletonActive) as caught:
        world.trigger(Reindex, name="direct")
    assert caught.value.plan_id == nightly.plan_id
    assert done(world, nightly.plan_id, "nested").result == PlanResult.SUCCESS
    assert done(world, world.trigger(Reindex, name="direct").plan_id, "direct").state == "stopped"


def test_cancel_and_halt_release_the_key(world: World) -> None:
    for stop in ("cancel", "halt"):
        first = world.trigger(Reindex, name=stop)
        getattr(world, stop)(first.plan_id).result(WAIT)
        stopped = world.get_plan(first.plan_id)
        assert (stopped.state, stopped.result) == (PlanState.STOPPED, PlanResult.CANCELLED)
    last = world.trigger(Reindex, name="last")
    assert done(world, last.plan_id, "last").result == PlanResult.SUCCESS


def test_an_error_stop_releases_the_key_a_pause_keeps_it_until_cancelled(world: World) -> None:
    failed = world.trigger(FailingReindex).wait(WAIT)
    assert (failed.state, failed.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert world.trigger(FailingReindex).wait(WAIT).id != failed.id

    paused = world.trigger(PausingReindex).wait(WAIT)
    assert paused.state == PlanState.PAUSED
    with pytest.raises(SingletonActive) as caught:
        world.trigger(PausingReindex)
    assert caught.value.plan_id == paused.id
    world.cancel(paused.id).result(WAIT)
    assert world.trigger(PausingReindex).wait(WAIT).state == PlanState.PAUSED


def test_a_singleton_key_that_raises_or_is_empty_fails_planning(world: World) -> None:
    with pytest.raises(PlanningFailed, match=r"BadKey.singleton_key raised KeyError: 'missing'"):
        world.trigger(BadKey, repo="core")
    with pytest.raises(PlanningFailed, match=r"EmptyKey.singleton_key returned ''; it must"):
        world.trigger(EmptyKey)
    failed = world.find_plans()
    assert [(p.state, p.result) for p in failed] == [("stopped", "error")] * 2
    assert world.storage.singleton_holder(f"{BadKey.action_class_name}:core") is None


def test_bad_singleton_declarations_are_refused_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Bad.singleton must be True or False"):

        class Bad(Action):
            singleton = "yes"  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=r"singleton_key must be a function of the"):

        class AlsoBad(Action):
            singleton_key = "repo"  # type: ignore[assignment]


@pytest.mark.sql
@pytest.mark.executors("threads")
@pytest.mark.parametrize("round_", range(3))
def test_two_worlds_triggering_a_singleton_at_once_one_wins(
    world_factory: Any, round_: int
) -> None:
    worlds = [world_factory(), world_factory()]
    start = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def trigger(index: int) -> None:
        start.wait(WAIT)
        try:
            outcomes[index] = worlds[index].trigger(Reindex, name=f"w{index}").plan_id
        except DynaflowError as exc:
            outcomes[index] = exc

    race(trigger)
    (winner,) = [o for o in outcomes if isinstance(o, str)]
    (loser,) = [o for o in outcomes if not isinstance(o, str)]
    assert isinstance(loser, SingletonActive) and loser.plan_id == winner
    assert worlds[0].count_plans() == 1
    name = f"w{outcomes.index(winner)}"
    assert done(worlds[0], winner, name).result == PlanResult.SUCCESS


@pytest.mark.storages("postgres")
@pytest.mark.executors("threads")
def test_two_worlds_planning_a_singleton_in_open_transactions_one_wins(
    world_factory: Any,
) -> None:
    """Two World instances in two threads, both planning transactions open when they insert
    the key: the database decides. The loser, with on_conflict="return", follows the winner."""
    worlds = [world_factory(), world_factory()]
    outcomes: list[Any] = [None, None]

    def trigger(index: int) -> None:
        try:
            triggered = worlds[index].trigger(GatedReindex, on_conflict="return")
            outcomes[index] = triggered.wait(WAIT)
        except (DynaflowError, threading.BrokenBarrierError) as exc:
            outcomes[index] = exc

    race(trigger)
    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert outcomes[0].id == outcomes[1].id
    assert outcomes[0].result == PlanResult.SUCCESS
    assert PROBE.names("ran") == [outcomes[0].id]
    assert worlds[0].count_plans() == 1


@pytest.mark.sql
def test_a_client_world_gets_the_active_singleton_back(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    first = client.trigger(Reindex, name="c")
    with pytest.raises(SingletonActive):
        client.trigger(Reindex, name="d")
    again = client.trigger(Reindex, name="d", on_conflict="return")
    assert again.plan_id == first.plan_id
    if isinstance(worker.executor, InlineExecutor):
        worker.run_pending()
    plan = done(worker, first.plan_id, "c")
    assert plan.result == PlanResult.SUCCESS
    assert again.wait(WAIT).id == plan.id


def race(target: Any) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)


class IdempotentReindex(Action):
    singleton = True
    idempotent = True

    def run(self) -> None:
        PROBE.record("ran", self.input["name"])


def test_a_plan_taken_over_from_a_dead_world_keeps_its_key_until_it_stops(
    world_factory: Any,
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(IdempotentReindex, name="x")
    dead_world(world, heartbeat_age=31)
    force_running(world, planned, ["x"], DEAD)  # it died while the step ran
    with pytest.raises(SingletonActive) as caught:
        world.trigger(IdempotentReindex, name="y")
    assert caught.value.plan_id == planned.id

    plan = take_over(world, planned.id)

    assert (plan.state, plan.result, plan.record.world_id) == ("stopped", "success", world.id)
    assert PROBE.names("ran") == ["x"]
    assert world.trigger(IdempotentReindex, name="y").wait(WAIT).result == PlanResult.SUCCESS
