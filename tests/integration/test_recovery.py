"""What an operator does with a failed plan, on both executors and every storage: resume it
(failed steps run again, finished ones do not, finalize runs again in full), skip a failed step
(with exactly the steps that consume its output; one transaction; ``on_skip()`` may veto),
retry one step; and the execution history that records all of it."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import ConcurrentModification, InvalidState, StepState, World
from dynaflow.persistence.base import StepUpdate

from .actions import WAIT, Probe, events_of, states, step_of, trigger
from .failing import (
    Graph,
    finalize_states,
    reached,
    repair,
    runs,
    sid,
    snapshot,
    watching_steps,
)

threads_only = pytest.mark.executors("threads")

#: a fails; c consumes a's output, d consumes c's, g consumes b's and d's; e is only ordered
#: after a (same sequence); f consumes b's
SKIP_GRAPH = [
    "seq",
    ["con", "fin:a", "fin:b"],
    ["con", "fin:c", "fin:d", "fin:e", "fin:f", "fin:g"],
]
SKIP_USES = {"c": ["a"], "d": ["c"], "f": ["b"], "g": ["b", "d"]}


# -- a failure pauses the plan ---------------------------------------------------------------


def test_a_run_error_pauses_the_plan_once_independent_branches_are_done(
    world: World, probe: Probe
) -> None:
    plan = trigger(
        world, Graph, ["con", ["seq", "fin:a", "fin:c"], ["seq", "fin:b", "fin:d"]], ["a"]
    )

    assert (plan.state, plan.result) == ("paused", "error")
    assert states(plan) == {"a": "error", "c": "pending", "b": "success", "d": "success"}
    error = step_of(plan, "a").error
    assert (error.class_name, error.message) == ("RuntimeError", "a failed")
    assert 'raise RuntimeError(f"{name} failed")' in error.traceback
    assert probe.names("finalize") == []  # finalize waits for every run step
    assert plan.ended_at is None


# -- resume ----------------------------------------------------------------------------------


def test_resume_reruns_the_failed_steps_and_leaves_the_finished_ones(
    world: World, probe: Probe
) -> None:
    flow = ["con", ["seq", "fin:a", "fin:c"], ["seq", "fin:b", "fin:d"], "fin:x"]
    paused = trigger(world, Graph, flow, ["a", "x"])
    assert states(paused) == {
        "a": "error",
        "c": "pending",  # waits for a
        "b": "success",
        "d": "success",
        "x": "error",
    }

    repair("a", "x")
    plan = world.resume(paused.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert {name: runs(name) for name in "abcdx"} == {"a": 2, "x": 2, "b": 1, "d": 1, "c": 1}
    assert sorted(probe.names("finalize")) == ["a", "b", "c", "d", "x"]
    assert step_of(plan, "a").error is None
    # the finished steps kept their first run: same start time, not run again
    for name in "bd":
        assert step_of(plan, name).started_at == step_of(paused, name).started_at


def test_resume_of_a_still_failing_step_pauses_again(world: World, probe: Probe) -> None:
    flow = ["con", ["seq", "a", "c"], ["seq", "b", "d"]]
    paused = trigger(world, Graph, flow, ["a"])

    again = world.resume(paused.id).result(timeout=WAIT)

    assert (again.state, again.result) == ("paused", "error")
    assert states(again) == {"a": "error", "c": "pending", "b": "success", "d": "success"}
    assert [runs(name) for name in "abcd"] == [2, 1, 0, 1]
    assert events_of(again, sid(again, "a")).count("step error") == 2


def test_resume_runs_the_finalize_phase_again_in_full(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "fin:a", "badfin:b", "fin:c"])
    # finalize runs in planning order in one transaction: a's succeeded, b's failed, and the
    # rollback took a's back too
    assert probe.names("finalize") == ["a", "b"]
    assert (paused.state, paused.result) == ("paused", "error")
    assert states(paused) == {"a": "success", "b": "success", "c": "success"}
    assert finalize_states(paused) == {"a": "pending", "b": "error", "c": "pending"}
    assert step_of(paused, "b", "finalize").error.message == "finalize of b failed"

    repair("finalize:b")
    plan = world.resume(paused.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.names("finalize") == ["a", "b", "a", "b", "c"]  # all of it, again
    assert [runs(name) for name in "abc"] == [1, 1, 1]  # no run step again
    assert finalize_states(plan) == {"a": "success", "b": "success", "c": "success"}


# -- skip ------------------------------------------------------------------------------------


def test_skip_takes_the_step_every_consumer_of_its_output_and_their_finalize_steps(
    world: World, probe: Probe
) -> None:
    paused = trigger(world, Graph, SKIP_GRAPH, ["a"], SKIP_USES)
    assert states(paused)["a"] == "error"

    plan = world.skip(paused.id, sid(paused, "a")).result(timeout=WAIT)

    assert plan == world.get_plan(paused.id)
    assert (plan.state, plan.result) == ("paused", "warning")
    assert states(plan) == {
        "a": "skipped",  # the failed step
        "c": "skipped",  # consumes a's output
        "d": "skipped",  # consumes c's: transitively
        "g": "skipped",  # consumes d's (and b's)
        "b": "success",
        "e": "pending",  # only ordered after a: runs after resume
        "f": "pending",  # consumes b's
    }
    assert finalize_states(plan) == {
        "a": "skipped",
        "c": "skipped",
        "d": "skipped",
        "g": "skipped",
        "b": "pending",
        "e": "pending",
        "f": "pending",
    }
    assert sorted(probe.names("run")) == ["a", "b"]
    skipped = [h for h in plan.history if h.event == "step skipped"]
    assert {h.step_id for h in skipped} == {
        sid(plan, name, kind) for name in "acdg" for kind in ("run", "finalize")
    }
    assert {h.world_id for h in skipped} == {world.id}
    because = {h.step_id: (h.detail or {}).get("because_of") for h in skipped}
    assert because.pop(sid(plan, "a")) is None
    assert set(because.values()) == {sid(plan, "a")}


def test_steps_merely_ordered_after_a_skipped_step_run_after_resume(
    world: World, probe: Probe
) -> None:
    paused = trigger(world, Graph, SKIP_GRAPH, ["a"], SKIP_USES)
    world.skip(paused.id, sid(paused, "a")).result(timeout=WAIT)

    plan = world.resume(paused.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {
        "a": "skipped",
        "b": "success",
        "c": "skipped",
        "d": "skipped",
        "e": "success",
        "f": "success",
        "g": "skipped",
    }
    assert [runs(name) for name in "abcdefg"] == [1, 1, 0, 0, 1, 1, 0]
    assert plan.action(step_of(plan, "f").action_id).output == {"value": "f+b"}
    # the finalize phase runs the finalize steps that were not skipped
    assert sorted(probe.names("finalize")) == ["b", "e", "f"]
    assert finalize_states(plan) == {
        "a": "skipped",
        "b": "success",
        "c": "skipped",
        "d": "skipped",
        "e": "success",
        "f": "success",
        "g": "skipped",
    }


def test_skip_with_resume_skips_and_resumes_in_one_call(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])

    plan = world.skip(paused.id, sid(paused, "a"), resume=True).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {"a": "skipped", "b": "success"}
    assert probe.names("run") == ["a", "b"]


def test_on_skip_is_called_first_and_its_veto_changes_nothing(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "veto:a", "b", "c"], ["a"], {"b": ["a"]})
    before = snapshot(paused)

    with pytest.raises(InvalidState) as refused:
        world.skip(paused.id, sid(paused, "a"), resume=True)

    message = str(refused.value)
    assert "on_skip() refused to skip step" in message
    assert "PermissionError: a holds a lock that must be released by hand" in message
    assert "nothing was skipped" in message
    assert isinstance(refused.value.__cause__, PermissionError)
    assert probe.names("on_skip") == ["a"]
    assert snapshot(world.get_plan(paused.id)) == before
    assert runs("c") == 0  # resume=True did not resume either

    repair("skip:a")  # the operator released the lock: on_skip() agrees now
    plan = world.skip(paused.id, sid(paused, "a"), resume=True).result(timeout=WAIT)
    assert probe.names("on_skip") == ["a", "a"]
    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {"a": "skipped", "b": "skipped", "c": "success"}


class ConcurrentWriter:
    """Moves one step to ``cancelled`` behind the operator's back, right after the skip has
    read the plan (another process changing the same plan at that moment)."""

    def __init__(self, world: World, plan_id: str, step_id: int) -> None:
        self.storage, self.plan_id, self.step_id = world.storage, plan_id, step_id
        self.original = world.storage.load_plan
        world.storage.load_plan = self.load_plan  # type: ignore[method-assign]

    def load_plan(self, plan_id: str, **options: Any) -> Any:
        plan = self.original(plan_id, **options)
        if plan_id == self.plan_id and plan.step(self.step_id).state == StepState.PENDING:
            update = StepUpdate(plan_id, self.step_id, StepState.PENDING, StepState.CANCELLED)
            assert self.storage.update_steps([update]) == []
        return plan


def test_a_skip_is_one_transaction_nothing_is_half_skipped(world: World, probe: Probe) -> None:
    uses = {"b": ["a"], "c": ["b"], "d": ["c"]}
    paused = trigger(world, Graph, ["seq", "a", "b", "c", "d"], ["a"], uses)
    last = sid(paused, "d")  # the last step the skip would change
    ConcurrentWriter(world, paused.id, last)

    with pytest.raises(ConcurrentModification, match="nothing was skipped"):
        world.skip(paused.id, sid(paused, "a"))

    plan = world.get_plan(paused.id)
    assert (plan.state, plan.result) == ("paused", "error")
    assert states(plan) == {"a": "error", "b": "pending", "c": "pending", "d": "cancelled"}
    assert "step skipped" not in [h.event for h in plan.history]


# -- retry of one step -----------------------------------------------------------------------


def test_retry_reruns_one_failed_step_and_the_plan_goes_on_from_there(
    world: World, probe: Probe
) -> None:
    flow = ["con", ["seq", "fin:a", "fin:c"], ["seq", "fin:b", "fin:d"]]
    paused = trigger(world, Graph, flow, ["a", "b"])
    assert states(paused) == {"a": "error", "c": "pending", "b": "error", "d": "pending"}

    repair("a", "b")  # both would succeed now: only the retried one runs
    plan = world.retry(paused.id, sid(paused, "a")).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("paused", "error")
    assert states(plan) == {"a": "success", "c": "success", "b": "error", "d": "pending"}
    assert [runs(name) for name in "abcd"] == [2, 1, 1, 0]
    assert probe.names("finalize") == []

    plan = world.retry(paused.id, sid(paused, "b")).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert [runs(name) for name in "abcd"] == [2, 2, 1, 1]
    assert sorted(probe.names("finalize")) == ["a", "b", "c", "d"]


def test_retry_of_a_step_that_fails_again_pauses_the_plan_again(world: World, probe: Probe) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a"])
    plan = world.retry(paused.id, sid(paused, "a")).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    assert [runs(name) for name in "ab"] == [2, 0]


@threads_only
def test_retry_of_a_failed_step_while_the_plan_still_runs(world: World, probe: Probe) -> None:
    with watching_steps():
        triggered = world.trigger(Graph, ["con", ["seq", "a", "c"], "gate:g"], ["a"])
        probe.wait("arrived:g")
        plan = world.get_plan(triggered.plan_id)
        a = sid(plan, "a")
        reached(world, a, "error")
        assert world.get_plan(plan.id).state == "running"  # g still runs

        repair("a")
        retried = world.retry(plan.id, a)
        reached(world, sid(plan, "c"), "success")
        assert not retried.done()  # it ends with the execution: g still runs
        probe.event("release").set()
        done = retried.result(timeout=WAIT)

    assert (done.state, done.result) == ("stopped", "success")
    assert [runs(name) for name in "acg"] == [2, 1, 1]
    assert triggered.wait(timeout=WAIT).result == "success"


# -- history ---------------------------------------------------------------------------------


def test_history_records_every_state_change_with_time_event_and_world(
    world: World, probe: Probe
) -> None:
    paused = trigger(world, Graph, ["seq", "a", "b"], ["a", "b"])
    world.skip(paused.id, sid(paused, "a"), resume=True).result(timeout=WAIT)  # b fails
    repair("b")
    plan = world.retry(paused.id, sid(paused, "b")).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "warning")
    a, b = sid(plan, "a"), sid(plan, "b")

    executed = [(h.event, h.step_id) for h in plan.history]
    executed = executed[executed.index(("plan planned", None)) + 1 :]
    assert executed == [
        ("plan running", None),
        ("step running", a),
        ("step error", a),
        ("plan paused", None),
        ("operator skip", a),
        ("step skipped", a),  # skip
        ("plan running", None),  # ... and resume
        ("step running", b),
        ("step error", b),
        ("plan paused", None),
        ("operator retry", b),
        ("plan running", None),  # retry of b
        ("step running", b),
        ("step success", b),
        ("plan stopped", None),
    ]
    assert {h.world_id for h in plan.history} == {world.id}
    times = [h.at for h in plan.history]
    assert times == sorted(times)
    assert plan.created_at <= times[0]
    assert times[-1] == plan.ended_at
    errors = [h for h in plan.history if h.event == "step error"]
    assert [h.step_id for h in errors] == [a, b]
    for row, name in zip(errors, "ab", strict=True):
        assert row.detail is not None
        error = row.detail["error"]
        assert (error["class_name"], error["message"]) == ("RuntimeError", f"{name} failed")
        assert f"RuntimeError: {name} failed" in error["traceback"]


@pytest.mark.sql
def test_history_names_the_world_behind_each_change(world_factory: Any, probe: Probe) -> None:
    first = world_factory()
    paused = trigger(first, Graph, ["seq", "a", "b"], ["a"])
    operator = world_factory(executor=None)
    operator.skip(paused.id, sid(paused, "a"))
    second = world_factory()
    plan = second.resume(paused.id).result(timeout=WAIT)

    assert (plan.state, plan.result) == ("stopped", "warning")
    by = {(h.event, h.step_id): h.world_id for h in plan.history if h.event != "plan running"}
    a, b = sid(plan, "a"), sid(plan, "b")
    assert by[("step error", a)] == first.id
    assert by[("plan paused", None)] == first.id
    assert by[("step skipped", a)] == operator.id
    assert by[("step success", b)] == second.id
    assert by[("plan stopped", None)] == second.id
    assert [h.world_id for h in plan.history if h.event == "plan running"] == [first.id, second.id]
    assert plan.record.world_id == second.id
