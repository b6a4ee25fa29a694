"""The SQL storage's retention: removing finished plans in short transactions (see
:mod:`dynaflow.persistence.retention`).

Each call takes the ids first (``ORDER BY ended_at LIMIT n``, on the index of ``state,
ended_at``; PostgreSQL ``FOR UPDATE SKIP LOCKED``, so two pruners take different plans and
neither waits), then deletes their rows table by table, children first, and the plans last.
The deletes are explicit rather than left to ``ON DELETE CASCADE``: they count what went, and
they hold on a database whose foreign keys are not enforced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.sql.dml import Delete

from dynaflow.persistence import tables
from dynaflow.persistence.retention import PRUNED_TABLES, no_rows
from dynaflow.persistence.sql.codec import time_in
from dynaflow.persistence.sql.transactions import SQLTransactions, retried
from dynaflow.states import PlanResult, PlanState

P, C = tables.plans, tables.chains
SCHEDULED, STOPPED = PlanState.SCHEDULED.value, PlanState.STOPPED.value
#: the tables with a ``plan_id`` column, by their name in :data:`PRUNED_TABLES`
CHILDREN = {
    "step_logs": tables.step_logs,
    "events": tables.events,
    "requests": tables.requests,
    "history": tables.history,
    "edges": tables.edges,
    "steps": tables.steps,
    "actions": tables.actions,
    "singletons": tables.singletons,
    "delayed": tables.delayed,
}


def _qualifies(plan: Any, with_result: bool) -> ColumnElement[bool]:
    """Removable but for its sub-plans; never NULL (``ended_at IS NOT NULL`` first)."""
    parent = P.alias("parent")
    waiting = P.alias("waiting")
    conditions = [
        plan.c.state == STOPPED,
        plan.c.ended_at.is_not(None),
        plan.c.ended_at < bindparam("b_cutoff", type_=P.c.ended_at.type),
        # a scheduled plan chained after it still waits for it
        ~exists(
            select(literal(1))
            .select_from(C)
            .where(
                C.c.after_id == plan.c.id,
                exists(
                    select(literal(1)).where(
                        waiting.c.id == C.c.plan_id, waiting.c.state == SCHEDULED
                    )
                ),
            )
        ),
        # a parent that has not stopped still counts its sub-plans
        ~exists(
            select(literal(1)).where(parent.c.id == plan.c.parent_id, parent.c.state != STOPPED)
        ),
    ]
    if with_result:
        conditions.append(plan.c.result == bindparam("b_result"))
    return and_(*conditions)


class RetentionStatements:
    def __init__(self, sqlite: bool) -> None:
        #: per result filter (none, one): the ids of the next batch, and the dry run's count
        self.take: dict[bool, Select[Any]] = {}
        self.count: dict[bool, Select[Any]] = {}
        for with_result in (False, True):
            child = P.alias("child")
            take = (
                select(P.c.id)
                .where(
                    _qualifies(P, with_result),
                    ~exists(select(literal(1)).where(child.c.parent_id == P.c.id)),
                )
                .order_by(P.c.ended_at, P.c.id)
                .limit(bindparam("b_limit"))
            )
            self.take[with_result] = (
                take if sqlite else take.with_for_update(of=P, skip_locked=True)
            )
            self.count[with_result] = _count(with_result)
        ids: Any = bindparam("b_ids", expanding=True)
        self.delete: dict[str, Delete] = {
            name: delete(table).where(table.c.plan_id.in_(ids)) for name, table in CHILDREN.items()
        }
        self.delete["chains"] = delete(C).where(or_(C.c.plan_id.in_(ids), C.c.after_id.in_(ids)))
        self.delete["plans"] = delete(P).where(P.c.id.in_(ids))


def _count(with_result: bool) -> Select[Any]:
    """One row: the rows per table of every removable plan (those qualifying whose every
    sub-plan, down the tree, is removable too)."""
    plan = P.alias("plan")
    # the ancestors of every plan that does not qualify: kept for its sake
    blocked = (
        select(plan.c.parent_id.label("id"))
        .where(plan.c.parent_id.is_not(None), not_(_qualifies(plan, with_result)))
        .cte("blocked", recursive=True)
    )
    up = P.alias("up")
    blocked = blocked.union(
        select(up.c.parent_id)
        .join(blocked, up.c.id == blocked.c.id)
        .where(up.c.parent_id.is_not(None))
    )
    removable = (
        select(P.c.id)
        .where(_qualifies(P, with_result), P.c.id.not_in(select(blocked.c.id)))
        .cte("removable")
    )
    ids = select(removable.c.id)
    counts = {
        name: select(func.count()).select_from(table).where(table.c.plan_id.in_(ids))
        for name, table in CHILDREN.items()
    }
    counts["chains"] = (
        select(func.count()).select_from(C).where(or_(C.c.plan_id.in_(ids), C.c.after_id.in_(ids)))
    )
    counts["plans"] = select(func.count()).select_from(removable)
    return select(*(counts[name].scalar_subquery().label(name) for name in PRUNED_TABLES))


class SQLRetention(SQLTransactions):
    _retention_sql: RetentionStatements | None = None

    @property
    def _rs(self) -> RetentionStatements:
        if self._retention_sql is None:
            self._retention_sql = RetentionStatements(self._sqlite)
        return self._retention_sql

    def prune_plans(
        self, cutoff: datetime, result: PlanResult | None = None, limit: int = 500
    ) -> dict[str, int]:
        counts = no_rows()
        params = _params(cutoff, result)
        with self.transaction() as conn:
            take = self._rs.take[result is not None]
            ids = list(conn.execute(take, {**params, "b_limit": limit}).scalars())
            if not ids:
                return counts
            for name in PRUNED_TABLES:
                counts[name] = conn.execute(self._rs.delete[name], {"b_ids": ids}).rowcount
        return counts

    @retried
    def count_prunable(self, cutoff: datetime, result: PlanResult | None = None) -> dict[str, int]:
        with self._read(snapshot=True) as conn:
            row = conn.execute(self._rs.count[result is not None], _params(cutoff, result)).one()
        return {name: int(value) for name, value in zip(PRUNED_TABLES, row, strict=True)}


def _params(cutoff: datetime, result: PlanResult | None) -> dict[str, Any]:
    params: dict[str, Any] = {"b_cutoff": time_in(cutoff)}
    if result is not None:
        params["b_result"] = result.value
    return params
