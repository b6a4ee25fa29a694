"""Queues: steps go to their action's queue; a world serves the queues it is given, each with
its own pool; a Queue's limit holds across every world on the database."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import Action, ConfigurationError, Queue, World

from .actions import PROBE, WAIT

CAPPED = Queue("capped", limit=2)


class CappedGate(Action):
    """Runs in the ``capped`` queue until ``release:<name>``."""

    queue = CAPPED

    def run(self) -> None:
        name = self.input["name"]
        with PROBE.running_step(name):
            PROBE.wait(f"release:{name}")


class ThreeCapped(Action):
    def plan(self, prefix: str) -> None:
        with self.concurrence():
            for i in range(3):
                self.plan_action(CappedGate, name=f"{prefix}{i}")


@pytest.mark.sql
@pytest.mark.executors("threads")
def test_a_queue_limit_holds_across_worlds(world_factory: Any) -> None:
    pools = {"default": 2, "capped": 4}
    first, second = world_factory(queues=pools), world_factory(queues=pools)
    plans = [first.trigger(ThreeCapped, "a"), second.trigger(ThreeCapped, "b")]
    names = [f"{p}{i}" for p in "ab" for i in range(3)]
    released: set[str] = set()
    while len(released) < len(names):
        PROBE.wait_running(min(2, len(names) - len(released)))  # the pools allow 8
        arrived = [n for n in names if PROBE.event(f"arrived:{n}").is_set()]
        name = next(n for n in arrived if n not in released)
        released.add(name)
        PROBE.event(f"release:{name}").set()
        left(name)
    for triggered in plans:
        assert triggered.wait(WAIT).result == "success"
    assert PROBE.max_running == 2


def left(name: str) -> None:
    """Wait (bounded) until step ``name`` has left its run."""
    with PROBE._lock:
        assert PROBE._lock.wait_for(lambda: ("leave", name) in PROBE.calls, WAIT)


@pytest.mark.sql
def test_queues_show_limits_pools_and_step_counts(world_factory: Any) -> None:
    world = world_factory(queues={"default": 1, "capped": 3})
    world.declare_queue(Queue("capped", limit=5))
    overview = world.queues()
    assert overview["capped"]["limit"] == 5
    assert overview["capped"]["worlds"] == {world.id: 3}
    assert overview["default"]["limit"] is None


def test_an_action_names_its_queue_or_gives_a_queue() -> None:
    assert CappedGate.queue == "capped"
    with pytest.raises(ConfigurationError, match="queue name 'no spaces'"):

        class Bad(Action):
            queue = "no spaces"

    with pytest.raises(ConfigurationError, match="limit must be an int >= 1"):
        Queue("zero", limit=0)
    with pytest.raises(ConfigurationError, match="declare_queue"):
        World("memory://", executor=None).declare_queue("capped")  # type: ignore[arg-type]
