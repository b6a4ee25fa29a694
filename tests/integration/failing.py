"""Actions and helpers shared by the failure and recovery tests (resume, skip, retry, rescue
strategies, retry policies, takeover).

Every leaf reports to :data:`~tests.integration.actions.PROBE`. A leaf planned with
``fail=True`` raises until the test repairs it (:func:`repair` sets the probe event
``fixed:<name>``), so a test decides exactly which runs fail. ``("run", name)`` is recorded for
every run, failed or not, and ``("finalize", name)`` for every finalize call, so side effects
can be counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from dynaflow import Action, ExecutionPlan, PlanState, Rescue, StepState, World, signals
from dynaflow.persistence.base import StepUpdate

from .actions import PROBE, WAIT, action_id, receiving
from .waiting import T0, is_inline
from .waiting import frozen_clock as frozen_clock  # the tests import it from here too

# -- leaves ----------------------------------------------------------------------------------


class Leaf(Action):
    """Records ``("run", name)``; fails with ``RuntimeError`` while ``fail`` is set and the
    leaf is not repaired. Its output ``value`` is its name joined with the values it got
    (``got``: output references to other leaves)."""

    def run(self) -> None:
        name = self.input["name"]
        PROBE.record("run", name)
        if self.input.get("fail") and not PROBE.event(f"fixed:{name}").is_set():
            raise RuntimeError(f"{name} failed")
        self.output["value"] = "+".join([name, *self.input.get("got", [])])


class Final(Leaf):
    """A leaf with a finalize step, recorded."""

    def finalize(self) -> None:
        PROBE.record("finalize", self.input["name"])


class BadFinal(Leaf):
    """A leaf whose finalize is recorded and then fails until ``fixed:finalize:<name>``."""

    def finalize(self) -> None:
        name = self.input["name"]
        PROBE.record("finalize", name)
        if not PROBE.event(f"fixed:finalize:{name}").is_set():
            raise RuntimeError(f"finalize of {name} failed")


class SkipLeaf(Leaf):
    rescue_strategy = Rescue.SKIP


class SkipFinal(Final):
    rescue_strategy = Rescue.SKIP


class FailLeaf(Leaf):
    rescue_strategy = Rescue.FAIL


class PauseLeaf(Leaf):
    rescue_strategy = Rescue.PAUSE


class VetoLeaf(Leaf):
    """``on_skip()`` is recorded and refuses unless ``fixed:skip:<name>`` is set."""

    def on_skip(self) -> None:
        name = self.input["name"]
        PROBE.record("on_skip", name)
        if not PROBE.event(f"fixed:skip:{name}").is_set():
            raise PermissionError(f"{name} holds a lock that must be released by hand")


class SkipVetoLeaf(VetoLeaf):
    rescue_strategy = Rescue.SKIP


class IdempotentLeaf(Leaf):
    idempotent = True


class Gate(Leaf):
    """Announces ``arrived:<name>``, waits for ``release``, then behaves as a Leaf."""

    def run(self) -> None:
        with PROBE.running_step(self.input["name"]):
            PROBE.wait("release")
        super().run()


KINDS: dict[str, type[Action]] = {
    "leaf": Leaf,
    "fin": Final,
    "badfin": BadFinal,
    "skip": SkipLeaf,
    "skipfin": SkipFinal,
    "fail": FailLeaf,
    "pause": PauseLeaf,
    "veto": VetoLeaf,
    "skipveto": SkipVetoLeaf,
    "idem": IdempotentLeaf,
    "gate": Gate,
}


# -- composing actions -----------------------------------------------------------------------


class Graph(Action):
    """Plans the flow ``spec`` (as ``actions.Shape``: names, ``["seq", ...]``, ``["con", ...]``)
    of leaves. A name ``"kind:name"`` picks the leaf class from :data:`KINDS` (default
    ``leaf``); the leaves named in ``fail`` fail until repaired; ``uses`` maps a leaf to the
    leaves whose output it consumes (planned before it). A ``["sub", ...]`` group is planned as
    a child action of class ``GRAPHS[sub]``, a concurrence of its members."""

    def plan(
        self,
        spec: Any,
        fail: list[str] | None = None,
        uses: dict[str, list[str]] | None = None,
        sub: str = "graph",
        planned: dict[str, Action] | None = None,
    ) -> None:
        self._planned: dict[str, Action] = {} if planned is None else planned
        self._fail = sorted(fail or ())
        self._uses = uses or {}
        self._sub = sub
        self._build(spec)

    def _build(self, spec: Any) -> None:
        if isinstance(spec, str):
            kind, _, name = spec.rpartition(":")
            got = [self._planned[other].output["value"] for other in self._uses.get(name, [])]
            extra: dict[str, Any] = {"got": got} if got else {}
            if name in self._fail:
                extra["fail"] = True
            self._planned[name] = self.plan_action(KINDS[kind or "leaf"], name=name, **extra)
            return
        scope, *children = spec
        if scope == "sub":
            group = ["con", *children]
            self.plan_action(
                GRAPHS[self._sub], group, self._fail, self._uses, self._sub, self._planned
            )
            return
        with self.sequence() if scope == "seq" else self.concurrence():
            for child in children:
                self._build(child)


class SkipGraph(Graph):
    rescue_strategy = Rescue.SKIP


class FailGraph(Graph):
    rescue_strategy = Rescue.FAIL


class PauseGraph(Graph):
    rescue_strategy = Rescue.PAUSE


GRAPHS: dict[str, type[Graph]] = {
    "graph": Graph,
    "skip": SkipGraph,
    "fail": FailGraph,
    "pause": PauseGraph,
}


# -- helpers ---------------------------------------------------------------------------------


def repair(*names: str) -> None:
    """From now on, the named leaves (or ``finalize:<name>``, ``skip:<name>``) succeed."""
    for name in names:
        PROBE.event(f"fixed:{name}").set()


def runs(name: str) -> int:
    """How many times leaf ``name`` ran (successfully or not)."""
    return PROBE.names("run").count(name)


def sid(plan: ExecutionPlan, name: str, kind: str = "run") -> int:
    """The id of the ``kind`` step of leaf ``name``."""
    wanted = action_id(plan, name)
    (step,) = [s for s in plan.steps if s.action_id == wanted and s.kind == kind]
    return int(step.id)


def finalize_states(plan: ExecutionPlan) -> dict[str, str]:
    """``{name: state}`` of the finalize steps of named leaves."""
    actions = {a.id: a for a in plan.actions}
    return {
        actions[s.action_id].input["name"]: s.state.value
        for s in plan.finalize_steps()
        if "name" in actions[s.action_id].input
    }


def snapshot(plan: ExecutionPlan) -> tuple[Any, ...]:
    """Everything an operator's failed action must leave as it was."""
    return (
        plan.state,
        plan.result,
        tuple((s.id, s.state, s.error) for s in plan.steps),
        len(plan.history),
    )


