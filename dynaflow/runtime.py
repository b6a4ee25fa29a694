"""The in-memory record of one plan being executed (the executor's cache) or operated on. The
database stays the source of truth: a runtime is built from :meth:`Storage.load_plan` and every
state change to it goes through :class:`~dynaflow.transitions.Changes`, which writes it too."""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from dynaflow.execution_plan import ExecutionPlan
from dynaflow.states import DONE_STEP_STATES, StepKind, StepState


class Cancel(Enum):
    """Where a run step is in its plan's cancellation."""

    #: the plan is not being cancelled
    NONE = "none"
    #: the plan is being cancelled (``Action.cancel_requested`` is true)
    REQUESTED = "requested"
    #: a ``Cancellable`` step is to get its ``cancel()``/``abort()`` call when it next suspends
    DUE = "due"
    #: ``cancel()``/``abort()`` was called: the step ends ``cancelled`` when it next finishes
    SENT = "sent"


@dataclass(slots=True)
class StepRuntime:
    id: int
    kind: StepKind
    action_id: int
    action_class: str
    state: StepState
    started_at: Any = None
    #: run steps that wait for this one
    successors: list[int] = field(default_factory=list)
    #: predecessors not yet done
    waiting_on: int = 0
    #: handed to a worker (claimed, result not back yet)
    busy: bool = False
    #: a barrier node joining the members of a wide sequence, not a step
    barrier: bool = False
    #: ids of sent events seen while the step could not take them (rejected if it finishes)
    waiting_events: set[int] = field(default_factory=set)
    #: its part in a cancellation of the plan (read from any thread by ``cancel_requested``)
    cancel: Cancel = Cancel.NONE
    #: the cancellation is an abort: ``abort()`` is called in place of ``cancel()``
    abort: bool = False
    #: why the step timed out while running: its outcome becomes this error
    timed_out: str | None = None
    #: the id of the event the step is handling now
    handling: int | None = None
    #: with ``event_batches``: the other events handed over with it (consumed with it)
    batch: tuple[int, ...] = ()
    #: its action class takes its sent events in batches (resolved on first need)
    batches: bool | None = None
    #: whether the action is a Cancellable (resolved on first need)
    cancellable: bool | None = None
    #: the run attempt under a Retry policy (1: the first run)
    attempt: int = 1
    #: ids of the timers (plan_event, timeouts, retries) queued for the step
    timers: set[int] = field(default_factory=set)
    #: the executor queue its run phase goes to
    queue: str = "default"
    #: what the event being handed to it is and when it was sent (a timer: when it fell due)
    woken_by: tuple[str, datetime] | None = None

    @property
    def cancel_requested(self) -> bool:
        """The plan is being cancelled (``Action.cancel_requested`` reads it, from any thread)."""
        return self.cancel is not Cancel.NONE


@dataclass(slots=True)
class ActionRuntime:
    id: int
    action_class: str
    input: dict[str, Any]
    output: dict[str, Any]
    parent_id: int | None = None


class PlanRuntime:
    """Step states, the run graph and the actions of one plan an executor is running."""

    #: a step another world offered, run here for it (see :mod:`dynaflow.executor.offered`)
    offered = False

    def __init__(self, plan: ExecutionPlan, rerun: Collection[int] | None = None) -> None:
        """``rerun``: the failed run steps that run again — ``None`` for all of them (resume),
        else only these (empty when taking a running plan over, one id for a retry)."""
        self.plan_id = plan.id
        #: a sub-plan's parent plan and step (told when this plan stops or pauses)
        self.parent = (plan.parent_id, plan.parent_step_id) if plan.parent_id is not None else None
        self.futures: list[Future[Any]] = []
        #: run steps another world runs for the plan's earlier owner, with their queue: on
        #: takeover they stay running, and their answers come to the new owner
        self.adopted: dict[int, str] = {}
        self.actions = {
            a.id: ActionRuntime(a.id, a.action_class, a.input, a.output, a.parent_id)
            for a in plan.actions
        }
        self.steps: dict[int, StepRuntime] = {}
        self.finalize_order: list[int] = []
        for s in plan.steps:
            if s.kind == StepKind.PLAN:
                continue
            self.steps[s.id] = step = StepRuntime(
                s.id, s.kind, s.action_id, s.action_class, s.state, s.started_at
            )
            step.queue = s.queue
            if s.kind == StepKind.FINALIZE:
                self.finalize_order.append(s.id)
        self.finalize_order.sort(key=lambda sid: plan.step(sid).position)
        # barrier nodes only ever sit between real steps: count their predecessors first
        for _before, after in plan.edges:
            if after < 0 and after not in self.steps:
                self.steps[after] = StepRuntime(
                    after, StepKind.RUN, 0, "", StepState.SUCCESS, barrier=True
                )
        for before, after in sorted(plan.edges, key=lambda edge: edge[0] < 0):
            self.steps[before].successors.append(after)
            if self.steps[before].state not in DONE_STEP_STATES:
                self.steps[after].waiting_on += 1
                self.steps[after].state = (
                    StepState.PENDING if self.steps[after].barrier else self.steps[after].state
                )
        #: failed steps that stay failed for now (see ``rerun``)
        self.blocked: set[int] = {
            s.id
            for s in self.steps.values()
            if s.state == StepState.ERROR and rerun is not None and s.id not in rerun
        }
        self.ready: set[int] = set()
        self.refresh_ready()
        #: failed steps auto-rescue already rescued (its loop guard)
        self.rescued: set[int] = set()
        self.busy = 0
        self.finalizing = False
        #: world.cancel() was called: no new steps, Cancellable steps are told
        self.cancelling = False
        #: world.halt() was called: the plan is stopped; running steps' outcomes are recorded
        self.halted = False

    def refresh_ready(self) -> None:
        """Recompute the ready set from the step states (after a change of many at once)."""
        self.ready = {
            s.id
            for s in self.steps.values()
            if s.kind == StepKind.RUN
            and not s.barrier
            and not s.busy
            and s.waiting_on == 0
            and s.state in (StepState.PENDING, StepState.ERROR)
            and s.id not in self.blocked
        }

    def run_steps(self) -> list[StepRuntime]:
        return [s for s in self.steps.values() if s.kind == StepKind.RUN and not s.barrier]

    def step_states(self) -> list[StepState]:
        """States of every run and finalize step (not barriers)."""
        return [s.state for s in self.steps.values() if not s.barrier]

    def completed(self, step_id: int) -> None:
        """``step_id`` is done: count it off its successors (through barriers) and mark the
        ones with nothing left to wait for ready."""
        stack = list(self.steps[step_id].successors)
        while stack:
            node = self.steps[stack.pop()]
            node.waiting_on -= 1
            if node.waiting_on:
                continue
            if node.barrier:
                node.state = StepState.SUCCESS
                stack.extend(node.successors)
            elif node.state in (StepState.PENDING, StepState.ERROR) and node.id not in self.blocked:
                self.ready.add(node.id)

    def output_of(self, action_id: int) -> dict[str, Any]:
        return self.actions[action_id].output
