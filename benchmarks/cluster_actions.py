"""The actions of ``benchmarks/cluster.py``: imported by the benchmark process (the client
world) and by its ``dynaflow worker`` processes (``--import cluster_actions``), so that both
know them by the same name."""

from __future__ import annotations

import os
import time
from typing import Any

from dynaflow import Action, SubPlan, SubPlans


class Noop(Action):
    def run(self) -> None:
        pass


class Wide(Action):
    """``n`` no-op actions, all concurrent."""

    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(Noop)


class Sleep(Action):
    """Sleeps ``seconds`` (a step with work in it); records the process it ran in."""

    def run(self) -> None:
        time.sleep(self.input["seconds"])
        self.output["pid"] = os.getpid()


class WideSleep(Action):
    """``n`` Sleep actions, all concurrent."""

    def plan(self, n: int, seconds: float) -> None:
        for _ in range(n):
            self.plan_action(Sleep, seconds=seconds)


class Chain(Action):
    """``n`` no-op actions in one sequence."""

    def plan(self, n: int) -> None:
        with self.sequence():
            for _ in range(n):
                self.plan_action(Noop)


class Stamp(Action):
    """One step that records when it started running (``time.time()``) in its output."""

    def run(self) -> None:
        self.output["at"] = time.time()


class Listener(Action):
    """Suspends; records when each event reaches ``run(event)`` in its output (``str(event)``
    -> ``time.time()``); the event ``"stop"`` ends it."""

    def run(self, event: Any = None) -> None:
        if event is not None:
            self.output[str(event)] = time.time()
            if event == "stop":
                return
        self.suspend()


class Child(Action):
    """A sub-plan's one no-op step."""

    def run(self) -> None:
        pass


class Children(SubPlans, Action):
    """``n`` Child sub-plans, at most 50 running at once; ``busy`` in its output adds up the
    time its run step took over all its wakes (the parent's own cost)."""

    concurrency = 50
    batch_size = 100

    def plan(self, n: int) -> None:
        self.plan_self(n=n)

    def create_sub_plans(self) -> Any:
        for _ in range(self.input["n"]):
            yield SubPlan(Child)

    def run(self, event: Any = None) -> None:
        start = time.perf_counter()
        try:
            super().run(event)
        finally:
            self.output["busy"] = self.output.get("busy", 0.0) + time.perf_counter() - start
            self.output["wakes"] = self.output.get("wakes", 0) + 1
