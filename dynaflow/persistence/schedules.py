"""The storage port's part for plans that start later: delayed and chained plans (a plan stored
``scheduled``, with when it may start and what it waits for) and recurring schedules.
:class:`~dynaflow.persistence.base.Storage` includes it.

Starting a due plan and planning a due run are compare-and-sets, so that however many worlds
look at once, exactly one does each: :meth:`ScheduleStore.lock_delayed` takes a due plan's rows
for the caller's transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), and
:meth:`ScheduleStore.save_schedule` changes a schedule only at the revision the caller read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: what a chained plan does when a prerequisite did not end well
ON_FAILED = ("fail", "skip", "run")


@dataclass(slots=True)
class DelayedRow:
    """When the ``scheduled`` plan ``plan_id`` may start (``start_at``), the deadline past
    which it must not (``start_before``), the plans it waits for (``after``: it starts once
    they have all stopped; read back sorted, without duplicates) and what it does when one of
    them did not end well (``on_failed``: one of :data:`ON_FAILED`)."""

    plan_id: str
    start_at: datetime
    start_before: datetime | None = None
    after: list[str] = field(default_factory=list)
    on_failed: str = "fail"


@dataclass(slots=True)
class ScheduleRow:
    """A recurring plan: ``action_class`` planned with ``args``/``kwargs`` at each time of
    ``cron`` in the time zone ``tz``; the next run is due at ``next_run_at``."""

    key: str
    action_class: str
    args: list[Any]
    kwargs: dict[str, Any]
    cron: str
    tz: str
    catch_up: str
    next_run_at: datetime
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None = None
    #: the time (cron's, UTC) of the last run planned, and its plan
    last_run_at: datetime | None = None
    last_plan_id: str | None = None
    #: bumped by every :meth:`ScheduleStore.save_schedule`
    revision: int = 0


class ScheduleStore(ABC):
    """Delayed and chained plans, and recurring schedules (see the module's docstring)."""

    # -- delayed and chained plans ---------------------------------------------------------

    @abstractmethod
    def add_delayed(self, row: DelayedRow) -> None:
        """Store when a plan may start and what it waits for (joins the ambient transaction;
        the plan and every plan of ``after`` must exist: :class:`UnknownPlan` otherwise)."""

    @abstractmethod
    def get_delayed(self, plan_id: str) -> DelayedRow | None:
        """The row of a plan that was delayed or chained, ``None`` for any other plan."""

    @abstractmethod
    def update_delayed(self, row: DelayedRow) -> None:
        """Replace a delayed plan's ``start_at``, ``start_before``, ``after`` and
        ``on_failed`` (joins the ambient transaction)."""

    @abstractmethod
    def due_delayed(self, now: datetime, limit: int = 100) -> list[DelayedRow]:
        """The ``scheduled`` plans due at ``now``: those that may start (``start_at <= now``
        and every plan of ``after`` stopped) and those past their deadline (``start_before <
        now``); earliest ``start_at`` first."""

    @abstractmethod
    def lock_delayed(self, plan_id: str, now: datetime) -> DelayedRow | None:
        """Inside a transaction: the plan's row if it is still ``scheduled`` and may start at
        ``now`` (as :meth:`due_delayed`), locked with the plan's row until the transaction
        ends; ``None`` if it may not, or another transaction holds it (PostgreSQL skips it)."""

    @abstractmethod
    def waiting_for(self, plan_ids: Sequence[str]) -> dict[str, list[str]]:
        """For those of ``plan_ids`` that are ``scheduled``: the plans each waits for."""

    @abstractmethod
    def next_start(self) -> datetime | None:
        """The earliest time a ``scheduled`` plan may start or an active schedule's next run
        is due (in the past, too), ``None`` when there is none."""

    # -- recurring schedules -----------------------------------------------------------------

    @abstractmethod
    def get_schedule(self, key: str) -> ScheduleRow | None:
        """One schedule, or ``None``."""

    @abstractmethod
    def schedules(self) -> list[ScheduleRow]:
        """Every schedule, by key."""

    @abstractmethod
    def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRow]:
        """Active (not paused) schedules whose next run is due at ``now``, earliest first."""

    @abstractmethod
    def save_schedule(self, row: ScheduleRow, expect: int | None) -> bool:
        """Insert ``row`` (``expect`` ``None``: ``False`` if the key exists), or replace the
        schedule if it is still at revision ``expect`` (``False`` otherwise: another world or
        operator changed it first). Sets ``row.revision`` to the one stored. Joins the ambient
        transaction; a replace holds the row until it ends, so two worlds never both win."""

    @abstractmethod
    def delete_schedule(self, key: str) -> bool:
        """Delete a schedule; whether there was one. Runs already planned stay."""
