"""Suspend and events on both executors and every storage: a suspended step holds no thread,
events arrive in order and are each handled once, senders learn what became of their event."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest

from dynaflow import (
    Action,
    EventRejected,
    StepState,
    SuspendedHandle,
    World,
    signals,
)

from .actions import PROBE, WAIT, Probe, receiving, states, step_of, trigger
from .waiting import Flow, Waiter, ended, finish, is_inline, run_step_id, suspended

threads_only = pytest.mark.executors("threads")


# -- suspending ------------------------------------------------------------------------------


class Checkpoint(Action):
    """Saves some output, then suspends; the first event finishes it."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.output["stage"] = "waiting for the service"
            self.suspend(lambda handle: PROBE.event("suspended").set())
        self.output["stage"] = f"got {event}"


def test_a_suspended_step_keeps_its_output_and_the_plan_keeps_running(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Checkpoint)
    probe.wait("suspended")

    during = world.get_plan(triggered.plan_id)
    (step,) = during.run_steps()
    assert during.state == "running"
    assert step.state == "suspended"
    assert step.ended_at is None
    assert during.action(step.action_id).output == {"stage": "waiting for the service"}
    assert not triggered.future.done()

    world.event(triggered.plan_id, step.id, "ok").result(timeout=WAIT)
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.action(step.action_id).output == {"stage": "got ok"}


@threads_only
def test_suspended_steps_hold_no_worker(world_factory: Any, probe: Probe) -> None:
    world = world_factory(workers=1)
    triggered = world.trigger(Flow, ["con", "a", "b", "c", "d"])
    for name in "abcd":
        suspended(name)
    # one worker, yet all four steps got it: each suspended one gave it back
    during = world.get_plan(triggered.plan_id)
    assert set(states(during).values()) == {"suspended"}

    for name in "abcd":
        world.event(triggered.plan_id, run_step_id(world, triggered.plan_id, name), "finish")
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert sorted(probe.names("finalize")) == ["a", "b", "c", "d"]


# -- ordering and exactly-once ---------------------------------------------------------------


def test_a_hundred_events_arrive_in_order_each_handled_once(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, "w", inputs={"w": {"finish_after": 100}})
    suspended("w")
    step_id = run_step_id(world, triggered.plan_id, "w")

    futures = [world.event(triggered.plan_id, step_id, i) for i in range(100)]

    assert [f.result(timeout=WAIT) for f in futures] == [None] * 100
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    handled = [call[2] for call in probe.calls if call[0] == "event"]
    assert handled == list(range(100))
    assert plan.action(step_of(plan, "w").action_id).output["events"] == list(range(100))
    assert world.storage.plan_events(plan.id) == []  # nothing left queued


@threads_only
def test_events_from_several_threads_are_each_handled_once_in_each_senders_order(
    world: World, probe: Probe
) -> None:
    senders, per_sender = 4, 25
    triggered = world.trigger(Flow, "w", inputs={"w": {"finish_after": senders * per_sender}})
    suspended("w")
    step_id = run_step_id(world, triggered.plan_id, "w")
    start = threading.Barrier(senders)
    futures: list[Future[Any]] = []
    lock = threading.Lock()

    def send(sender: int) -> None:
        start.wait(WAIT)
        for i in range(per_sender):
            future = world.event(triggered.plan_id, step_id, [sender, i])
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    for future in futures:
        assert future.result(timeout=WAIT) is None

    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    handled = [tuple(call[2]) for call in probe.calls if call[0] == "event"]
    assert sorted(handled) == [(s, i) for s in range(senders) for i in range(per_sender)]
    for sender in range(senders):
        assert [i for s, i in handled if s == sender] == list(range(per_sender))


# -- events racing the end of a step ---------------------------------------------------------


class Busy(Action):
    """Runs until ``release``; finishes unless the input says to suspend; records events."""

    def run(self, event: Any = None) -> None:
        if event is not None:
            PROBE.record("event", self.input["name"], event)
            return
        with PROBE.running_step(self.input["name"]):
            PROBE.wait("release")
        if self.input.get("suspend"):
            self.suspend()


@threads_only
def test_events_waiting_for_a_running_step_are_rejected_when_it_finishes(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Busy, name="b")
    probe.wait("arrived:b")
    step_id = run_step_id(world, triggered.plan_id, "b")

    first = world.event(triggered.plan_id, step_id, "one")
    second = world.event(triggered.plan_id, step_id, "two")
    assert not first.done() and not second.done()  # the step runs: they wait
    probe.event("release").set()

    for future in (first, second):
        with pytest.raises(EventRejected, match="success"):
            future.result(timeout=WAIT)
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("event") == []
    assert world.storage.plan_events(plan.id) == []


