"""Rescue strategies applied by the executor (``World(auto_rescue=True)``, the default) on both
executors and every storage: SKIP skips the failed step and what consumes its output and goes
on, FAIL stops the plan with result error, PAUSE waits for an operator; an action without a
strategy takes its parent's; over several failed steps all SKIP -> skip, all FAIL -> fail,
anything else -> pause."""

from __future__ import annotations

from typing import Any

import pytest

from dynaflow import InvalidState, World

from .actions import WAIT, Probe, states, trigger
from .failing import GRAPHS, Graph, SkipGraph, finalize_states, repair, runs, sid

#: how strategies combine does not depend on the storage: these run on memory only
memory_only = pytest.mark.storages("memory")


def rescues(plan: Any) -> list[dict[str, Any]]:
    """The ``detail`` of each "plan rescued" history row."""
    return [h.detail for h in plan.history if h.event == "plan rescued"]


# -- one failed step -------------------------------------------------------------------------


def test_skip_skips_the_step_and_its_consumers_and_the_plan_goes_on(
    world: World, probe: Probe
) -> None:
    flow = ["seq", ["con", "skip:a", "b"], ["con", "c", "d", "e"]]
    plan = trigger(world, Graph, flow, ["a"], {"c": ["a"], "d": ["c"]})

    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {
        "a": "skipped",
        "b": "success",
        "c": "skipped",
        "d": "skipped",
        "e": "success",  # only ordered after a: runs
    }
    assert [runs(name) for name in "abcde"] == [1, 1, 0, 0, 1]
    assert rescues(plan) == [{"strategy": "skip", "steps": [sid(plan, "a")]}]
    assert step_error(plan, "a") == "a failed"  # what went wrong is kept on the skipped step
    skipped = [h for h in plan.history if h.event == "step skipped"]
    assert {h.step_id for h in skipped} == {sid(plan, name) for name in "acd"}
    assert {(h.detail or {}).get("reason") for h in skipped} == {"rescue strategy SKIP"}


def step_error(plan: Any, name: str) -> str | None:
    errors = [
        h.detail["error"]["message"]
        for h in plan.history
        if h.event == "step error" and h.step_id == sid(plan, name) and h.detail
    ]
    return errors[-1] if errors else None


def test_skip_of_an_action_with_a_finalize_step_skips_that_too(world: World, probe: Probe) -> None:
    plan = trigger(world, Graph, ["seq", "skipfin:a", "fin:b"], ["a"])
    assert (plan.state, plan.result) == ("stopped", "warning")
    assert probe.names("finalize") == ["b"]
    assert finalize_states(plan) == {"a": "skipped", "b": "success"}


def test_fail_stops_the_plan_with_result_error(world: World, probe: Probe) -> None:
    plan = trigger(world, Graph, ["seq", ["con", "fail:a", "b"], "c"], ["a"])

    assert (plan.state, plan.result) == ("stopped", "error")
    assert plan.ended_at is not None
    assert states(plan)["a"] == "error"
    assert [runs(name) for name in "abc"] == [1, 1, 0]  # nothing after a runs
    assert rescues(plan) == []
    with pytest.raises(InvalidState, match="only a paused plan can be resumed"):
        world.resume(plan.id)


def test_pause_waits_for_an_operator(world: World, probe: Probe) -> None:
    plan = trigger(world, SkipGraph, ["seq", "pause:a", "b"], ["a"])  # the leaf's PAUSE wins
    assert (plan.state, plan.result) == ("paused", "error")
    assert rescues(plan) == []
    repair("a")
    assert world.resume(plan.id).result(timeout=WAIT).result == "success"


def test_no_rescue_without_auto_rescue(world_factory: Any, probe: Probe) -> None:
    world = world_factory(auto_rescue=False)
    plan = trigger(world, Graph, ["seq", "skip:a", "b"], ["a"])
    assert (plan.state, plan.result) == ("paused", "error")
    plan = trigger(world, Graph, ["seq", "fail:x", "y"], ["x"])
    assert (plan.state, plan.result) == ("paused", "error")


# -- combined over the failed steps ----------------------------------------------------------


