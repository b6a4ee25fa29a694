"""Operator mistakes with resume, skip and retry, and bad retry policies: each raises one of
dynaflow's errors with a message naming the thing and the fix, and changes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import (
    Action,
    ConcurrentModification,
    ConfigurationError,
    DynaflowError,
    InvalidArgument,
    InvalidState,
    Retry,
    UnknownPlan,
    UnknownStep,
    World,
)

from .actions import WAIT, Probe, trigger
from .failing import Graph, repair, runs, sid, snapshot
from .waiting import Flow, suspended

threads_only = pytest.mark.executors("threads")
#: the checks run in the caller's thread, before any executor is involved
inline_only = pytest.mark.executors("inline")


@pytest.fixture
def paused(world: World, probe: Probe) -> Any:
    """A paused plan: a failed, b finished, c waiting for a."""
    plan = trigger(world, Graph, ["seq", ["con", "a", "b"], "c"], ["a"])
    assert (plan.state, plan.result) == ("paused", "error")
    return plan


# -- skip ------------------------------------------------------------------------------------


@inline_only
@pytest.mark.parametrize("name", ["b", "c"])  # finished, pending
def test_skip_of_a_step_that_is_not_in_error(world: World, paused: Any, name: str) -> None:
    step = world.get_plan(paused.id).step(sid(paused, name))
    with pytest.raises(InvalidState) as raised:
        world.skip(paused.id, step.id)
    assert str(raised.value) == (
        f"step {step.id} of plan {paused.id} is {step.state}; only a step in error can be skipped"
    )
    assert snapshot(world.get_plan(paused.id)) == snapshot(paused)


@inline_only
def test_skip_of_a_finalize_step(world: World, probe: Probe) -> None:
    plan = trigger(world, Graph, ["seq", "fin:a"], ["a"])
    with pytest.raises(InvalidState, match="only a step in error can be skipped"):
        world.skip(plan.id, sid(plan, "a", "finalize"))


@inline_only
def test_skip_in_a_plan_that_is_not_paused(world: World, probe: Probe) -> None:
    planned = world.plan(Graph, ["seq", "a"], ["a"])
    with pytest.raises(InvalidState, match="only a paused plan can be changed by skip"):
        world.skip(planned.id, sid(planned, "a"))

    stopped = trigger(world, Graph, ["seq", "fail:a"], ["a"])  # FAIL: stopped, a in error
    assert stopped.state == "stopped"
    with pytest.raises(InvalidState, match=f"plan {stopped.id} is stopped; only a paused plan"):
        world.skip(stopped.id, sid(stopped, "a"))
    assert snapshot(world.get_plan(stopped.id)) == snapshot(stopped)


def test_skip_in_a_running_plan(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, ["con", "fail:a", "w"])  # w keeps it running
    suspended("w")
    plan = world.get_plan(triggered.plan_id)
    with pytest.raises(InvalidState, match="it is still executing; wait for it"):
        world.skip(plan.id, sid(plan, "a"))


@inline_only
def test_skip_of_an_unknown_plan_or_step(world: World, paused: Any) -> None:
    with pytest.raises(UnknownPlan, match="no execution plan with id 'nope'"):
        world.skip("nope", 1)
    with pytest.raises(UnknownPlan):
        world.skip(42, 1)  # type: ignore[arg-type]
    with pytest.raises(UnknownStep, match=f"plan {paused.id} has no step 999"):
        world.skip(paused.id, 999)
    assert snapshot(world.get_plan(paused.id)) == snapshot(paused)


# -- retry -----------------------------------------------------------------------------------


@inline_only
@pytest.mark.parametrize("name", ["b", "c"])  # finished, pending
def test_retry_of_a_step_that_did_not_fail(world: World, paused: Any, name: str) -> None:
    step = world.get_plan(paused.id).step(sid(paused, name))
    with pytest.raises(InvalidState) as raised:
        world.retry(paused.id, step.id)
    assert str(raised.value) == (
        f"step {step.id} of plan {paused.id} is {step.state}; only a failed step can be retried"
    )
    assert snapshot(world.get_plan(paused.id)) == snapshot(paused)
    assert [runs(n) for n in "abc"] == [1, 1, 0]


@inline_only
def test_retry_of_a_failed_step_of_a_stopped_plan(world: World, probe: Probe) -> None:
    stopped = trigger(world, Graph, ["seq", "fail:a"], ["a"])
    with pytest.raises(InvalidState, match=f"plan {stopped.id} is stopped; it cannot be retried"):
        world.retry(stopped.id, sid(stopped, "a"))
    assert runs("a") == 1


@inline_only
def test_retry_of_an_unknown_plan_or_step(world: World, paused: Any) -> None:
    with pytest.raises(UnknownPlan):
        world.retry("nope", 1)
    with pytest.raises(UnknownStep, match="has no step 999"):
        world.retry(paused.id, 999)


# -- resume ----------------------------------------------------------------------------------


def test_resume_of_a_running_plan(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, "w")
    suspended("w")
    with pytest.raises(InvalidState) as raised:
        world.resume(triggered.plan_id)
    assert str(raised.value) == (
        f"plan {triggered.plan_id} is running; only a paused plan can be resumed "
        "(it is still executing; wait for it)"
    )


@inline_only
def test_resume_of_a_stopped_or_planned_plan(world: World, probe: Probe) -> None:
    done = trigger(world, Graph, ["seq", "a"])
    with pytest.raises(InvalidState, match=f"plan {done.id} is stopped; only a paused plan"):
        world.resume(done.id)
    planned = world.plan(Graph, ["seq", "a"])
    with pytest.raises(InvalidState, match="is planned; only a paused plan can be resumed"):
        world.resume(planned.id)
    assert runs("a") == 1


@inline_only
def test_resume_of_an_unknown_plan(world: World) -> None:
    with pytest.raises(UnknownPlan, match=r"world.find_plans\(\) lists the existing ones"):
        world.resume("nope")
    with pytest.raises(UnknownPlan):
        world.resume(None)  # type: ignore[arg-type]


# -- two worlds at once ----------------------------------------------------------------------


class ResumedElsewhereFirst:
    """The other world resumes the plan right after this world read it as paused (the
    narrowest window of two operators resuming the same plan at once)."""

    def __init__(self, world: World, other: World) -> None:
        self.other, self.original = other, world.storage.load_plan
        self.done = False
        world.storage.load_plan = self.load_plan  # type: ignore[method-assign]

    def load_plan(self, plan_id: str, **options: Any) -> Any:
        plan = self.original(plan_id, **options)
        if not self.done and plan.state == "paused":
            self.done = True
            self.other.resume(plan_id).result(timeout=WAIT)
        return plan


@pytest.mark.sql
def test_two_worlds_resuming_the_same_plan_exactly_one_wins(
    world_factory: Any, probe: Probe
) -> None:
    first, second = world_factory(), world_factory()
    plan = trigger(first, Graph, ["seq", "a", "b"], ["a"])
    repair("a")
    ResumedElsewhereFirst(second, first)

    losing = second.resume(plan.id)

    with pytest.raises(ConcurrentModification) as raised:
        losing.result(timeout=WAIT)
    assert str(raised.value) == (
        f"plan {plan.id} was started by another world first; wait for it with world.get_plan()"
    )
    done = second.get_plan(plan.id)
    assert (done.state, done.result) == ("stopped", "success")
    assert [runs(name) for name in "ab"] == [2, 1]  # resumed once
    resumes = [h.world_id for h in done.history if h.event == "plan running"][1:]
    assert resumes == [first.id]


@pytest.mark.sql
@threads_only
def test_two_worlds_resuming_the_same_plan_in_a_race(world_factory: Any, probe: Probe) -> None:
    worlds = [world_factory(), world_factory()]
    plan = trigger(worlds[0], Graph, ["seq", "a", "b"], ["a"])
    repair("a")
    start = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def resume(index: int) -> None:
        start.wait(WAIT)
        try:
            outcomes[index] = worlds[index].resume(plan.id)
        except DynaflowError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=resume, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    results = []
    for outcome in outcomes:
        if isinstance(outcome, DynaflowError):
            results.append(outcome)
            continue
        try:
            results.append(outcome.result(timeout=WAIT))
        except DynaflowError as exc:
            results.append(exc)
    won = [r for r in results if not isinstance(r, DynaflowError)]
    lost = [r for r in results if isinstance(r, DynaflowError)]
    assert len(won) == 1 and len(lost) == 1, results
    # the loser either read the plan as running already or lost the compare-and-set
    assert isinstance(lost[0], InvalidState | ConcurrentModification)
    assert (won[0].state, won[0].result) == ("stopped", "success")
    assert [runs(name) for name in "ab"] == [2, 1]


# -- retry policies and strategies -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 0}, "Retry(attempts=0) must allow at least 1 attempt (the first run)"),
        ({"attempts": -3}, "Retry(attempts=-3) must allow at least 1 attempt"),
        ({"attempts": 2.5}, "Retry(attempts=2.5) takes an int >= 1"),
        ({"attempts": True}, "Retry(attempts=True) takes an int >= 1"),
        ({"initial": -1.0}, "Retry(initial=-1.0) must be a number >= 0"),
        ({"max_delay": -5}, "Retry(max_delay=-5) must be a number >= 0"),
        ({"backoff": -2.0}, "Retry(backoff=-2.0) must be a number >= 0"),
        ({"initial": "1s"}, "Retry(initial='1s') must be a number >= 0"),
        ({"jitter": 1.5}, "Retry(jitter=1.5) is a fraction between 0 and 1"),
        ({"on": (ValueError, "oops")}, "takes exception classes"),
        ({"on": ()}, "takes exception classes"),
    ],
)
def test_bad_retry_policies(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        Retry(**options)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)  # InvalidArgument is a ValueError too


def test_an_action_whose_retry_is_not_a_retry_policy() -> None:
    with pytest.raises(ConfigurationError, match=r"BadRetry\.retry must be a dynaflow\.Retry"):

        class BadRetry(Action):
            retry = 3  # type: ignore[assignment]


def test_an_action_with_an_unknown_rescue_strategy() -> None:
    with pytest.raises(ConfigurationError, match=r"must be a dynaflow\.Rescue \(PAUSE, SKIP"):

        class BadRescue(Action):
            rescue_strategy = "sometimes"  # type: ignore[assignment]


@pytest.mark.parametrize("lease", [0, -1.0, True, "30"])
def test_a_world_with_a_bad_lease(lease: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"World\(lease=\.\.\.\) must be seconds > 0"):
        World("memory://", executor="inline", lease=lease)


class SkippedElsewhereMeanwhile:
    """The other world skips a failed step right after this world read the plan as paused
    (with that step still in error) to resume it: this world's view is stale."""

    def __init__(self, world: World, other: World, step_id: int) -> None:
        self.other, self.step_id, self.original = other, step_id, world.storage.load_plan
        self.done = False
        world.storage.load_plan = self.load_plan  # type: ignore[method-assign]

    def load_plan(self, plan_id: str, **options: Any) -> Any:
        plan = self.original(plan_id, **options)
        if not self.done and plan.state == "paused":
            self.done = True
            self.other.skip(plan_id, self.step_id).result(timeout=WAIT)
        return plan


@pytest.mark.sql
def test_a_resume_on_a_view_a_skip_made_stale_still_ends(world_factory: Any, probe: Probe) -> None:
    """Issue 12 item 2: a skip from another world lands between the resume reading the plan
    and taking it; the resume must not leave the plan running with every step finished."""
    resuming, skipping = world_factory(), world_factory()
    plan = trigger(resuming, Graph, ["seq", "a", "b"], ["a"])
    SkippedElsewhereMeanwhile(resuming, skipping, sid(plan, "a"))

    done = resuming.resume(plan.id).result(timeout=WAIT)

    assert (done.state, done.result) == ("stopped", "warning")
    assert [runs(name) for name in "ab"] == [1, 1]  # a was skipped, not run again
    states = {s.id: s.state for s in done.steps}
    assert states[sid(done, "a")] == "skipped" and states[sid(done, "b")] == "success"
