"""The SQL storage's reads: plans, steps and queued events."""

from __future__ import annotations

from datetime import datetime

from dynaflow.exceptions import UnknownPlan, UnknownStep
from dynaflow.execution_plan import ExecutionPlan, PlanRecord, StepRecord
from dynaflow.persistence.base import ALL_PLANS, EventRow, PlanFilter, plan_order
from dynaflow.persistence.limits import can_hold
from dynaflow.persistence.sql.codec import EPOCH, time_in, time_out
from dynaflow.persistence.sql.transactions import SQLTransactions, retried


class SQLReads(SQLTransactions):
    """Each read is :func:`retried` once on a fresh connection if its connection was lost."""

    @retried
    def get_step(self, plan_id: str, step_id: int) -> StepRecord:
        with self._read() as conn:
            params = {"b_plan": plan_id, "b_id": step_id}
            row = conn.execute(self._sql.select_step, params).first()
            if row is None:
                self._check_plans(conn, [plan_id])
                raise UnknownStep(plan_id, step_id)
        return self._decode.step_records(plan_id, [row])[0]

    @retried
    def due_events(self, world_id: str, now: datetime, limit: int = 1000) -> list[EventRow]:
        params = {"b_world": world_id, "b_now": time_in(now), "b_limit": limit}
        with self._read() as conn:
            rows = conn.execute(self._sql.select_due, params).all()
        return self._decode.event_records(rows)

    @retried
    def next_due(self, world_id: str, after: datetime | None = None) -> datetime | None:
        params = {"b_world": world_id, "b_after": time_in(after or EPOCH)}
        with self._read() as conn:
            return time_out(conn.execute(self._sql.select_next_due, params).scalar())

    @retried
    def plan_events(self, plan_id: str) -> list[EventRow]:
        with self._read() as conn:
            rows = conn.execute(self._sql.select_plan_events, {"b_id": plan_id}).all()
            if not rows:
                self._check_plans(conn, [plan_id])
        return self._decode.event_records(rows)

    @retried
    def load_plan(self, plan_id: str) -> ExecutionPlan:
        sql, decode, params = self._sql, self._decode, {"b_id": plan_id}
        with self._read(snapshot=True) as conn:
            row = conn.execute(sql.select_plan, params).first()
            if row is None:
                raise UnknownPlan(plan_id)
            record = decode.plan_record(row)
            actions = decode.action_records(plan_id, conn.execute(sql.select_actions, params).all())
            steps = decode.step_records(plan_id, conn.execute(sql.select_steps, params).all())
            edges = [(r[0], r[1]) for r in conn.execute(sql.select_edges, params).all()]
            history = [
                decode.history_record(plan_id, r) for r in conn.execute(sql.select_history, params)
            ]
        return ExecutionPlan(
            record=record,
            actions=tuple(actions),
            steps=tuple(steps),
            edges=tuple(edges),
            history=tuple(history),
        )

    @retried
    def get_plan_record(self, plan_id: str) -> PlanRecord:
        with self._read() as conn:
            row = conn.execute(self._sql.select_plan, {"b_id": plan_id}).first()
        if row is None:
            raise UnknownPlan(plan_id)
        return self._decode.plan_record(row)

    @retried
    def find_plan_by_key(self, key: str) -> PlanRecord | None:
        if not can_hold(key):  # no plan has it (PostgreSQL would refuse the query)
            return None
        with self._read() as conn:
            row = conn.execute(self._sql.select_by_key, {"b_key": key}).first()
        return None if row is None else self._decode.plan_record(row)

    @retried
    def find_plans(
        self,
        where: PlanFilter = ALL_PLANS,
        *,
        offset: int = 0,
        limit: int | None = None,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        column, descending = plan_order(order_by)
        if not _can_match(where):
            return []  # no plan has such a label or class (PostgreSQL would refuse the query)
        query = self._sql.find_plans(where, column, descending, offset, limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [self._decode.plan_record(row) for row in rows]

    @retried
    def count_plans(self, where: PlanFilter = ALL_PLANS) -> int:
        if not _can_match(where):
            return 0
        with self._read() as conn:
            return int(conn.execute(self._sql.count_plans(where)).scalar_one())


def _can_match(where: PlanFilter) -> bool:
    """Whether a plan could pass ``where`` at all: text holding a NUL character matches
    nothing (PostgreSQL would refuse the query)."""
    return can_hold(where.label) and can_hold(where.action) and can_hold(where.text)
