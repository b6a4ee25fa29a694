"""The Polling mixin against a fake job API, under a frozen clock, on both executors: the poll
cadence, tolerated poll errors, the overall timeout, and a restart that polls the job it has
instead of starting a second one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from dynaflow import Action, Polling, StepState, World, signals
from dynaflow.clock import now

from .actions import PROBE, WAIT, receiving
from .waiting import T0, advance, ended, expect, finish, frozen_clock


class JobAPI:
    """A fake external job service. ``script`` says what each status call answers, in turn:
    a job state, or an exception to raise; once it runs out, jobs are ``running``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, script: list[Any] | None = None) -> None:
        self.started: list[str] = []
        self.polls: list[datetime] = []
        self.script = list(script or [])

    def start(self, name: str) -> str:
        job = f"{name}-job-{len(self.started) + 1}"
        self.started.append(job)
        return job

    def status(self, job: str) -> dict[str, Any]:
        self.polls.append(now())
        answer = self.script.pop(0) if self.script else "running"
        if isinstance(answer, Exception):
            raise answer
        return {"job": job, "state": answer}

    def poll_times(self) -> list[float]:
        """Seconds after T0 of each status call."""
        return [(at - T0).total_seconds() for at in self.polls]


API = JobAPI()


class PollJob(Polling, Action):
    def invoke_external_task(self) -> dict[str, Any]:
        return {"job": API.start(self.input["name"]), "state": "submitted"}

    def poll_external_task(self) -> dict[str, Any]:
        return API.status(self.external_task["job"])

    def done(self) -> bool:
        return bool(self.external_task["state"] == "done")


class PollEverySecond(PollJob):
    poll_intervals = (1,)


class PollWithTimeout(PollEverySecond):
    timeout = 5


@pytest.fixture(autouse=True)
def api() -> Iterator[JobAPI]:
    """A fresh API, and ``suspended:<n>`` probe events for each time a step suspends (the
    Polling mixin suspends after invoking and after each poll that is not the last)."""
    API.reset()
    count = 0

    def on_step(sender: Any, **change: Any) -> None:
        nonlocal count
        if change["state"] == StepState.SUSPENDED:
            count += 1
            PROBE.event(f"suspended:{count}").set()

    with receiving(signals.step_state_changed, on_step):
        yield API


def poll_until(world: World, clock: Any, until: float, expected: list[float]) -> None:
    """Tick the clock a quarter second at a time up to ``until`` seconds after T0; after each
    tick that makes a poll due (per ``expected``), wait until the step has suspended again."""
    elapsed = (now() - T0).total_seconds()
    while elapsed < until:
        advance(world, clock, 0.25)
        elapsed += 0.25
        if elapsed in expected:
            expect(world, f"suspended:{expected.index(elapsed) + 2}")


# -- cadence ---------------------------------------------------------------------------------

CADENCE = [0.5, 1.0, 1.5, 2.0, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 9.5, 11.5]


def test_the_poll_cadence_of_twelve_polls(world: World, api: JobAPI) -> None:
    api.reset(["running"] * 11 + ["done"])
    with frozen_clock() as clock:
        triggered = world.trigger(PollJob, name="sync")
        expect(world, "suspended:1")
        assert api.started == ["sync-job-1"]
        poll_until(world, clock, 11.25, CADENCE)
        assert api.poll_times() == CADENCE[:-1]
        advance(world, clock, 0.25)  # 11.5 s: the twelfth poll finds the job done
        plan = ended(world, triggered)

    assert api.poll_times() == CADENCE
    assert (plan.state, plan.result) == ("stopped", "success")
    (step,) = plan.run_steps()
    assert plan.action(step.action_id).output == {
        "task": {"job": "sync-job-1", "state": "done"},
        "poll_attempts": {"total": 12, "failed": 0},
    }
    assert api.started == ["sync-job-1"]
    assert world.storage.plan_events(plan.id) == []


class Ladder(PollJob):
    poll_intervals = (2, 3)
    attempts_before_next_interval = 2


def test_poll_intervals_and_their_ladder_are_class_attributes(world: World, api: JobAPI) -> None:
    expected = [2.0, 4.0, 7.0, 10.0, 13.0]
    api.reset(["running"] * 4 + ["done"])
    with frozen_clock() as clock:
        triggered = world.trigger(Ladder, name="ladder")
        expect(world, "suspended:1")
        poll_until(world, clock, 12.75, expected)
        advance(world, clock, 0.25)
        plan = ended(world, triggered)
    assert api.poll_times() == expected
    assert plan.result == "success"


# -- poll errors -----------------------------------------------------------------------------


def tick_polls(world: World, clock: Any, polls: int, first_suspension: int = 1) -> None:
    """Tick one second ``polls`` times (PollEverySecond), waiting for each re-suspension."""
    for n in range(polls):
        advance(world, clock, 1)
        expect(world, f"suspended:{first_suspension + n + 1}")


def test_poll_errors_are_tolerated_up_to_poll_max_retries_and_reset_by_a_success(
    world: World, api: JobAPI
) -> None:
    down = ConnectionError("job API unreachable")
    api.reset([down, down, down, "running", down, down, down, "done"])
    with frozen_clock() as clock:
        triggered = world.trigger(PollEverySecond, name="flaky")
        expect(world, "suspended:1")
        tick_polls(world, clock, 7)
        during = world.get_plan(triggered.plan_id)
        (step,) = during.run_steps()
        assert step.state == "suspended"
        assert during.action(step.action_id).output["poll_attempts"] == {"total": 7, "failed": 3}
        advance(world, clock, 1)
        plan = ended(world, triggered)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.action(step.action_id).output["poll_attempts"] == {"total": 8, "failed": 0}
    assert len(api.polls) == 8


