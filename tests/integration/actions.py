"""Actions and helpers shared by the engine tests.

Actions report what they did to :data:`PROBE`, a :class:`dynaflow.testing.Probe` reset before
every test (see ``conftest.py``); gated actions wait on its events, always with a timeout.
"""

from __future__ import annotations

import threading
from typing import Any

from dynaflow import Action, ExecutionPlan, StepKind, World
from dynaflow.testing import WAIT, Probe
from dynaflow.testing import receiving as receiving  # the tests import it from here

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
