"""The storage port's part for retention: removing finished plans with every row kept for them.
:class:`~dynaflow.persistence.base.Storage` includes it.

A plan is *removable* when it is ``stopped``, ended before the cutoff (and, with a result given,
ended with that result), no ``scheduled`` plan is chained after it (it still waits for it), its
parent plan, if it is a sub-plan, is ``stopped`` too (a parent still running counts its children
in the database), and each of its sub-plans is removable. :meth:`RetentionStore.prune_plans`
removes sub-plans before their parent (a parent goes once it has no sub-plan left), so a plan
never points at a parent that is gone while the parent's sub-plans are being removed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from dynaflow.states import PlanResult

#: the tables a plan's rows are removed from, children first, by their name without the
#: ``dynaflow_`` prefix (``chains``: the plan's own prerequisites and the rows of plans
#: chained after it)
PRUNED_TABLES = (
    "step_logs",
    "events",
    "requests",
    "history",
    "edges",
    "steps",
    "actions",
    "singletons",
    "chains",
    "delayed",
    "plans",
)


def no_rows() -> dict[str, int]:
    """A count of 0 for every table of :data:`PRUNED_TABLES`."""
    return dict.fromkeys(PRUNED_TABLES, 0)


class RetentionStore(ABC):
    @abstractmethod
    def prune_plans(
        self, cutoff: datetime, result: PlanResult | None = None, limit: int = 500
    ) -> dict[str, int]:
        """Remove at most ``limit`` removable plans (see the module's docstring) ended before
        ``cutoff``, those that ended first first, with their rows in every table, in one
        transaction (joining the ambient one). Only plans with no sub-plan left are taken, so
        a parent goes in a later call than its last sub-plan. Returns the rows removed per
        table of :data:`PRUNED_TABLES` (``plans``: the plans); ``plans`` is 0 once none is
        left. On PostgreSQL the plans are taken ``FOR UPDATE SKIP LOCKED``: two callers at
        once remove different plans and never wait for each other."""

    @abstractmethod
    def count_prunable(self, cutoff: datetime, result: PlanResult | None = None) -> dict[str, int]:
        """The rows per table that calling :meth:`prune_plans` with ``cutoff`` and ``result``
        until it removes no plan would remove now (sub-plans and the parents they free
        included); removes nothing."""
