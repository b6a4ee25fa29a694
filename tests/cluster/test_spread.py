"""Plans handed by a client world to several worker processes on one database run once each,
in one world each, with the outputs an inline run gives them.

Hand-off is per plan, and these plans' steps are quick (a world offers a step to other worlds
only when its queue's steps take 50 ms or more: see tests/integration/test_spreading.py), so a
worker that takes a plan runs all of its steps; "spread" here means plans over workers.
"""

from __future__ import annotations

import itertools
import random
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dynaflow import World
from dynaflow.persistence import migrate

from .actions import Shape
from .harness import WAIT, Database, base_seed, read_runs, starts, workers

pytestmark = pytest.mark.slow


def random_spec(rng: random.Random) -> list[Any]:
    """A flow of Values: nested sequences and concurrences, output references, maybe a
    total of every value at the end."""
    names = itertools.count(1)

    def leaf() -> list[Any]:
        args = {"n": rng.randrange(100), "refs": rng.choice([0, 0, 1, 2])}
        return ["v", f"v{next(names)}", args]

    def scope(depth: int) -> list[Any]:
        children = [
            scope(depth + 1) if depth < 2 and rng.random() < 0.3 else leaf()
            for _ in range(rng.randint(1, 3))
        ]
        return [rng.choice(["seq", "con"]), *children]

    spec = scope(0)
    return ["seq", spec, ["total", "total"]] if rng.random() < 0.5 else spec


def outputs(world: World, plan_id: str) -> dict[int, Any]:
    """``action id -> output`` of every action of the plan."""
    return {a.id: a.output for a in world.get_plan(plan_id).actions}


def run_everywhere(
    url: str,
    tmp_path: Path,
    specs: list[list[Any]],
    worker_count: int,
    spread: bool = True,
    **options: Any,
) -> None:
    """Trigger every spec from a client world, run them on ``worker_count`` workers, and check
    the outcome against an inline run: the same outputs, every run step run once, in one
    world, every plan's steps in the plan's world; with ``spread``, the plans spread over the
    workers."""
    db = Database(url)
    try:
        with workers(url, tmp_path) as start, World(url, executor=None) as client:
            started = [start(f"worker-{i}", **options) for i in range(worker_count)]
            ids = {w.registered(db): w for w in started}
            with ThreadPoolExecutor(4) as pool:  # as a web application's threads would
                triggered = list(pool.map(lambda spec: client.trigger(Shape, spec), specs))
            for t in triggered:
                plan = t.wait(WAIT)
                assert (plan.state, plan.result) == ("stopped", "success"), plan.id
            got = [outputs(client, t.plan_id) for t in triggered]
        with World("memory://", executor="inline") as inline:
            expected = []
            for spec in specs:
                plan = inline.trigger(Shape, spec).wait(WAIT)
                assert plan.result == "success"
                expected.append(outputs(inline, plan.id))
        assert got == expected

        running = db.step_running()
        recorded = starts(read_runs(tmp_path))
        plan_worlds: Counter[str] = Counter()
        steps_of = defaultdict(list)
        for step in db.steps():
            if step.kind == "run":
                steps_of[step.plan_id].append(step)
        for t in triggered:
            run_steps = steps_of[t.plan_id]
            assert run_steps
            for step in run_steps:
                key = (t.plan_id, step.id)
                assert step.state == "success"
                assert running[key] == [step.world_id], (key, running[key])  # one world, once
                (record,) = recorded[key]  # the step itself ran once, in that world
                assert record.world == step.world_id
            (world,) = {s.world_id for s in run_steps}  # plan-level hand-off
            assert world in ids, (world, ids)
            plan_worlds[world] += 1
        print("plans per worker:", dict(plan_worlds))
        assert not spread or len(plan_worlds) > 1, f"every plan ran in one worker: {plan_worlds}"
    finally:
        db.close()


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_plans_spread_over_three_workers_as_an_inline_run_computes_them(
    url: str, tmp_path: Path
) -> None:
    rng = random.Random(base_seed("spread"))
    specs = [random_spec(rng) for _ in range(200)]
    run_everywhere(url, tmp_path, specs, 3, lease=5)


@pytest.mark.timeout(120)
def test_two_workers_on_one_sqlite_file(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "cluster.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    assert migrate.current(url) == migrate.head()
    rng = random.Random(base_seed("sqlite"))
    specs = [random_spec(rng) for _ in range(40)]
    # which worker takes which plans is up to polling (every 0.25 s on SQLite, no
    # notifications): the first to look takes what is there, and may take them all
    run_everywhere(url, tmp_path, specs, 2, spread=False, lease=10)
