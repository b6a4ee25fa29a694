"""Retention on a world: ``world.prune()`` never removes a plan in use, removes in batches of
short transactions, refuses bad input; ``World(retention=...)`` prunes on its own. On both
executors and every storage."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest

from dynaflow import (
    Action,
    ConfigurationError,
    PlanResult,
    PlanState,
    PruneReport,
    Retention,
    StepKind,
    StepState,
    SubPlan,
    SubPlans,
    World,
    signals,
)
from dynaflow.clock import now
from dynaflow.execution_plan import ActionRecord, PlanRecord, StepRecord
from dynaflow.persistence.base import HistoryRow, NewPlan
from dynaflow.testing import run_until_done

from .actions import PROBE, WAIT, Fail, Noop, receiving
from .waiting import Waiter, frozen_clock, is_inline


class Held(Action):
    """A :class:`Waiter` without a finalize step. (A sub-plan that ends in its finalize phase
    wakes its parent on the inline executor only with the parent's next check.)"""

    run = Waiter.run


class Family(SubPlans, Action):
    """A parent whose first sub-plan ends at once and whose second waits for an event."""

    def create_sub_plans(self) -> Any:
        yield SubPlan(Noop, name="kid-done")
        yield SubPlan(Held, name="kid-waiting")


def ids(world: World) -> set[str]:
    return {record.id for record in world.find_plans(per_page=1000)}


def name_of(world: World, plan_id: str) -> str:
    return str(world.get_plan(plan_id).actions[0].input["name"])


def wait_stopped(world: World, plan_id: str) -> None:
    assert run_until_done(world, plan_id).state == PlanState.STOPPED


def finish(world: World, plan_id: str) -> None:
    step = next(s for s in world.get_plan(plan_id).steps if s.kind == StepKind.RUN)
    world.event(plan_id, step.id, "finish").result(timeout=WAIT)
    wait_stopped(world, plan_id)


def test_plans_in_use_are_never_removed(world: World) -> None:
    done = world.trigger(Noop, name="done").wait(timeout=WAIT).id
    running = world.trigger(Waiter, name="running").plan_id
    PROBE.wait("suspended:running:0")
    paused = world.trigger(Fail, name="paused").wait(timeout=WAIT)
    assert paused.state == PlanState.PAUSED
    planned = world.plan(Noop, name="planned").id
    delayed = world.delay(Noop, name="delayed", start_at=timedelta(days=1)).plan_id
    prerequisite = world.trigger(Noop, name="prerequisite").wait(timeout=WAIT).id
    chained = world.chain(Noop, name="chained", after=[prerequisite, running]).plan_id
    parent = world.trigger(Family).plan_id
    PROBE.wait("suspended:kid-waiting:0")
    kids = {name_of(world, kid): kid for kid in world.sub_plan_ids(parent, None)}
    wait_stopped(world, kids["kid-done"])
    everything = ids(world)

    dry = world.prune("0s", dry_run=True)
    report = world.prune("0s")

    assert dry.plans == report.plans == 1  # "done" alone
    assert ids(world) == everything - {done}
    assert world.get_plan(chained).state == PlanState.SCHEDULED

    # once nothing uses them any more they go, sub-plans first
    finish(world, running)  # the chained plan's prerequisites have all stopped: it starts
    if is_inline(world):
        world.run_pending()
    wait_stopped(world, chained)
    finish(world, kids["kid-waiting"])
    wait_stopped(world, parent)
    world.cancel(paused.id).result(timeout=WAIT)
    world.execute(planned).result(timeout=WAIT)

    foretold = world.prune("0s", dry_run=True)
    report = world.prune("0s")
    assert report.rows == foretold.rows
    assert report.plans == 8
    assert report.batches == 2  # the sub-plans, then their parent
    assert ids(world) == {delayed}  # it has not started yet


def test_a_result_removes_only_the_plans_that_ended_so(world: World) -> None:
    kept = world.trigger(Fail, name="f").wait(timeout=WAIT).id
    world.cancel(kept).result(timeout=WAIT)
    world.trigger(Noop, name="ok").wait(timeout=WAIT)
    report = world.prune(timedelta(0), result="success")
    assert (report.plans, report.result) == (1, PlanResult.SUCCESS)
    assert ids(world) == {kept}


# -- batches ---------------------------------------------------------------------------------


def finished_plan(ended: Any) -> NewPlan:
    """A stopped plan of one action and one run step, as the executor leaves one."""
    plan_id = str(uuid.uuid4())
    record = PlanRecord(
        plan_id, "Job", PlanState.STOPPED, PlanResult.SUCCESS, "app.Job", ended, ended, ended
    )
    action = ActionRecord(0, "app.Job", {"n": 1}, {"done": True}, None)
    step = StepRecord(1, StepKind.RUN, 0, "app.Job", StepState.SUCCESS, position=0)
    return NewPlan(record, [action], [step], [], [HistoryRow(plan_id, ended, "planned")])


@pytest.mark.executors("inline")
def test_two_thousand_plans_go_in_batches_each_its_own_transaction(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ended = now() - timedelta(days=40)
    world.storage.insert_plans([finished_plan(ended) for _ in range(2000)])
    recent = world.trigger(Noop, name="recent").wait(timeout=WAIT).id
    calls: list[tuple[int, bool]] = []
    prune_plans = world.storage.prune_plans

    def spy(*args: Any) -> dict[str, int]:
        inside = world.storage.current_connection() is not None
        removed = prune_plans(*args)
        calls.append((removed["plans"], inside))
        return removed

    monkeypatch.setattr(world.storage, "prune_plans", spy)
    report = world.prune("30d")

    assert report.plans == 2000 and report.batches == 4
    assert calls == [(500, False)] * 4 + [(0, False)]  # the last one found none left
    assert report.rows == {
        **dict.fromkeys(report.rows, 0),
        **{"plans": 2000, "actions": 2000, "steps": 2000, "history": 2000},
    }
    assert ids(world) == {recent}


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.executors("inline")
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"older_than": "-5d"}, "'-5d' is negative"),
        ({"older_than": timedelta(seconds=-1)}, "is negative"),
        ({"older_than": "30x"}, "cannot read '30x' as a duration"),
        ({"older_than": "30"}, "cannot read '30' as a duration"),
        ({"older_than": ""}, "cannot read '' as a duration"),
        ({"older_than": 30}, "takes a duration like 30d"),
        ({"older_than": "99999w"}, "more than 100 years"),
        ({"older_than": "30d", "result": "pending"}, "'pending' is not the result of a finished"),
        ({"older_than": "30d", "result": "ok"}, "give one of success, warning, error, cancelled"),
        ({"older_than": "30d", "batch": 0}, "batch= must be an int from 1 to 5000"),
        ({"older_than": "30d", "batch": 10_000}, "batch= must be an int from 1 to 5000"),
        ({}, r"world.prune\(\) needs older_than="),
    ],
)
def test_bad_arguments_are_refused_and_nothing_is_removed(
    world: World, arguments: dict[str, Any], message: str
) -> None:
    world.trigger(Noop, name="old").wait(timeout=WAIT)
    with pytest.raises(ConfigurationError, match=message):
        world.prune(**arguments)
    assert len(ids(world)) == 1