def test_one_poll_error_too_many_fails_the_step(world: World, api: JobAPI) -> None:
    api.reset([ConnectionError(f"job API unreachable ({n})") for n in range(1, 5)])
    with frozen_clock() as clock:
        triggered = world.trigger(PollEverySecond, name="down")
        expect(world, "suspended:1")
        tick_polls(world, clock, 3)
        advance(world, clock, 1)  # the fourth error in a row
        plan = ended(world, triggered)

    assert (plan.state, plan.result) == ("paused", "error")
    (step,) = plan.run_steps()
    assert step.state == "error"
    assert (step.error.class_name, step.error.message) == (
        "ConnectionError",
        "job API unreachable (4)",
    )
    assert len(api.polls) == 4


# -- timeout ---------------------------------------------------------------------------------


def test_the_timeout_fails_a_step_whose_task_is_not_done_in_time(world: World, api: JobAPI) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(PollWithTimeout, name="slow")
        expect(world, "suspended:1")
        tick_polls(world, clock, 4)  # polls at 1, 2, 3, 4 s
        advance(world, clock, 1)  # 5 s: the timeout (planned first) comes before the poll
        plan = ended(world, triggered)

    assert api.poll_times() == [1.0, 2.0, 3.0, 4.0]
    assert (plan.state, plan.result) == ("paused", "error")
    (step,) = plan.run_steps()
    assert (step.error.class_name, step.error.message) == ("Timeout", "timeout exceeded after 5 s")
    assert api.started == ["slow-job-1"]


def test_resuming_a_timed_out_step_polls_its_job_once_per_interval(
    world: World, api: JobAPI
) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(PollWithTimeout, name="slow")
        expect(world, "suspended:1")
        tick_polls(world, clock, 4)
        advance(world, clock, 1)
        ended(world, triggered)
        assert world.storage.plan_events(triggered.plan_id) == []  # nothing left to fire

        resumed = world.execute(triggered.plan_id)
        expect(world, "suspended:6")  # the step suspended again, waiting for its next poll
        for second in range(3):
            advance(world, clock, 1)
            expect(world, f"suspended:{7 + second}")
        api.script = ["done"]
        advance(world, clock, 1)
        plan = resumed.result(timeout=WAIT)

    assert api.poll_times() == [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0]
    assert plan.result == "success"
    assert api.started == ["slow-job-1"]


# -- restarts --------------------------------------------------------------------------------


@pytest.mark.sql
def test_after_a_world_restart_the_step_polls_the_job_it_started(
    world_factory: Any, api: JobAPI
) -> None:
    api.reset(["running", "done"])
    with frozen_clock() as clock:
        first = world_factory()
        triggered = first.trigger(PollEverySecond, name="sync")
        expect(first, "suspended:1")
        tick_polls(first, clock, 1)
        first.close(timeout=WAIT)

        second = world_factory()  # adopts the plan; its poll timer is in the database
        advance(second, clock, 1)
        plan = finish(second, triggered.plan_id)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert api.started == ["sync-job-1"]
    assert api.poll_times() == [1.0, 2.0]
    (step,) = plan.run_steps()
    assert plan.action(step.action_id).output["task"] == {"job": "sync-job-1", "state": "done"}


def test_a_step_run_again_after_an_error_polls_the_job_it_started(
    world: World, api: JobAPI
) -> None:
    api.reset([ConnectionError("job API unreachable")] * 4)
    with frozen_clock() as clock:
        triggered = world.trigger(PollEverySecond, name="sync")
        expect(world, "suspended:1")
        tick_polls(world, clock, 3)
        advance(world, clock, 1)
        assert ended(world, triggered).result == "error"

        api.script = ["done"]
        resumed = world.execute(triggered.plan_id)  # run() is called again, without event
        expect(world, "suspended:5")
        advance(world, clock, 1)
        plan = resumed.result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert api.started == ["sync-job-1"]  # not invoked a second time
    assert api.poll_times() == [1.0, 2.0, 3.0, 4.0, 5.0]
    (step,) = plan.run_steps()
    assert plan.action(step.action_id).output == {
        "task": {"job": "sync-job-1", "state": "done"},
        "poll_attempts": {"total": 4, "failed": 0},
    }


class WithoutPollingFields(PollJob):
    class Output(BaseModel):
        result: str | None = None


def test_an_output_model_without_the_polling_fields_is_a_clear_error(world: World) -> None:
    plan = world.trigger(WithoutPollingFields, name="m").wait(timeout=WAIT)
    (step,) = plan.run_steps()
    assert step.error.class_name == "ConfigurationError"
    assert "needs a field 'task' for Polling" in step.error.message


class WithPollingFields(PollEverySecond):
    """The documented Output model: ``poll_attempts`` starts as an empty dict."""

    class Output(BaseModel):
        task: Any = None
        poll_attempts: dict = {}  # type: ignore[type-arg]
        result: str | None = None


def test_an_output_model_with_the_documented_polling_fields_polls(
    world: World, api: JobAPI
) -> None:
    api.reset(["done"])
    with frozen_clock() as clock:
        triggered = world.trigger(WithPollingFields, name="model")
        expect(world, "suspended:1")
        advance(world, clock, 1)
        plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    (step,) = plan.run_steps()
    assert plan.action(step.action_id).output["poll_attempts"] == {"total": 1, "failed": 0}
