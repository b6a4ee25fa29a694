"""What travels to the engine's inbox: one frozen dataclass per kind of request or report.

``World`` never builds these; it calls :class:`~dynaflow.executor.engine.Engine` methods,
which queue them. Workers queue :class:`StepDone` and :class:`Finalized`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from dynaflow.execution_plan import ExecutionPlan, StepError
from dynaflow.executor.steps import StepOutcome
from dynaflow.persistence.base import RequestRow
from dynaflow.runtime import PlanRuntime
from dynaflow.states import PlanResult, PlanState, StepState


@dataclass(frozen=True, slots=True)
class Takeover:
    """Execute a plan left ``running`` by another world: released by one that shut down
    (``from_world`` is ``None``) or owned by one whose lease expired."""

    from_world: str | None


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a planned or paused plan, or take over a running one (``takeover``); ``only``: of
    its failed steps, re-run just this one (a retry of a paused plan's step)."""

    plan_id: str
    future: Future[Any]
    takeover: Takeover | None = None
    only: int | None = None
    #: another world started it first: follow that execution rather than fail
    follow_if_taken: bool = False
    #: the request (from another process) this execution answers: deleted when the plan is
    #: claimed, answered with the error if it cannot be
    request: int | None = None
    #: the plan as just loaded by whoever asked (not loaded again; the claim is a
    #: compare-and-set on its states all the same)
    plan: ExecutionPlan | None = None


@dataclass(frozen=True, slots=True)
class RemoteDone:
    """Another world answered a step this world offered it (its outcome, or why not)."""

    row: RequestRow


@dataclass(frozen=True, slots=True)
class RetryStep:
    """Run a failed step of a plan executing here again now."""

    plan_id: str
    step_id: int
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class StepDone:
    """A worker's report: one run (or cancel) call of a step ended. ``origin`` is the runtime
    it ran for: an outcome for a runtime the engine has since dropped is not recorded."""

    outcome: StepOutcome
    origin: PlanRuntime


@dataclass(frozen=True, slots=True)
class FinalizeResult:
    state: PlanState
    result: PlanResult
    #: the finalize steps' new states, as the finalize transaction committed them
    steps: tuple[tuple[int, StepState], ...]
    #: another world took the plan over meanwhile: nothing of the finalize landed
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Finalized:
    """A worker's report: the finalize phase of a plan ended."""

    plan_id: str
    result: FinalizeResult
    origin: PlanRuntime


@dataclass(frozen=True, slots=True)
class EventSent:
    """``World.event`` queued event ``event_id``; ``future`` resolves when it is handled."""

    plan_id: str
    step_id: int
    event_id: int
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class FailSuspended:
    """Error a suspended step without running it (its suspend callback raised)."""

    plan_id: str
    step_id: int
    error: StepError


@dataclass(frozen=True, slots=True)
class Cancel:
    plan_id: str
    future: Future[Any]
    abort: bool = False


@dataclass(frozen=True, slots=True)
class Halt:
    plan_id: str
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class Follow:
    """Resolve ``future`` when the plan's execution here ends (at once if it runs elsewhere)."""

    plan_id: str
    future: Future[Any]


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn`` inside a scheduler iteration (executors' own housekeeping)."""

    fn: Callable[[], None]


Message = (
    Execute
    | RetryStep
    | StepDone
    | Finalized
    | EventSent
    | FailSuspended
    | Cancel
    | Halt
    | Follow
    | Call
    | RemoteDone
)


def error_json(error: BaseException | None) -> dict[str, Any] | None:
    """How an operator's error travels back to the process that asked: its class and message."""
    if error is None:
        return None
    return {"type": type(error).__name__, "message": str(error)}