@threads_only
def test_events_waiting_for_a_running_step_are_delivered_in_order_when_it_suspends(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Busy, name="b", suspend=True)
    probe.wait("arrived:b")
    step_id = run_step_id(world, triggered.plan_id, "b")

    first = world.event(triggered.plan_id, step_id, "one")
    second = world.event(triggered.plan_id, step_id, "two")
    probe.event("release").set()

    # "one" wakes the step and finishes it: "two" arrived too late
    assert first.result(timeout=WAIT) is None
    with pytest.raises(EventRejected):
        second.result(timeout=WAIT)
    assert triggered.wait(timeout=WAIT).result == "success"
    assert probe.calls[-1] == ("event", "b", "one")
    assert probe.names("event") == ["b"]


def send_as_the_step_finishes(
    world: World, probe: Probe, on_done: Any = None
) -> tuple[str, Future[Any]]:
    """Trigger a Busy step and send it an event that ``World.event`` accepts (the step reads as
    running) but that reaches the executor only after the step finished and its plan ended.
    ``on_done(plan_id)`` is called when the sender's future resolves (registered before the
    executor sees the event)."""
    triggered = world.trigger(Busy, name="b")
    probe.wait("arrived:b")
    step_id = run_step_id(world, triggered.plan_id, "b")
    ended = world.follow(triggered.plan_id)
    read_step = world.storage.get_step
    engine = world.executor.engine  # type: ignore[union-attr]
    register = engine.event_sent

    def get_step_then_finish(plan_id: str, step_id: int) -> Any:
        world.storage.get_step = read_step  # type: ignore[method-assign]
        step = read_step(plan_id, step_id)  # "running": the event is accepted
        probe.event("release").set()
        ended.result(timeout=WAIT)  # ... and the step finishes, the plan ends
        return step

    def register_watched(plan_id: str, step_id: int, event_id: int, future: Future[Any]) -> None:
        engine.event_sent = register
        if on_done is not None:
            future.add_done_callback(lambda future: on_done(plan_id))
        register(plan_id, step_id, event_id, future)

    world.storage.get_step = get_step_then_finish  # type: ignore[method-assign]
    engine.event_sent = register_watched
    return triggered.plan_id, world.event(triggered.plan_id, step_id, "late")


@threads_only
def test_an_event_accepted_just_before_its_step_finishes_is_not_reported_handled(
    world: World, probe: Probe
) -> None:
    """The sender reads the step as running, then the step finishes and its plan ends before
    the event reaches the executor: the sender must not be told the event was handled."""
    plan_id, late = send_as_the_step_finishes(world, probe)
    with pytest.raises(EventRejected, match="finished"):
        late.result(timeout=WAIT)
    # follow() is answered by a later scheduler iteration: the one that rejected the event
    # has committed by then
    world.follow(plan_id).result(timeout=WAIT)
    assert world.storage.plan_events(plan_id) == []  # not left queued for good


@threads_only
def test_a_late_event_is_deleted_by_the_time_its_sender_is_told(world: World, probe: Probe) -> None:
    seen: list[list[Any]] = []
    told = threading.Event()

    def on_done(plan_id: str) -> None:
        seen.append(world.storage.plan_events(plan_id))
        told.set()

    _, late = send_as_the_step_finishes(world, probe, on_done=on_done)
    with pytest.raises(EventRejected):
        late.result(timeout=WAIT)
    # done-callbacks run just after result() returns in the waiting thread: wait for ours
    assert told.wait(WAIT)
    assert seen == [[]]


def test_an_event_handled_before_its_future_is_registered_still_resolves_it(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Flow, ["con", "w", "x"])
    suspended("w")
    suspended("x")
    w, x = (run_step_id(world, triggered.plan_id, name) for name in "wx")
    engine = world.executor.engine  # type: ignore[union-attr]
    register = engine.event_sent

    def register_late(plan_id: str, step_id: int, event_id: int, future: Future[Any]) -> None:
        engine.event_sent = register  # once: the nudge below goes the normal way
        # the row for w is in the database; an event for x makes an iteration deliver both
        world.event(plan_id, x, "nudge")
        suspended("w", 1)  # w has handled its event before its sender's future is registered
        register(plan_id, step_id, event_id, future)

    engine.event_sent = register_late
    future = world.event(triggered.plan_id, w, "first")
    assert future.result(timeout=0 if is_inline(world) else WAIT) is None
    assert probe.calls.count(("event", "w", "first")) == 1


