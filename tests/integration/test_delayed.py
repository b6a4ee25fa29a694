"""Delayed and chained plans on both executors and every storage, under a frozen clock: a plan
is stored ``scheduled`` and starts at its time (never before), stops instead of starting past
its deadline, can be cancelled and rescheduled, survives a restart, and a chained plan starts
once its prerequisites ended well (with a policy for those that did not)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from dynaflow import InvalidState, World
from dynaflow.states import PlanState

from .actions import WAIT, Noop, Probe
from .later import Stops, at, ended, frozen_clock, history, look, move
from .waiting import is_inline

sql = pytest.mark.storages("sqlite", "postgres")


def test_a_delayed_plan_is_scheduled_and_starts_at_its_time_not_before(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        delayed = world.delay(Noop, name="later", start_at=at(10))
        plan = world.get_plan(delayed.plan_id)
        assert (plan.state, plan.result) == ("scheduled", "pending")
        assert [p.id for p in world.find_plans(state="scheduled")] == [delayed.plan_id]
        assert world.delayed(delayed.plan_id).start_at == at(10)  # type: ignore[union-attr]

        assert move(world, clock, 9.9) == 0
        assert world.get_plan(delayed.plan_id).state == "scheduled"
        assert probe.names("run") == []

        move(world, clock, 0.1)
        plan = ended(world, delayed.plan_id)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("run") == ["later"]
    assert plan.record.started_at is not None and plan.record.started_at >= at(10)
    events = history(plan)
    scheduled = events.index("plan scheduled")
    assert events[scheduled : scheduled + 3] == ["plan scheduled", "plan planned", "plan running"]
    assert delayed.wait(WAIT).result == "success"


def test_a_plan_due_in_the_past_starts_at_the_next_look(world: World, probe: Probe) -> None:
    with frozen_clock():
        delayed = world.delay(Noop, name="overdue", start_at=timedelta(seconds=-60))
        look(world)
        assert ended(world, delayed.plan_id).result == "success"
    assert probe.names("run") == ["overdue"]


def test_past_its_deadline_a_plan_stops_with_an_error_instead_of_starting(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        delayed = world.delay(Noop, name="late", start_at=at(10), start_before=at(20))
        clock.tick(timedelta(seconds=25))  # no world looked between 10 s and 20 s
        look(world)
        plan = delayed.wait(WAIT)

    assert (plan.state, plan.result) == ("stopped", "error")
    assert probe.names("run") == []
    assert plan.record.error is not None
    assert plan.record.error.class_name == "DeadlinePassed"
    assert "start_before=2030-01-01T12:00:20+00:00 passed" in plan.record.error.message
    assert {s.state for s in plan.steps if s.kind != "plan"} == {"cancelled"}
    stopped = [row for row in plan.history if row.event == "plan stopped"]
    assert "deadline" in stopped[0].detail["reason"]  # type: ignore[index]


def test_at_its_deadline_a_plan_still_starts(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        delayed = world.delay(Noop, name="just", start_at=at(10), start_before=at(20))
        move(world, clock, 20)
        assert ended(world, delayed.plan_id).result == "success"


def test_a_scheduled_plan_can_be_cancelled(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        delayed = world.delay(Noop, name="never", start_at=at(10))
        world.cancel(delayed.plan_id).result(timeout=WAIT)
        plan = world.get_plan(delayed.plan_id)
        assert (plan.state, plan.result) == ("stopped", "cancelled")
        assert move(world, clock, 60) == 0
    assert probe.names("run") == []
    assert {s.state for s in world.get_plan(delayed.plan_id).steps if s.kind != "plan"} == {
        "cancelled"
    }
    with frozen_clock():  # a scheduled plan starts when it is due, not when asked to
        waiting = world.delay(Noop, name="x", start_at=at(99)).plan_id
        with pytest.raises(InvalidState, match="only planned or paused"):
            world.execute(waiting).result(timeout=WAIT)
        assert world.get_plan(waiting).state == "scheduled"


def test_a_scheduled_plan_can_be_rescheduled(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        delayed = world.delay(Noop, name="moved", start_at=at(10), start_before=at(15))
        row = world.reschedule(delayed.plan_id, start_at=at(30), start_before=None)
        assert (row.start_at, row.start_before) == (at(30), None)
        assert move(world, clock, 20) == 0  # past the old start and the old deadline
        assert world.get_plan(delayed.plan_id).state == "scheduled"
        move(world, clock, 10)
        plan = ended(world, delayed.plan_id)
    assert plan.result == "success"
    assert "plan rescheduled" in history(plan)
    with pytest.raises(InvalidState, match="only a scheduled plan"):
        world.reschedule(delayed.plan_id, start_at=at(99))


@sql
def test_a_client_world_delays_and_an_executor_world_started_later_runs_it(
    world_factory: Any, probe: Probe
) -> None:
    factory = world_factory
    with frozen_clock() as clock:
        client = factory(executor=None)
        delayed = client.delay(Noop, name="handed", start_at=at(10))
        assert client.starter is None
        clock.tick(timedelta(seconds=30))
        worker = factory()  # "restarted" after the start time: it looks on its own
        worker.run_pending()
        plan = delayed.wait(WAIT)
    assert plan.result == "success"
    assert probe.names("run") == ["handed"]


@sql
def test_exactly_one_world_starts_a_due_plan(world_factory: Any, probe: Probe) -> None:
    factory = world_factory
    with frozen_clock() as clock:
        worlds = [factory(), factory(), factory()]
        plans = [worlds[0].delay(Noop, name=f"p{i}", start_at=at(10)).plan_id for i in range(5)]
        clock.tick(timedelta(seconds=10))
        start = threading.Barrier(len(worlds))
        done: list[int] = []

        def racing(world: World) -> None:
            start.wait(WAIT)
            assert world.starter is not None
            done.append(world.starter.poll(force=True))

        threads = [threading.Thread(target=racing, args=(w,)) for w in worlds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        for world in worlds:
            world.run_pending()
        results = [worlds[0].follow(p).result(timeout=WAIT).result for p in plans]

    assert sum(done) <= 5  # threaded worlds' own scheduler threads look too
    if is_inline(worlds[0]):
        assert sum(done) == 5
    assert results == ["success"] * 5
    assert sorted(probe.names("run")) == [f"p{i}" for i in range(5)]
    for plan_id in plans:
        assert history(worlds[0].get_plan(plan_id)).count("plan running") == 1


# -- chains ------------------------------------------------------------------------------------


def test_a_chained_plan_starts_once_all_its_prerequisites_ended_well(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        first = world.delay(Noop, name="first", start_at=at(10))
        second = world.delay(Noop, name="second", start_at=at(20))
        chained = world.chain(Noop, name="chained", after=[first.plan_id, second.plan_id])
        assert world.delayed(chained.plan_id).after == sorted(  # type: ignore[union-attr]
            [first.plan_id, second.plan_id]
        )
        assert look(world) == 0

        move(world, clock, 10)
        ended(world, first.plan_id)
        assert look(world) == 0
        assert world.get_plan(chained.plan_id).state == "scheduled"

        move(world, clock, 10)
        ended(world, second.plan_id)
        look(world)
        plan = ended(world, chained.plan_id)

    assert plan.result == "success"
    assert probe.names("run") == ["first", "second", "chained"]


def test_a_chain_on_plans_that_already_ended_starts_at_the_next_look(
    world: World, probe: Probe
) -> None:
    done = world.trigger(Noop, name="done").wait(WAIT)
    with frozen_clock():
        chained = world.chain(Noop, name="next", after=[done.id])
        look(world)
        assert ended(world, chained.plan_id).result == "success"


@pytest.mark.parametrize(
    ("on_failed", "state", "result", "ran"),
    [
        ("fail", "stopped", "error", []),
        ("skip", "stopped", "cancelled", []),
        ("run", "stopped", "success", ["chained"]),
    ],
)
def test_a_failed_prerequisite_is_handled_as_on_failed_says(
    world: World, probe: Probe, on_failed: str, state: str, result: str, ran: list[str]
) -> None:
    failed = world.trigger(Stops, name="broken").wait(WAIT)
    assert (failed.state, failed.result) == ("stopped", "error")
    ok = world.trigger(Noop, name="fine").wait(WAIT)
    with frozen_clock():
        chained = world.chain(Noop, name="chained", after=[ok.id, failed.id], on_failed=on_failed)
        look(world)
        plan = chained.wait(WAIT)

    assert (plan.state, plan.result) == (state, result)
    assert probe.names("run") == ["broken", "fine", *ran]
    if on_failed != "run":
        assert plan.record.error is not None
        assert plan.record.error.class_name == "PrerequisiteFailed"
        assert f"{failed.id} (error)" in plan.record.error.message
        assert ok.id not in plan.record.error.message


def test_a_cancelled_prerequisite_did_not_end_well(world: World, probe: Probe) -> None:
    with frozen_clock():
        prerequisite = world.delay(Noop, name="cancelled", start_at=at(60))
        chained = world.chain(Noop, name="chained", after=[prerequisite.plan_id])
        world.cancel(prerequisite.plan_id).result(timeout=WAIT)
        look(world)
        plan = chained.wait(WAIT)
    assert plan.result == "error"
    assert "(cancelled)" in plan.record.error.message  # type: ignore[union-attr]


def test_a_chained_plan_with_a_deadline_stops_when_its_prerequisites_take_too_long(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        slow = world.delay(Noop, name="slow", start_at=at(100))
        chained = world.chain(Noop, name="chained", after=[slow.plan_id], start_before=at(30))
        move(world, clock, 31)
        plan = chained.wait(WAIT)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert plan.record.error.class_name == "DeadlinePassed"  # type: ignore[union-attr]
    assert world.get_plan(slow.plan_id).state == PlanState.SCHEDULED
