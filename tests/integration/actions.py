"""Actions and helpers shared by the engine tests.

Actions report what they did to :data:`PROBE`, a thread-safe recorder reset before every test
(see ``conftest.py``); gated actions wait on its events, always with a timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dynaflow import Action, ExecutionPlan, StepKind, World

#: bound of every wait in a test: long enough never to be hit when things work
WAIT = 10.0


class Probe:
    """What actions did, in order, from any thread; and named events to gate them on."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.calls: list[tuple[Any, ...]] = []
            self.running = 0
            self.max_running = 0
            self._events: dict[str, threading.Event] = {}

    def record(self, *call: Any) -> None:
        with self._lock:
            self.calls.append(call)

    def names(self, kind: str) -> list[Any]:
        """The names recorded with ``kind`` (``record(kind, name)``), in order."""
        with self._lock:
            return [call[1] for call in self.calls if call[0] == kind]

    def event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def wait(self, name: str, timeout: float = WAIT) -> None:
        """Wait for event ``name``; a timeout is a test failure, never a hang."""
        if not self.event(name).wait(timeout):
            raise TimeoutError(f"event {name!r} was not set within {timeout}s")

    @contextmanager
    def running_step(self, name: str) -> Iterator[None]:
        """Count ``name`` as running (for max concurrency) and announce ``arrived:<name>``."""
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.calls.append(("enter", name))
            self._lock.notify_all()
        self.event(f"arrived:{name}").set()
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
                self.calls.append(("leave", name))
                self._lock.notify_all()

    def wait_running(self, count: int, timeout: float = WAIT) -> None:
        """Wait until exactly ``count`` gated steps are running at once."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.running == count, timeout):
                raise TimeoutError(f"{count} steps were not running within {timeout}s")


PROBE = Probe()


# -- leaf actions (dict input and output, default plan) -------------------------------------


class Noop(Action):
    """Records its run; output ``{"name": name}``."""

    def run(self) -> None:
        PROBE.record("run", self.input["name"])
        self.output["name"] = self.input["name"]


class Echo(Action):
    """Output ``{"value": input["value"]}`` (the value may have come through a reference)."""

    def run(self) -> None:
        PROBE.record("run", self.input.get("name"), self.input["value"])
        self.output["value"] = self.input["value"]


class Fail(Action):
    def run(self) -> None:
        PROBE.record("run", self.input["name"])
        raise RuntimeError(f"disk full on {self.input['name']}")


class Gated(Action):
    """Runs until the ``release`` event is set (announcing ``arrived:<name>`` first)."""

    def run(self) -> None:
        with PROBE.running_step(self.input["name"]):
            PROBE.wait("release")
        self.output["name"] = self.input["name"]


class Counted(Action):
    """Counts how many steps run at once, without waiting for anything."""

    def run(self) -> None:
        with PROBE.running_step(self.input["name"]):
            pass


class Tracked(Action):
    """Records run and finalize; with ``wait_for``, its run waits for that event first."""

    def run(self) -> None:
        if self.input.get("wait_for"):
            PROBE.wait(self.input["wait_for"])
        PROBE.record("run", self.input["name"])
        PROBE.event(f"ran:{self.input['name']}").set()

    def finalize(self) -> None:
        PROBE.record("finalize", self.input["name"], threading.get_ident())


LEAVES: dict[str, type[Action]] = {
    "noop": Noop,
    "gated": Gated,
    "counted": Counted,
    "tracked": Tracked,
    "fail": Fail,
}


class Shape(Action):
    """Plans the flow ``spec`` describes: a name is a leaf action with ``name=<name>``;
    ``["seq", ...]`` and ``["con", ...]`` are sequence and concurrence scopes. A name
    ``"kind:name"`` picks the leaf class from :data:`LEAVES` (default ``leaf``)."""

    def plan(self, spec: Any, leaf: str = "noop") -> None:
        self._build(spec, leaf)

    def _build(self, spec: Any, leaf: str) -> None:
        if isinstance(spec, str):
            kind, _, name = spec.rpartition(":")
            self.plan_action(LEAVES[kind or leaf], name=name)
            return
        scope, *children = spec
        with self.sequence() if scope == "seq" else self.concurrence():
            for child in children:
                self._build(child, leaf)


# -- reading plans --------------------------------------------------------------------------


def action_id(plan: ExecutionPlan, name: str) -> int:
    """The id of the action planned with input ``name=<name>``."""
    ids = [a.id for a in plan.actions if a.input.get("name") == name]
    assert len(ids) == 1, f"expected one action named {name!r}, found {ids}"
    return ids[0]


def step_of(plan: ExecutionPlan, name: str, kind: str = "run") -> Any:
    """The ``kind`` step of the action named ``name``."""
    wanted = action_id(plan, name)
    steps = [s for s in plan.steps if s.action_id == wanted and s.kind == kind]
    assert len(steps) == 1, f"expected one {kind} step for {name!r}, found {steps}"
    return steps[0]


def named_edges(plan: ExecutionPlan) -> set[tuple[str, str]]:
    """The run graph with action names instead of step ids."""
    name_of = {}
    actions = {a.id: a for a in plan.actions}
    for step in plan.steps:
        if step.kind == StepKind.RUN:
            name_of[step.id] = actions[step.action_id].input.get("name", step.action_class)
    return {(name_of[a], name_of[b]) for a, b in plan.run_edges}


def states(plan: ExecutionPlan, kind: str = "run") -> dict[str, str]:
    """``{name: state}`` of the ``kind`` steps of named actions."""
    actions = {a.id: a for a in plan.actions}
    return {
        actions[s.action_id].input["name"]: s.state.value
        for s in plan.steps
        if s.kind == kind and "name" in actions[s.action_id].input
    }


def trigger(world: World, action_class: type[Action], *args: Any, **kwargs: Any) -> ExecutionPlan:
    """Trigger and wait (bounded) for the end of the execution."""
    return world.trigger(action_class, *args, **kwargs).wait(timeout=WAIT)


def events_of(plan: ExecutionPlan, step_id: int | None) -> list[str]:
    """The history events of one step (``None``: of the plan itself), oldest first."""
    return [h.event for h in plan.history if h.step_id == step_id]


@contextmanager
def receiving(signal: Any, receiver: Any) -> Iterator[None]:
    """Connect ``receiver`` to a blinker ``signal`` for the duration of the block."""
    signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        signal.disconnect(receiver)
