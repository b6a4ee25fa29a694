"""Recurring plans on both executors and every storage, under a frozen clock: runs planned at
each cron time in the schedule's time zone (across daylight saving time changes), the catch-up
policies for missed runs, pause and resume, changing a schedule without re-planning a run, and
each run planned exactly once however many worlds look."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from dynaflow import Action, World

from .actions import PROBE, WAIT, Probe
from .later import at, caught_up, look, move
from .waiting import REAL_TIME_MODULES, frozen_clock, is_inline

sql = pytest.mark.storages("sqlite", "postgres")


class Job(Action):
    """Records the time it runs at."""

    def run(self) -> None:
        from dynaflow.clock import now

        PROBE.record("job", self.input["name"], now())


class BadPlan(Action):
    def plan(self, name: str) -> None:
        raise ValueError(f"cannot plan {name}")


def runs(world: World, key: str) -> list[tuple[str, Any]]:
    """``(plan id, run time)`` of the runs the schedule ``key`` planned, oldest first."""
    found = []
    for record in world.find_plans(order_by="created_at", per_page=1000):
        for row in world.get_plan(record.id).history:
            if row.event == "planned by schedule" and row.detail["schedule"] == key:  # type: ignore[index]
                found.append((record.id, datetime.fromisoformat(row.detail["run_at"])))  # type: ignore[index]
    return sorted(found, key=lambda run: run[1])


def all_ended(world: World, plan_ids: list[str]) -> list[str]:
    return [world.follow(p).result(timeout=WAIT).result for p in plan_ids]


def test_runs_are_planned_at_each_time_of_the_cron_expression(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        schedule = world.schedule(Job, cron="*/10 * * * *", key="tick", name="tick")
        assert schedule.next_run_at == at(600)
        assert world.schedules() == [schedule]

        assert move(world, clock, 599) == 0
        assert runs(world, "tick") == []
        move(world, clock, 1)  # 12:10
        move(world, clock, 600)  # 12:20
        planned = runs(world, "tick")
        assert [when for _, when in planned] == [at(600), at(1200)]
        assert all_ended(world, [p for p, _ in planned]) == ["success", "success"]

        now = world.schedules()[0]
    assert now.next_run_at == at(1800)
    assert (now.last_run_at, now.last_plan_id) == (at(1200), planned[-1][0])
    assert [name for name in probe.names("job")] == ["tick", "tick"]


@pytest.mark.parametrize(
    ("catch_up", "planned"),
    [("skip", []), ("once", [2400]), ("all", [600, 1200, 1800, 2400])],
)
def test_runs_missed_while_no_world_looked_follow_the_catch_up_policy(
    world: World, probe: Probe, catch_up: str, planned: list[int]
) -> None:
    with frozen_clock() as clock:
        world.schedule(Job, cron="*/10 * * * *", key="catch", catch_up=catch_up, name="c")
        clock.tick(timedelta(minutes=45))  # 12:10, 12:20, 12:30 and 12:40 missed
        caught_up(world, "catch")
        found = runs(world, "catch")
        assert [when for _, when in found] == [at(s) for s in planned]
        assert set(all_ended(world, [p for p, _ in found])) <= {"success"}
        assert world.schedules()[0].next_run_at == at(3000)  # 12:50, whatever the policy


def test_skip_plans_a_run_that_is_only_a_little_late(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        world.schedule(Job, cron="*/10 * * * *", key="on-time", name="o")
        move(world, clock, 630)  # 30 s after 12:10: still on time
        assert [when for _, when in runs(world, "on-time")] == [at(600)]


def test_times_follow_the_time_zone_across_daylight_saving_changes(
    world: World, probe: Probe
) -> None:
    # Europe/Prague: 2030-03-31 02:00 CET -> 03:00 CEST; 2030-10-27 03:00 CEST -> 02:00 CET
    with freeze_time(
        datetime(2030, 3, 30, 12, tzinfo=UTC), ignore=list(REAL_TIME_MODULES)
    ) as clock:
        schedule = world.schedule(Job, cron="30 2 * * *", tz="Europe/Prague", key="dst", name="d")
        # 02:30 does not exist on the 31st: it runs right after the change, at 03:00 CEST
        assert schedule.next_run_at.isoformat() == "2030-03-31T03:00:00+02:00"
        clock.move_to(datetime(2030, 3, 31, 1, 0, tzinfo=UTC))
        look(world)
        assert world.schedules()[0].next_run_at.isoformat() == "2030-04-01T02:30:00+02:00"
        assert world.schedules()[0].next_run_at.astimezone(UTC).hour == 0

        clock.move_to(datetime(2030, 10, 27, 0, 30, tzinfo=UTC))  # 02:30 CEST
        look(world)
        # 02:30 comes twice that night: it runs once, and next at 02:30 CET the day after
        after = world.schedules()[0].next_run_at
        assert after.isoformat() == "2030-10-28T02:30:00+01:00"
        clock.move_to(datetime(2030, 10, 27, 1, 30, tzinfo=UTC))  # 02:30 CET, the second time
        assert look(world) == 0
        found = runs(world, "dst")
    assert [when.astimezone(UTC) for _, when in found] == [
        datetime(2030, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2030, 10, 27, 0, 30, tzinfo=UTC),
    ]


def test_a_paused_schedule_plans_nothing_and_resumes_from_now(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        world.schedule(Job, cron="*/10 * * * *", key="p", catch_up="all", name="p")
        assert world.pause_schedule("p").paused
        assert move(world, clock, 1800) == 0  # 12:10, 12:20 and 12:30 passed while paused
        resumed = world.resume_schedule("p")
        assert not resumed.paused
        assert resumed.next_run_at == at(2400)  # from now on: nothing missed is planned
        assert look(world) == 0
        move(world, clock, 600)
        assert [when for _, when in runs(world, "p")] == [at(2400)]


def test_changing_a_schedule_never_plans_a_run_again(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        world.schedule(Job, cron="*/10 * * * *", key="c", name="v1")
        move(world, clock, 600)  # the 12:10 run
        again = world.schedule(Job, cron="*/10 * * * *", key="c", name="v2")
        assert again.next_run_at == at(1200)
        assert look(world) == 0
        changed = world.schedule(Job, cron="10,15 * * * *", key="c", name="v3")
        assert changed.next_run_at == at(900)  # 12:15: the 12:10 run is not planned again
        assert look(world) == 0
        move(world, clock, 300)
        found = runs(world, "c")
        assert [when for _, when in found] == [at(600), at(900)]
        assert [world.get_plan(p).actions[0].input["name"] for p, _ in found] == ["v1", "v3"]


def test_a_run_whose_planning_fails_is_recorded_and_the_schedule_goes_on(
    world: World, probe: Probe
) -> None:
    with frozen_clock() as clock:
        world.schedule(BadPlan, cron="* * * * *", key="bad", name="x")
        move(world, clock, 60)
        move(world, clock, 60)
        found = runs(world, "bad")
        assert [when for _, when in found] == [at(60), at(120)]
        plans = [world.get_plan(p) for p, _ in found]
    assert {(p.state, p.result) for p in plans} == {("stopped", "error")}
    assert "cannot plan x" in str(plans[0].steps[0].error)


def test_unschedule_keeps_the_runs_planned(world: World, probe: Probe) -> None:
    with frozen_clock() as clock:
        world.schedule(Job, cron="*/10 * * * *", key="gone", name="g")
        move(world, clock, 600)
        world.unschedule("gone")
        assert world.schedules() == []
        assert move(world, clock, 600) == 0
        assert len(runs(world, "gone")) == 1


@sql
def test_each_run_is_planned_exactly_once_however_many_worlds_look(
    world_factory: Any, probe: Probe
) -> None:
    with frozen_clock() as clock:
        worlds = [world_factory() for _ in range(3)]
        worlds[0].schedule(Job, cron="* * * * *", key="race", catch_up="all", name="r")
        clock.tick(timedelta(minutes=5))
        start = threading.Barrier(len(worlds))
        done: list[int] = []

        def racing(world: World) -> None:
            start.wait(WAIT)
            assert world.starter is not None
            while count := world.starter.poll(force=True):
                done.append(count)

        threads = [threading.Thread(target=racing, args=(w,)) for w in worlds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        caught_up(worlds[0], "race")
        for world in worlds:
            world.run_pending()
        found = runs(worlds[0], "race")
        assert [when for _, when in found] == [at(60 * i) for i in range(1, 6)]
        assert all_ended(worlds[0], [p for p, _ in found]) == ["success"] * 5
    if is_inline(worlds[0]):
        assert sum(done) == 5
    assert len(probe.names("job")) == 5


@sql
def test_a_client_world_schedules_and_executor_worlds_plan_the_runs(
    world_factory: Any, probe: Probe
) -> None:
    with frozen_clock() as clock:
        client = world_factory(executor=None)
        client.schedule(Job, cron="*/10 * * * *", key="from-client", name="fc")
        worker = world_factory()
        move(worker, clock, 600)
        found = runs(client, "from-client")
        assert all_ended(client, [p for p, _ in found]) == ["success"]
        assert client.schedules()[0].last_plan_id == found[0][0]
