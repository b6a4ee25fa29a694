"""The storage port's part for several worlds on one database: the worlds and their leases,
requests between worlds, the notifications that wake them, and declared queues with their
limits. :class:`~dynaflow.persistence.base.Storage` includes it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from dynaflow.clock import now as clock_now

#: a world's lease when none is recorded (rows of an older version)
DEFAULT_LEASE = 30.0


@dataclass(slots=True)
class WorldRow:
    """An executor world: alive until ``expires_at``, its last heartbeat plus its own lease,
    both on the storage's clock (:meth:`Storage.now`)."""

    id: str
    started_at: datetime
    heartbeat_at: datetime
    hostname: str | None = None
    pid: int | None = None
    executor: str | None = None
    #: seconds without a heartbeat after which the world counts as dead
    lease: float = DEFAULT_LEASE
    #: the queues it serves, with the pool size of each
    queues: dict[str, int] | None = None

    @property
    def expires_at(self) -> datetime:
        return self.heartbeat_at + timedelta(seconds=self.lease)


@dataclass(slots=True)
class RequestRow:
    """A request to executor worlds, through the database: ``"execute"`` a planned or paused
    plan (any world that can run it takes it), or ``"cancel"``, ``"halt"``, ``"retry"`` a plan
    that the world ``world_id`` runs. The world that takes it answers it (``error`` is what it
    raised, ``None`` when it was done)."""

    plan_id: str
    kind: str
    args: dict[str, Any]
    created_at: datetime
    #: the world it is for; ``None``: any executor world that can run the plan
    world_id: str | None = None
    #: the world that asked
    requested_by: str | None = None
    #: set by the storage on insert
    id: int | None = None
    taken_by: str | None = None
    taken_at: datetime | None = None
    answered_at: datetime | None = None
    error: dict[str, Any] | None = None
    #: world id -> why that world cannot run the plan
    declined: dict[str, str] | None = None
    #: a ``"run"`` request (one step of a plan another world runs): the step's queue
    queue: str | None = None
    #: what came of a ``"run"`` request (the step's outcome, as JSON)
    outcome: dict[str, Any] | None = None


def interrupted(world_id: str) -> dict[str, str]:
    """The error a ``"run"`` request gets when the world running it died."""
    return {
        "type": "Interrupted",
        "message": f"world {world_id} stopped while the step ran",
    }


class Listening(Protocol):
    def close(self) -> None: ...


