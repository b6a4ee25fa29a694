"""Engine defects found while writing the crash tests, as minimal reproductions; both are
fixed, and these are their regression tests:

* a failed takeover left the plan stuck for good (fixed in c2dbf7a: a world declared dead goes
  on under a new id);
* a world declared dead that took its own plan back applied the outcome of a step run it had
  started in its previous life to the new run of that plan (fixed in 3bc8f08: an outcome only
  counts for the runtime that started the step).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dynaflow import Action, World, signals

GATES: dict[str, threading.Event] = {}
ARRIVED: dict[str, threading.Event] = {}
_attempts: dict[str, int] = {}
_lock = threading.Lock()


def gate(name: str) -> threading.Event:
    with _lock:
        return GATES.setdefault(name, threading.Event())


def arrived(name: str) -> threading.Event:
    with _lock:
        return ARRIVED.setdefault(name, threading.Event())


class Gated(Action):
    """Runs until its gate opens. Run number n of the step announces ``<name>#<n>`` and waits
    for the gate ``<name>#<n>``."""

    idempotent = True

    def run(self) -> None:
        with _lock:
            attempt = _attempts[self.input["name"]] = _attempts.get(self.input["name"], 0) + 1
        name = f"{self.input['name']}#{attempt}"
        arrived(name).set()
        gate(name).wait(30)
        self.output["attempt"] = attempt


class Waiting(Action):
    """Suspends until an event comes."""

    def run(self, event: Any = None) -> None:
        if event is None:
            arrived(self.input["name"]).set()
            self.suspend()


class GatedAndWaiting(Action):
    def plan(self) -> None:
        self.plan_action(Gated, name="one")
        self.plan_action(Waiting, name="two")


class OneGated(Action):
    def plan(self) -> None:
        self.plan_action(Gated, name="solo")


