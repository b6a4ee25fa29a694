"""The rows and batches the storage port takes and gives: updates, claims, events, new plans,
the executor's batch of writes and its result, plan filters, the fields each table allows.
:mod:`dynaflow.persistence.base` re-exports them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import EllipsisType
from typing import Any

from dynaflow.exceptions import ConfigurationError, InvalidArgument
from dynaflow.execution_plan import ActionRecord, PlanRecord, StepRecord
from dynaflow.persistence.cluster import RequestRow
from dynaflow.states import PlanResult, PlanState, StepState


@dataclass(slots=True)
class StepUpdate:
    """Move step ``(plan_id, step_id)`` from ``expect`` to ``state`` and set ``fields``.

    ``fields`` may hold ``started_at``, ``ended_at``, ``duration``, ``error`` (a JSON dict or
    None) and ``world_id``.
    """

    plan_id: str
    step_id: int
    expect: StepState
    state: StepState
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HistoryRow:
    plan_id: str
    at: datetime
    event: str
    step_id: int | None = None
    world_id: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(slots=True)
class EventRow:
    """An event queued for a step: sent (``kind="event"``), or a timer due at ``due_at``
    (``"timer"``: delivered to ``run(event)``; ``"timeout"``: errors the step if unfinished)."""

    plan_id: str
    step_id: int
    kind: str
    payload: Any
    created_at: datetime
    due_at: datetime | None = None
    #: assigned by the storage on insert; ascending in arrival order
    id: int | None = None


@dataclass(slots=True)
class NewPlan:
    """Everything planning produced, written by :meth:`Storage.insert_plan` in one go."""

    plan: PlanRecord
    actions: list[ActionRecord]
    steps: list[StepRecord]
    edges: list[tuple[int, int]]
    history: list[HistoryRow]
    #: the singleton keys the plan holds until it stops (see :meth:`Storage.insert_plan`)
    singletons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Claim:
    """Move steps ``step_ids`` of ``plan_id`` that are in one of ``expect`` to ``running``."""

    plan_id: str
    step_ids: list[int]
    expect: frozenset[StepState]
    world_id: str
    at: datetime
    #: the history event recorded for each step claimed (by :meth:`Storage.write`)
    event: str = "step running"
    #: the queue of these steps, when it may have a limit: only as many are claimed as the
    #: queue has room for (:meth:`Storage.queue_room`), in order; the rest are ``deferred``
    queue: str | None = None


@dataclass(slots=True)
class PlanUpdate:
    plan_id: str
    expect: frozenset[PlanState] | None
    fields: dict[str, Any]
    #: compare-and-set on the owning world too (``...``: any owner)
    owner: str | EllipsisType | None = ...


@dataclass(slots=True)
class Batch:
    """The writes of one executor iteration, committed together (group commit)."""

    plans: list[PlanUpdate] = field(default_factory=list)
    steps: list[StepUpdate] = field(default_factory=list)
    outputs: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    #: events and timers to queue (their ``id`` is set by the write)
    events: list[EventRow] = field(default_factory=list)
    #: ids of handled, rejected or dropped events to delete
    drop_events: list[int] = field(default_factory=list)
    #: fencing: the world making these writes. Each plan's writes land only if that world
    #: still owns the plan when the batch commits (a world that lost a plan to a takeover
    #: cannot change it); ``None``: unconditional
    owner: str | None = None
    #: plans this batch writes to without owning them (exempt from the fencing)
    unowned: set[str] = field(default_factory=set)
    #: more to notify when it commits (see :meth:`Storage.notify`)
    topics: list[str] = field(default_factory=list)
    #: ``"run"`` requests for steps this batch claims, stored only if the claim holds
    offers: list[RequestRow] = field(default_factory=list)
    #: requests a step's run left (a SubPlans step starting its children): (that step's plan,
    #: the request), stored with its outcome
    requests: list[tuple[str, RequestRow]] = field(default_factory=list)

    def plan_ids(self) -> set[str]:
        """The plans this batch writes to, which the fencing checks. Events it queues aside
        (anyone may send a plan an event: a sub-plan tells its parent it ended) and events it
        drops (only their ids are known)."""
        # plain loops: this runs for every batch the executor writes
        ids: set[str] = set()
        add = ids.add
        for rows in (self.plans, self.steps, self.history, self.claims):
            for row in rows:
                add(row.plan_id)
        for output in self.outputs:
            add(output[0])
        return ids

    def without(self, plans: set[str], dropped: dict[int, str]) -> Batch:
        """This batch less every write to ``plans`` (``dropped``: the dropped events' plans)."""
        return Batch(
            [u for u in self.plans if u.plan_id not in plans],
            [u for u in self.steps if u.plan_id not in plans],
            [o for o in self.outputs if o[0] not in plans],
            [h for h in self.history if h.plan_id not in plans],
            [c for c in self.claims if c.plan_id not in plans],
            [e for e in self.events if e.plan_id not in plans],
            [i for i in self.drop_events if dropped.get(i) not in plans],
            topics=list(self.topics),
            offers=[r for r in self.offers if r.plan_id not in plans],
            requests=[(origin, r) for origin, r in self.requests if origin not in plans],
        )

    def __bool__(self) -> bool:
        return bool(
            self.plans
            or self.steps
            or self.outputs
            or self.history
            or self.claims
            or self.events
            or self.drop_events
            or self.requests
        )


@dataclass(frozen=True, slots=True)
class PlanFilter:
    """Which plans :meth:`Storage.find_plans` and :meth:`Storage.count_plans` return: those
    matching every field that is set. ``state`` and ``result`` match any value given (an empty
    tuple: no plan); ``label``, ``action`` (the root action class name) and ``parent`` (the plan
    that spawned it) match exactly; ``text`` is a substring of the label or the id, in any case;
    ``created_after`` and ``created_before`` bound ``created_at`` (the first inclusive)."""

    state: tuple[PlanState, ...] | None = None
    result: tuple[PlanResult, ...] | None = None
    label: str | None = None
    action: str | None = None
    #: sub-plans of this plan
    parent: str | None = None
    text: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, record: PlanRecord) -> bool:
        """Whether ``record`` passes the filter (the SQL storage builds its WHERE from the
        same fields)."""
        created = record.created_at
        return (
            (self.state is None or record.state in self.state)
            and (self.result is None or record.result in self.result)
            and (self.label is None or record.label == self.label)
            and (self.action is None or record.root_action_class == self.action)
            and (self.parent is None or record.parent_id == self.parent)
            and (
                self.text is None
                or self.text.lower() in record.label.lower()
                or self.text.lower() in record.id.lower()
            )
            and (
                self.created_after is None
                or (created is not None and created >= self.created_after)
            )
            and (
                self.created_before is None
                or (created is not None and created < self.created_before)
            )
        )


