"""Console run graph benchmark: how long ``render_run_graph`` takes for plans of 20, 200 and
2,000 steps, wide, deep and mixed.

    python benchmarks/console_graph.py                       # memory and SQLite
    python benchmarks/console_graph.py --storages sqlite --sizes 2000 --repeat 20

Each plan is planned and run by a real World (inline executor); the mixed plans stop paused
at a failing step, so their steps are in several states. ``load`` is ``World.get_plan`` (what
the console's plan page does first), ``render`` the median of ``--repeat`` renders. Prints one
table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from core import print_table, sqlite_url  # the benchmarks folder is on sys.path as a script

from dynaflow import Action, World
from dynaflow.console.graph import output_references, render_run_graph


class Step(Action):
    """Copies ``value`` (maybe a reference) to its output; fails when told to."""

    def run(self) -> None:
        if self.input.get("fail"):
            raise RuntimeError(f"step {self.input['name']} was told to fail")
        self.output["value"] = self.input.get("value", self.input["name"])


class Wide(Action):
    """``n`` steps, all concurrent."""

    def plan(self, n: int) -> None:
        with self.concurrence():
            for i in range(n):
                self.plan_action(Step, name=f"w{i}")


class Deep(Action):
    """``n`` steps in one sequence, each taking the previous one's output."""

    def plan(self, n: int) -> None:
        with self.sequence():
            previous: Any = None
            for i in range(n):
                previous = self.plan_action(Step, name=f"d{i}", value=previous).output.value


class Mixed(Action):
    """Stages of 20 steps in sequence; a stage is 5 concurrent branches of 4 steps in sequence,
    each step taking the output of the one before it (the branch's first step, of the same
    branch in the stage before) and each stage's first step that of the previous stage's first
    (an arrow that has to go around). A step in the middle stage fails."""

    def plan(self, n: int) -> None:
        stages = max(n // 20, 1)
        last: list[Any] = [None] * 5
        first_of_stage: Any = None
        head: Any = None
        with self.sequence():
            for stage in range(stages):
                with self.concurrence():
                    for branch in range(5):
                        with self.sequence():
                            value = last[branch]
                            for i in range(4):
                                name = f"s{stage}b{branch}i{i}"
                                extra = first_of_stage if (branch, i) == (0, 0) else None
                                step = self.plan_action(
                                    Step,
                                    name=name,
                                    value=value,
                                    extra=extra,
                                    fail=stage == stages // 2 and (branch, i) == (2, 1),
                                )
                                value = step.output.value
                                if (branch, i) == (0, 0):
                                    head = step.output.value
                            last[branch] = value
                first_of_stage = head


SHAPES: dict[str, type[Action]] = {"wide": Wide, "deep": Deep, "mixed": Mixed}


def storage_url(storage: str, tmp: str, name: str) -> str:
    return "memory://" if storage == "memory" else sqlite_url(tmp, name)


def bench(url: str, shape: type[Action], n: int, repeat: int) -> tuple[str, ...]:
    with World(url, executor="inline", migrate=True) as world:
        plan_id = world.trigger(shape, n).plan_id
        load, plan = timed(lambda: world.get_plan(plan_id))
    href: Callable[[int], str] = lambda step_id: f"/plans/{plan_id}/steps/{step_id}"  # noqa: E731
    times = []
    svg = ""
    for _ in range(repeat):
        seconds, svg = timed(lambda: render_run_graph(plan, step_href=href))
        times.append(seconds)
    states = sorted({str(step.state) for step in plan.run_steps()})
    return (
        str(sum(1 for _ in plan.run_steps())),
        str(len(output_references(plan))),
        "/".join(states),
        f"{load * 1000:.1f}",
        f"{statistics.median(times) * 1000:.1f}",
        f"{max(times) * 1000:.1f}",
        f"{len(svg) / 1024:.0f}",
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storages", default="memory,sqlite")
    parser.add_argument("--sizes", default="20,200,2000")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--repeat", type=int, default=10, help="renders per plan (median kept)")
    args = parser.parse_args(argv)

    header = (
        "storage",
        "shape",
        "steps",
        "refs",
        "states",
        "load ms",
        "render ms",
        "max ms",
        "svg KiB",
    )
    rows: list[tuple[str, ...]] = []
    tmp = tempfile.mkdtemp(prefix="dynaflow-bench-")
    try:
        for storage in args.storages.split(","):
            for shape in args.shapes.split(","):
                for size in (int(s) for s in args.sizes.split(",")):
                    url = storage_url(storage, tmp, f"{shape}{size}")
                    rows.append((storage, shape, *bench(url, SHAPES[shape], size, args.repeat)))
                    print(*rows[-1], file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
