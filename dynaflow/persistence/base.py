"""The storage interface. Memory and SQL implementations both satisfy it; one contract suite
(``tests/contract``) checks both.

Conventions shared by every method:

* Every write joins the *ambient* transaction opened by :meth:`Storage.transaction` in the same
  thread, or runs in a transaction of its own when there is none.
* A missing plan id raises :class:`~dynaflow.exceptions.UnknownPlan`.
* State changes are compare-and-set: an update names the state it expects, and a row in another
  state is left alone and reported back, never overwritten.
* Datetimes go in and come out timezone-aware UTC.
* Errors are dynaflow's own (:mod:`dynaflow.exceptions`), never a bare ``ValueError`` or a
  driver's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from types import EllipsisType
from typing import Any

from dynaflow.exceptions import (
    ConcurrentModification,
    InvalidArgument,
    UnknownPlan,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    PlanRecord,
    StepRecord,
)
from dynaflow.persistence.cluster import (  # noqa: F401 (re-exported)
    DEFAULT_LEASE,
    ClusterStore,
    Listening,
    RequestRow,
    WorldRow,
    interrupted,
)
from dynaflow.persistence.filters import ALL_PLANS, PlanFilter, plan_order  # noqa: F401
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


#: the fields :meth:`Storage.update_plan` may set
PLAN_FIELDS = frozenset(
    {
        "label",
        "state",
        "result",
        "root_action_class",
        "key",
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
    {"started_at", "ended_at", "duration", "error", "world_id", "queue", "position"}
)


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


class Storage(ClusterStore):
    """Where execution plans live. Thread-safe."""

    #: the URL it was opened with, password hidden
    display_url: str = ""

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections. Further calls may fail."""

    @abstractmethod
    def savepoint(self) -> AbstractContextManager[Any]:
        """Inside a transaction: what the block writes is undone if it raises, and the rest of
        the transaction goes on (outside one: a transaction of its own)."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """An ambient transaction for this thread: writes made inside it commit together when
        the outermost block exits normally and roll back when it raises. Nested blocks join the
        outer one. Yields the connection application code may use (``None`` for memory)."""

    @abstractmethod
    def current_connection(self) -> Any:
        """The connection of this thread's ambient transaction, or ``None`` outside one."""

    # -- writes ----------------------------------------------------------------------------

    @abstractmethod
    def insert_plan(self, new: NewPlan) -> None:
        """Insert a plan with its actions, steps, edges and history rows.

        Raises :class:`~dynaflow.exceptions.ConcurrentModification` if the plan id or its
        ``key`` already exists."""

    def insert_plans(self, news: Sequence[NewPlan]) -> set[str]:
        """Insert many plans in one transaction (as :meth:`insert_plan` each); a plan whose
        id or key exists already is left out. Returns the ids left out."""
        existing: set[str] = set()
        with self.transaction():
            for new in news:
                try:
                    self.insert_plan(new)
                except ConcurrentModification:
                    existing.add(new.plan.id)
        return existing

    @abstractmethod
    def update_plan(
        self,
        plan_id: str,
        fields: dict[str, Any],
        expect: frozenset[PlanState] | None = None,
        owner: str | EllipsisType | None = ...,
    ) -> bool:
        """Set ``fields`` (state, result, started_at, ended_at, world_id, error) on the plan if its
        state is in ``expect`` (any state when ``None``) and, unless ``owner`` is ``...``, its
        ``world_id`` is ``owner`` (``None``: no owner). Returns whether the row changed.
        Another field raises :class:`~dynaflow.exceptions.InvalidArgument`."""

    @abstractmethod
    def update_steps(self, updates: Sequence[StepUpdate]) -> list[StepUpdate]:
        """Apply each update whose step is in its ``expect`` state; return those that were not.
        A field outside :data:`STEP_FIELDS` raises :class:`~dynaflow.exceptions.InvalidArgument`."""

    @abstractmethod
    def claim_steps(self, claim: Claim) -> list[int]:
        """Compare-and-set ``claim.step_ids`` to running (setting ``started_at``, ``world_id``,
        clearing ``error``); return the ids that moved. A step in any other state is left."""

    @abstractmethod
    def save_outputs(self, outputs: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        """Set ``(plan_id, action_id, output)`` outputs; a missing action raises
        :class:`~dynaflow.exceptions.UnknownAction`."""

    @abstractmethod
    def add_history(self, rows: Sequence[HistoryRow]) -> None:
        """Append history rows."""

    def write(self, batch: Batch) -> BatchResult:
        """Apply a :class:`Batch` in one transaction (the executor's group commit). Each step a
        claim moves to running gets a history row with the claim's ``event``."""
        result = BatchResult()
        with self.transaction():
            batch, result.fenced = self.fence(batch)
            for update in batch.plans:
                if not self.update_plan(update.plan_id, update.fields, update.expect, update.owner):
                    result.plan_conflicts.append(update)
            if batch.steps:
                result.step_conflicts = self.update_steps(batch.steps)
            if batch.outputs:
                self.save_outputs(batch.outputs)
            history = list(batch.history)
            for claim in batch.claims:
                claim = self.room_for(claim, result)
                for step_id in self.claim_steps(claim):
                    result.claimed.add((claim.plan_id, step_id))
                    history.append(
                        HistoryRow(claim.plan_id, claim.at, claim.event, step_id, claim.world_id)
                    )
            if history:
                self.add_history(history)
            if batch.events:
                self.add_events(batch.events)
            if batch.drop_events:
                self.delete_events(batch.drop_events)
            self.add_offers(batch.offers, result.claimed)
            for _, row in batch.requests:
                self.add_request(row)
        return result

    def add_offers(self, offers: Sequence[RequestRow], claimed: set[tuple[str, int]]) -> None:
        """Store the ``"run"`` requests of the steps whose claim held."""
        for row in offers:
            if (row.plan_id, row.args["step_id"]) in claimed:
                self.add_request(row)

    def room_for(self, claim: Claim, result: BatchResult) -> Claim:
        """``claim`` less the steps its queue has no room for (those go to ``deferred``)."""
        if claim.queue is None:
            return claim
        room = self.queue_room(claim.queue)
        wanted = list(dict.fromkeys(claim.step_ids))
        if room is None or room >= len(wanted):
            return claim
        result.deferred.update((claim.plan_id, step_id) for step_id in wanted[room:])
        return Claim(
            claim.plan_id,
            wanted[:room],
            claim.expect,
            claim.world_id,
            claim.at,
            claim.event,
            claim.queue,
        )

    def fence(self, batch: Batch) -> tuple[Batch, set[str]]:
        """Inside the batch's transaction: the batch less the writes to plans its ``owner`` no
        longer owns, and those plans. The plans it still owns stay locked against a takeover
        until the transaction ends."""
        if batch.owner is None:
            return batch, set()
        dropped = self.event_plans(batch.drop_events) if batch.drop_events else {}
        wanted = (batch.plan_ids() | set(dropped.values())) - batch.unowned
        fenced = wanted - self.owned_plans(sorted(wanted), batch.owner)
        if not fenced:
            return batch, fenced
        return batch.without(fenced, dropped), fenced

    @abstractmethod
    def owned_plans(self, plan_ids: Sequence[str], owner: str) -> set[str]:
        """The plans among ``plan_ids`` whose owning world is ``owner``. Called inside a
        transaction, it locks them against a change of owner until that transaction ends."""

    @abstractmethod
    def event_plans(self, ids: Sequence[int]) -> dict[int, str]:
        """The plan of each queued event among ``ids`` (ids gone already are left out)."""

    @abstractmethod
    def add_events(self, rows: Sequence[EventRow]) -> None:
        """Queue events; sets each row's ``id`` (ascending in the order given)."""

    @abstractmethod
    def delete_events(self, ids: Sequence[int]) -> None:
        """Delete events by id; ids that are gone already are ignored."""

    # -- reads -----------------------------------------------------------------------------

    @abstractmethod
    def get_step(self, plan_id: str, step_id: int) -> StepRecord:
        """One step; :class:`~dynaflow.exceptions.UnknownStep` if the plan has no such step."""

    @abstractmethod
    def due_events(self, world_id: str, now: datetime, limit: int = 1000) -> list[EventRow]:
        """Events deliverable at ``now`` (no ``due_at``, or ``due_at <= now``) of the ``running``
        plans owned by ``world_id``, oldest id first."""

    @abstractmethod
    def next_due(self, world_id: str, after: datetime | None = None) -> datetime | None:
        """The earliest ``due_at`` (later than ``after``, if given) of a timer of a ``running``
        plan owned by ``world_id``."""

    @abstractmethod
    def plan_events(self, plan_id: str) -> list[EventRow]:
        """Every queued event of one plan, oldest id first."""

    @abstractmethod
    def load_plan(self, plan_id: str, *, history: bool = True) -> ExecutionPlan:
        """The whole plan: record, actions, steps (by id), run edges, history (oldest first;
        left empty with ``history=False``, as the executor needs none of it)."""

    @abstractmethod
    def plan_counts(self, where: PlanFilter = ALL_PLANS) -> dict[tuple[PlanState, PlanResult], int]:
        """How many plans matching ``where`` there are in each (state, result) (one grouped
        count; pairs with no plan are left out)."""

    def load_plans(self, plan_ids: Sequence[str]) -> dict[str, ExecutionPlan]:
        """Many plans as :meth:`load_plan` with ``history=False`` gives them, by id (ids no
        plan has are left out)."""
        plans: dict[str, ExecutionPlan] = {}
        for plan_id in dict.fromkeys(plan_ids):
            try:
                plans[plan_id] = self.load_plan(plan_id, history=False)
            except UnknownPlan:
                continue
        return plans

    @abstractmethod
    def plan_records(self, plan_ids: Sequence[str]) -> list[PlanRecord]:
        """The plan rows of ``plan_ids`` in that order, leaving out ids no plan has."""

    @abstractmethod
    def get_plan_record(self, plan_id: str) -> PlanRecord:
        """Only the plan row."""

    @abstractmethod
    def find_plan_by_key(self, key: str) -> PlanRecord | None:
        """The plan with idempotency ``key``, or ``None``."""

    @abstractmethod
    def find_plans(
        self,
        where: PlanFilter = ALL_PLANS,
        *,
        offset: int = 0,
        limit: int | None = None,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        """Plan rows passing ``where``, ordered by ``order_by`` (a column of :data:`ORDERABLE`,
        ``-`` in front for descending; NULLs last either way, ties by id), then paged.
        Another column raises :class:`~dynaflow.exceptions.ConfigurationError`."""

    @abstractmethod
    def count_plans(self, where: PlanFilter = ALL_PLANS) -> int:
        """How many plans :meth:`find_plans` would return without paging."""

    def iter_plans(self, where: PlanFilter = ALL_PLANS, **paging: Any) -> Iterator[PlanRecord]:
        """:meth:`find_plans`, one record at a time."""
        yield from self.find_plans(where, **paging)