def force_running(world: World, plan: ExecutionPlan, names: list[str], owner: str) -> None:
    """Rewrite the database as if world ``owner`` had been running the steps of ``names`` of
    ``plan`` (a planned plan) when it died: in one transaction, so no executor sees half."""
    storage = world.storage
    with storage.transaction():
        assert storage.update_plan(
            plan.id,
            {"state": PlanState.RUNNING, "world_id": owner, "started_at": T0},
            frozenset({PlanState.PLANNED}),
        )
        updates = [
            StepUpdate(plan.id, sid(plan, name), StepState.PENDING, StepState.RUNNING)
            for name in names
        ]
        assert storage.update_steps(updates) == []


@contextmanager
def watching_steps() -> Iterator[None]:
    """While open, each step state change committed sets the probe event
    ``<step id>:<state>:<n>`` (the n-th time that step entered that state)."""
    seen: dict[tuple[int, str], int] = {}

    def receiver(sender: Any, **change: Any) -> None:
        key = (change["step_id"], str(change["state"]))
        seen[key] = seen.get(key, 0) + 1
        PROBE.event(f"{key[0]}:{key[1]}:{seen[key]}").set()

    with receiving(signals.step_state_changed, receiver):
        yield


def reached(world: World, step_id: int, state: str, times: int = 1) -> None:
    """Step ``step_id`` has entered ``state`` ``times`` times (see :func:`watching_steps`):
    already, on the inline executor; within the bound, on the threaded one."""
    name = f"{step_id}:{state}:{times}"
    if is_inline(world):
        assert PROBE.event(name).is_set(), f"{name!r} did not happen before the call returned"
    elif not PROBE.event(name).wait(WAIT):
        raise TimeoutError(f"step {step_id} did not reach {state} ({times}x) in {WAIT}s")


@contextmanager
def watching_plans() -> Iterator[None]:
    """While open, each plan state change sets the probe event
    ``plan:<plan id>:<state>:<world id>``."""

    def receiver(sender: Any, **change: Any) -> None:
        PROBE.event(f"plan:{change['plan_id']}:{change['state']}:{sender.id}").set()

    with receiving(signals.plan_state_changed, receiver):
        yield


def running_in(world: World, plan_id: str) -> None:
    """``world`` has started running the plan (see :func:`watching_plans`): already, on the
    inline executor; within the bound, on the threaded one."""
    name = f"plan:{plan_id}:running:{world.id}"
    if is_inline(world):
        assert PROBE.event(name).is_set(), f"{name!r} did not happen before the call returned"
    elif not PROBE.event(name).wait(WAIT):
        raise TimeoutError(f"world {world.id} did not run plan {plan_id} within {WAIT}s")


def seconds_after_t0(moment: datetime) -> float:
    return (moment - T0).total_seconds()
