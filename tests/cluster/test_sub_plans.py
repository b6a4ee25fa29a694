"""Sub-plans over worker processes: a parent's concurrency limit holds across three workers
and through the kill of one (counted by the children themselves), and the children spread."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dynaflow import World

from .actions import Fanout
from .harness import WAIT, Database, Worker, base_seed, read_runs, wait_until
from .test_queue_limit import most_at_once

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.mark.timeout(240)
def test_a_parents_concurrency_holds_across_workers_and_through_a_kill(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    rng = random.Random(base_seed("sub-plans"))
    workers = [start_worker(f"w{i}", lease=2) for i in range(3)]
    for worker in workers:
        worker.registered(db)
    parent = client.trigger(Fanout, 40, 0.05).plan_id
    wait_until(
        lambda: [r for r in read_runs(tmp_path) if r.what == "end"],
        lambda ended: len(ended) >= 10,
        "some children ran",
    )
    victim = rng.choice(workers)
    victim.signal(signal.SIGKILL)
    killed = {victim.pid: time.time()}
    victim.wait()

    states = db.wait_ended([parent], WAIT * 3)
    assert states[parent] == ("stopped", "success"), states
    children = client.find_plans(parent=parent, per_page=100)
    assert len(children) == 40
    assert all((c.state, c.result) == ("stopped", "success") for c in children)
    runs = read_runs(tmp_path)
    assert {r.plan for r in runs if r.what == "end"} == {c.id for c in children}
    assert most_at_once(runs, killed) <= 5
    assert len({r.pid for r in runs}) >= 2  # the children spread over the workers
    (output,) = [a.output for a in client.get_plan(parent).actions if "sub_plans" in a.output]
    assert output["sub_plans"]["counts"] == {"success": 40}
