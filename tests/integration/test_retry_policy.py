"""Retry policies under a frozen clock, on both executors and every storage: a failed attempt
waits on a persisted timer (the step ``suspended``, no worker held) and runs again exactly when
the backoff says; each attempt's error stays in the history; once the attempts are used up the
rescue strategy applies."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dynaflow import Action, Rescue, Retry, World
from dynaflow.clock import now

from .actions import PROBE, WAIT, Probe, states, step_of
from .failing import frozen_clock, reached, seconds_after_t0, watching_steps
from .waiting import T0, ended


class Flaky(Action):
    """Fails with ``ConnectionError`` on its first ``failures`` runs (all of them if absent),
    recording each run with the clock's time; then succeeds."""

    retry = Retry(attempts=4, initial=10.0, backoff=3.0, max_delay=60.0, on=(ConnectionError,))

    def run(self) -> None:
        name = self.input["name"]
        PROBE.record("run", name, now())
        attempt = PROBE.names("run").count(name)
        if attempt <= self.input.get("failures", 99):
            raise ConnectionError(f"attempt {attempt}: connection refused")
        self.output["attempts"] = attempt


class FlakySkip(Flaky):
    retry = Retry(attempts=2, initial=5.0, on=(ConnectionError,))
    rescue_strategy = Rescue.SKIP


class FlakyFail(FlakySkip):
    rescue_strategy = Rescue.FAIL


class WrongError(Flaky):
    """Its error is not one the policy retries."""

    def run(self) -> None:
        PROBE.record("run", self.input["name"], now())
        raise ValueError("bad request: retrying will not help")


def run_times(probe: Probe, name: str = "x") -> list[float]:
    """When ``name`` ran, in seconds after T0."""
    return [seconds_after_t0(c[2]) for c in probe.calls if c[0] == "run" and c[1] == name]


def tick(world: World, clock: Any, seconds: float) -> None:
    clock.tick(timedelta(seconds=seconds))
    world.run_pending()


# -- attempts and their times ----------------------------------------------------------------


def test_attempts_run_after_the_backoff_delays_capped_by_max_delay(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(Flaky, name="x")
        step = step_of(world.get_plan(triggered.plan_id), "x").id
        # delays: 10, then 10 * 3 = 30, then 10 * 9 = 90 capped to 60
        for attempt, (wait, due) in enumerate([(10, 10), (30, 40), (60, 100)], start=1):
            reached(world, step, "suspended", attempt)
            assert run_times(probe) == [0, 10, 40, 100][:attempt]
            (timer,) = world.storage.plan_events(triggered.plan_id)
            assert (timer.kind, seconds_after_t0(timer.due_at)) == ("retry", due)
            tick(world, clock, wait - 0.5)  # not yet due
            assert len(run_times(probe)) == attempt
            tick(world, clock, 0.5)
        plan = ended(world, triggered)

    assert run_times(probe) == [0, 10, 40, 100]
    assert (plan.state, plan.result) == ("paused", "error")  # no strategy: PAUSE
    assert states(plan) == {"x": "error"}
    assert step_of(plan, "x").error.message == "attempt 4: connection refused"
    assert world.storage.plan_events(plan.id) == []


def test_each_attempts_error_is_kept_in_the_history(world: World, probe: Probe) -> None:
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(Flaky, name="x")
        step = step_of(world.get_plan(triggered.plan_id), "x").id
        for attempt, wait in enumerate([10, 30, 60], start=1):
            reached(world, step, "suspended", attempt)
            tick(world, clock, wait)
        plan = ended(world, triggered)

    errors = [h for h in plan.history if h.event == "step error" and h.step_id == step]
    assert [seconds_after_t0(h.at) for h in errors] == [0, 10, 40, 100]
    assert [h.world_id for h in errors] == [world.id] * 4
    details = [h.detail or {} for h in errors]
    assert [d["error"]["message"] for d in details] == [
        f"attempt {n}: connection refused" for n in (1, 2, 3, 4)
    ]
    assert {d["error"]["class_name"] for d in details} == {"ConnectionError"}
    assert all("ConnectionError: attempt" in d["error"]["traceback"] for d in details)
    assert [d.get("attempt") for d in details[:3]] == [1, 2, 3]
    assert [d.get("retry_at") for d in details[:3]] == [
        (T0 + timedelta(seconds=s)).isoformat() for s in (10, 40, 100)
    ]
    runs = [h for h in plan.history if h.event == "step running" and h.step_id == step]
    assert [seconds_after_t0(h.at) for h in runs] == [0, 10, 40, 100]


def test_a_later_attempt_that_succeeds_finishes_the_plan(world: World, probe: Probe) -> None:
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(Flaky, name="x", failures=2)
        step = step_of(world.get_plan(triggered.plan_id), "x").id
        reached(world, step, "suspended", 1)
        tick(world, clock, 10)
        reached(world, step, "suspended", 2)
        tick(world, clock, 30)
        plan = ended(world, triggered)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert run_times(probe) == [0, 10, 40]
    assert step_of(plan, "x").error is None
    assert plan.action(step_of(plan, "x").action_id).output == {"attempts": 3}
    assert [h.event for h in plan.history if h.step_id == step].count("step error") == 2


def test_no_worker_is_held_between_attempts(world_factory: Any, probe: Probe) -> None:
    world = world_factory(workers=1)
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(Flaky, name="x", failures=1)
        plan = world.get_plan(triggered.plan_id)
        step = step_of(plan, "x").id
        reached(world, step, "suspended", 1)

        assert world.executor.engine.busy == 0
        waiting = world.get_plan(plan.id)
        assert (waiting.state, states(waiting)) == ("running", {"x": "suspended"})
        # the only worker is free: another plan runs to the end meanwhile
        other = world.trigger(Flaky, name="y", failures=0)
        assert other.wait(timeout=WAIT).result == "success"

        tick(world, clock, 10)
        plan = ended(world, triggered)
    assert (plan.state, plan.result) == ("stopped", "success")


def test_errors_the_policy_does_not_name_are_not_retried(world: World, probe: Probe) -> None:
    with frozen_clock():
        plan = world.trigger(WrongError, name="x").wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    assert run_times(probe) == [0]
    assert world.storage.plan_events(plan.id) == []
    assert step_of(plan, "x").error.class_name == "ValueError"


# -- when the attempts are used up -----------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "outcome", "final"),
    [(FlakySkip, ("stopped", "warning"), "skipped"), (FlakyFail, ("stopped", "error"), "error")],
)
def test_the_rescue_strategy_applies_once_the_attempts_are_used_up(
    world: World, probe: Probe, action: type[Action], outcome: tuple[str, str], final: str
) -> None:
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(action, name="x")
        step = step_of(world.get_plan(triggered.plan_id), "x").id
        reached(world, step, "suspended", 1)
        assert not triggered.future.done()  # the strategy waits for the last attempt
        tick(world, clock, 5)
        plan = ended(world, triggered)

    assert (plan.state, plan.result) == outcome
    assert states(plan) == {"x": final}
    assert run_times(probe) == [0, 5]


