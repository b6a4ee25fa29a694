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
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import EllipsisType
from typing import Any

from dynaflow.exceptions import (
    ConcurrentModification,
    ConfigurationError,
    UnknownPlan,
)
from dynaflow.execution_plan import (
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
from dynaflow.persistence.reports import StepReports
from dynaflow.persistence.retention import RetentionStore
from dynaflow.persistence.rows import (  # noqa: F401 (re-exported)
    ALL_PLANS,
    ENDED_STATES,
    ORDERABLE,
    PLAN_FIELDS,
    STEP_FIELDS,
    Batch,
    BatchResult,
    Claim,
    EventRow,
    HistoryRow,
    NewPlan,
    PlanFilter,
    PlanUpdate,
    StepUpdate,
    batch_topics,
    check_fields,
    plan_order,
)
from dynaflow.persistence.schedules import ScheduleStore
from dynaflow.states import PlanResult, PlanState


class Storage(ClusterStore, StepReports, ScheduleStore, RetentionStore):
    """Where execution plans live. Thread-safe."""

    #: the URL it was opened with, password hidden
    display_url: str = ""

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections. Further calls may fail."""

    def joined(self, connection: Any) -> AbstractContextManager[Any]:
        """Make ``connection`` (the application's, in its own transaction) this thread's
        ambient transaction for the block: what the storage writes goes into it, and nothing
        is committed here. Only a SQL storage has connections."""
        raise ConfigurationError(
            f"connection= needs a SQL database; {self.display_url or 'this storage'} has no "
            "connections (use SQLite or PostgreSQL)"
        )

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
        """Insert a plan with its actions, steps, edges and history rows, and take its
        singleton keys (``new.singletons``).

        Raises :class:`~dynaflow.exceptions.ConcurrentModification` if the plan id or its
        ``key`` already exists, and :class:`~dynaflow.exceptions.SingletonActive` (naming the
        holder) if a plan that has not stopped holds one of its singleton keys; either way
        nothing is written."""

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
        Another field raises :class:`~dynaflow.exceptions.InvalidArgument`. A change to
        ``stopped`` releases the plan's singleton keys in the same transaction."""

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
    def add_history(self, rows: Sequence[HistoryRow], exists: Collection[str] = ()) -> None:
        """Append history rows. ``exists``: plans the caller just wrote in this transaction
        (not looked up again); a row of any other plan that is missing raises
        :class:`~dynaflow.exceptions.UnknownPlan`."""

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
            written = {u.plan_id for u in batch.plans} - {u.plan_id for u in result.plan_conflicts}
            for claim in batch.claims:
                claim = self.room_for(claim, result)
                for step_id in self.claim_steps(claim):
                    written.add(claim.plan_id)
                    result.claimed.add((claim.plan_id, step_id))
                    history.append(
                        HistoryRow(claim.plan_id, claim.at, claim.event, step_id, claim.world_id)
                    )
            if history:
                self.add_history(history, exists=written)
            if batch.events:
                self.add_events(batch.events)
            if batch.drop_events:
                self.delete_events(batch.drop_events)
            self.add_offers(batch.offers, result.claimed)
            if batch.requests:
                self.add_requests([row for _, row in batch.requests])
        return result

    def add_offers(self, offers: Sequence[RequestRow], claimed: set[tuple[str, int]]) -> None:
        """Store the ``"run"`` requests of the steps whose claim held."""
        self.add_requests([row for row in offers if (row.plan_id, row.args["step_id"]) in claimed])

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
    def singleton_holder(self, key: str) -> str | None:
        """The id of the plan holding singleton ``key`` (one that has not stopped), or
        ``None``."""

    @abstractmethod
    def plan_ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """The ids of the plans whose id starts with ``prefix`` (case-sensitive, compared by
        code point), in code point order, at most ``limit`` of them; a query on the plans' key
        index (a range of ids), never a scan of every plan where the database's collation
        compares ids by code point."""

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
