"""Operator commands (``dynaflow plans cancel|halt|retry|resume|skip|event``, each in a process
of its own) on plans that a live worker process runs, and on plans whose worker was SIGKILLed.

A live worker does what is asked of its plans (its own ``cancel()`` runs, say); a dead one's
plans are cancelled or halted by the command directly, and what needs code to run (retry,
resume) waits for any worker. The operator command never runs a plan itself.
"""

from __future__ import annotations

import signal
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
    dynaflow,
    dynaflow_started,
    read_runs,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE = 2.0


def state_of(db: Database, plan_id: str, name: str) -> str:
    return db.run_steps(plan_id)[name].state


def step_of(db: Database, plan_id: str, name: str) -> str:
    """The id of the run step named ``name``, as a command-line argument."""
    return str(db.run_steps(plan_id)[name].id)


def wait_state(db: Database, plan_id: str, name: str, state: str) -> None:
    wait_until(
        lambda: state_of(db, plan_id, name),
        lambda got: got == state,
        f"step {name} of plan {plan_id} is {state}",
    )


def ended(result: Any, outcome: str) -> None:
    """The command exited 0 and printed the plan's end ``outcome`` ("stopped / success")."""
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f": {outcome}" in result.stdout, result.stdout


def only_workers_ran_steps(db: Database, workers: list[Worker]) -> None:
    """Every "step running" history row is a worker's: no operator command ran a step."""
    for (plan, step), worlds in db.step_running().items():
        for world in worlds:
            assert any(w.runs_world(world) for w in workers), (plan, step, world)


