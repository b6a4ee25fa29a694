"""Durations that mean what they say (docs/cli.md): a paused plan's duration stops at its
pause, a step that waited while polling shows the time it took, with its run time beside it.
Under a frozen clock: every figure is exact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from dynaflow import Action, Polling, World

from .cli_runner import run, run_json

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class PollThrice(Polling, Action):
    """Done on its third poll, half a second apart."""

    poll_intervals = (0.5,)

    def invoke_external_task(self) -> dict[str, Any]:
        return {"polls": 0}

    def poll_external_task(self) -> dict[str, Any]:
        return {"polls": self.external_task["polls"] + 1}

    def done(self) -> bool:
        return bool(self.external_task["polls"] >= 3)


class Breaks(Action):
    def run(self) -> None:
        raise RuntimeError("broken after the wait")


class WaitThenBreak(Action):
    def plan(self) -> None:
        with self.sequence():
            self.plan_action(PollThrice)
            self.plan_action(Breaks)


@pytest.fixture
def clock(tmp_path: Path) -> Iterator[tuple[Any, World]]:
    """A frozen clock at T0 and an inline world on an SQLite file."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    with freeze_time(T0, ignore=["sqlalchemy"]) as frozen, World(url, executor="inline") as world:
        yield frozen, world


def run_polls(clock: Any, world: World) -> None:
    for _ in range(3):
        clock.tick(timedelta(seconds=0.5))
        world.run_pending()


def test_a_polling_step_shows_its_wall_time_and_its_run_time(clock: tuple[Any, World]) -> None:
    frozen, world = clock
    triggered = world.trigger(PollThrice)
    run_polls(frozen, world)
    plan = triggered.wait(5)
    assert (plan.state, plan.result) == ("stopped", "success")

    (step,) = [s for s in run_json("plans", "show", plan.id, "--url", world.url)["steps"]
               if s["kind"] == "run"]  # fmt: skip
    assert step["duration"] == 1.5  # invoked at T0, done on the poll at T0 + 1.5 s
    assert step["runs"] == 4  # the invocation and three polls
    assert step["run_time"] == 0.0  # each call took no time (the clock is frozen)
    assert step["started_at"] == "2030-01-01T12:00:00.000000Z"
    assert step["ended_at"] == "2030-01-01T12:00:01.500000Z"

    text = run("plans", "show", plan.id, "--url", world.url).stdout
    assert re.search(r"PollThrice  success 1\.5s \(ran 0ms in 4 runs\)", text), text


def test_a_paused_plan_s_duration_ends_at_its_pause(clock: tuple[Any, World]) -> None:
    frozen, world = clock
    triggered = world.trigger(WaitThenBreak)
    run_polls(frozen, world)
    plan = triggered.wait(5)
    assert (plan.state, plan.result) == ("paused", "error")

    frozen.tick(timedelta(hours=5))  # an operator looks at it much later
    shown = run_json("plans", "show", plan.id, "--url", world.url)
    assert shown["duration"] == 1.5
    assert shown["paused_at"] == "2030-01-01T12:00:01.500000Z"
    listed = run_json("plans", "list", "--url", world.url)["plans"]
    assert [(p["id"], p["duration"]) for p in listed] == [(plan.id, 1.5)]
    for command in (("plans", "show", plan.id), ("plans", "list")):
        text = run(*command, "--url", world.url).stdout
        assert "1.5s" in text and "5h" not in text and "300m" not in text, text
    tree = run("plans", "show", plan.id, "--url", world.url).stdout
    paused_at = T0 + timedelta(seconds=1.5)
    assert f"paused {paused_at.astimezone().strftime('%Y-%m-%d %H:%M:%S')}" in tree


def test_a_running_plan_s_duration_grows_and_a_stopped_one_s_does_not(
    clock: tuple[Any, World],
) -> None:
    frozen, world = clock
    triggered = world.trigger(PollThrice)
    frozen.tick(timedelta(seconds=0.25))
    running = run_json("plans", "show", triggered.plan_id, "--url", world.url)
    assert running["state"] == "running" and running["duration"] == 0.25
    (step,) = [s for s in running["steps"] if s["kind"] == "run"]
    assert (step["state"], step["duration"], step["runs"]) == ("suspended", 0.25, 1)
    run_polls(frozen, world)
    frozen.tick(timedelta(minutes=10))
    stopped = run_json("plans", "show", triggered.plan_id, "--url", world.url)
    assert stopped["state"] == "stopped" and stopped["duration"] == 1.75
