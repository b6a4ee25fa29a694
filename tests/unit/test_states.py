"""The one transition table of plan and step states, and how a plan's result is derived."""

from __future__ import annotations

import itertools

import pytest

from dynaflow import DynaflowError, IllegalTransition, PlanResult, PlanState, StepState
from dynaflow.states import PLAN_TRANSITIONS, STEP_TRANSITIONS, check_plan, check_step, plan_result

P, S = PlanState, StepState

ALLOWED_STEP = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.SKIPPED),
    (S.PENDING, S.CANCELLED),
    (S.RUNNING, S.SUCCESS),
    (S.RUNNING, S.ERROR),
    (S.RUNNING, S.SUSPENDED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PENDING),
    (S.SUSPENDED, S.RUNNING),
    (S.SUSPENDED, S.SUCCESS),
    (S.SUSPENDED, S.ERROR),
    (S.SUSPENDED, S.CANCELLED),
    (S.ERROR, S.RUNNING),
    (S.ERROR, S.SKIPPED),
    (S.ERROR, S.CANCELLED),
}

ALLOWED_PLAN = {
    (P.SCHEDULED, P.PLANNED),
    (P.SCHEDULED, P.STOPPED),
    (P.PLANNED, P.RUNNING),
    (P.PLANNED, P.STOPPED),
    (P.RUNNING, P.PAUSED),
    (P.RUNNING, P.STOPPED),
    (P.PAUSED, P.RUNNING),
    (P.PAUSED, P.STOPPED),
}


def test_states_are_the_documented_strings() -> None:
    assert [s.value for s in PlanState] == [
        "scheduled",
        "planned",
        "running",
        "paused",
        "stopped",
    ]
    assert [r.value for r in PlanResult] == ["pending", "success", "warning", "error", "cancelled"]
    assert [s.value for s in StepState] == [
        "pending",
        "running",
        "suspended",
        "success",
        "error",
        "skipped",
        "cancelled",
    ]
    assert PlanState.STOPPED == "stopped" and StepState("error") is StepState.ERROR


@pytest.mark.parametrize(("old", "new"), list(itertools.product(StepState, StepState)))
def test_step_transitions_follow_the_table(old: StepState, new: StepState) -> None:
    if (old, new) in ALLOWED_STEP:
        check_step(old, new)
        check_step(old.value, new.value)  # plain strings are accepted too
    else:
        with pytest.raises(IllegalTransition, match=f"cannot go from {old} to {new}"):
            check_step(old, new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(PlanState, PlanState)))
def test_plan_transitions_follow_the_table(old: PlanState, new: PlanState) -> None:
    if (old, new) in ALLOWED_PLAN:
        check_plan(old, new)
    else:
        with pytest.raises(IllegalTransition, match=f"cannot go from {old} to {new}"):
            check_plan(old, new)


def test_finished_states_have_no_way_out() -> None:
    for state in (S.SUCCESS, S.SKIPPED, S.CANCELLED):
        assert STEP_TRANSITIONS[state] == frozenset()
    assert PLAN_TRANSITIONS[P.STOPPED] == frozenset()
    assert issubclass(IllegalTransition, DynaflowError)


def test_the_error_message_names_what_moved() -> None:
    with pytest.raises(IllegalTransition, match="step 4 of plan x cannot go from success"):
        check_step("success", "running", what="step 4 of plan x")


@pytest.mark.parametrize(
    ("states", "result"),
    [
        ([], PlanResult.SUCCESS),
        ([S.SUCCESS, S.SUCCESS], PlanResult.SUCCESS),
        ([S.SUCCESS, S.SKIPPED], PlanResult.WARNING),
        ([S.SKIPPED, S.ERROR], PlanResult.ERROR),
        ([S.ERROR, S.CANCELLED, S.SKIPPED], PlanResult.CANCELLED),
        ([S.SUCCESS, S.PENDING, S.ERROR], PlanResult.ERROR),
    ],
)
def test_plan_result_cancelled_beats_error_beats_warning_beats_success(
    states: list[StepState], result: PlanResult
) -> None:
    assert plan_result(states) == result
