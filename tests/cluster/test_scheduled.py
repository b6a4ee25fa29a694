"""Delayed plans and recurring runs with three ``dynaflow worker`` processes on one PostgreSQL:
every worker looks for what fell due, and exactly one starts each due plan and plans each due
run (counted by the steps themselves and by the plans' histories)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dynaflow import World

from .actions import Value
from .harness import Database, Worker, read_runs, starts, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def started_by(db: Database, plan_ids: list[str]) -> dict[str, list[str | None]]:
    """The worlds that moved each plan out of ``scheduled`` (its second "plan planned" row:
    the first is planning's own)."""
    found: dict[str, list[str | None]] = {p: [] for p in plan_ids}
    seen: Counter[str] = Counter()
    for plan_id, _event, _, world_id in db.history("plan planned"):
        if plan_id in found:
            seen[plan_id] += 1
            if seen[plan_id] > 1:
                found[plan_id].append(world_id)
    return found


@pytest.mark.timeout(180)
def test_exactly_one_worker_starts_each_due_plan(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    workers = [start_worker(f"w{i}") for i in range(3)]
    for worker in workers:
        worker.registered(db)
    due = client.now() + timedelta(seconds=2)
    plans = [
        client.delay(Value, n=i, name=f"v{i}", start_at=due + timedelta(milliseconds=50 * (i % 4)))
        .plan_id
        for i in range(40)
    ]  # fmt: skip

    ended = db.wait_ended(plans, timeout=90)

    assert set(ended.values()) == {("stopped", "success")}
    runs = starts(read_runs(tmp_path))
    for plan_id in plans:
        assert len([r for (p, _), rs in runs.items() if p == plan_id for r in rs]) == 1, plan_id
    starters = started_by(db, plans)
    assert all(len(worlds) == 1 for worlds in starters.values()), starters
    world_ids = {w.world_id for w in workers}
    by_world = Counter(worlds[0] for worlds in starters.values())
    assert set(by_world) <= world_ids
    print(f"due plans started per worker: {dict(by_world)}")
    running = Counter(p for p, _, _, _ in db.history("plan running"))
    assert all(running[p] == 1 for p in plans)


@pytest.mark.timeout(180)
def test_each_run_of_a_schedule_is_planned_exactly_once_by_the_workers(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    workers = [start_worker(f"w{i}") for i in range(3)]
    for worker in workers:
        worker.registered(db)
    # every second (a sixth, leading field: seconds), each missed run planned too
    client.schedule(Value, cron="* * * * * *", key="every-second", catch_up="all", n=1, name="s")

    def scheduled_runs() -> list[tuple[str, datetime]]:
        found = []
        for record in client.find_plans(per_page=1000):
            for row in client.get_plan(record.id).history:
                if row.event == "planned by schedule":
                    found.append((record.id, datetime.fromisoformat(row.detail["run_at"])))  # type: ignore[index]
        return sorted(found, key=lambda run: run[1])

    wait_until(scheduled_runs, lambda found: len(found) >= 8, "8 runs planned", timeout=60)
    client.unschedule("every-second")
    found = scheduled_runs()
    db.wait_ended([p for p, _ in found], timeout=60)
    found = scheduled_runs()  # a run may have been planned while the schedule was removed

    times = [when for _, when in found]
    assert len(times) == len(set(times)), f"a run was planned twice: {times}"
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {1.0}, f"runs missing between {times[0]} and {times[-1]}: {times}"
    runs = starts(read_runs(tmp_path))
    for plan_id, _ in found:
        assert sum(len(rs) for (p, _), rs in runs.items() if p == plan_id) == 1
    planners = Counter(w for p, e, _, w in db.history("planned by schedule"))
    assert set(planners) <= {w.world_id for w in workers}
    print(f"runs planned per worker: {dict(planners)}")
