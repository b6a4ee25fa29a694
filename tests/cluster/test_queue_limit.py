"""A queue's cluster-wide limit holds across worker processes, under load and while one of
them is killed: counted by the steps themselves, never more run at once than the limit."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynaflow import World

from .actions import LIMITED, Shape
from .harness import WAIT, Database, Run, Worker, base_seed, read_runs, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def most_at_once(runs: list[Run], killed: dict[int, float]) -> int:
    """The most steps of the runs recorded that ran at the same time (a killed process's
    unfinished step ran until it was killed)."""
    open_runs: dict[tuple[str, int, int], float] = {}
    edges: list[tuple[float, int]] = []
    for run in runs:
        key = (run.plan, run.step, run.pid)
        if run.what == "start":
            open_runs[key] = run.at
        elif run.what == "end" and key in open_runs:
            edges += [(open_runs.pop(key), 1), (run.at, -1)]
    for (_, _, pid), started in open_runs.items():
        edges += [(started, 1), (killed.get(pid, time.time()), -1)]
    running = most = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += change
        most = max(most, running)
    return most


@pytest.mark.timeout(240)
def test_a_queue_limit_holds_across_workers_and_through_a_kill(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    assert LIMITED.limit == 3
    rng = random.Random(base_seed("queue limit"))
    pools = ["default=2", "limited3=4"]
    workers = [start_worker(f"w{i}", queues=pools, lease=2) for i in range(3)]
    for worker in workers:
        worker.registered(db)
    spec = ["con", *(["lim", f"l{i}", {"seconds": 0.05}] for i in range(6))]
    plans = [client.trigger(Shape, spec).plan_id for _ in range(8)]
    wait_until(
        lambda: [r for r in read_runs(tmp_path) if r.what == "end"],
        lambda ended: len(ended) >= 10,
        "some limited steps ran",
    )
    victim = rng.choice(workers)
    victim.signal(signal.SIGKILL)
    killed = {victim.pid: time.time()}
    victim.wait()
    states = db.wait_ended(plans, WAIT * 3)
    assert all(state == ("stopped", "success") for state in states.values()), states
    runs = read_runs(tmp_path)
    assert len({(r.plan, r.step) for r in runs if r.what == "end"}) == 8 * 6
    assert most_at_once(runs, killed) <= 3