@pytest.mark.sql
def test_an_attempt_waiting_on_its_timer_survives_a_world_restart(
    world_factory: Any, probe: Probe
) -> None:
    with frozen_clock() as clock, watching_steps():
        first = world_factory()
        triggered = first.trigger(Flaky, name="x", failures=1)
        step = step_of(first.get_plan(triggered.plan_id), "x").id
        reached(first, step, "suspended", 1)
        first.close(timeout=WAIT)

        second = world_factory()  # adopts the released plan and its retry timer
        tick(second, clock, 9)
        assert run_times(probe) == [0]
        tick(second, clock, 1)
        plan = second.follow(triggered.plan_id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert run_times(probe) == [0, 10]


# -- the policy itself -----------------------------------------------------------------------


def test_retry_delays() -> None:
    policy = Retry(attempts=6, initial=2.0, backoff=2.0, max_delay=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert Retry(initial=3.0, backoff=1.0).delay(5) == 3.0  # constant
    jittered = Retry(initial=10.0, jitter=0.5)
    assert all(5.0 <= jittered.delay(1) <= 15.0 for _ in range(200))
    assert len({jittered.delay(1) for _ in range(20)}) > 1


def test_a_policy_retries_only_its_errors() -> None:
    policy = Retry(on=(ConnectionError, TimeoutError))
    assert policy.applies(ConnectionRefusedError())  # a subclass
    assert policy.applies(TimeoutError())
    assert not policy.applies(ValueError())
    assert not policy.applies(None)
    assert Retry(on=ConnectionError).on == (ConnectionError,)  # one class is a tuple of one
    assert Retry().applies(RuntimeError())  # default: any Exception


def test_a_resumed_step_gets_a_fresh_set_of_attempts(world: World, probe: Probe) -> None:
    with frozen_clock() as clock, watching_steps():
        triggered = world.trigger(Flaky, name="x")
        step = step_of(world.get_plan(triggered.plan_id), "x").id
        for attempt, wait in enumerate([10, 30, 60], start=1):
            reached(world, step, "suspended", attempt)
            tick(world, clock, wait)
        paused = ended(world, triggered)
        assert (paused.state, len(run_times(probe))) == ("paused", 4)

        resumed = world.resume(paused.id)
        reached(world, step, "suspended", 4)  # the first attempt of the new set failed
        tick(world, clock, 10)  # ... and the second runs after the first delay again
        reached(world, step, "suspended", 5)
        assert not resumed.done()

    assert run_times(probe) == [0, 10, 40, 100, 100, 110]
