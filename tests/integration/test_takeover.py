"""Taking over the plans of a world that died, in one process, on both executors and every
storage. A dead world is simulated in the database: its row's heartbeat is old (or it has no
row) and the plan it ran is ``running`` under its id, with the steps it was running ``running``.
(Crash tests with real processes killed by SIGKILL are in ``tests/crash``.)"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from dynaflow import ConcurrentModification, World
from dynaflow.clock import now
from dynaflow.persistence.base import RequestRow, WorldRow

from .actions import WAIT, Probe, states, step_of
from .failing import (
    Graph,
    force_running,
    frozen_clock,
    running_in,
    runs,
    sid,
    watching_plans,
)
from .waiting import Flow, advance, suspended

DEAD = "dead-world"


def dead_world(world: World, heartbeat_age: float) -> None:
    """Register :data:`DEAD`, last heard from ``heartbeat_age`` seconds ago."""
    at = now() - timedelta(seconds=heartbeat_age)
    world.storage.register_world(WorldRow(DEAD, at - timedelta(seconds=60), at, "gone", 4242))


def take_over(world: World, plan_id: str) -> Any:
    """Have ``world`` look for expired leases now, and wait for the end of the execution."""
    world.maintain(force=True)
    return world.follow(plan_id).result(timeout=WAIT)


def test_running_steps_of_a_dead_world_rerun_if_idempotent_else_error(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", ["con", "idem:i", "n", "p"], "after"])
    dead_world(world, heartbeat_age=31)
    force_running(world, planned, ["i", "n"], DEAD)  # p had not started yet

    plan = take_over(world, planned.id)

    assert (plan.state, plan.result) == ("paused", "error")  # n's rescue strategy: PAUSE
    assert states(plan) == {"i": "success", "n": "error", "p": "success", "after": "pending"}
    assert [runs(name) for name in ("i", "n", "p", "after")] == [1, 0, 1, 0]
    error = step_of(plan, "n").error
    assert error.class_name == "AbnormalTermination"
    assert error.message.startswith(
        f"abnormal termination: world {DEAD} stopped while the step ran"
    )
    assert "not marked idempotent" in error.message
    assert plan.record.world_id == world.id

    takeover = [h for h in plan.history if h.event == "plan running"][-1]
    assert (takeover.world_id, takeover.detail) == (world.id, {"from": DEAD})
    by_step = {(h.step_id, h.event): h for h in plan.history if h.step_id is not None}
    assert (
        "idempotent, so it runs again" in by_step[(sid(plan, "i"), "step pending")].detail["reason"]
    )
    assert by_step[(sid(plan, "n"), "step error")].world_id == world.id
    assert DEAD not in [w.id for w in world.storage.worlds()]  # the dead world is forgotten

    repair_and_resume = world.resume(plan.id)  # abnormal termination is an ordinary failure
    assert repair_and_resume.result(timeout=WAIT).result == "success"
    assert [runs(name) for name in ("i", "n", "p", "after")] == [1, 1, 1, 1]


def _offer(world: World, plan: Any, name: str, taken_by: str | None = None) -> int:
    """Store the ``"run"`` request :data:`DEAD` made for leaf ``name`` (another world took
    it, when ``taken_by``); its id. Its queue is one ``world`` does not serve (so it never
    takes the request itself)."""
    step = next(s for s in plan.steps if s.id == sid(plan, name))
    action = next(a for a in plan.actions if a.id == step.action_id)
    args = {
        "step_id": step.id,
        "action_id": action.id,
        "action_class": action.action_class,
        "input": action.input,
        "output": {},
        "attempt": 1,
    }
    row = RequestRow(plan.id, "run", args, now(), None, DEAD, queue="elsewhere")
    world.storage.add_request(row)
    if taken_by is not None:
        (taken,) = world.storage.take_runs(taken_by, {"elsewhere": 1}, skip=())
        assert taken.id == row.id
    assert row.id is not None
    return row.id


def _ran_elsewhere(value: str) -> dict[str, Any]:
    """The outcome another world answers for a step it ran."""
    at = now().isoformat()
    output = {"value": value}
    return {"started_at": at, "ended_at": at, "output": output, "error": None, "events": []}


def test_steps_another_world_runs_for_a_dead_owner_stay_its_and_untaken_offers_run_here(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", ["con", "n", "m", "p"], "after"])  # none idempotent
    force_running(world, planned, ["n", "m", "p"], DEAD)  # the dead world offered all three
    running = _offer(world, planned, "n", taken_by="helper")  # still running in "helper"
    answered = _offer(world, planned, "m", taken_by="helper")
    world.storage.answer_request(answered, None, _ran_elsewhere("m in helper"))
    _offer(world, planned, "p")  # nobody took it: it never started

    world.maintain(force=True)
    deadline = time.monotonic() + WAIT
    while world.get_plan(planned.id).record.world_id != world.id:
        assert time.monotonic() < deadline, "the plan was not taken over"
        time.sleep(0.01)
    assert states(world.get_plan(planned.id))["n"] == "running"  # not an abnormal termination
    world.storage.answer_request(running, None, _ran_elsewhere("n in helper"))
    world.run_pending()  # the inline executor looks at its answers when called
    plan = world.follow(planned.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert [runs(name) for name in ("n", "m", "p", "after")] == [0, 0, 1, 1]
    outputs = {a.input.get("name"): a.output.get("value") for a in plan.actions}
    assert (outputs["n"], outputs["m"]) == ("n in helper", "m in helper")
    pending = [h for h in plan.history if h.event == "step pending" and h.step_id is not None]
    assert [h.step_id for h in pending] == [sid(plan, "p")]
    assert "never taken" in pending[0].detail["reason"]
    assert world.storage.open_requests() == []


def test_a_live_world_keeps_its_plans_until_its_lease_expires(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", "idem:i", "after"])
    dead_world(world, heartbeat_age=5)  # alive: heard from 5 s ago
    force_running(world, planned, ["i"], DEAD)

    world.maintain(force=True)
    world.run_pending()
    plan = world.get_plan(planned.id)
    assert plan.record.world_id == DEAD
    assert states(plan) == {"i": "running", "after": "pending"}
    assert runs("i") == 0

    world.storage.heartbeat(DEAD, now() - timedelta(seconds=31))  # then it went silent
    plan = take_over(world, planned.id)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert [runs(name) for name in ("i", "after")] == [1, 1]


def test_an_abnormal_termination_goes_through_the_rescue_strategy(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    planned = world.plan(Graph, ["seq", "skip:s", "after"])
    force_running(world, planned, ["s"], DEAD)  # a world with no row at all: dead

    plan = take_over(world, planned.id)

    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {"s": "skipped", "after": "success"}
    assert runs("s") == 0


@pytest.mark.sql
def test_a_world_opened_on_a_database_with_orphaned_plans_recovers_them(
    world_factory: Any, probe: Probe
) -> None:
    client = world_factory(executor=None)
    planned = client.plan(Graph, ["seq", "idem:i", "after"])
    force_running(client, planned, ["i"], DEAD)

    with watching_plans():
        world = world_factory(lease=30.0)  # takes the plan over on start
        running_in(world, planned.id)
    plan = world.follow(planned.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert [runs(name) for name in ("i", "after")] == [1, 1]
    assert plan.record.world_id == world.id


@pytest.mark.sql
def test_suspended_steps_keep_waiting_for_their_timers_after_a_takeover(
    world_factory: Any, probe: Probe
) -> None:
    with frozen_clock() as clock, watching_plans():
        first = world_factory(executor="inline")
        triggered = first.trigger(Flow, ["seq", "w", "noop:after"], inputs={"w": {"timer": 300}})
        suspended("w")
        silent = first.storage.now() - timedelta(seconds=60)
        first.storage.heartbeat(first.id, silent)  # first went silent

        second = world_factory(lease=30.0)  # takes the plan over on start
        running_in(second, triggered.plan_id)
        plan = second.get_plan(triggered.plan_id)
        assert plan.record.world_id == second.id
        assert states(plan) == {"w": "suspended", "after": "pending"}
        advance(second, clock, 299)
        assert states(second.get_plan(plan.id))["w"] == "suspended"
        advance(second, clock, 1)
        done = second.follow(plan.id).result(timeout=WAIT)

    assert (done.state, done.result) == ("stopped", "success")
    assert probe.names("start") == ["w"]  # not started again
    assert [c[2] for c in probe.calls if c[0] == "event"] == ["timer"]


def test_a_world_declared_dead_stops_running_its_plans(world: World, probe: Probe) -> None:
    triggered = world.trigger(Flow, "w")
    suspended("w")
    world.storage.unregister_world(world.id)  # another world declared it dead

    world.maintain(force=True)
    world.run_pending()

    with pytest.raises(ConcurrentModification, match="lost its plans to another world"):
        triggered.wait(timeout=WAIT)
    assert world.id in [w.id for w in world.storage.worlds()]  # it carries on with new work
    assert world.trigger(Graph, ["seq", "a"]).wait(timeout=WAIT).result == "success"


def test_a_world_heartbeats_on_the_storages_clock_with_its_own_lease(
    world_factory: Any, probe: Probe
) -> None:
    world = world_factory(lease=30.0)
    before = world.storage.now()
    world.maintain(force=True)
    after = world.storage.now()
    (row,) = [w for w in world.storage.worlds() if w.id == world.id]
    assert before <= row.heartbeat_at <= after
    assert (row.lease, row.expires_at) == (30.0, row.heartbeat_at + timedelta(seconds=30))


@pytest.mark.sql
def test_a_clean_shutdown_unregisters_the_world(world_factory: Any, probe: Probe) -> None:
    world = world_factory()
    observer = world_factory(executor=None)
    world.close(timeout=WAIT)
    assert world.id not in [w.id for w in observer.storage.worlds()]


@pytest.mark.sql
def test_a_world_that_lost_its_plan_leaves_it_alone_at_shutdown(
    world_factory: Any, probe: Probe
) -> None:
    first = world_factory(executor="inline")
    triggered = first.trigger(Flow, "w")
    suspended("w")
    silent = first.storage.now() - timedelta(seconds=60)
    first.storage.heartbeat(first.id, silent)  # first went silent
    with watching_plans():
        second = world_factory(lease=30.0)
        running_in(second, triggered.plan_id)

    first.close(timeout=WAIT)  # it comes back only to shut down

    plan = second.get_plan(triggered.plan_id)
    assert (plan.state, plan.record.world_id) == ("running", second.id)
    assert [h.world_id for h in plan.history if h.event == "plan released"] == []