@pytest.mark.timeout(180)
def test_operator_commands_on_plans_a_live_worker_runs(
    url: str, db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    worker = start_worker("worker", lease=LEASE)
    worker.registered(db)

    def fixable(name: str) -> list[Any]:
        return ["fix", "f", {"fixed": str(tmp_path / f"{name}.fixed")}]

    after = ["v", "after", {"n": 1}]
    specs = {
        "cancel": ["seq", ["wait", "w"], after],
        "halt": ["seq", ["wait", "w"], after],
        "event": ["seq", ["wait", "w"], after],
        "retry": ["con", fixable("retry"), ["wait", "w"]],
        "resume": ["seq", fixable("resume"), after],
        "skip": ["seq", fixable("skip"), after],
    }
    plans = {kind: client.trigger(Shape, spec).plan_id for kind, spec in specs.items()}
    for kind in ("cancel", "halt", "event", "retry"):
        wait_state(db, plans[kind], "w", "suspended")
    wait_state(db, plans["retry"], "f", "error")
    db.wait_ended([plans["resume"], plans["skip"]])

    def command(*args: str) -> Any:
        return dynaflow(*args, "--url", url, directory=tmp_path)

    # cancel: the worker that runs the plan cancels it (the Waiter's cancel() runs there)
    ended(command("plans", "cancel", plans["cancel"]), "stopped / cancelled")
    (cancelled,) = [r for r in read_runs(tmp_path) if r.what == "cancel"]
    assert (cancelled.plan, cancelled.pid) == (plans["cancel"], worker.pid)
    assert state_of(db, plans["cancel"], "after") == "cancelled"

    # halt: stops at once, the step after never starts
    ended(command("plans", "halt", plans["halt"]), "stopped / cancelled")
    assert state_of(db, plans["halt"], "after") == "cancelled"

    # event: delivered to the suspended step by its worker; the plan goes on
    event = command("plans", "event", plans["event"], step_of(db, plans["event"], "w"), '"finish"')
    assert event.returncode == 0, event.stderr
    assert "event queued" in event.stdout
    assert client.follow(plans["event"]).result(WAIT).result == "success"

    # retry of a failed step while the plan still runs (its Waiter waits): the worker retries
    (tmp_path / "retry.fixed").touch()
    retry = dynaflow_started(
        "plans", "retry", plans["retry"], step_of(db, plans["retry"], "f"), "--url", url,
        directory=tmp_path,
    )  # fmt: skip
    try:
        wait_state(db, plans["retry"], "f", "success")
        finish = command(
            "plans", "event", plans["retry"], step_of(db, plans["retry"], "w"), '"finish"'
        )
        assert finish.returncode == 0, finish.stderr
        out, err = retry.communicate(timeout=WAIT)
    finally:
        if retry.poll() is None:
            retry.kill()
            retry.wait()
    assert retry.returncode == 0, (out, err)
    assert "stopped / success" in out

    # resume a paused plan: the worker runs it again
    (tmp_path / "resume.fixed").touch()
    ended(command("plans", "resume", plans["resume"]), "stopped / success")

    # skip the failed step (in the command's process) and resume (in the worker)
    skip = command(
        "plans", "skip", plans["skip"], step_of(db, plans["skip"], "f"), "--resume",
        "--import", "cluster.actions",
    )  # fmt: skip
    ended(skip, "stopped / warning")
    assert state_of(db, plans["skip"], "f") == "skipped"
    assert state_of(db, plans["skip"], "after") == "success"

    only_workers_ran_steps(db, [worker])
    assert worker.process.poll() is None  # it ran all along
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()


@pytest.mark.timeout(180)
def test_operator_commands_on_plans_whose_worker_was_killed(
    url: str, db: Database, tmp_path: Path, start_worker: Callable[..., Worker], client: World
) -> None:
    gate, fixed = tmp_path / "gate", tmp_path / "fixed"
    first = start_worker("first", lease=LEASE)
    first.registered(db)
    gated = ["strict", "gated", {"gate": str(gate)}]
    after = ["v", "after", {"n": 1}]
    specs = {
        "cancel": ["seq", gated, after],
        "halt": ["seq", ["wait", "w"], after],
        "retry": ["con", ["fix", "f", {"fixed": str(fixed)}], ["wait", "w"]],
        "resume": ["seq", gated, after],
    }
    plans = {kind: client.trigger(Shape, spec).plan_id for kind, spec in specs.items()}
    for kind in ("cancel", "resume"):
        wait_state(db, plans[kind], "gated", "running")
    wait_state(db, plans["halt"], "w", "suspended")
    wait_state(db, plans["retry"], "w", "suspended")
    wait_state(db, plans["retry"], "f", "error")

    first.kill()
    wait_until(db.stale_worlds, lambda stale: first.world_id in stale, "the worker's lease ends")
    # plans nobody runs yet: no operator command may run them
    unrelated = [client.trigger(Shape, ["seq", ["v", "u", {"n": i}]]).plan_id for i in range(3)]

    def command(*args: str) -> Any:
        return dynaflow(*args, "--url", url, directory=tmp_path)

    # no live worker: cancel and halt change the plans directly
    ended(command("plans", "cancel", plans["cancel"]), "stopped / cancelled")
    assert state_of(db, plans["cancel"], "gated") == "cancelled"
    ended(command("plans", "halt", plans["halt"]), "stopped / cancelled")
    assert state_of(db, plans["halt"], "after") == "cancelled"
    for kind in ("cancel", "halt"):
        (stopped,) = [w for p, _, _, w in db.history("plan stopped") if p == plans[kind]]
        assert stopped and not first.runs_world(stopped)  # by the command's own world

    # retry and an event wait for a worker
    fixed.touch()
    retry = command("plans", "retry", plans["retry"], step_of(db, plans["retry"], "f"), "--no-wait")
    assert retry.returncode == 0, retry.stderr
    assert "requested" in retry.stdout
    event = command("plans", "event", plans["retry"], step_of(db, plans["retry"], "w"), '"finish"')
    assert event.returncode == 0, event.stderr
    status = command("status")
    assert status.returncode == 0, status.stderr
    assert first.world_id in status.stdout and "STALE" in status.stdout
    assert "waiting requests" in status.stdout and plans["retry"] in status.stdout
    assert db.plan_states(unrelated) == dict.fromkeys(unrelated, ("planned", "pending"))

    # a worker comes: it takes the dead one's plans over, retries, delivers the event
    second = start_worker("second", lease=LEASE)
    second.registered(db)
    assert client.follow(plans["retry"]).result(WAIT).result == "success"
    for plan in unrelated:
        assert client.follow(plan).result(WAIT).result == "success"
        assert second.runs_world(db.run_steps(plan)["u"].world_id)

    # the interrupted strict step errors; the plan pauses; resume runs it (in the worker)
    state = db.wait_ended([plans["resume"]])[plans["resume"]]
    assert state == ("paused", "error")
    error = db.run_steps(plans["resume"])["gated"].error
    assert error["class_name"] == "AbnormalTermination"
    gate.touch()
    ended(command("plans", "resume", plans["resume"]), "stopped / success")
    assert second.runs_world(db.run_steps(plans["resume"])["after"].world_id)

    only_workers_ran_steps(db, [first, second])
