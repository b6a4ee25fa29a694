"""Plan and step states, and the one table of allowed transitions.

Every state change goes through :class:`dynaflow.transitions.Changes`, which checks it here
(:func:`check_step` / :func:`check_plan`) before it is written; the storage layer then makes the
change a compare-and-set, so two processes can never both move a step out of a state.
"""

from __future__ import annotations

from enum import StrEnum

from dynaflow.exceptions import IllegalTransition


class PlanState(StrEnum):
    """A plan is stored once planning has ended: ``planned``, or ``stopped`` if it failed;
    ``scheduled`` if it starts later (a delayed or chained plan)."""

    SCHEDULED = "scheduled"
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class PlanResult(StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    CANCELLED = "cancelled"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCESS = "success"
    ERROR = "error"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StepKind(StrEnum):
    PLAN = "plan"
    RUN = "run"
    FINALIZE = "finalize"


P, S = PlanState, StepState

PLAN_TRANSITIONS: dict[PlanState, frozenset[PlanState]] = {
    # started when due; stopped when cancelled, past its deadline or after a failed prerequisite
    P.SCHEDULED: frozenset({P.PLANNED, P.STOPPED}),
    P.PLANNED: frozenset({P.RUNNING, P.STOPPED}),
    P.RUNNING: frozenset({P.PAUSED, P.STOPPED}),
    P.PAUSED: frozenset({P.RUNNING, P.STOPPED}),
    P.STOPPED: frozenset(),
}

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    S.PENDING: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED}),
    # running -> pending: a step taken over after a crash is handed out again (idempotent actions)
    S.RUNNING: frozenset({S.SUCCESS, S.ERROR, S.SUSPENDED, S.CANCELLED, S.PENDING}),
    S.SUSPENDED: frozenset({S.RUNNING, S.SUCCESS, S.ERROR, S.CANCELLED}),
    S.ERROR: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED}),
    S.SUCCESS: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: Step states after which the step never runs again on its own.
FINISHED_STEP_STATES = frozenset({S.SUCCESS, S.SKIPPED, S.CANCELLED})
#: Step states that let the steps ordered after it go on.
DONE_STEP_STATES = frozenset({S.SUCCESS, S.SKIPPED})
#: Plan states in which a plan is being executed or waits for an operator.
ACTIVE_PLAN_STATES = frozenset({P.RUNNING, P.PAUSED})


def check_step(old: StepState | str, new: StepState | str, *, what: str = "step") -> None:
    """Raise :class:`IllegalTransition` unless a step may go from ``old`` to ``new``."""
    # states are str enums: the names look them up without building members (a hot path)
    allowed = STEP_TRANSITIONS.get(old)  # type: ignore[arg-type]
    if allowed is None or new not in allowed:
        raise IllegalTransition(f"{what} cannot go from {old!s} to {new!s}")


def check_plan(old: PlanState | str, new: PlanState | str, *, what: str = "plan") -> None:
    """Raise :class:`IllegalTransition` unless a plan may go from ``old`` to ``new``."""
    allowed = PLAN_TRANSITIONS.get(old)  # type: ignore[arg-type]
    if allowed is None or new not in allowed:
        raise IllegalTransition(f"{what} cannot go from {old!s} to {new!s}")


def plan_result(step_states: list[StepState]) -> PlanResult:
    """The result a plan has given its steps' states (DESIGN §4)."""
    seen = set(step_states)
    if S.CANCELLED in seen:
        return PlanResult.CANCELLED
    if S.ERROR in seen:
        return PlanResult.ERROR
    if S.SKIPPED in seen:
        return PlanResult.WARNING
    return PlanResult.SUCCESS