@pytest.mark.sql
@pytest.mark.executors("inline")
def test_a_prune_inside_a_transaction_is_refused(world: World) -> None:
    world.trigger(Noop, name="old").wait(timeout=WAIT)
    with (
        world.transaction(),
        pytest.raises(ConfigurationError, match=r"outside world\.transaction"),
    ):
        world.prune("0s")
    assert len(ids(world)) == 1


@pytest.mark.executors("inline")
@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ("forever", r"World\(retention=...\) older_than: cannot read 'forever'"),
        (30, r"World\(retention=...\) takes a duration like 30d"),
        ({"older_than": "30d"}, r"or a dynaflow.Retention; got dict"),
    ],
)
def test_a_bad_retention_is_refused_before_the_world_opens(
    world_factory: Any, retention: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        world_factory(retention=retention)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"older_than": "1d", "every": 0}, "every= must be seconds > 0"),
        ({"older_than": "1d", "result": "pending"}, "result: 'pending' is not the result"),
        ({"older_than": "1d -1h"}, "cannot read"),
    ],
)
def test_a_bad_retention_object_is_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Retention(**arguments)


def test_durations_read_as_documented() -> None:
    assert Retention("30d").older_than == timedelta(days=30)
    assert Retention("12h").older_than == timedelta(hours=12)
    assert Retention("90m").older_than == timedelta(minutes=90)
    assert Retention(" 1d12h ").older_than == timedelta(days=1, hours=12)
    assert Retention("2w", "error").result == PlanResult.ERROR
    assert Retention(timedelta(0)).older_than == timedelta(0)


# -- a world that prunes on its own ------------------------------------------------------------


@pytest.mark.executors("threads")
def test_a_threaded_world_prunes_on_its_own_every_so_often(world_factory: Any) -> None:
    reports: list[PruneReport] = []
    pruned = threading.Condition()

    def received(sender: Any, report: PruneReport) -> None:
        with pruned:
            reports.append(report)
            pruned.notify_all()

    with receiving(signals.plans_pruned, received):
        world = world_factory(retention=Retention("0s", every=0.05))
        for n in range(3):
            world.trigger(Noop, name=f"n{n}").wait(timeout=WAIT)
        with pruned:
            assert pruned.wait_for(lambda: sum(r.plans for r in reports) >= 3, WAIT)
    assert ids(world) == set()
    assert all(not report.dry_run and report.result is None for report in reports)


@pytest.mark.executors("inline")
def test_an_inline_world_prunes_from_run_pending_when_it_is_time(
    world_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dynaflow.retention")
    every = timedelta(days=40)
    with frozen_clock() as clock:
        world = world_factory(retention=Retention("30d", "success", every=every.total_seconds()))
        kept = world.trigger(Fail, name="failed").wait(timeout=WAIT).id
        world.cancel(kept).result(timeout=WAIT)
        for n in range(3):
            world.trigger(Noop, name=f"n{n}").wait(timeout=WAIT)
        world.run_pending()  # the first call prunes: no plan is old enough yet
        clock.tick(timedelta(days=31))
        world.run_pending()  # old enough now, but the next prune is 40 days after the first
        assert len(ids(world)) == 4
        clock.tick(timedelta(days=9))
        world.run_pending()
        assert ids(world) == {kept}  # the failed one did not end with "success"
        assert "retention: removed 3 success plans (" in caplog.text
        assert world.prune().plans == 0  # as the world's retention says


@pytest.mark.sql
@pytest.mark.executors("inline")
def test_a_client_world_keeps_its_retention_for_prune_only(world_factory: Any) -> None:
    executor = world_factory()
    executor.trigger(Noop, name="old").wait(timeout=WAIT)
    client = world_factory(executor=None, retention="0s")
    assert client.pruner is None and len(ids(client)) == 1  # it does not prune on its own
    assert client.prune().plans == 1