#: every plan
ALL_PLANS = PlanFilter()
#: the plan columns :meth:`Storage.find_plans` can order by
ORDERABLE = ("created_at", "started_at", "ended_at", "label", "state", "result", "id")
#: the fields :meth:`Storage.update_plan` may set
PLAN_FIELDS = frozenset(
    {
        "label",
        "state",
        "result",
        "root_action_class",
        "key",
        "key_arguments",
        "created_at",
        "started_at",
        "ended_at",
        "world_id",
        "run_flow",
        "error",
    }
)
#: the fields a :class:`StepUpdate` may set
STEP_FIELDS = frozenset(
    {"started_at", "ended_at", "duration", "error", "world_id", "queue", "position", "progress"}
)


def plan_order(order_by: str) -> tuple[str, bool]:
    """The column and direction (descending?) of ``order_by``, a column of :data:`ORDERABLE`
    with ``-`` in front for descending."""
    column = order_by.lstrip("-")
    if column not in ORDERABLE:
        raise ConfigurationError(f"cannot order plans by {order_by!r}; use one of {ORDERABLE}")
    return column, order_by.startswith("-")


def check_fields(what: str, names: Iterable[str], allowed: frozenset[str]) -> None:
    """Raise :class:`InvalidArgument` for update fields of a ``what`` outside ``allowed``."""
    unknown = set(names) - allowed
    if unknown:
        raise InvalidArgument(
            f"cannot update {what} field(s) {sorted(unknown)}; use {sorted(allowed)}"
        )


@dataclass(slots=True)
class BatchResult:
    #: plans none of whose writes landed: the batch's ``owner`` no longer owns them
    fenced: set[str] = field(default_factory=set)
    #: (plan_id, step_id) pairs the claims moved to running
    claimed: set[tuple[str, int]] = field(default_factory=set)
    #: step updates whose compare-and-set failed (the row was in another state)
    step_conflicts: list[StepUpdate] = field(default_factory=list)
    #: plan updates whose compare-and-set failed
    plan_conflicts: list[PlanUpdate] = field(default_factory=list)
    #: (plan_id, step_id) pairs not claimed because their queue was at its limit
    deferred: set[tuple[str, int]] = field(default_factory=set)


#: plan states in which an execution has ended (a paused plan awaits an operator)
ENDED_STATES = frozenset({PlanState.STOPPED, PlanState.PAUSED})


def batch_topics(batch: Batch, result: BatchResult) -> list[str]:
    """What to notify for a committed batch: the plans whose execution it ended, and events
    it queued to be delivered at once (perhaps to a plan of another world)."""
    topics = []
    for update in batch.plans:
        state = update.fields.get("state")
        if state in ENDED_STATES and update.plan_id not in result.fenced:
            topics.append(f"p {update.plan_id}")
    if any(row.due_at is None for row in batch.events):
        topics.append("e *")
    topics.extend(batch.topics)
    return topics
