"""Cancel and halt on both executors and every storage: the final state of every kind of step
(pending, running, suspended; Cancellable or not), finalize never run, queued events and timers
dropped, and code already running left to finish with its result recorded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import Action, Cancellable, EventRejected, StepState, World, signals

from .actions import PROBE, WAIT, Probe, receiving, states, step_of, trigger
from .waiting import (
    Flow,
    advance,
    ended,
    finish,
    frozen_clock,
    run_step_id,
    suspend_announced,
    suspended,
)

threads_only = pytest.mark.executors("threads")
inline_only = pytest.mark.executors("inline")


def recorded(probe: Probe, kind: str) -> list[tuple[Any, ...]]:
    return [call[1:] for call in probe.calls if call[0] == kind]


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_stops_pending_and_suspended_steps(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, ["con", "cwait:sc", "wait:sp", ["seq", "wait:w", "wait:p"]])
    for name in ("sc", "sp", "w"):
        suspended(name)

    plan = world.cancel(triggered.plan_id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert states(plan) == {
        "sc": "cancelled",
        "sp": "cancelled",
        "w": "cancelled",
        "p": "cancelled",
    }
    assert recorded(probe, "cancel") == [("sc",)]  # only the Cancellable is told
    assert plan.action(step_of(plan, "sc").action_id).output["stopped"] == "cancel"
    assert probe.names("start") == ["sc", "sp", "w"]  # p never started
    assert probe.names("finalize") == []
    assert {s.state for s in plan.finalize_steps()} == {StepState.CANCELLED}
    assert plan.ended_at is not None
    assert triggered.wait(timeout=WAIT).result == "cancelled"
    assert world.storage.plan_events(plan.id) == []


def test_cancel_drops_the_timers_of_the_plan(world: World, probe: Probe) -> None:
    with frozen_clock():
        triggered = world.trigger(Flow, ["con", "a", "b"], inputs={"a": {"timer": 60}})
        suspended("a")
        suspended("b")
        plan = world.cancel(triggered.plan_id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert world.storage.plan_events(plan.id) == []


def test_cancel_with_abort_calls_abort(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, ["con", "cwait:sc", "wait:sp"])
    suspended("sc")
    suspended("sp")
    plan = world.cancel(triggered.plan_id, abort=True).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert recorded(probe, "abort") == [("sc",)]
    assert recorded(probe, "cancel") == []
    assert plan.action(step_of(plan, "sc").action_id).output["stopped"] == "abort"


#: the final state of each step in the cancel scenarios with running steps
CANCELLED_WHILE_RUNNING = {
    "r": "success",  # running, not Cancellable: finishes on its own, its result is kept
    "p": "cancelled",  # pending (after r): never starts
    "rc": "cancelled",  # running Cancellable: sees cancel_requested, then cancel() on suspend
    "sc": "cancelled",  # suspended Cancellable: cancel()
    "sp": "cancelled",  # suspended, not Cancellable
}


@threads_only
def test_cancel_with_running_suspended_and_pending_steps(world: World, probe: Probe) -> None:
    triggered = world.trigger(
        Flow, ["con", ["seq", "grun:r", "noop:p"], "gcancel:rc", "cwait:sc", "wait:sp"]
    )
    probe.wait("arrived:r")
    probe.wait("arrived:rc")
    suspended("sc")
    suspended("sp")

    cancelling = world.cancel(triggered.plan_id)
    probe.wait("cancel:sc")  # the suspended Cancellable was told: the cancel is under way
    during = world.get_plan(triggered.plan_id)
    assert during.state == "running"
    assert states(during)["r"] == "running"
    assert states(during)["rc"] == "running"
    assert states(during)["sp"] == "cancelled"
    assert not cancelling.done()  # running steps are not interrupted

    probe.event("release").set()
    plan = cancelling.result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert states(plan) == CANCELLED_WHILE_RUNNING
    assert sorted(recorded(probe, "saw cancel")) == [("r", True), ("rc", True)]
    assert sorted(recorded(probe, "cancel")) == [("rc",), ("sc",)]
    assert plan.action(step_of(plan, "r").action_id).output == {"done": True}
    assert "p" not in probe.names("run")
    assert probe.names("finalize") == []


class CancelsItsPlan(Action):
    """Cancels its own plan from inside run, then finishes."""

    def run(self) -> None:
        PROBE.record("cancelling", self.world.cancel(self.plan_id))
        self.output["done"] = True


class Runner(Action):
    def run(self) -> None:
        PROBE.record("saw cancel", self.input["name"], self.cancel_requested)
        self.output["done"] = True


class CancellableRunner(Cancellable, Action):
    def run(self, event: Any = None) -> None:
        PROBE.record("saw cancel", self.input["name"], self.cancel_requested)
        suspend_announced(self, self.input["name"], 0)

    def cancel(self) -> None:
        PROBE.record("cancel", self.input["name"])


class InlineCancelScenario(Flow):
    """The inline executor runs one step at a time: ``c`` cancels the plan while ``r`` and
    ``rc`` are claimed (``running``) but not yet called, as they would be on a busy pool."""

    def plan(self) -> None:  # type: ignore[override]
        self.plan_action(CancelsItsPlan, name="c")
        self.plan_action(Runner, name="r")
        self.plan_action(CancellableRunner, name="rc")
        with self.sequence():
            self.plan_action(Runner, name="r-then")
            self.plan_action(Runner, name="p")
        self._build(["con", "cwait:sc", "wait:sp"], {})


@inline_only
def test_cancel_with_running_suspended_and_pending_steps_inline(world: World, probe: Probe) -> None:
    triggered = world.trigger(InlineCancelScenario)
    plan = ended(world, triggered)
    (cancelling,) = probe.names("cancelling")
    assert cancelling.result(timeout=WAIT).id == plan.id

    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert states(plan) == {
        "c": "success",
        "r": "success",
        "r-then": "success",
        "p": "cancelled",
        "rc": "cancelled",
        "sc": "cancelled",
        "sp": "cancelled",
    }
    assert sorted(recorded(probe, "saw cancel")) == [("r", True), ("r-then", True), ("rc", True)]
    assert sorted(recorded(probe, "cancel")) == [("rc",), ("sc",)]
    assert probe.names("finalize") == []


class StopsWithConfirmation(Cancellable, Action):
    """Its cancel() asks the external system to stop and suspends until it confirms."""

    def run(self, event: Any = None) -> None:
        if event is None:
            suspend_announced(self, "ext", 0)
        PROBE.record("event", event)

    def cancel(self) -> None:
        PROBE.record("cancel", "ext")
        suspend_announced(self, "ext", 1)


def test_a_cancel_that_waits_for_confirmation_ends_cancelled(world: World, probe: Probe) -> None:
    triggered = world.trigger(StopsWithConfirmation)
    suspended("ext")
    cancelling = world.cancel(triggered.plan_id)
    suspended("ext", 1)
    (step,) = world.get_plan(triggered.plan_id).run_steps()
    assert step.state == "suspended"
    assert not cancelling.done()  # the plan waits for the confirmation

    world.event(triggered.plan_id, step.id, "stopped").result(timeout=WAIT)
    plan = cancelling.result(timeout=WAIT)
    assert probe.names("event") == ["stopped"]
    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert next(plan.run_steps()).state == "cancelled"


def test_cancel_of_a_paused_plan(world: World, probe: Probe) -> None:
    paused = trigger(world, Flow, ["seq", "fail:f", "wait:after"])
    assert (paused.state, paused.result) == ("paused", "error")
    plan = world.cancel(paused.id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "cancelled")
    assert states(plan) == {"f": "cancelled", "after": "cancelled"}
    assert step_of(plan, "f").error is not None  # the error stays recorded
    assert probe.names("start") == []


@pytest.mark.sql
def test_cancel_of_a_released_plan_from_a_client_world(world_factory: Any, probe: Probe) -> None:
    with frozen_clock() as clock:
        first = world_factory()
        triggered = first.trigger(Flow, "w", inputs={"w": {"timer": 60}})
        suspended("w")
        first.close(timeout=WAIT)

        client = world_factory(executor=None)
        plan = client.cancel(triggered.plan_id).result(timeout=WAIT)
        assert (plan.state, plan.result) == ("stopped", "cancelled")
        assert states(plan) == {"w": "cancelled"}
        assert client.storage.plan_events(plan.id) == []  # its timer went with it

        later = world_factory()
        advance(later, clock, 60)
        assert later.get_plan(plan.id).state == "stopped"
    assert probe.names("event") == []


def test_events_for_a_cancelled_step_are_rejected(world: World) -> None:
    triggered = world.trigger(Flow, "w")
    suspended("w")
    step_id = run_step_id(world, triggered.plan_id, "w")
    world.cancel(triggered.plan_id).result(timeout=WAIT)
    with pytest.raises(EventRejected, match="cancelled"):
        world.event(triggered.plan_id, step_id, "finish")


# -- halt ------------------------------------------------------------------------------------


def _announce_success(sender: Any, **change: Any) -> None:
    if change["state"] == StepState.SUCCESS:
        PROBE.event(f"success:{change['step_id']}").set()


@threads_only
def test_halt_stops_at_once_and_records_what_was_running(world: World, probe: Probe) -> None:
    with frozen_clock() as clock, receiving(signals.step_state_changed, _announce_success):
        triggered = world.trigger(
            Flow,
            ["con", ["seq", "grun:r", "noop:p"], "wait:sw", "cwait:sc"],
            inputs={"sw": {"timer": 60}},
        )
        probe.wait("arrived:r")
        suspended("sw")
        suspended("sc")
        r = run_step_id(world, triggered.plan_id, "r")
        queued = world.event(triggered.plan_id, r, "for the running step")  # waits for r

        plan = world.halt(triggered.plan_id).result(timeout=WAIT)

        assert plan.state == "stopped"
        assert plan.result == "cancelled"
        assert states(plan) == {
            "r": "running",
            "p": "cancelled",
            "sw": "cancelled",
            "sc": "cancelled",
        }
        assert recorded(probe, "cancel") == []  # halt tells no one
        with pytest.raises(EventRejected, match="halted"):
            queued.result(timeout=WAIT)
        assert world.storage.plan_events(plan.id) == []  # sw's timer is gone

        probe.event("release").set()
        probe.wait(f"success:{r}")
        advance(world, clock, 60)  # sw's timer would have been due

    done = world.get_plan(triggered.plan_id)
    assert done.state == "stopped"
    assert states(done) == {"r": "success", "p": "cancelled", "sw": "cancelled", "sc": "cancelled"}
    assert done.action(step_of(done, "r").action_id).output == {"done": True}
    assert "p" not in probe.names("run")  # no new step started after the halt
    assert probe.names("event") == []
    assert probe.names("finalize") == []


@threads_only
def test_following_a_halted_plan_ends_when_its_running_step_is_recorded(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Flow, ["seq", "grun:r", "noop:p"])
    probe.wait("arrived:r")
    r = run_step_id(world, triggered.plan_id, "r")
    world.halt(triggered.plan_id).result(timeout=WAIT)
    followed = world.follow(triggered.plan_id)
    # what the database says at the very moment the future resolves (r is gated: not yet)
    seen: list[str] = []
    told = threading.Event()

    def on_done(future: Any) -> None:
        seen.append(world.storage.get_step(triggered.plan_id, r).state)
        told.set()

    followed.add_done_callback(on_done)
    probe.event("release").set()
    plan = followed.result(timeout=WAIT)
    assert told.wait(WAIT)  # done-callbacks may run just after result() returns
    assert seen == ["success"]
    assert states(plan) == {"r": "success", "p": "cancelled"}


class HaltsItsPlan(Action):
    """Halts its own plan from inside run, sends itself an event, and finishes."""

    def run(self) -> None:
        PROBE.record("halting", self.world.halt(self.plan_id))
        PROBE.record("sent", self.world.event(self.plan_id, self.step_id, "to myself"))
        self.output["done"] = True


class InlineHaltScenario(Flow):
    """``sw`` suspends (with a timer) before ``h`` runs and halts the plan; ``p`` waits for
    ``h``."""

    def plan(self) -> None:  # type: ignore[override]
        self._build("wait:sw", {"sw": {"timer": 60}})
        with self.sequence():
            self.plan_action(HaltsItsPlan, name="h")
            self.plan_action(Runner, name="p")


@inline_only
def test_halt_from_a_running_step_inline(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(InlineHaltScenario)
        (halting,) = probe.names("halting")
        plan = halting.result(timeout=WAIT)
        assert triggered.future.done()
        advance(world, clock, 60)

    plan = world.get_plan(triggered.plan_id)
    assert plan.state == "stopped"
    assert states(plan) == {"sw": "cancelled", "h": "success", "p": "cancelled"}
    assert plan.action(step_of(plan, "h").action_id).output == {"done": True}
    (sent,) = probe.names("sent")
    with pytest.raises(EventRejected):
        sent.result(timeout=WAIT)
    assert probe.names("start") == ["sw"]
    assert probe.names("event") == []
    assert recorded(probe, "saw cancel") == []  # p never ran
    assert world.storage.plan_events(plan.id) == []


def test_halt_of_a_paused_plan(world: World, probe: Probe) -> None:
    paused = trigger(world, Flow, ["seq", "fail:f", "wait:after"])
    plan = world.halt(paused.id).result(timeout=WAIT)
    assert plan.state == "stopped"
    assert states(plan) == {"f": "cancelled", "after": "cancelled"}


def test_halt_of_a_plan_with_suspended_steps(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        triggered = world.trigger(Flow, ["seq", "w", "p"], inputs={"w": {"timer": 30}})
        suspended("w")
        plan = world.halt(triggered.plan_id).result(timeout=WAIT)
        assert (plan.state, plan.result) == ("stopped", "cancelled")
        assert states(plan) == {"w": "cancelled", "p": "cancelled"}
        advance(world, clock, 30)
    assert probe.names("event") == []
    assert finish(world, triggered.plan_id).state == "stopped"
