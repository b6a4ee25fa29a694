"""A scheduler iteration that fails (the database went away for a moment, or a bug) never
strands a plan: nothing of it was committed, the engine takes its plans up again from the
database, the step whose outcome was lost counts as interrupted, and every future resolves."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import DatabaseUnavailable, PlanResult, PlanState, StepState, World

from .actions import WAIT, Probe
from .failing import Graph, runs, sid


class FailingWrites:
    """Makes the ``nth`` batch write after arming raise ``error`` once (before writing)."""

    def __init__(self, world: World, error: BaseException) -> None:
        self.original, self.error = world.storage.write, error
        self.armed = False
        self.fired = threading.Event()
        world.storage.write = self.write  # type: ignore[method-assign]

    def write(self, batch: Any) -> Any:
        if self.armed and batch.steps and any(u.state == "success" for u in batch.steps):
            self.armed = False
            self.fired.set()
            raise self.error
        return self.original(batch)


ERRORS = {
    "database": DatabaseUnavailable("the database sqlite:///x.db does not answer"),
    "bug": RuntimeError("a bug in the engine"),
}


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_a_lost_outcome_of_an_idempotent_step_runs_it_again(
    world: World, probe: Probe, error: str
) -> None:
    faults = FailingWrites(world, ERRORS[error])
    faults.armed = True
    plan = world.trigger(Graph, ["seq", "idem:a", "b"]).wait(WAIT)
    assert faults.fired.is_set()
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert [runs("a"), runs("b")] == [2, 1]  # a's first outcome was never recorded
    history = [h.event for h in plan.history if h.step_id == sid(plan, "a")]
    assert "step pending" in history  # interrupted, so run again


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_a_lost_outcome_of_another_step_is_an_abnormal_termination(
    world: World, probe: Probe, error: str
) -> None:
    faults = FailingWrites(world, ERRORS[error])
    faults.armed = True
    plan = world.trigger(Graph, ["seq", "a", "b"]).wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.PAUSED, PlanResult.ERROR)
    step = next(s for s in plan.steps if s.id == sid(plan, "a"))
    assert step.state == StepState.ERROR
    assert "abnormal termination" in step.error.message
    assert runs("b") == 0
    resumed = world.resume(plan.id).result(timeout=WAIT)
    assert (resumed.state, resumed.result) == (PlanState.STOPPED, PlanResult.SUCCESS)


@pytest.mark.executors("threads")
def test_other_plans_go_on_after_a_failed_iteration(world: World, probe: Probe) -> None:
    faults = FailingWrites(world, ERRORS["bug"])
    faults.armed = True
    plans = [world.trigger(Graph, ["seq", f"idem:x{i}", f"idem:y{i}"]) for i in range(4)]
    ended = [t.wait(WAIT) for t in plans]
    assert faults.fired.is_set()
    assert all((p.state, p.result) == ("stopped", "success") for p in ended)