def test_an_event_for_a_finished_step_is_rejected(world: World) -> None:
    plan = trigger(world, Flow, "noop:w")
    assert plan.result == "success"
    step_id = step_of(plan, "w").id
    with pytest.raises(EventRejected, match=f"step {step_id} of plan {plan.id} is success"):
        world.event(plan.id, step_id, "too late")


def test_an_optional_event_for_a_finished_step_is_dropped_quietly(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    plan = trigger(world, Flow, "noop:w")
    step_id = step_of(plan, "w").id
    with caplog.at_level("DEBUG", logger="dynaflow.world"):
        future = world.event(plan.id, step_id, "too late", optional=True)
    assert future.result(timeout=WAIT) is None
    assert "dropped" in caplog.text
    assert world.get_plan(plan.id).history == plan.history  # nothing happened to the plan
    assert world.storage.plan_events(plan.id) == []


def test_an_optional_event_for_an_unknown_step_is_dropped_quietly(world: World) -> None:
    plan = trigger(world, Flow, "noop:w")
    assert world.event(plan.id, 999, "x", optional=True).result(timeout=WAIT) is None
    assert world.event("no-such-plan", 1, "x", optional=True).result(timeout=WAIT) is None


# -- the suspend callback and its handle -----------------------------------------------------


class ExternalCall(Action):
    """Starts a simulated external service from its suspend callback; the service reports back
    through the handle from its own thread once the test lets it."""

    def run(self, event: Any = None) -> None:
        if event is not None:
            PROBE.record("event", event, threading.get_ident())
            self.output["result"] = event["result"]
            return
        self.suspend(start_service)


def start_service(handle: SuspendedHandle) -> None:
    PROBE.record("handle", handle)

    def service() -> None:
        PROBE.wait("service may answer")
        sent = handle.send({"result": 42})
        PROBE.record("sent", sent)
        PROBE.event("answered").set()

    threading.Thread(target=service, name="external-service", daemon=True).start()
    PROBE.event("service started").set()


def test_the_suspend_callback_gets_a_handle_that_wakes_the_step_from_another_thread(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(ExternalCall)
    probe.wait("service started")
    (handle,) = probe.names("handle")
    step = next(world.get_plan(triggered.plan_id).run_steps())
    assert (handle.plan_id, handle.step_id, handle.world) == (triggered.plan_id, step.id, world)
    assert step.state == "suspended"  # the callback ran once this was saved

    probe.event("service may answer").set()
    probe.wait("answered")
    plan = triggered.wait(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.action(step.action_id).output == {"result": 42}
    (sent,) = probe.names("sent")
    assert sent.result(timeout=WAIT) is None
    (event,) = [c for c in probe.calls if c[0] == "event"]
    assert event[1] == {"result": 42}


class FailingCallback(Action):
    def run(self, event: Any = None) -> None:
        self.suspend(self.broken)

    @staticmethod
    def broken(handle: SuspendedHandle) -> None:
        raise ConnectionError("the external service refused the job")


def test_a_failing_suspend_callback_errors_the_step(world: World) -> None:
    plan = trigger(world, FailingCallback)
    (step,) = plan.run_steps()
    assert (plan.state, plan.result) == ("paused", "error")
    assert step.state == "error"
    assert step.error.class_name == "ConnectionError"
    assert step.error.message == "the external service refused the job"


# -- events sent from inside run -------------------------------------------------------------


class Notifier(Action):
    """Sends ``count`` events to the step of the action named ``to`` from inside run; records
    what the target's run step looked like in the database while it was sending."""

    def run(self) -> None:
        plan = self.world.get_plan(self.plan_id)
        target = step_of(plan, self.input["to"]).id
        futures = [self.world.event(self.plan_id, target, i) for i in range(self.input["count"])]
        PROBE.record("sent", [f.done() for f in futures])
        for future in futures:
            PROBE.record("future", future)
        if self.input.get("fail"):
            raise RuntimeError("the notifier failed after sending")
        self.output["sent"] = True


class Listener(Action):
    """Suspends; records each event with the state its plan's notifier is saved in."""

    def run(self, event: Any = None) -> None:
        if event is not None:
            plan = self.world.get_plan(self.plan_id)
            PROBE.record("event", event, step_of(plan, "notifier").state)
            if event == self.input["last"]:
                PROBE.event("heard all").set()
                return
        self.suspend(lambda handle: PROBE.event("listening").set())


class Conversation(Action):
    """A listener and a notifier that sends it ``count`` events from its run."""

    def plan(self, count: int = 3, fail: bool = False) -> None:
        self.plan_action(Listener, name="listener", last=count - 1)
        self.plan_action(Notifier, name="notifier", to="listener", count=count, fail=fail)


def test_events_sent_from_inside_run_are_delivered_after_the_sender_is_saved(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Conversation, count=3)
    plan = ended(world, triggered)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("sent") == [[False, False, False]]  # not handled while the sender ran
    # every event reached the listener once the notifier's success was saved, in order
    assert [(c[1], c[2]) for c in probe.calls if c[0] == "event"] == [
        (0, "success"),
        (1, "success"),
        (2, "success"),
    ]
    for future in probe.names("future"):
        assert future.result(timeout=WAIT) is None


def test_events_sent_from_a_run_that_fails_are_never_delivered(world: World, probe: Probe) -> None:
    with receiving(signals.step_state_changed, _announce_errors):
        triggered = world.trigger(Conversation, count=2, fail=True)
        probe.wait("listening")
        probe.wait("step error")
    plan = world.get_plan(triggered.plan_id)
    assert plan.state == "running"  # the listener still waits
    assert states(plan) == {"listener": "suspended", "notifier": "error"}
    assert probe.names("sent") == [[False, False]]
    for future in probe.names("future"):
        with pytest.raises(EventRejected, match="failed"):
            future.result(timeout=WAIT)
    assert [c for c in probe.calls if c[0] == "event"] == []
    assert world.storage.plan_events(triggered.plan_id) == []


def _announce_errors(sender: Any, **change: Any) -> None:
    if change["state"] == StepState.ERROR:
        PROBE.event("step error").set()


class TalksToItself(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.world.event(self.plan_id, self.step_id, "note to self")
            self.suspend()
        PROBE.record("event", event)


def test_an_event_a_step_sends_itself_wakes_it_after_it_suspends(
    world: World, probe: Probe
) -> None:
    plan = ended(world, world.trigger(TalksToItself))
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("event") == ["note to self"]


# -- waking a step through world.follow ------------------------------------------------------


def test_follow_resolves_when_the_woken_plan_ends(world: World) -> None:
    triggered = world.trigger(Waiter, name="w")
    suspended("w")
    followed = world.follow(triggered.plan_id)
    assert not followed.done()
    world.event(triggered.plan_id, run_step_id(world, triggered.plan_id, "w"), "finish")
    assert finish(world, triggered.plan_id).state == "stopped"
    assert followed.result(timeout=WAIT).result == "success"


# -- events in batches -----------------------------------------------------------------------


def only_run_step(world: World, plan_id: str) -> int:
    (step,) = [s for s in world.get_plan(plan_id).steps if s.kind == "run"]
    return int(step.id)


class Batched(Action):
    """Takes its sent events in batches; records each batch; "stop" in a batch finishes it.
    The first batch waits for the probe's "release" (so that more events queue meanwhile)."""

    event_batches = True

    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend(lambda handle: PROBE.event("suspended").set())
        PROBE.record("batch", list(event))
        if len(PROBE.names("batch")) == 1:
            PROBE.event("arrived:batch").set()
            PROBE.wait("release")
        if "stop" not in event:
            self.suspend()


@threads_only
def test_events_queued_while_the_step_runs_come_as_one_batch_in_order(
    world: World, probe: Probe
) -> None:
    triggered = world.trigger(Batched)
    probe.wait("suspended")
    step_id = only_run_step(world, triggered.plan_id)
    first = world.event(triggered.plan_id, step_id, "one")
    probe.wait("arrived:batch")
    later = [world.event(triggered.plan_id, step_id, name) for name in ("two", "three", "stop")]
    probe.event("release").set()

    plan = triggered.wait(timeout=WAIT)
    assert plan.result == "success"
    assert probe.names("batch") == [["one"], ["two", "three", "stop"]]
    # each sender learns its event was handled, and none is left queued
    assert [f.result(timeout=WAIT) for f in [first, *later]] == [None] * 4
    assert world.storage.plan_events(plan.id) == []


def test_a_batching_step_takes_a_single_event_as_a_list_of_one(world: World, probe: Probe) -> None:
    triggered = world.trigger(Batched)
    probe.wait("suspended")
    probe.event("release").set()
    step_id = only_run_step(world, triggered.plan_id)
    world.event(triggered.plan_id, step_id, "stop").result(timeout=WAIT)
    assert triggered.wait(timeout=WAIT).result == "success"
    assert probe.names("batch") == [["stop"]]
