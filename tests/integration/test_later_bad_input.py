"""Bad input to delayed, chained and recurring plans: each is refused with one of dynaflow's
exceptions naming the problem and the fix, and nothing is planned, stored or changed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from dynaflow import (
    InvalidArgument,
    InvalidState,
    NotJSON,
    PlanningFailed,
    UnknownPlan,
    UnknownSchedule,
    World,
)

from .actions import WAIT, Noop, Probe
from .later import at, frozen_clock, look
from .test_recurring import BadPlan


def nothing_new(world: World, plans: int) -> None:
    assert world.count_plans() == plans
    assert world.schedules() == []


@pytest.mark.parametrize(
    ("start_at", "start_before", "message"),
    [
        (at(20), at(10), r"start_before \(2030-01-01T12:00:10\+00:00\) is before start_at"),
        (datetime(2030, 1, 1, 12), None, "naive datetime, which names no instant"),
        (at(10), datetime(2030, 1, 1, 13), "start_before=.*naive datetime"),
        ("tomorrow", None, "timezone-aware datetime"),
        (60, None, "timezone-aware datetime"),
        (timedelta(days=365 * 101), None, "more than 100 years"),
    ],
)
def test_bad_times_are_refused_and_nothing_is_planned(
    world: World, start_at: Any, start_before: Any, message: str
) -> None:
    with frozen_clock(), pytest.raises(InvalidArgument, match=message):
        world.delay(Noop, name="x", start_at=start_at, start_before=start_before)
    nothing_new(world, 0)


def test_bad_chains_are_refused_and_nothing_is_planned(world: World, probe: Probe) -> None:
    done = world.trigger(Noop, name="done").wait(WAIT)
    for after, message in [
        (["no-such-plan"], "names plan 'no-such-plan', which does not exist"),
        ([done.id, 42], "names plan 42, which does not exist"),
        ([], "non-empty list of plan ids"),
        (done.id, "non-empty list of plan ids"),  # a str, not a list of them
    ]:
        with pytest.raises(InvalidArgument, match=message):
            world.chain(Noop, name="x", after=after)
    with pytest.raises(InvalidArgument, match="on_failed='maybe'"):
        world.chain(Noop, name="x", after=[done.id], on_failed="maybe")
    nothing_new(world, 1)


def test_a_cycle_of_chains_is_refused_and_nothing_changes(world: World, probe: Probe) -> None:
    with frozen_clock():
        first = world.delay(Noop, name="first", start_at=at(60))
        second = world.chain(Noop, name="second", after=[first.plan_id])
        third = world.chain(Noop, name="third", after=[second.plan_id])
        before = world.delayed(first.plan_id)

        with pytest.raises(InvalidArgument, match="cycle of chained plans") as caught:
            world.reschedule(first.plan_id, after=[third.plan_id])
        path = f"{first.plan_id} -> {third.plan_id} -> {second.plan_id} -> {first.plan_id}"
        assert path in str(caught.value)
        with pytest.raises(InvalidArgument, match="cannot wait for itself"):
            world.reschedule(second.plan_id, after=[second.plan_id])

        assert world.delayed(first.plan_id) == before
        assert world.delayed(second.plan_id).after == [first.plan_id]  # type: ignore[union-attr]
        assert "plan rescheduled" not in [r.event for r in world.get_plan(first.plan_id).history]
        assert look(world) == 0  # nothing became due by it


def test_rescheduling_what_cannot_be_rescheduled(world: World, probe: Probe) -> None:
    done = world.trigger(Noop, name="done").wait(WAIT)
    with pytest.raises(InvalidState, match="is stopped; only a scheduled plan"):
        world.reschedule(done.id, start_at=at(10))
    with pytest.raises(UnknownPlan):
        world.reschedule("no-such-plan", start_at=at(10))
    with frozen_clock():
        delayed = world.delay(Noop, name="x", start_at=at(10))
        with pytest.raises(InvalidArgument, match="is before start_at"):
            world.reschedule(delayed.plan_id, start_before=at(5))
        assert world.delayed(delayed.plan_id).start_before is None  # type: ignore[union-attr]


def test_a_delayed_plan_whose_planning_fails_is_stopped_not_scheduled(world: World) -> None:
    with frozen_clock(), pytest.raises(PlanningFailed) as caught:
        world.delay(BadPlan, "x", start_at=at(10))
    plan = world.get_plan(caught.value.plan_id)
    assert (plan.state, plan.result) == ("stopped", "error")
    assert world.delayed(plan.id) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "61 * * * *"}, r"invalid cron expression '61 \* \* \* \*' \(Bad minute\)"),
        ({"cron": "every day"}, "invalid cron expression 'every day'"),
        ({"cron": "0 0 30 2 *"}, "invalid cron expression"),  # February 30th never comes
        ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"tz": ""}, "IANA time zone name"),
        ({"catch_up": "sometimes"}, "catch_up='sometimes'"),
        ({"key": ""}, "key must be a non-empty str"),
    ],
)
def test_bad_schedules_are_refused_and_nothing_is_stored(
    world: World, options: dict[str, Any], message: str
) -> None:
    arguments = {"cron": "0 2 * * *", "key": "nightly", **options}
    with pytest.raises(InvalidArgument, match=message):
        world.schedule(Noop, name="x", **arguments)
    nothing_new(world, 0)


def test_schedule_arguments_must_be_json(world: World) -> None:
    with pytest.raises(NotJSON, match="arguments of schedule 'nightly'"):
        world.schedule(Noop, cron="0 2 * * *", key="nightly", name=object())
    nothing_new(world, 0)


def test_unknown_schedules(world: World) -> None:
    for operate in (world.pause_schedule, world.resume_schedule, world.unschedule):
        with pytest.raises(UnknownSchedule, match="no recurring schedule with key 'nope'"):
            operate("nope")
