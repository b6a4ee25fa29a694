"""The run phase on both executors: concurrency, ordering, failures, times and history."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from dynaflow import Action, StepKind, StepState, World, signals

from .actions import (
    PROBE,
    WAIT,
    Probe,
    Shape,
    events_of,
    named_edges,
    receiving,
    states,
    step_of,
    trigger,
)

threads_only = pytest.mark.executors("threads")


# -- concurrency -----------------------------------------------------------------------------


@threads_only
def test_concurrent_steps_run_at_the_same_time(world: World, probe: Probe) -> None:
    triggered = world.trigger(Shape, ["con", "a", "b", "c"], leaf="gated")
    for name in "abc":
        probe.wait(f"arrived:{name}")
    assert probe.running == 3
    during = world.get_plan(triggered.plan_id)
    assert during.state == "running"
    assert states(during) == {"a": "running", "b": "running", "c": "running"}

    probe.event("release").set()
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.max_running == 3


@threads_only
def test_no_more_steps_run_at_once_than_there_are_workers(world_factory: Any, probe: Probe) -> None:
    world = world_factory(workers=2)
    triggered = world.trigger(Shape, ["con", "a", "b", "c", "d"], leaf="gated")
    probe.wait_running(2)
    probe.event("release").set()
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.max_running == 2
    assert sorted(probe.names("enter")) == ["a", "b", "c", "d"]


def test_a_sequence_runs_one_step_at_a_time_in_order(world: World, probe: Probe) -> None:
    plan = trigger(world, Shape, ["seq", "a", "b", "c", "d"], leaf="counted")
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("enter") == ["a", "b", "c", "d"]
    assert probe.max_running == 1
    steps = [step_of(plan, name) for name in "abcd"]
    for before, after in itertools.pairwise(steps):
        assert before.ended_at <= after.started_at


def test_ready_steps_are_all_started_before_any_of_them_ends(world: World) -> None:
    plan = trigger(world, Shape, ["seq", ["con", "a", "b", "c"], "d"])
    run_ids = {step_of(plan, name).id for name in "abc"}
    events = [(h.event, h.step_id) for h in plan.history if h.step_id in run_ids]
    first_end = min(i for i, (event, _) in enumerate(events) if event != "step running")
    assert {step for event, step in events[:first_end]} == run_ids
    assert step_of(plan, "d").started_at >= max(step_of(plan, n).ended_at for n in "abc")


# -- failures --------------------------------------------------------------------------------


def test_a_failed_step_blocks_its_dependents_while_independent_branches_finish(
    world: World, probe: Probe
) -> None:
    plan = trigger(
        world, Shape, ["con", ["seq", "fail:f", "after-f"], ["seq", "x", ["con", "y", "z"]]]
    )

    assert (plan.state, plan.result) == ("paused", "error")
    assert states(plan) == {
        "f": "error",
        "after-f": "pending",
        "x": "success",
        "y": "success",
        "z": "success",
    }
    assert "after-f" not in probe.names("run")
    error = step_of(plan, "f").error
    assert error.class_name == "RuntimeError"
    assert error.message == "disk full on f"
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "raise RuntimeError" in error.traceback
    assert error.traceback.rstrip().endswith("RuntimeError: disk full on f")
    assert plan.started_at is not None and plan.ended_at is None


@threads_only
def test_independent_branches_go_on_after_a_failure(world: World, probe: Probe) -> None:
    failed = probe.event("f failed")

    def on_step(sender: Any, **change: Any) -> None:
        if change["state"] == StepState.ERROR:
            failed.set()

    with receiving(signals.step_state_changed, on_step):
        triggered = world.trigger(
            Shape, ["con", ["seq", "fail:f", "after-f"], ["seq", "gated:g", "after-g"]]
        )
        probe.wait("arrived:g")
        probe.wait("f failed")
        during = world.get_plan(triggered.plan_id)
        assert during.state == "running"
        assert states(during)["f"] == "error"
        assert states(during)["g"] == "running"
        probe.event("release").set()
        plan = triggered.wait(timeout=WAIT)

    assert (plan.state, plan.result) == ("paused", "error")
    assert states(plan) == {
        "f": "error",
        "after-f": "pending",
        "g": "success",
        "after-g": "success",
    }


class FailsWithCustomError(Action):
    class QuotaExceeded(Exception):
        pass

    def run(self) -> None:
        self.output["partial"] = True  # not saved: the step failed
        raise self.QuotaExceeded("quota of 10 machines exceeded")


def test_the_error_records_the_exception_class_and_message(world: World) -> None:
    plan = trigger(world, FailsWithCustomError)
    (step,) = plan.run_steps()
    assert step.state == StepState.ERROR
    assert step.error.class_name == "FailsWithCustomError.QuotaExceeded"
    assert step.error.message == "quota of 10 machines exceeded"
    assert str(step.error) == "FailsWithCustomError.QuotaExceeded: quota of 10 machines exceeded"
    assert plan.actions[0].output == {}
    assert step.ended_at >= step.started_at


# -- plan and step times, history ------------------------------------------------------------


def test_a_plan_records_state_result_and_times(world: World) -> None:
    planned = world.plan(Shape, ["seq", "a", "b"])
    assert planned.started_at is None and planned.ended_at is None
    plan = world.execute(planned.id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.created_at <= plan.started_at <= plan.ended_at
    for step in plan.steps:
        assert step.state == StepState.SUCCESS
        assert step.started_at <= step.ended_at
        if step.kind == StepKind.RUN:
            assert plan.started_at <= step.started_at and step.ended_at <= plan.ended_at


class Ticking(Action):
    """Takes ``seconds`` of the frozen clock to run."""

    clock: Any = None

    def run(self) -> None:
        Ticking.clock.tick(timedelta(seconds=self.input["seconds"]))

    def finalize(self) -> None:
        Ticking.clock.tick(timedelta(seconds=0.25))


def test_step_durations_come_from_the_clock(world: World) -> None:
    with freeze_time("2030-01-01 12:00:00") as clock:
        Ticking.clock = clock
        start = clock()
        plan = trigger(world, Ticking, seconds=2.5)
    Ticking.clock = None

    run = next(plan.run_steps())
    (finalize,) = plan.finalize_steps()
    assert run.duration == 2.5
    assert run.started_at.replace(tzinfo=None) == start
    assert (run.ended_at - run.started_at).total_seconds() == 2.5
    assert finalize.duration == 0.25
    assert plan.started_at.replace(tzinfo=None) == start
    assert (plan.ended_at - plan.started_at).total_seconds() == 2.75


class TwoTicking(Action):
    """Two concurrent steps of 5 s each, for a world with one worker."""

    def plan(self) -> None:
        self.plan_action(Ticking, name="a", seconds=5)
        self.plan_action(Ticking, name="b", seconds=5)


def test_a_step_waiting_for_a_worker_does_not_count_the_wait(world_factory: Any) -> None:
    world = world_factory(workers=1)
    with freeze_time("2030-01-01 12:00:00") as clock:
        Ticking.clock = clock
        plan = trigger(world, TwoTicking)
    Ticking.clock = None

    assert (plan.state, plan.result) == ("stopped", "success")
    for name in ("a", "b"):
        step = step_of(plan, name)
        assert step.duration == 5.0, name
        assert (step.ended_at - step.started_at).total_seconds() == 5.0, name


def test_history_records_every_state_change(world: World) -> None:
    plan = trigger(world, Shape, ["seq", "a", "b"], leaf="tracked")

    assert events_of(plan, None) == [
        "plan planning",
        "plan planned",
        "plan running",
        "plan stopped",
    ]
    for step in plan.steps:
        if step.kind == StepKind.PLAN:
            assert events_of(plan, step.id) == ["step success"], step
        else:
            assert events_of(plan, step.id) == ["step running", "step success"], step
    executed = [h for h in plan.history if h.event != "plan planning" and h.step_id is None]
    assert {h.world_id for h in executed} == {world.id}
    running = [h for h in plan.history if h.event == "step running"]
    assert {h.world_id for h in running} == {world.id}


def test_history_records_errors_and_the_pause(world: World) -> None:
    plan = trigger(world, Shape, ["seq", "fail:f", "g"])
    f = step_of(plan, "f")
    assert events_of(plan, f.id) == ["step running", "step error"]
    (error_row,) = [h for h in plan.history if h.step_id == f.id and h.event == "step error"]
    assert error_row.detail["error"]["class_name"] == "RuntimeError"
    assert error_row.detail["error"]["message"] == "disk full on f"
    assert events_of(plan, step_of(plan, "g").id) == []
    assert events_of(plan, None)[-2:] == ["plan running", "plan paused"]


@threads_only
def test_wait_raises_timeout_error_while_the_plan_is_still_running(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Shape, ["con", "a"], leaf="gated")
    probe.wait("arrived:a")
    with pytest.raises(TimeoutError):
        triggered.wait(timeout=0.05)
    probe.event("release").set()
    assert triggered.wait(timeout=WAIT).state == "stopped"


@threads_only
def test_plans_triggered_from_many_threads_all_finish(world: World, probe: Probe) -> None:
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            spec = ["seq", f"p{n}-a", ["con", f"p{n}-b", f"p{n}-c"]]
            results[n] = trigger(world, Shape, spec, leaf="tracked")
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(WAIT)
    assert errors == []
    assert len(results) == 8
    assert {(p.state, p.result) for p in results.values()} == {("stopped", "success")}
    assert len({p.id for p in results.values()}) == 8
    assert len(probe.names("run")) == 24
    assert len(probe.names("finalize")) == 24
    assert world.count_plans(state="stopped", result="success") == 8


def test_a_wide_join_waits_for_every_member_of_the_previous_scope(world: World) -> None:
    plan = trigger(world, Shape, ["seq", ["con", "a", "b", "c"], ["con", "d", "e", "f"], "g"])
    assert (plan.state, plan.result) == ("stopped", "success")
    assert named_edges(plan) == {
        *((x, y) for x in "abc" for y in "def"),
        *((x, "g") for x in "def"),
    }
    first_ended = max(step_of(plan, n).ended_at for n in "abc")
    assert all(step_of(plan, n).started_at >= first_ended for n in "def")


class FinalizeOnly(Action):
    def finalize(self) -> None:
        PROBE.record("finalize", self.input["name"])


def test_an_action_with_only_finalize_is_finalized(world: World, probe: Probe) -> None:
    plan = trigger(world, FinalizeOnly, name="f")
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("finalize") == ["f"]
    assert [(s.kind, s.state) for s in plan.steps] == [("plan", "success"), ("finalize", "success")]


# -- shutdown --------------------------------------------------------------------------------


def close_during(world_factory: Any, probe: Probe) -> tuple[str, Any]:
    """Trigger ``g ; b`` (g gated), close the world while g runs, then let g finish.
    Returns the plan id and a second world on the same database."""
    world = world_factory()
    triggered = world.trigger(Shape, ["seq", "gated:g", "b"])
    probe.wait("arrived:g")
    # know when the executor has stopped taking new steps, without peeking in a loop
    stop_claiming = world.executor._stop_claiming

    def announce() -> None:
        stop_claiming()
        probe.event("stopped claiming").set()

    world.executor._stop_claiming = announce
    closer = threading.Thread(target=world.close, kwargs={"timeout": WAIT})
    closer.start()
    probe.wait("stopped claiming")
    probe.event("release").set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert triggered.future.done()
    return triggered.plan_id, world_factory()


@threads_only
@pytest.mark.sql
def test_close_waits_for_running_steps_and_the_next_world_carries_on(
    world_factory: Any, probe: Probe
) -> None:
    plan_id, other = close_during(world_factory, probe)

    # the closing world finished g, released the plan, and the new world adopted it
    done = other.follow(plan_id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert states(done) == {"g": "success", "b": "success"}
    events = events_of(done, None)
    assert events.index("plan released") < events.index("plan stopped")
    assert probe.names("enter") == ["g"]  # g is not run again
    assert probe.names("run") == ["b"]


@threads_only
def test_executing_a_running_plan_again_waits_for_the_same_end(world: World, probe: Probe) -> None:
    triggered = world.trigger(Shape, ["seq", "gated:g", "b"])
    probe.wait("arrived:g")
    again = world.execute(triggered.plan_id)
    probe.event("release").set()
    assert again.result(timeout=WAIT).state == "stopped"
    assert triggered.wait(timeout=WAIT).result == "success"
    assert probe.names("enter") == ["g"]
    assert probe.names("run") == ["b"]


#: names of Flaky actions that fail (a test clears it to "fix" them)
BROKEN: set[str] = set()


class Flaky(Action):
    def run(self) -> None:
        PROBE.record("run", self.input["name"])
        if self.input["name"] in BROKEN:
            raise ConnectionError(f"{self.input['name']} is unreachable")


class FlakyPlan(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Flaky, name="first")
            with self.concurrence():
                self.plan_action(Flaky, name="flaky")
                self.plan_action(Flaky, name="sibling")
            self.plan_action(Flaky, name="last")


def test_executing_a_paused_plan_reruns_failed_steps_only(world: World, probe: Probe) -> None:
    BROKEN.add("flaky")
    try:
        paused = trigger(world, FlakyPlan)
    finally:
        BROKEN.clear()
    assert (paused.state, paused.result) == ("paused", "error")
    assert states(paused)["last"] == "pending"

    done = world.execute(paused.id).result(timeout=WAIT)

    assert (done.state, done.result) == ("stopped", "success")
    assert sorted(probe.names("run")) == ["first", "flaky", "flaky", "last", "sibling"]
    assert probe.names("run")[-2:] == ["flaky", "last"]
    assert step_of(done, "flaky").error is None
    assert step_of(done, "first").ended_at == step_of(paused, "first").ended_at
    assert done.started_at == paused.started_at
    assert events_of(done, None)[-4:] == [
        "plan running",
        "plan paused",
        "plan running",
        "plan stopped",
    ]


def test_every_time_comes_back_timezone_aware_utc(world: World) -> None:
    plan = trigger(world, Shape, ["seq", "a", "fail:f"], leaf="tracked")
    times = [plan.created_at, plan.started_at]
    times += [t for s in plan.steps for t in (s.started_at, s.ended_at) if t is not None]
    times += [h.at for h in plan.history]
    assert len(times) > 10
    for value in times:
        assert value.utcoffset() == timedelta(0), value
    assert {s.world_id for s in plan.steps if s.kind == StepKind.RUN} == {world.id}


class TriggersAnother(Action):
    def run(self) -> None:
        triggered = self.world.trigger(Shape, ["seq", "child-a", "child-b"])
        PROBE.record("triggered", triggered)
        self.output["child"] = triggered.plan_id


def test_a_step_can_trigger_another_plan(world: World, backend: Any, probe: Probe) -> None:
    parent = trigger(world, TriggersAnother)
    assert (parent.state, parent.result) == ("stopped", "success")
    (triggered,) = probe.names("triggered")
    if backend.executor == "inline":  # the outer trigger runs until nothing more is ready
        assert triggered.future.done()
    child = triggered.wait(timeout=WAIT)
    assert child.id == parent.actions[0].output["child"]
    assert (child.state, child.result) == ("stopped", "success")
    assert probe.names("run") == ["child-a", "child-b"]
