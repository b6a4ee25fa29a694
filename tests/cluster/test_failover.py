"""Workers that die (SIGKILL) or are stopped (SIGTERM) while their steps run: the other
workers take their plans over, nothing is lost, and no step that is not idempotent runs twice.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dynaflow import World

from .actions import Shape
from .harness import (
    WAIT,
    Database,
    Worker,
    base_seed,
    dynaflow_started,
    read_runs,
    rounds,
    starts,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

#: the workers' lease: a killed worker's plans are taken over about this long after
LEASE = 2.0
STRICT = "cluster.actions.StrictWork"
WORK = "cluster.actions.Work"


def chain_spec(rng: random.Random) -> list[Any]:
    """A sequence of idempotent and strict (not idempotent) steps of 0.05 to 0.4 s, with a
    concurrent pair somewhere."""

    def step(name: str) -> list[Any]:
        kind = rng.choice(["work", "strict"])
        return [kind, name, {"seconds": rng.choice([0.05, 0.1, 0.2, 0.4])}]

    steps: list[Any] = [step(f"s{i}") for i in range(rng.randint(2, 4))]
    steps.insert(rng.randrange(len(steps) + 1), ["con", step("c1"), step("c2")])
    return ["seq", *steps]


def in_flight(directory: Path, plan_ids: list[str], at_least: int) -> list[tuple[int, str, int]]:
    """``(pid, plan, step)`` of the steps of the plans begun and not ended, once at least
    ``at_least`` steps of them have begun (else none)."""
    runs = [r for r in read_runs(directory) if r.plan in plan_ids]
    ended = {(r.plan, r.step) for r in runs if r.what == "end"}
    begun = [r for r in runs if r.what == "start"]
    if len(begun) < at_least:
        return []
    return sorted({(r.pid, r.plan, r.step) for r in begun if (r.plan, r.step) not in ended})


@pytest.mark.timeout(300)
def test_sigkill_a_worker_mid_run_loses_nothing_and_runs_no_strict_step_twice(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    rng = random.Random(base_seed("sigkill"))
    live = [start_worker(f"worker-{i}", lease=LEASE) for i in range(3)]
    for worker in live:
        worker.registered(db)
    every: list[str] = []
    paused: list[str] = []
    for number in range(rounds(3)):
        ids = [client.trigger(Shape, chain_spec(rng)).plan_id for _ in range(12)]
        every += ids
        after = rng.randint(1, 8)  # steps of the round begun before the kill
        running = wait_until(
            lambda ids=ids, after=after: in_flight(tmp_path, ids, after),
            bool,
            f"round {number}: steps run",
        )
        pid, plan_id, step_id = rng.choice(running)
        (victim,) = [w for w in live if w.pid == pid]
        print(f"round {number}: SIGKILL {victim} running step {step_id} of plan {plan_id}")
        victim.kill()
        killed_at = time.time()
        live.remove(victim)
        live.append(start_worker(f"worker-{3 + number}", lease=LEASE))
        live[-1].registered(db)

        ended = db.wait_ended(ids, timeout=WAIT)
        records = starts(read_runs(tmp_path))
        for plan in ids:
            state = ended[plan]
            assert state in (("stopped", "success"), ("paused", "error")), (plan, state)
            if state[0] == "paused":
                paused.append(plan)
            for step in db.steps(plan):
                if step.kind != "run":
                    continue
                key = (plan, step.id)
                runs = records[key]
                where = (key, step, runs)
                # a step may run in another world than the one that claimed it (a slow
                # step offered to a worker with a free thread): where it ran is not checked
                if step.state == "success":
                    if step.action_class == STRICT:
                        assert len(runs) == 1, where  # never twice
                    else:  # an idempotent step runs again only because of the kill
                        assert runs and all(r.at < killed_at for r in runs[:-1]), where
                elif step.state == "error":  # interrupted by the kill; left to an operator
                    assert step.action_class == STRICT, where
                    assert step.error["class_name"] == "AbnormalTermination", where
                    # at most once, begun before the kill (none: claimed, then killed before
                    # the step began)
                    assert len(runs) <= 1 and all(r.at < killed_at for r in runs), where
                else:  # after a failed step of its paused plan: never started
                    assert state[0] == "paused" and step.state == "pending", where
                    assert not runs, where

    # nothing is lost: the operator resumes what paused, and it all ends well
    print(f"{len(paused)} of {len(every)} plans paused on an interrupted strict step")
    for plan in paused:
        assert client.resume(plan).result(WAIT).result == "success", plan
    assert set(db.plan_states(every).values()) == {("stopped", "success")}


@pytest.mark.timeout(180)
def test_sigterm_lets_running_steps_finish_and_the_others_finish_its_plans(
    db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    gate = tmp_path / "gate"
    grace = 20.0
    first = start_worker("first", lease=LEASE, grace=grace, queues=["default=8"])
    first.registered(db)
    spec = [
        "seq",
        ["strict", "gated", {"gate": str(gate)}],
        ["strict", "second", {"seconds": 0.1}],
        ["v", "third", {"n": 1}],
    ]
    ids = [client.trigger(Shape, spec).plan_id for _ in range(6)]
    wait_until(
        lambda: {r.plan for r in read_runs(tmp_path) if r.name == "gated" and r.pid == first.pid},
        lambda begun: begun == set(ids),
        "the first worker runs the gated step of every plan",
    )
    other = start_worker("other", lease=LEASE)
    other.registered(db)

    first.signal(signal.SIGTERM)
    wait_until(first.output, lambda log: "SIGTERM: stopping" in log, "the worker stops")
    gate.touch()  # the running steps may finish now
    assert first.wait(grace) == 0, first.output()
    assert "Traceback" not in first.output()

    ended = db.wait_ended(ids)
    assert set(ended.values()) == {("stopped", "success")}, ended
    records = starts(read_runs(tmp_path))
    released = {p for p, _, _, w in db.history("plan released") if first.runs_world(w)}
    assert released == set(ids)  # with steps left to run: the other worker ran them
    stopped_by = {p: w for p, _, _, w in db.history("plan stopped")}
    for plan in ids:
        steps = db.run_steps(plan)
        assert {s.state for s in steps.values()} == {"success"}
        for step in steps.values():
            assert len(records[(plan, step.id)]) == 1, (plan, step)
        assert first.runs_world(steps["gated"].world_id)
        # "second" too, if a gated step finished before the signal stopped the claiming
        assert other.runs_world(steps["third"].world_id)
        assert other.runs_world(stopped_by[plan])


@pytest.mark.timeout(180)
def test_sigterm_leaves_steps_outliving_the_grace_and_an_operators_cancel_to_the_others(
    url: str, db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    gate = tmp_path / "gate"  # never opened: the step outlives the grace period
    first = start_worker("first", lease=LEASE, grace=1)
    first.registered(db)
    spec = ["seq", ["strict", "gated", {"gate": str(gate)}], ["v", "after", {"n": 1}]]
    plan = client.trigger(Shape, spec).plan_id
    wait_until(lambda: read_runs(tmp_path), bool, "the gated step runs")
    cancel = dynaflow_started("plans", "cancel", plan, "--url", url, directory=tmp_path)
    try:
        # the first worker took the cancel: it waits for the running step to finish
        wait_until(
            db.open_requests,
            lambda requests: (
                [(r["kind"], r["taken_by"]) for r in requests] == [("cancel", first.world_id)]
            ),
            "the first worker takes the cancel request",
        )
        other = start_worker("other", lease=LEASE)
        other.registered(db)
        first.signal(signal.SIGTERM)
        assert first.wait() == 0, first.output()  # without waiting for the step's thread
        assert "1 steps still running after 1.0s" in first.output()
        out, err = cancel.communicate(timeout=WAIT)
    finally:
        if cancel.poll() is None:
            cancel.kill()
            cancel.wait()
    assert cancel.returncode == 0, (out, err)
    assert "stopped / cancelled" in out
    steps = db.run_steps(plan)
    assert steps["after"].state == "cancelled"
    # the step that outlived the grace was taken over as interrupted, and never ran again
    assert steps["gated"].error["class_name"] == "AbnormalTermination"
    assert [r.pid for r in read_runs(tmp_path) if r.what == "start"] == [first.pid]
    assert other.runs_world(next(w for p, e, _, w in db.history("plan stopped") if p == plan))
