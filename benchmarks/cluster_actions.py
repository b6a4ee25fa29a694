"""The actions of ``benchmarks/cluster.py``: imported by the benchmark process (the client
world) and by its ``dynaflow worker`` processes (``--import cluster_actions``), so that both
know them by the same name."""

from __future__ import annotations

import os
import time
from typing import Any

from dynaflow import Action


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
