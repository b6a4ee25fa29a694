"""The probe: calls recorded from any thread, gates that hold steps, a concurrency count, and
waits that fail instead of hanging."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dynaflow import Action, World, signals
from dynaflow.testing import Probe, probe, receiving


class Gate(Action):
    def run(self) -> None:
        with probe.running_step(self.input["name"]):
            probe.wait("release")


def test_gated_steps_run_at_once_until_released(dynaflow_probe: Probe) -> None:
    with World("memory://", executor="threads", workers=3) as world:
        triggered = [world.trigger(Gate, name=name) for name in ("a", "b", "c")]
        dynaflow_probe.wait_running(3)
        assert dynaflow_probe.running == 3
        dynaflow_probe.event("release").set()
        for each in triggered:
            assert each.wait(timeout=10).result == "success"
    assert dynaflow_probe.max_running == 3
    assert sorted(dynaflow_probe.names("enter")) == ["a", "b", "c"]
    assert dynaflow_probe.event("arrived:b").is_set()


def test_waits_are_bounded() -> None:
    mine = Probe()
    with pytest.raises(TimeoutError, match=r"event 'never' was not set within 0\.01s"):
        mine.wait("never", timeout=0.01)
    with pytest.raises(TimeoutError, match=r"2 steps running did not happen within 0\.01s"):
        mine.wait_running(2, timeout=0.01)


def test_wait_until_sees_calls_from_other_threads() -> None:
    mine = Probe()
    threading.Thread(target=lambda: mine.record("done", "worker")).start()
    mine.wait_until(lambda: mine.names("done") == ["worker"], what="the worker")


def test_reset_and_release_all() -> None:
    mine = Probe()
    mine.record("run", "x")
    gate = mine.event("gate")
    mine.release_all()
    assert gate.is_set()
    mine.reset()
    assert (mine.calls, mine.event("gate").is_set(), mine.max_running) == ([], False, 0)


def test_receiving_connects_only_inside(dynaflow_world: World) -> None:
    seen: list[str] = []

    def on_plan(sender: World, **change: Any) -> None:
        seen.append(change["state"])

    with receiving(signals.plan_state_changed, on_plan):
        dynaflow_world.trigger(Noop)
    dynaflow_world.trigger(Noop)
    assert seen == ["planned", "running", "stopped"]


class Noop(Action):
    def run(self) -> None:
        pass
