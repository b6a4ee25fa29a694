"""Actions and helpers shared by the suspend / event / timer / polling / cancel tests.

Every action reports to :data:`~tests.integration.actions.PROBE`. A step that suspends sets the
probe event ``suspended:<name>:<n>`` from its suspend callback, ``n`` being the number of events
it has handled so far: the callback runs once the suspended state is saved, so a test that waits
for it knows the step is ``suspended`` in the database (on both executors).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dynaflow import Action, Cancellable, ExecutionPlan, Triggered, World
from dynaflow.executor import InlineExecutor
from dynaflow.testing import REAL_TIME_MODULES as REAL_TIME_MODULES
from dynaflow.testing import T0, FrozenClock
from dynaflow.testing import frozen_clock as frozen_clock  # at T0; clock.tick(timedelta) moves it

from .actions import LEAVES, PROBE, WAIT, step_of


def suspend_announced(action: Action, name: str, handled: int) -> None:
    """Suspend, announcing ``suspended:<name>:<handled>`` once the suspension is saved."""
    action.suspend(lambda handle: PROBE.event(f"suspended:{name}:{handled}").set())


class Waiter(Action):
    """Suspends until an event ``"finish"`` arrives; records every event it handles, in order,
    in the probe (``("event", name, event)``) and in ``output["events"]``.

    Input: ``name``; optional ``finish_after`` (finish after that many events), ``timer``
    (seconds: on the first run, plan the event ``"timer"`` that far ahead), ``timeout``
    (seconds: ``schedule_timeout`` on the first run)."""

    def run(self, event: Any = None) -> None:
        name = self.input["name"]
        events = self.output.setdefault("events", [])
        if event is None:
            PROBE.record("start", name)
            if self.input.get("timer") is not None:
                self.plan_event("timer", delay=self.input["timer"])
            if self.input.get("timeout") is not None:
                self.schedule_timeout(self.input["timeout"])
        else:
            PROBE.record("event", name, event)
            events.append(event)
            if event in ("finish", "timer") or len(events) == self.input.get("finish_after"):
                PROBE.record("finished", name)
                return
        suspend_announced(self, name, len(events))

    def finalize(self) -> None:
        PROBE.record("finalize", self.input["name"])


class CancellableWaiter(Cancellable, Waiter):
    """A Waiter whose plan can tell it to stop: ``cancel()`` and ``abort()`` are recorded."""

    def cancel(self) -> None:
        PROBE.record("cancel", self.input["name"])
        PROBE.event(f"cancel:{self.input['name']}").set()
        self.output["stopped"] = "cancel"

    def abort(self) -> None:
        PROBE.record("abort", self.input["name"])
        PROBE.event(f"cancel:{self.input['name']}").set()
        self.output["stopped"] = "abort"


class GatedRunner(Action):
    """Runs until ``release`` (announcing ``arrived:<name>``), records whether its plan was
    being cancelled by then, and succeeds with ``output["done"]``."""

    def run(self) -> None:
        name = self.input["name"]
        with PROBE.running_step(name):
            PROBE.wait("release")
        PROBE.record("saw cancel", name, self.cancel_requested)
        self.output["done"] = True

    def finalize(self) -> None:
        PROBE.record("finalize", self.input["name"])


class GatedCancellable(Cancellable, Action):
    """Runs until ``release``, records whether its plan was being cancelled by then, then
    suspends; ``cancel()`` is recorded and ends it."""

    def run(self, event: Any = None) -> None:
        name = self.input["name"]
        if event is None:
            with PROBE.running_step(name):
                PROBE.wait("release")
            PROBE.record("saw cancel", name, self.cancel_requested)
        else:
            PROBE.record("event", name, event)
            return
        suspend_announced(self, name, 0)

    def cancel(self) -> None:
        PROBE.record("cancel", self.input["name"])
        self.output["stopped"] = "cancel"


SUSPENDING_LEAVES: dict[str, type[Action]] = {
    **LEAVES,
    "wait": Waiter,
    "cwait": CancellableWaiter,
    "grun": GatedRunner,
    "gcancel": GatedCancellable,
}


class Flow(Action):
    """Plans the flow ``spec`` describes, as ``actions.Shape`` does, with the leaves of
    :data:`SUSPENDING_LEAVES` (``"kind:name"``, default kind ``wait``); ``inputs`` gives extra
    input per leaf name."""

    def plan(self, spec: Any, inputs: dict[str, dict[str, Any]] | None = None) -> None:
        self._build(spec, inputs or {})

    def _build(self, spec: Any, inputs: dict[str, dict[str, Any]]) -> None:
        if isinstance(spec, str):
            kind, _, name = spec.rpartition(":")
            self.plan_action(SUSPENDING_LEAVES[kind or "wait"], name=name, **inputs.get(name, {}))
            return
        scope, *children = spec
        with self.sequence() if scope == "seq" else self.concurrence():
            for child in children:
                self._build(child, inputs)


# -- helpers ---------------------------------------------------------------------------------


def is_inline(world: World) -> bool:
    return isinstance(world.executor, InlineExecutor)


def expect(world: World, name: str) -> None:
    """Probe event ``name`` must be set: already, on the inline executor (it runs everything
    that is ready before returning); within the bound, on the threaded one."""
    if is_inline(world):
        assert PROBE.event(name).is_set(), f"{name!r} did not happen before the call returned"
    else:
        PROBE.wait(name)


def ended(world: World, triggered: Triggered) -> ExecutionPlan:
    """The plan once its execution ended: already, on the inline executor; within the bound,
    on the threaded one."""
    if is_inline(world):
        assert triggered.future.done(), "the inline executor returned with the plan unfinished"
    return triggered.wait(timeout=WAIT)


def suspended(name: str, handled: int = 0) -> None:
    """Wait (bounded) until step ``name`` has suspended after handling ``handled`` events."""
    PROBE.wait(f"suspended:{name}:{handled}")


def run_step_id(world: World, plan_id: str, name: str) -> int:
    return int(step_of(world.get_plan(plan_id), name).id)


def finish(world: World, plan_id: str) -> ExecutionPlan:
    """Wait (bounded) for the end of the plan's execution here."""
    return world.follow(plan_id).result(timeout=WAIT)


def advance(world: World, clock: FrozenClock, seconds: float) -> None:
    """Move the frozen clock on in one jump and have the executor look at what became due: on
    the inline executor the due timers have fired (all at the new time) when this returns; on
    the threaded one the scheduler is woken (wait on a probe event for the outcome).
    ``clock.advance(seconds)`` would fire each at its own due time instead."""
    clock.tick(seconds)
    world.run_pending()


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)
