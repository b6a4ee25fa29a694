"""Every operator action is recorded in the plan's history, with who asked (``by=``); a
refused one records nothing."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import ConfigurationError, ExecutionPlan, InvalidState, World

from .actions import WAIT, Probe, trigger
from .failing import Graph, repair, sid, snapshot


def operator_rows(plan: ExecutionPlan) -> list[tuple[str, int | None, Any]]:
    return [(h.event, h.step_id, h.detail) for h in plan.history if h.event.startswith("operator")]


def test_resume_is_recorded_with_who_asked(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])
    repair("a")

    plan = world.resume(paused.id, by="alice").result(timeout=WAIT)

    assert plan.result == "success"
    assert operator_rows(plan) == [("operator resume", None, {"by": "alice"})]
    row = next(h for h in plan.history if h.event == "operator resume")
    assert row.world_id == world.id
    events = [h.event for h in plan.history]
    last_run = max(i for i, event in enumerate(events) if event == "step running")
    assert events.index("operator resume") < last_run  # recorded before the step ran again


def test_skip_and_retry_name_their_step(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["con", "a", "b", "c"], ["a", "b"])
    a, b = sid(paused, "a"), sid(paused, "b")

    world.skip(paused.id, a, by="bob").result(timeout=WAIT)
    repair("b")
    plan = world.retry(paused.id, b, by="carol").result(timeout=WAIT)

    assert plan.result == "warning"
    assert operator_rows(plan) == [
        ("operator skip", a, {"by": "bob"}),
        ("operator retry", b, {"by": "carol"}),
    ]
    events = [h.event for h in plan.history]
    assert events.index("operator skip") < events.index("step skipped")


def test_skip_with_resume_says_so(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])
    plan = world.skip(paused.id, sid(paused, "a"), resume=True, by="dave").result(timeout=WAIT)
    assert operator_rows(plan) == [
        ("operator skip", sid(paused, "a"), {"by": "dave", "resume": True})
    ]


@pytest.mark.parametrize("operation", ["cancel", "halt"])
def test_cancel_and_halt_are_recorded(world: World, probe: Probe, operation: str) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])
    if operation == "cancel":
        future = world.cancel(paused.id, abort=True, by="erin")
    else:
        future = world.halt(paused.id, by="erin")
    plan = world.get_plan(future.result(timeout=WAIT).id)
    expected = {"by": "erin", "abort": True} if operation == "cancel" else {"by": "erin"}
    assert operator_rows(plan) == [(f"operator {operation}", None, expected)]
    assert plan.state == "stopped"


@pytest.mark.executors("threads")
def test_cancel_of_a_running_plan_is_recorded(world: World, probe: Probe) -> None:
    triggered = world.trigger(Graph, ["seq", "gate:a"])
    probe.wait("arrived:a")
    future = world.cancel(triggered.plan_id, by="frank")
    probe.event("release").set()
    plan = future.result(timeout=WAIT)
    assert operator_rows(world.get_plan(plan.id)) == [("operator cancel", None, {"by": "frank"})]


def test_without_by_the_action_is_still_recorded(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a"], ["a"])
    plan = world.halt(paused.id).result(timeout=WAIT)
    assert operator_rows(world.get_plan(plan.id)) == [("operator halt", None, None)]


def test_a_refused_action_records_nothing(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])
    before = snapshot(paused)
    b = sid(paused, "b")

    with pytest.raises(InvalidState):
        world.skip(paused.id, b, by="mallory")  # b is pending, not failed
    with pytest.raises(InvalidState):
        world.retry(paused.id, b, by="mallory")
    with pytest.raises(ConfigurationError, match="by= names who asks"):
        world.resume(paused.id, by=5)  # type: ignore[arg-type]

    assert snapshot(world.get_plan(paused.id)) == before
    world.halt(paused.id).result(timeout=WAIT)
    with pytest.raises(InvalidState):
        world.resume(paused.id, by="mallory")
    with pytest.raises(InvalidState):
        world.cancel(paused.id, by="mallory")
    assert [row[0] for row in operator_rows(world.get_plan(paused.id))] == ["operator halt"]