@memory_only
@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("skip", "skip", ("stopped", "warning")),
        ("fail", "fail", ("stopped", "error")),
        ("skip", "fail", ("paused", "error")),
        ("skip", "pause", ("paused", "error")),
        ("fail", "pause", ("paused", "error")),
        ("skip", "leaf", ("paused", "error")),  # no strategy anywhere: PAUSE
    ],
)
def test_strategies_combine_over_the_failed_steps(
    world: World, probe: Probe, first: str, second: str, outcome: tuple[str, str]
) -> None:
    # both fail in the same round: the strategy is decided once nothing else can move
    flow = ["seq", ["con", f"{first}:a", f"{second}:b", "c"], "d"]
    plan = trigger(world, Graph, flow, ["a", "b"])

    assert (plan.state, plan.result) == outcome
    if outcome == ("stopped", "warning"):
        assert states(plan) == {"a": "skipped", "b": "skipped", "c": "success", "d": "success"}
        both = sorted([sid(plan, "a"), sid(plan, "b")])
        assert rescues(plan) == [{"strategy": "skip", "steps": both}]
    else:
        assert states(plan) == {"a": "error", "b": "error", "c": "success", "d": "pending"}
        assert rescues(plan) == []


@memory_only
@pytest.mark.parametrize(
    ("root", "sub", "outcome"),
    [
        # a leaf without a strategy takes its nearest ancestor's
        ("skip", "graph", ("stopped", "warning")),  # both leaves under SkipGraph
        ("graph", "skip", ("paused", "error")),  # x under Graph (PAUSE), y under SkipGraph
        ("fail", "fail", ("stopped", "error")),
        ("fail", "skip", ("paused", "error")),  # x FAIL (root), y SKIP (its parent)
        ("skip", "fail", ("paused", "error")),
        ("skip", "pause", ("paused", "error")),
    ],
)
def test_actions_without_a_strategy_take_their_parents(
    world: World, probe: Probe, root: str, sub: str, outcome: tuple[str, str]
) -> None:
    # x is a child of the root Graph; y a grandchild, under a Graph of class ``sub``
    plan = trigger(
        world, GRAPHS[root], ["seq", ["con", "x", ["sub", "y"]], "z"], ["x", "y"], sub=sub
    )
    assert (plan.state, plan.result) == outcome
    assert runs("z") == (1 if outcome[1] == "warning" else 0)


@memory_only
def test_a_child_strategy_wins_over_its_parents(world: World, probe: Probe) -> None:
    plan = trigger(world, SkipGraph, ["seq", ["sub", "x"], "z"], ["x"], sub="fail")
    assert (plan.state, plan.result) == ("stopped", "error")  # FailGraph's, not the root's SKIP


# -- on_skip and the loop guard --------------------------------------------------------------


def test_an_on_skip_veto_pauses_instead_of_skipping(world: World, probe: Probe) -> None:
    plan = trigger(world, Graph, ["seq", "skipveto:a", "b"], ["a"])

    assert (plan.state, plan.result) == ("paused", "error")
    assert probe.names("on_skip") == ["a"]
    assert states(plan) == {"a": "error", "b": "pending"}
    assert rescues(plan) == []

    repair("skip:a")  # on_skip() agrees now; a still fails: resumed, it is rescued this time
    plan = world.resume(plan.id).result(timeout=WAIT)
    assert (plan.state, plan.result) == ("stopped", "warning")
    assert probe.names("on_skip") == ["a", "a"]
    assert [runs(name) for name in "ab"] == [2, 1]


def test_each_different_failure_is_rescued_once(world: World, probe: Probe) -> None:
    # the loop guard lets a plan be rescued again when a different step failed
    plan = trigger(world, Graph, ["seq", "skip:a", "b", "skip:c", "d"], ["a", "c"])

    assert (plan.state, plan.result) == ("stopped", "warning")
    assert states(plan) == {"a": "skipped", "b": "success", "c": "skipped", "d": "success"}
    assert rescues(plan) == [
        {"strategy": "skip", "steps": [sid(plan, "a")]},
        {"strategy": "skip", "steps": [sid(plan, "c")]},
    ]
    assert [runs(name) for name in "abcd"] == [1, 1, 1, 1]
