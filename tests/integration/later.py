"""Helpers of the delayed, chained and recurring plan tests: the frozen clock moves on, and a
world looks for what fell due now, in the test's thread, so that "not yet" can be asserted on
both executors."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from dynaflow import Action, ExecutionPlan, Rescue, World

from .actions import PROBE, WAIT
from .waiting import T0, at, frozen_clock, is_inline

__all__ = ["T0", "at", "caught_up", "ended", "frozen_clock", "history", "look", "move"]


class Stops(Action):
    """Fails; its plan stops with result ``error`` (no operator)."""

    rescue_strategy = Rescue.FAIL

    def run(self) -> None:
        PROBE.record("run", self.input["name"])
        raise RuntimeError(f"{self.input['name']} broke")


def look(world: World) -> int:
    """Have ``world`` look for due plans and runs now, in this thread: when this returns, what
    was due is started (handed to an executor) or stopped; the inline executor has also run
    it. How many plans it started, stopped or planned (the scheduler thread of a threaded
    world may have done some first: only 0 means the same on both executors)."""
    assert world.starter is not None, "only executor worlds look for due plans"
    done = world.starter.poll(force=True)
    world.run_pending()
    return done


def move(world: World, clock: Any, seconds: float) -> int:
    """Move the frozen clock on by ``seconds``, then :func:`look`."""
    clock.tick(timedelta(seconds=seconds))
    return look(world)


def caught_up(world: World, key: str) -> None:
    """Look until the schedule ``key`` has planned every run due by now (its next run is in
    the future): a threaded world's own scheduler thread may be planning some meanwhile.
    Bounded: a schedule that does not catch up fails the test."""
    from dynaflow.clock import now

    pause = threading.Event()
    for _ in range(2000):
        look(world)
        if world.schedules()[0].next_run_at > now():
            return
        pause.wait(0.005)  # the other thread holds the schedule: let it finish
    raise AssertionError(f"schedule {key!r} did not catch up: {world.schedules()}")


def ended(world: World, plan_id: str) -> ExecutionPlan:
    """The plan once its execution ended: already on the inline executor, within the bound on
    the threaded one."""
    future = world.follow(plan_id)
    if is_inline(world):
        assert future.done(), f"plan {plan_id} did not end before the inline executor returned"
    return future.result(timeout=WAIT)


def history(plan: ExecutionPlan) -> list[str]:
    return [row.event for row in plan.history]