@pytest.fixture
def url(sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "findings.db"
    shutil.copyfile(sqlite_template, path)
    yield f"sqlite:///{path}"
    with _lock:
        for event in GATES.values():
            event.set()
        GATES.clear()
        ARRIVED.clear()
        _attempts.clear()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


@contextmanager
def outcome_handled(plan_id: str) -> Iterator[threading.Event]:
    """An event set when the world deals with a step outcome of ``plan_id``: a dynaflow warning
    naming the plan (an outcome dropped) or a step of the plan changing state (one applied)."""
    handled = threading.Event()

    class Warned(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING and plan_id in record.getMessage():
                handled.set()

    def changed(sender: Any, **kwargs: Any) -> None:
        if kwargs.get("plan_id") == plan_id:
            handled.set()

    handler, logger = Warned(), logging.getLogger("dynaflow")
    logger.addHandler(handler)
    signals.step_state_changed.connect(changed)
    try:
        yield handled
    finally:
        signals.step_state_changed.disconnect(changed)
        logger.removeHandler(handler)


def run_step(world: World, plan_id: str, name: str) -> Any:
    plan = world.get_plan(plan_id)
    action = next(a for a in plan.actions if a.input.get("name") == name)
    return next(s for s in plan.steps if s.kind == "run" and s.action_id == action.id)


def test_a_failed_takeover_does_not_leave_the_plan_stuck(url: str) -> None:
    """World A runs a plan and its heartbeat stalls (simulated by setting its last heartbeat a
    minute back; A has a 30 s lease, so it beats every 10 s). World B sees A's lease expired
    and takes the plan over, reading step "one" running; meanwhile A, still alive, finishes
    it, so B's compare-and-set fails and its takeover is rolled back (silently: a
    ConcurrentModification on a future nobody reads). But the same maintain() of B
    unregisters A. When A's stall ends, its heartbeat finds its row gone and A
    drops its plans. Before c2dbf7a it registered again under the same id, and nobody ran the
    plan any more: 'running', owned by A, which was alive, so no world saw it orphaned. Step
    "two" waits (suspended) for an event, so no step of A's is in flight when that happens."""
    a = World(url, lease=30, world_id="A")
    b = None
    load_plan = type(a.storage).load_plan
    try:
        plan_id = a.plan(GatedAndWaiting).id
        a.execute(plan_id)
        assert arrived("one#1").wait(10) and arrived("two").wait(10)
        wait_for(lambda: run_step(a, plan_id, "two").state == "suspended", 10, "two to suspend")

        # A's heartbeat stalls: its lease (its own, on the database's clock) has run out
        a.storage.heartbeat("A", a.storage.now() - timedelta(seconds=60))
        loaded, proceed = threading.Event(), threading.Event()
        storage_class = type(a.storage)

        def stale_load_plan(self: Any, pid: str, **options: Any) -> Any:
            plan = load_plan(self, pid, **options)
            # B's scheduler takes the plan over (B starts taking over as it opens: the hook
            # is in place before)
            takeover = threading.current_thread().name == "dynaflow-scheduler-B"
            if pid == plan_id and takeover and not loaded.is_set():
                loaded.set()  # B read step one running; hold its takeover here a moment
                proceed.wait(10)
            return plan

        storage_class.load_plan = stale_load_plan  # type: ignore[method-assign]
        b = World(url, lease=1.5, world_id="B")
        wait_for(loaded.is_set, 10, "B to try to take the plan over")
        wait_for(lambda: "A" not in {w.id for w in a.worlds()}, 10, "B to drop A's row")
        gate("one#1").set()  # A, alive, finishes step one meanwhile
        wait_for(lambda: run_step(a, plan_id, "one").state == "success", 10, "A to finish one")
        # A's stall ends: from now on it beats like B (every lease / 3); its first heartbeat
        # finds its row gone, so it gives its plans up
        a.lease = b.lease
        a.maintain(force=True)
        proceed.set()  # B's takeover goes on from what it read: its compare-and-set fails

        a.event(plan_id, run_step(a, plan_id, "two").id, "go")
        deadline = time.monotonic() + 5  # worlds tick every 0.5 s: they had their chances
        while time.monotonic() < deadline and a.get_plan(plan_id).state == "running":
            time.sleep(0.05)
        plan = a.get_plan(plan_id)
        assert (plan.state, plan.result) == ("stopped", "success"), (
            f"plan {plan.state}/{plan.result}, owned by {plan.record.world_id}; steps "
            f"{[(s.id, s.state) for s in plan.steps if s.kind == 'run']}"
        )
    finally:
        type(a.storage).load_plan = load_plan  # type: ignore[method-assign]
        for event in list(GATES.values()):
            event.set()
        if b is not None:
            b.close(timeout=5)
        a.close(timeout=5)


def test_a_world_declared_dead_ignores_outcomes_from_its_previous_life(url: str) -> None:
    """A runs a step (run #1, blocked). Another world declares A dead (deletes its row: what
    maintain() does to a world whose lease expired). A's next heartbeat notices: it drops its
    plans, goes on as A~1 and, in the same maintain(), takes the plan back (still owned by the
    old id "A"): the step was running, it is idempotent, so it runs again (run #2). Then run #1
    ends. Its outcome belongs to a runtime that was dropped; it must not count. Before 3bc8f08
    it did: the step became 'success' with run #1's output and the plan stopped while run #2
    still ran. (When the late outcome landed in the same scheduler iteration as the takeover,
    it was worse: the runtime counted -1 busy steps and the plan stayed 'running' forever; a
    version of the test above whose second step was running, not suspended, hit that in about
    half of the runs.)

    The test waits until A has dealt with run #1's outcome, whichever way: it dropped it (the
    engine warns about an outcome for a plan it no longer runs) or applied it (the step's state
    changes). Only then does it look, so it cannot pass before the race has happened."""
    a = World(url, lease=30, world_id="A")
    try:
        plan_id = a.plan(OneGated).id
        a.execute(plan_id)
        assert arrived("solo#1").wait(10)
        a.storage.unregister_world("A")  # another world's maintain() declared A dead
        a.maintain(force=True)  # A's heartbeat: its row is gone; A~1 takes the plan back
        assert arrived("solo#2").wait(10), "the step was not run again"
        assert a.id != "A"

        with outcome_handled(plan_id) as handled:
            gate("solo#1").set()  # the run A started in its previous life ends now
            assert handled.wait(10), "A never dealt with the outcome of run #1"
        plan = a.get_plan(plan_id)
        step = run_step(a, plan_id, "solo")
        assert (plan.state, step.state) == ("running", "running"), (
            f"run #2 of the step is still running, but the plan is {plan.state}/{plan.result} "
            f"and the step {step.state} with output "
            f"{next(x.output for x in plan.actions if x.id == step.action_id)}"
        )
        stopped = a.follow(plan_id)
        gate("solo#2").set()
        plan = stopped.result(timeout=10)
        assert (plan.state, plan.result) == ("stopped", "success")
        assert next(x.output for x in plan.actions if x.id == step.action_id) == {"attempt": 2}
    finally:
        for event in list(GATES.values()):
            event.set()
        a.close(timeout=5)
