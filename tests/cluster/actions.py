"""The actions of the cluster tests, imported by the tests (they plan) and by the worker
processes (``--import cluster.actions``, with tests/ on PYTHONPATH) that run them.

Every run step records itself: when the worker's environment names a directory in
``DYNAFLOW_CLUSTER_RUNS``, a step appends a line (one ``write`` to a file opened with
``O_APPEND``, one file per process) when it starts, ends or is cancelled. The tests read from
those files which process and world ran which step, and how often — also after a SIGKILL.
In the test process itself (the inline reference run) nothing is recorded.

:class:`Shape` plans the flow a spec describes (sequences, concurrences, output references)
from the leaf kinds of :data:`LEAVES`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from dynaflow import Action, Cancellable, Queue, SubPlan, SubPlans

RUNS_ENV = "DYNAFLOW_CLUSTER_RUNS"
#: the longest a gated step waits for its gate (then it fails: a test that forgot to open it)
GATE_WAIT = 120.0

_lock = threading.Lock()
_fd: int | None = None


def record(action: Action, what: str, **extra: Any) -> None:
    """Append ``what`` happened to ``action``'s step to this process's runs file."""
    global _fd
    directory = os.environ.get(RUNS_ENV)
    if not directory:
        return
    line = {
        "what": what,
        "plan": action.plan_id,
        "step": action.step_id,
        "name": action.input.get("name"),
        "world": action.world.id,
        "pid": os.getpid(),
        "at": time.time(),
        **extra,
    }
    with _lock:
        if _fd is None:
            path = Path(directory) / f"runs-{os.getpid()}.jsonl"
            _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_fd, (json.dumps(line) + "\n").encode())


def wait_for_gate(action: Action) -> None:
    """Block until the file ``input["gate"]`` exists (if the input names one)."""
    gate = action.input.get("gate")
    if not gate:
        return
    deadline = time.monotonic() + GATE_WAIT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} was not opened within {GATE_WAIT}s")
        time.sleep(0.01)


class Value(Action):
    """``value = n * 3 + sum(plus)``; ``plus`` may hold references to other Values' outputs.
    Not idempotent."""

    def run(self) -> None:
        record(self, "start")
        plus = self.input.get("plus") or []
        self.output["value"] = self.input["n"] * 3 + sum(plus)
        self.output["name"] = self.input["name"]
        record(self, "end")


class Work(Action):
    """Waits for its ``gate`` (if any), sleeps ``seconds``, succeeds. Idempotent: interrupted by
    a lost world, it runs again."""

    idempotent = True

    def run(self) -> None:
        record(self, "start")
        wait_for_gate(self)
        time.sleep(self.input.get("seconds", 0))
        self.output["slept"] = self.input.get("seconds", 0)
        record(self, "end")


class StrictWork(Work):
    """A Work that is not idempotent: interrupted by a lost world, it errors "abnormal
    termination" and its plan pauses for an operator."""

    idempotent = False


class Fixable(Action):
    """Fails until the file ``input["fixed"]`` exists; then outputs ``{"fixed": True}``."""

    def run(self) -> None:
        record(self, "start")
        if not os.path.exists(self.input["fixed"]):
            record(self, "fail")
            raise RuntimeError(f"{self.input['name']} is broken until {self.input['fixed']}")
        self.output["fixed"] = True
        record(self, "end")


class Waiter(Cancellable, Action):
    """Suspends until the event ``"finish"``; ``cancel()`` is recorded (``"cancel"``)."""

    def run(self, event: Any = None) -> None:
        if event is None:
            record(self, "start")
            self.suspend()
        record(self, "event", event=event)
        if event != "finish":
            self.suspend()
        self.output["event"] = event
        record(self, "end")

    def cancel(self) -> None:
        record(self, "cancel")
        self.output["cancelled"] = True


class Importer(Action):
    """A step of the ``imports`` queue."""

    queue = "imports"

    def run(self) -> None:
        record(self, "start")
        self.output["imported"] = self.input["name"]
        record(self, "end")


#: at most 3 of its steps run at once in the whole cluster
LIMITED = Queue("limited3", limit=3)


class Limited(Work):
    """A Work in the ``limited3`` queue."""

    queue = LIMITED


LEAVES: dict[str, type[Action]] = {
    "v": Value,
    "work": Work,
    "strict": StrictWork,
    "fix": Fixable,
    "wait": Waiter,
    "imp": Importer,
    "lim": Limited,
}


class Shape(Action):
    """Plans the flow ``spec`` describes. ``["seq", ...]`` and ``["con", ...]`` are sequence
    and concurrence scopes; a leaf is ``[kind, name, {input}]`` with a kind of :data:`LEAVES`.
    A Value leaf with ``"refs": k`` adds the outputs of the ``k`` Values planned just before it
    to its ``plus`` (output references); ``["total", name]`` is a Value of every Value planned
    so far."""

    def plan(self, spec: Any) -> None:
        self._values: list[Action] = []
        self._build(spec)

    def _build(self, spec: Any) -> None:
        head, *rest = spec
        if head in ("seq", "con"):
            with self.sequence() if head == "seq" else self.concurrence():
                for child in rest:
                    self._build(child)
            return
        if head == "total":
            plus = [v.output["value"] for v in self._values]
            self._values.append(self.plan_action(Value, name=rest[0], n=0, plus=plus))
            return
        name, args = rest[0], dict(rest[1]) if len(rest) > 1 else {}
        if head == "v":
            refs = args.pop("refs", 0)
            args["plus"] = [v.output["value"] for v in self._values[-refs:]] if refs else []
            self._values.append(self.plan_action(Value, name=name, **args))
            return
        self.plan_action(LEAVES[head], name=name, **args)


class Fanout(SubPlans, Action):
    """``count`` Work sub-plans of ``seconds`` each, at most 5 running at once."""

    concurrency = 5
    batch_size = 8

    def plan(self, count: int, seconds: float) -> None:
        self.plan_self(count=count, seconds=seconds)

    def create_sub_plans(self) -> Any:
        for i in range(self.input["count"]):
            yield SubPlan(Work, name=f"child-{i}", seconds=self.input["seconds"])