class ClusterStore(ABC):
    """Worlds, requests, notifications and queues (see the module's docstring)."""

    # -- worlds ----------------------------------------------------------------------------

    @abstractmethod
    def register_world(self, world: WorldRow) -> None:
        """Insert (or replace) an executor world's row."""

    def now(self) -> datetime:
        """The storage's clock, by which every world's lease is judged (the database server's
        for PostgreSQL, the host's for SQLite, the process's for memory)."""
        return clock_now()

    @abstractmethod
    def heartbeat(self, world_id: str, at: datetime, lease: float | None = None) -> bool:
        """Set the world's ``heartbeat_at`` (and its ``lease``, if given): it counts as alive
        until ``at`` + lease. ``False`` if its row is gone (it was declared dead and its plans
        were taken over)."""

    @abstractmethod
    def unregister_world(self, world_id: str) -> None:
        """Delete a world's row (missing is fine)."""

    @abstractmethod
    def worlds(self) -> list[WorldRow]:
        """Every registered world, oldest first."""

    @abstractmethod
    def released_plans(self, limit: int = 1000) -> list[str]:
        """Ids of running plans with no owner (released by a world that shut down), oldest
        first."""

    @abstractmethod
    def orphaned_plans(self, now: datetime) -> list[tuple[str, str | None]]:
        """``(plan_id, world_id)`` of running plans owned by a world that has no row or whose
        lease expired before ``now`` (its last heartbeat plus its own lease), and of running
        plans a world released when it shut down (``world_id`` ``None``)."""

    # -- queues ----------------------------------------------------------------------------

    @abstractmethod
    def declare_queue(self, name: str, limit: int | None) -> None:
        """Store a queue's limit (``None``: none), replacing what was stored."""

    @abstractmethod
    def queue_limits(self) -> dict[str, int | None]:
        """The declared queues and their limits."""

    @abstractmethod
    def queue_room(self, name: str) -> int | None:
        """Inside a transaction: how many more steps of the queue may start now (its limit
        less its running steps), ``None`` if it has no limit. Holds the queue's lock until the
        transaction ends, so two worlds never both take its last room."""

    @abstractmethod
    def queue_counts(self) -> dict[str, dict[str, int]]:
        """Run steps per queue and state: ``{queue: {state: count}}``."""

    @abstractmethod
    def running_steps(self) -> dict[str | None, int]:
        """Run steps running now, per world that runs them: ``{world_id: count}``."""

    # -- requests between worlds, and notifications ----------------------------------------

    @abstractmethod
    def add_request(self, row: RequestRow, *, new_plan: bool = False) -> None:
        """Queue a request (joins the ambient transaction); sets ``row.id`` and notifies the
        worlds it is for. A plan that does not exist raises
        :class:`~dynaflow.exceptions.UnknownPlan`; ``new_plan``: the caller inserted the plan
        in this transaction (it is not looked up)."""

    @abstractmethod
    def add_requests(self, rows: Sequence[RequestRow]) -> None:
        """Store several requests in one go (joins the ambient transaction); each gets its
        ``id``. A request for a plan that does not exist raises
        :class:`~dynaflow.exceptions.UnknownPlan` and stores none."""

    @abstractmethod
    def take_requests(
        self, world_id: str, limit: int, skip: Collection[int] = ()
    ) -> list[RequestRow]:
        """Up to ``limit`` requests nobody has taken, for ``world_id`` or for any world (not
        those in ``skip``), oldest first, now taken by ``world_id``. Two worlds never take the
        same request (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    @abstractmethod
    def answer_request(
        self,
        request_id: int,
        error: dict[str, Any] | None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome of a request (``error`` ``None``: done) and notify whoever waits
        for it. The first answer stands: a run answered ``Interrupted`` (its world was taken
        for dead) keeps that answer when the run's own comes late."""

    @abstractmethod
    def take_runs(
        self, world_id: str, room: dict[str, int], skip: Collection[int] = ()
    ) -> list[RequestRow]:
        """``"run"`` requests nobody has taken (not those in ``skip``), up to ``room[queue]``
        of each queue, oldest first, now taken by ``world_id`` (never by two worlds)."""

    @abstractmethod
    def take_answers(self, world_id: str) -> list[RequestRow]:
        """The answered ``"run"`` requests ``world_id`` made, deleted as they are returned."""

    @abstractmethod
    def decline_request(
        self, request_id: int, world_id: str, reason: str, forward_to: str | None = None
    ) -> None:
        """Put a taken request back: ``world_id`` cannot serve it because of ``reason`` (kept
        for ``dynaflow status``); ``forward_to``: address it to that world instead."""

    @abstractmethod
    def get_request(self, request_id: int) -> RequestRow | None:
        """One request, or ``None`` once it is gone."""

    @abstractmethod
    def get_requests(self, request_ids: Sequence[int]) -> dict[int, RequestRow]:
        """The requests of ``request_ids`` by id (those gone left out)."""

    @abstractmethod
    def open_requests(self, limit: int = 1000) -> list[RequestRow]:
        """Requests not answered yet, oldest first."""

    @abstractmethod
    def delete_requests(self, ids: Sequence[int]) -> None:
        """Delete requests (missing ids are ignored); joins the ambient transaction."""

    @abstractmethod
    def release_requests(self, world_id: str) -> int:
        """A world is gone: requests it took and did not answer, and those addressed to it,
        go back to any world — except ``"run"`` requests: one it was running is answered
        with an ``Interrupted`` error (the world that asked decides), and those it asked for
        and nobody took are deleted (its plans are taken over). Returns how many."""

    @abstractmethod
    def adopt_runs(self, plan_id: str, world_id: str) -> tuple[list[RequestRow], list[RequestRow]]:
        """``world_id`` takes the plan over: the ``"run"`` requests made for its steps (by
        its earlier owner). Those nobody took are deleted (their steps never started); those
        another world took are addressed to ``world_id`` (their answers come here). Returns
        ``(taken, dropped)``. Joins the ambient transaction: the takeover's claim and this
        stand or fall together."""

    @abstractmethod
    def purge_requests(self, before: datetime) -> int:
        """Delete requests answered before ``before``. Returns how many."""

    def notify(self, topics: Iterable[str]) -> None:
        """Tell the worlds listening on this database (PostgreSQL ``NOTIFY``; elsewhere they
        poll): ``"r <world id or *>"`` a request, ``"e <world id or *>"`` an event, ``"p <plan
        id>"`` a plan's execution ended, ``"a <request id>"`` a request was answered. Joins the
        ambient transaction (sent when it commits)."""
        return None

    def listen(self, callback: Callable[[str | None], None]) -> Listening | None:
        """Call ``callback(topic)`` for each notification, on a thread of its own
        (``callback(None)``: notifications may have been missed; look at everything). ``None``
        where the database has no notifications: its worlds poll."""
        return None

    #: seconds between looks at the database for requests, events and followed plans when
    #: nothing notifies (PostgreSQL notifies: its poll is only a fallback)
    poll_interval: float = 0.25
    #: whether :meth:`notify` reaches the other processes (then steps of one plan may be
    #: spread over worlds: see :mod:`dynaflow.executor.spreading`)
    notifies: bool = False
