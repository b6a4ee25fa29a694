"""Idempotency keys: ``trigger(..., key=K)`` plans at most one plan per key; every caller gets
that plan, and waiting on it returns its end, whichever world executes it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import Action, DynaflowError, PlanResult, PlanState, World

from .actions import WAIT, Probe


class Counted(Action):
    def run(self) -> None:
        PROBE.record("ran", self.input["name"])


PROBE = Probe()


@pytest.fixture(autouse=True)
def fresh_probe() -> None:
    PROBE.reset()


def test_a_second_trigger_with_the_same_key_returns_the_first_plan(world: World) -> None:
    first = world.trigger(Counted, key="nightly-1", name="a")
    done = first.wait(WAIT)
    again = world.trigger(Counted, key="nightly-1", name="a")
    assert again.plan_id == first.plan_id
    assert again.wait(WAIT).id == done.id
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert PROBE.names("ran") == ["a"]
    assert world.count_plans() == 1


@pytest.mark.sql
@pytest.mark.executors("threads")
@pytest.mark.parametrize("round_", range(5))
def test_two_worlds_triggering_one_key_at_once_both_get_its_end(
    world_factory: Any, round_: int
) -> None:
    worlds = [world_factory(), world_factory()]
    start = threading.Barrier(2)
    outcomes: list[Any] = [None, None]
    key = f"race-{round_}"

    def trigger(index: int) -> None:
        start.wait(WAIT)
        try:
            outcomes[index] = worlds[index].trigger(Counted, key=key, name=key).wait(WAIT)
        except DynaflowError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=trigger, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)

    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert outcomes[0].id == outcomes[1].id
    for plan in outcomes:
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert PROBE.names("ran") == [key]
    assert worlds[0].count_plans() == 1
