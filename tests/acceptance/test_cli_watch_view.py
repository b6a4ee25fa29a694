"""What ``dynaflow plans watch`` draws in a terminal: the plan and a progress bar of its steps
(a big plan: its header, its active steps and the bar), the id whole at 80 columns."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from dynaflow import Action, World
from dynaflow.cli_watch import TREE_STEPS, live_view


class Step(Action):
    def plan(self, n: int) -> None:
        self.plan_self(n=n)

    def run(self) -> None:
        if self.input["n"] == 2:
            raise RuntimeError("step two failed")


class Many(Action):
    def plan(self, count: int) -> None:
        with self.concurrence():
            for n in range(count):
                self.plan_action(Step, n)


def draw(plan: object, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(live_view(plan))  # type: ignore[arg-type]
    return console.export_text()


def test_a_small_plan_is_drawn_whole_with_its_progress(tmp_path: Path) -> None:
    with World(f"sqlite:///{tmp_path / 'v.db'}", executor="inline") as world:
        plan = world.trigger(Many, 4).wait(10)
    text = draw(plan)
    assert f"plan {plan.id}" in text
    assert "3/4 steps done, 1 error" in text
    assert "RuntimeError: step two failed" in text
    assert text.count("Step  success") == 3


def test_a_big_plan_shows_its_active_steps_and_its_progress(tmp_path: Path) -> None:
    with World(f"sqlite:///{tmp_path / 'v.db'}", executor="inline") as world:
        planned = world.plan(Many, TREE_STEPS + 10)
        plan = world.trigger(Many, TREE_STEPS + 10).wait(10)
    text = draw(plan)
    assert f"plan {plan.id}" in text
    assert f"{TREE_STEPS + 9}/{TREE_STEPS + 10} steps done, 1 error" in text
    assert "Step error" in text and "Step success" not in text  # only what needs a look
    waiting = draw(planned)
    assert f"0/{TREE_STEPS + 10} steps done" in waiting
