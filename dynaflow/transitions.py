"""The one path of every plan and step state change.

A :class:`Changes` collects the changes of one transaction. Each change is checked against the
transition table (an illegal one raises :class:`~dynaflow.exceptions.IllegalTransition` before
anything is written), goes into a :class:`~dynaflow.persistence.base.Batch` as a
compare-and-set with its history row, is applied to the caller's in-memory record of the step,
and is signalled once the batch has committed (:meth:`Changes.committed`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from types import EllipsisType
from typing import Any, Protocol

from dynaflow import signals
from dynaflow.persistence.base import (
    Batch,
    BatchResult,
    Claim,
    EventRow,
    HistoryRow,
    PlanUpdate,
    StepUpdate,
    Storage,
)
from dynaflow.states import PlanResult, PlanState, StepState, check_plan, check_step

#: what waits for the commit: callbacks, each with the plan it belongs to (``None``: none)
After = list[tuple[str | None, Callable[[], None]]]


class StepView(Protocol):
    """What a transition needs of a step: its id and (mutable) state, for the signal its kind
    and action class. The executor's cache entries and :class:`DetachedStep` satisfy it."""

    id: int
    kind: Any
    action_class: str
    state: StepState


class DetachedStep:
    """A mutable stand-in for a step outside the executor's cache (an operator acting on a
    plan no world runs, the finalize phase)."""

    __slots__ = ("action_class", "id", "kind", "state")

    def __init__(self, id: int, kind: Any, action_class: str, state: StepState) -> None:
        self.id, self.kind, self.action_class, self.state = id, kind, action_class, state

    @classmethod
    def of(cls, step: Any) -> DetachedStep:
        return cls(step.id, step.kind, step.action_class, StepState(step.state))


class Changes:
    """State changes for one transaction, with what to do once it has committed."""

    __slots__ = ("after", "batch", "fenced", "sender", "world_id")

    def __init__(self, sender: Any, world_id: str, *, fenced: bool = False) -> None:
        #: the signal sender (the world)
        self.sender = sender
        self.world_id = world_id
        #: fencing: each plan's writes land only while ``world_id`` owns the plan
        self.fenced = fenced
        self.batch = self._new_batch()
        #: callbacks run after the commit, in order: signals, then futures
        self.after: After = []

    def _new_batch(self) -> Batch:
        return Batch(owner=self.world_id if self.fenced else None)

    def later(self, callback: Callable[[], None], plan_id: str | None = None) -> None:
        """Call ``callback`` once the batch has committed (not at all if it was about a plan
        whose writes were fenced out)."""
        self.after.append((plan_id, callback))

    def step(
        self,
        plan_id: str,
        step: StepView,
        state: StepState,
        at: datetime,
        fields: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
        *,
        event: str | None = None,
    ) -> None:
        """Move ``step`` from its current state to ``state`` (compare-and-set on the current
        one), setting ``fields``; history ``event`` defaults to ``"step <state>"``."""
        old = step.state
        check_step(old, state, what=f"step {step.id} of plan {plan_id}")
        self.batch.steps.append(StepUpdate(plan_id, step.id, old, state, fields or {}))
        self.batch.history.append(
            HistoryRow(plan_id, at, event or f"step {state}", step.id, self.world_id, detail)
        )
        step.state = state
        self.signal_step(plan_id, step)

    def claim(
        self,
        plan_id: str,
        steps: list[StepView],
        expect: frozenset[StepState],
        at: datetime,
        queue: str | None = None,
    ) -> None:
        """Ask to move ``steps`` to ``running`` (a compare-and-set on ``expect``; with
        ``queue``, only as many as that queue's limit has room for). Which ones moved is known
        after the commit: pass each to :meth:`running`."""
        for step in steps:
            check_step(step.state, StepState.RUNNING, what=f"step {step.id} of plan {plan_id}")
        ids = [s.id for s in steps]
        self.batch.claims.append(Claim(plan_id, ids, expect, self.world_id, at, queue=queue))

    def running(self, plan_id: str, step: StepView) -> None:
        """A claimed step did move to ``running`` (its history row came with the claim)."""
        step.state = StepState.RUNNING
        self.signal_step(plan_id, step)

    def plan(
        self,
        plan_id: str,
        old: PlanState,
        state: PlanState,
        at: datetime,
        fields: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
        *,
        result: PlanResult | None = None,
        owner: str | EllipsisType | None = ...,
        parent: tuple[str, int] | None = None,
    ) -> None:
        """Move the plan from ``old`` to ``state`` (compare-and-set on ``old`` and, unless it
        is ``...``, on the owning world), with ``result`` and other ``fields``. A sub-plan
        (``parent``: the plan and step that spawned it) that stops or pauses sends that step an
        event in the same transaction: ``{"sub_plan": id, "state": ..., "result": ...}``."""
        check_plan(old, state, what=f"plan {plan_id}")
        values = {"state": state, **(fields or {})}
        if result is not None:
            values["result"] = result
        self.batch.plans.append(PlanUpdate(plan_id, frozenset({old}), values, owner))
        self.batch.history.append(
            HistoryRow(plan_id, at, f"plan {state}", world_id=self.world_id, detail=detail)
        )
        if parent is not None and state in (PlanState.STOPPED, PlanState.PAUSED):
            payload = {"sub_plan": plan_id, "state": str(state), "result": str(result)}
            self.batch.events.append(EventRow(parent[0], parent[1], "event", payload, at))
        self.signal_plan(plan_id, state, result)

    def plan_fields(
        self,
        plan_id: str,
        expect: PlanState,
        fields: dict[str, Any],
        *,
        owner: str | EllipsisType | None = ...,
        history: str | None = None,
        at: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Change the plan without changing its state (its result, its owner), on the
        condition that it is still ``expect``; with ``history``, record that event."""
        self.batch.plans.append(PlanUpdate(plan_id, frozenset({expect}), fields, owner))
        if history is not None:
            assert at is not None
            self.batch.history.append(
                HistoryRow(plan_id, at, history, world_id=self.world_id, detail=detail)
            )

    def note(
        self,
        plan_id: str,
        at: datetime,
        event: str,
        step_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """A history row that goes with no state change (a rescue, a cancel request)."""
        self.batch.history.append(HistoryRow(plan_id, at, event, step_id, self.world_id, detail))

    def signal_plan(self, plan_id: str, state: PlanState, result: Any) -> None:
        sender = self.sender
        self.later(
            lambda: signals.emit(
                signals.plan_state_changed, sender, plan_id=plan_id, state=state, result=result
            ),
            plan_id,
        )

    def signal_step(self, plan_id: str, step: StepView) -> None:
        if not signals.step_state_changed.receivers:
            return
        kwargs = {
            "plan_id": plan_id,
            "step_id": step.id,
            "kind": step.kind,
            "action_class": step.action_class,
            "state": step.state,
        }
        sender = self.sender
        self.later(lambda: signals.emit(signals.step_state_changed, sender, **kwargs), plan_id)

    def write(self, storage: Storage) -> BatchResult:
        """Write what was collected (joining this thread's transaction, if there is one) and
        start a new batch; what waits for the commit stays until :meth:`committed`."""
        batch, self.batch = self.batch, self._new_batch()
        return storage.write(batch)

    def committed(self, fenced: set[str] | frozenset[str] = frozenset()) -> None:
        """Run what waited for the commit (signals, then futures), once; leave out what
        belongs to the ``fenced`` plans (their changes did not land)."""
        after, self.after = self.after, []
        for plan_id, callback in after:
            if plan_id is None or plan_id not in fenced:
                callback()
