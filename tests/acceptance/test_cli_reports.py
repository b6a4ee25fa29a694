"""`dynaflow plans show` with what steps reported (progress, log lines) and a plan's sub-plans
(their count per state, the command that lists them, the parent named in a child's header)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynaflow import Action, SubPlan, SubPlans, World

from .cli_runner import run, run_json


class Counting(Action):
    def plan(self, items: int) -> None:
        self.plan_self(items=items)

    def run(self, event: Any = None) -> None:
        if event is not None:
            return
        for i in range(1, 4):
            self.progress(i, self.input["items"])
            self.log(f"item {i} <b>stored</b>")
        self.suspend()  # waits: 3 of its items done


class Child(Action):
    def run(self) -> None:
        if self.input["n"] == 2:
            raise RuntimeError("child 2 broke")


class Parent(SubPlans, Action):
    def create_sub_plans(self) -> Any:
        for n in range(3):
            yield SubPlan(Child, n=n)


def test_progress_and_logs_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reports.db'}"
    with World(url, executor="inline") as world:
        plan = world.trigger(Counting, 6)
        plan_id = plan.plan_id
        shown = run("plans", "show", plan_id, "--url", url, "--logs")
        assert shown.exit_code == 0, shown.output
        assert "progress 50%" in shown.output  # the plan's one step: 3 of 6
        assert "[3/6]" in shown.output
        assert "item 3 <b>stored</b>" in shown.output  # shown as text
        data = run_json("plans", "show", plan_id, "--url", url, "--logs")
        assert data["progress"]["fraction"] == 0.5
        (step,) = [s for s in data["steps"] if s["kind"] == "run"]
        assert step["progress"] == {"done": 3, "total": 6}
        assert [(x["seq"], x["message"]) for x in data["logs"]] == [
            (1, "item 1 <b>stored</b>"),
            (2, "item 2 <b>stored</b>"),
            (3, "item 3 <b>stored</b>"),
        ]


def test_sub_plans_are_counted_and_a_child_names_its_parent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tree.db'}"
    with World(url, executor="inline") as world:
        parent = world.trigger(Parent).wait(10)
        shown = run("plans", "show", parent.id, "--url", url)
        assert "sub-plans: 3 (1 paused/error, 2 stopped/success)" in shown.output
        assert f"dynaflow plans list --parent {parent.id}" in shown.output
        (paused,) = world.find_plans(parent=parent.id, state="paused")
        child = run("plans", "show", paused.id, "--url", url)
        assert f"sub-plan of plan {parent.id} (step" in child.output
        listed = run_json("plans", "list", "--url", url, "--parent", parent.id[:8])
        assert sorted(p["id"] for p in listed["plans"]) == sorted(
            p.id for p in world.find_plans(parent=parent.id)
        )
        data = run_json("plans", "show", parent.id, "--url", url)
        assert {(c["state"], c["result"], c["count"]) for c in data["sub_plans"]} == {
            ("paused", "error", 1),
            ("stopped", "success", 2),
        }
