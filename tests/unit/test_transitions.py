"""The one path of state changes: checked, written with history, cached, signalled after commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dynaflow import IllegalTransition, PlanResult, PlanState, StepState, signals
from dynaflow.transitions import Changes, DetachedStep

AT = datetime(2026, 12, 1, tzinfo=UTC)


def step(state: StepState) -> DetachedStep:
    return DetachedStep(3, "run", "app.Thing", state)


def test_a_legal_step_change_is_written_with_history_and_cached() -> None:
    changes = Changes(object(), "w1")
    s = step(StepState.RUNNING)
    changes.step("p", s, StepState.SUCCESS, AT, {"ended_at": AT})
    [update] = changes.batch.steps
    assert (update.expect, update.state, update.fields) == (
        StepState.RUNNING,
        StepState.SUCCESS,
        {"ended_at": AT},
    )
    [row] = changes.batch.history
    assert (row.event, row.step_id, row.world_id, row.at) == ("step success", 3, "w1", AT)
    assert s.state == StepState.SUCCESS


def test_an_illegal_step_change_raises_and_writes_nothing() -> None:
    changes = Changes(object(), "w1")
    s = step(StepState.SUCCESS)
    with pytest.raises(IllegalTransition, match="step 3 of plan p cannot go from success"):
        changes.step("p", s, StepState.RUNNING, AT)
    with pytest.raises(IllegalTransition):
        changes.claim("p", [s], frozenset({StepState.PENDING}), AT)
    assert not changes.batch
    assert s.state == StepState.SUCCESS


def test_an_illegal_plan_change_raises_and_writes_nothing() -> None:
    changes = Changes(object(), "w1")
    with pytest.raises(IllegalTransition, match="plan p cannot go from stopped to running"):
        changes.plan("p", PlanState.STOPPED, PlanState.RUNNING, AT)
    assert not changes.batch


def test_signals_wait_for_the_commit() -> None:
    seen: list[tuple[str, Any]] = []

    def on_step(sender: Any, **kw: Any) -> None:
        seen.append(("step", kw["state"]))

    def on_plan(sender: Any, **kw: Any) -> None:
        seen.append(("plan", kw["state"]))

    signals.step_state_changed.connect(on_step)
    signals.plan_state_changed.connect(on_plan)
    try:
        changes = Changes(object(), "w1")
        changes.step("p", step(StepState.RUNNING), StepState.ERROR, AT)
        changes.plan("p", PlanState.RUNNING, PlanState.PAUSED, AT, result=PlanResult.ERROR)
        assert seen == []
        changes.committed()
        assert seen == [("step", StepState.ERROR), ("plan", PlanState.PAUSED)]
        changes.committed()  # once only
        assert len(seen) == 2
    finally:
        signals.step_state_changed.disconnect(on_step)
        signals.plan_state_changed.disconnect(on_plan)
