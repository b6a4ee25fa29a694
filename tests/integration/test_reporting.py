"""What run steps report while they run: progress and log lines, stored (not on every call),
emitted as signals, read back; a plan's progress weighs its steps. Both executors, every
storage."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import (
    Action,
    ConfigurationError,
    InvalidArgument,
    InvalidState,
    StepState,
    World,
    signals,
)
from dynaflow.reporting import MAX_LINES

from .actions import PROBE, WAIT, receiving
from .waiting import frozen_clock


def run_steps(world: World, plan_id: str) -> dict[str, Any]:
    """The run steps by the name in their action's input."""
    plan = world.get_plan(plan_id)
    names = {a.id: a.input.get("name") for a in plan.actions}
    return {names[s.action_id]: s for s in plan.steps if s.kind == "run"}


class Counting(Action):
    """Reports progress and a line per item; suspends at ``pause_at`` (to look at a plan in
    the middle), then finishes on any event."""

    def plan(self, name: str, items: int, pause_at: int | None = None) -> None:
        self.plan_self(name=name, items=items, pause_at=pause_at)

    def run(self, event: Any = None) -> None:
        if event is not None:
            self.log("woken")
            return
        items = self.input["items"]
        for i in range(1, items + 1):
            self.progress(i, items)
            self.log(f"item {i} of {items}")
            if i == self.input["pause_at"]:
                self.suspend(lambda handle: PROBE.event("paused").set())


class Heavy(Counting):
    progress_weight = 3


class Two(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Counting, "light", 2)
            self.plan_action(Heavy, "heavy", 4, pause_at=2)


class Chatty(Action):
    def plan(self, name: str, lines: int) -> None:
        self.plan_self(name=name, lines=lines)

    def run(self) -> None:
        for i in range(self.input["lines"]):
            self.log(f"line {i + 1}")


class Bad(Action):
    def plan(self, name: str, call: str) -> None:
        self.plan_self(name=name, call=call)

    def run(self) -> None:
        match self.input["call"]:
            case "negative":
                self.progress(-1)
            case "zero total":
                self.progress(1, 0)
            case "not text":
                self.log(42)  # type: ignore[arg-type]


def test_a_step_reports_progress_and_lines_that_are_stored_and_signalled(world: World) -> None:
    progress: list[tuple[Any, ...]] = []
    lines: list[str] = []
    with (
        receiving(
            signals.step_progress, lambda _s, **kw: progress.append((kw["done"], kw["total"]))
        ),
        receiving(signals.step_logged, lambda _s, **kw: lines.append(kw["message"])),
    ):
        plan = world.trigger(Counting, "c", 3).wait(WAIT)
    assert plan.result == "success"
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert lines == ["item 1 of 3", "item 2 of 3", "item 3 of 3"]
    step = run_steps(world, plan.id)["c"]
    assert step.progress == {"done": 3, "total": 3}
    logged = world.step_logs(plan.id)
    assert [(line.step_id, line.seq, line.message) for line in logged] == [
        (step.id, 1, "item 1 of 3"),
        (step.id, 2, "item 2 of 3"),
        (step.id, 3, "item 3 of 3"),
    ]
    assert [line.seq for line in world.step_logs(plan.id, step.id, after=1)] == [2, 3]
    assert len(world.step_logs(plan.id, limit=2)) == 2
    assert plan.progress == 1.0


def test_a_plans_progress_weighs_its_steps(world: World) -> None:
    triggered = world.trigger(Two)
    PROBE.wait("paused")
    plan = world.get_plan(triggered.plan_id)
    steps = run_steps(world, plan.id)
    assert steps["light"].state == StepState.SUCCESS
    assert steps["heavy"].state == StepState.SUSPENDED
    assert steps["heavy"].progress == {"done": 2, "total": 4, "weight": 3}
    assert steps["heavy"].fraction == 0.5
    # light: weight 1, done; heavy: weight 3, half done
    assert plan.progress == pytest.approx((1 * 1.0 + 3 * 0.5) / 4)
    world.event(plan.id, steps["heavy"].id, "go").result(WAIT)
    done = world.follow(plan.id).result(WAIT)
    assert done.progress == 1.0
    # the second run's line goes after the first run's
    heavy = world.step_logs(plan.id, steps["heavy"].id)
    assert [line.seq for line in heavy] == [1, 2, 3]
    assert heavy[-1].message == "woken"


def test_lines_past_the_cap_are_counted_in_one_last_line(world: World) -> None:
    plan = world.trigger(Chatty, "chatty", MAX_LINES + 5).wait(WAIT)
    logged = world.step_logs(plan.id, limit=MAX_LINES + 10)
    assert len(logged) == MAX_LINES + 1
    assert logged[MAX_LINES - 1].message == f"line {MAX_LINES}"
    assert logged[-1].message == f"… 5 more lines not kept (at most {MAX_LINES} per step)"


def test_reports_are_written_at_most_every_half_second_and_the_last_with_the_steps_end(
    world: World,
) -> None:
    """No time passes inside the run: no write of its own; the last progress is stored with
    the step's outcome, in the transaction that ends it."""
    writes: list[Any] = []
    save = world.storage.save_progress

    def counted(*args: Any) -> bool:
        writes.append(args)
        return save(*args)

    world.storage.save_progress = counted  # type: ignore[method-assign]
    with frozen_clock():
        plan = world.trigger(Counting, "c", 200).wait(WAIT)
    assert plan.result == "success"
    assert writes == []
    assert run_steps(world, plan.id)["c"].progress == {"done": 200, "total": 200}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("negative", "done must be a number >= 0"),
        ("zero total", "total must be a number > 0"),
        ("not text", "log() takes a str"),
    ],
)
def test_bad_reports_fail_the_step_naming_the_problem(
    world: World, call: str, message: str
) -> None:
    plan = world.trigger(Bad, "bad", call).wait(WAIT)
    step = run_steps(world, plan.id)["bad"]
    assert step.state == StepState.ERROR
    assert step.error is not None and message in step.error.message
    assert step.error.class_name == InvalidArgument.__name__


def test_reporting_outside_run_and_bad_weights_are_refused(world: World) -> None:
    action = Counting()
    with pytest.raises(InvalidState, match="progress"):
        action.progress(1)
    with pytest.raises(ConfigurationError, match="progress_weight"):
        type("Negative", (Action,), {"progress_weight": -1})
    with pytest.raises(ConfigurationError, match="limit"):
        world.step_logs("any", limit=0)
