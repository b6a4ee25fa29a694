"""SQL storage: progress and log lines of run steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from dynaflow.persistence import tables
from dynaflow.persistence.reports import StepLogLine
from dynaflow.persistence.sql.codec import time_in, time_out
from dynaflow.persistence.sql.driver import INTEGRITY_ERRORS
from dynaflow.persistence.sql.transactions import SQLTransactions, retried
from dynaflow.states import StepState

S, L = tables.steps, tables.step_logs


class ReportStatements:
    def __init__(self) -> None:
        self.progress = (
            update(S)
            .where(
                S.c.plan_id == bindparam("b_plan"),
                S.c.id == bindparam("b_step"),
                S.c.world_id == bindparam("b_world"),
                S.c.state == StepState.RUNNING.value,
            )
            .values(progress=bindparam("v_progress", type_=S.c.progress.type))
        )
        self.insert = insert(L)
        self.last = select(func.coalesce(func.max(L.c.seq), 0)).where(
            L.c.plan_id == bindparam("b_plan"), L.c.step_id == bindparam("b_step")
        )
        self.of_plan = (
            select(L.c.step_id, L.c.seq, L.c.at, L.c.message)
            .where(L.c.plan_id == bindparam("b_plan"))
            .order_by(L.c.step_id, L.c.seq)
            .limit(bindparam("b_limit"))
        )
        self.of_step = (
            select(L.c.step_id, L.c.seq, L.c.at, L.c.message)
            .where(
                L.c.plan_id == bindparam("b_plan"),
                L.c.step_id == bindparam("b_step"),
                L.c.seq > bindparam("b_after"),
            )
            .order_by(L.c.seq)
            .limit(bindparam("b_limit"))
        )


class SQLReports(SQLTransactions):
    _reports: ReportStatements | None = None

    @property
    def _rp(self) -> ReportStatements:
        if self._reports is None:
            self._reports = ReportStatements()
        return self._reports

    def save_progress(
        self, plan_id: str, step_id: int, world_id: str, progress: dict[str, Any]
    ) -> bool:
        params = {"b_plan": plan_id, "b_step": step_id, "b_world": world_id}
        with self.transaction() as conn:
            return bool(
                conn.execute(self._rp.progress, {**params, "v_progress": progress}).rowcount
            )

    def add_step_logs(self, plan_id: str, lines: Sequence[StepLogLine]) -> None:
        if not lines:
            return
        rows = [
            {
                "plan_id": plan_id,
                "step_id": line.step_id,
                "seq": line.seq,
                "at": time_in(line.at),
                "message": line.message,
            }
            for line in lines
        ]
        with self.transaction() as conn:
            self._check_plans(conn, [plan_id])
            try:
                with conn.begin_nested():
                    conn.execute(self._rp.insert, rows)
            except INTEGRITY_ERRORS:  # some stored already (a flush tried again): the rest
                for row in rows:
                    try:
                        with conn.begin_nested():
                            conn.execute(self._rp.insert, row)
                    except INTEGRITY_ERRORS:
                        continue

    @retried
    def last_log_seq(self, plan_id: str, step_id: int) -> int:
        with self._read() as conn:
            params = {"b_plan": plan_id, "b_step": step_id}
            return int(conn.execute(self._rp.last, params).scalar_one())

    @retried
    def step_logs(
        self, plan_id: str, step_id: int | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[StepLogLine]:
        with self._read() as conn:
            if step_id is None:
                rows = conn.execute(self._rp.of_plan, {"b_plan": plan_id, "b_limit": limit})
            else:
                params = {"b_plan": plan_id, "b_step": step_id, "b_after": after, "b_limit": limit}
                rows = conn.execute(self._rp.of_step, params)
            return [StepLogLine(r[0], r[1], _at(r[2]), r[3]) for r in rows]


def _at(value: Any) -> Any:
    at = time_out(value)
    assert at is not None
    return at
