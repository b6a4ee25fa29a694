"""The SQL storage's reads: plans, steps and queued events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from dynaflow.exceptions import UnknownPlan, UnknownStep
from dynaflow.execution_plan import ExecutionPlan, PlanRecord, StepRecord
from dynaflow.persistence.base import ALL_PLANS, EventRow, PlanFilter, plan_order
from dynaflow.persistence.limits import can_hold
from dynaflow.persistence.sql.codec import CHUNK, EPOCH, corrupt, time_in, time_out
from dynaflow.persistence.sql.transactions import SQLTransactions, retried
from dynaflow.states import PlanResult, PlanState


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
    def load_plan(self, plan_id: str, *, history: bool = True) -> ExecutionPlan:
        sql, decode, params = self._sql, self._decode, {"b_id": plan_id}
        with self._read(snapshot=True) as conn:
            row = conn.execute(sql.select_plan, params).first()
            if row is None:
                raise UnknownPlan(plan_id)
            record = decode.plan_record(row)
            actions = decode.action_records(plan_id, conn.execute(sql.select_actions, params).all())
            steps = decode.step_records(plan_id, conn.execute(sql.select_steps, params).all())
            edges = [(r[0], r[1]) for r in conn.execute(sql.select_edges, params).all()]
            rows = conn.execute(sql.select_history, params) if history else ()
            records = [decode.history_record(plan_id, r) for r in rows]
        return ExecutionPlan(
            record=record,
            actions=tuple(actions),
            steps=tuple(steps),
            edges=tuple(edges),
            history=tuple(records),
        )

    @retried
    def get_plan_record(self, plan_id: str) -> PlanRecord:
        with self._read() as conn:
            row = conn.execute(self._sql.select_plan, {"b_id": plan_id}).first()
        if row is None:
            raise UnknownPlan(plan_id)
        return self._decode.plan_record(row)

    @retried
    def load_plans(self, plan_ids: Sequence[str]) -> dict[str, ExecutionPlan]:
        sql, decode = self._sql, self._decode
        wanted = list(dict.fromkeys(plan_ids))
        plans: dict[str, ExecutionPlan] = {}
        with self._read(snapshot=True) as conn:
            for i in range(0, len(wanted), CHUNK):
                params = {"b_ids": wanted[i : i + CHUNK]}
                records = {
                    row.id: decode.plan_record(row)
                    for row in conn.execute(sql.select_plans, params)
                }
                rows: dict[str, list[list[Any]]] = {plan_id: [[], [], []] for plan_id in records}
                for part, statement in enumerate(
                    (sql.select_many_actions, sql.select_many_steps, sql.select_many_edges)
                ):
                    for row in conn.execute(statement, params):
                        if row[0] in rows:
                            rows[row[0]][part].append(tuple(row)[1:])
                for plan_id, record in records.items():
                    actions, steps, edges = rows[plan_id]
                    actions.sort(key=lambda r: r[0])
                    steps.sort(key=lambda r: r[0])
                    plans[plan_id] = ExecutionPlan(
                        record=record,
                        actions=tuple(decode.action_records(plan_id, actions)),
                        steps=tuple(decode.step_records(plan_id, steps)),
                        edges=tuple(sorted((r[0], r[1]) for r in edges)),
                    )
        return plans

    @retried
    def plan_records(self, plan_ids: Sequence[str]) -> list[PlanRecord]:
        wanted = list(dict.fromkeys(plan_ids))
        found: dict[str, PlanRecord] = {}
        with self._read() as conn:
            for i in range(0, len(wanted), CHUNK):
                params = {"b_ids": wanted[i : i + CHUNK]}
                for row in conn.execute(self._sql.select_plans, params):
                    found[row.id] = self._decode.plan_record(row)
        return [found[plan_id] for plan_id in wanted if plan_id in found]

    @retried
    def find_plan_by_key(self, key: str) -> PlanRecord | None:
        if not can_hold(key):  # no plan has it (PostgreSQL would refuse the query)
            return None
        with self._read() as conn:
            row = conn.execute(self._sql.select_by_key, {"b_key": key}).first()
        return None if row is None else self._decode.plan_record(row)

    @retried
    def singleton_holder(self, key: str) -> str | None:
        if not can_hold(key):
            return None
        with self._read() as conn:
            row = conn.execute(self._sql.singleton_holder, {"b_key": key}).first()
        return row.plan_id if row is not None and row.state != PlanState.STOPPED.value else None

    @retried
    def plan_ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        if not can_hold(prefix):
            return []
        upper = _next_string(prefix)
        params = {"b_lo": prefix, "b_hi": upper, "b_limit": limit}
        with self._read() as conn:
            query = self._sql.plan_ids_starting(upper is not None, self._by_code_point(conn))
            return list(conn.execute(query, params).scalars())

    def _by_code_point(self, conn: Connection) -> bool:
        """Whether the database compares the plans' ids by code point, as a range of ids on
        their index needs: SQLite does; PostgreSQL under the C or POSIX locale, C.UTF-8, or
        its builtin provider (asked once)."""
        if self._sqlite:
            return True
        known: bool | None = getattr(self, "_ids_by_code_point", None)
        if known is None:
            database = conn.execute(self._sql.database_locale).scalar_one()
            provider = database.get("datlocprovider", "c")
            locale = str(database.get("datcollate") or database.get("datlocale") or "")
            known = provider == "b" or (
                provider == "c" and locale.upper().replace("-", "") in {"C", "POSIX", "C.UTF8"}
            )
            self._ids_by_code_point = known
        return known

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

    @retried
    def plan_counts(self, where: PlanFilter = ALL_PLANS) -> dict[tuple[PlanState, PlanResult], int]:
        if not _can_match(where):
            return {}
        with self._read() as conn:
            rows = conn.execute(self._sql.plan_counts(where)).all()
        try:
            return {(PlanState(s), PlanResult(r)): int(n) for s, r, n in rows}
        except ValueError as exc:
            raise corrupt("plan counts", "dynaflow_plans", exc) from exc


def _can_match(where: PlanFilter) -> bool:
    """Whether a plan could pass ``where`` at all: text holding a NUL character matches
    nothing (PostgreSQL would refuse the query)."""
    return can_hold(where.label) and can_hold(where.action) and can_hold(where.text)


def _next_string(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (``None``: there is
    none): its last character that can be incremented, incremented, past the surrogates."""
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index]) + 1
        if code <= 0x10FFFF:
            code = 0xE000 if 0xD800 <= code <= 0xDFFF else code
            return prefix[:index] + chr(code)
    return None
