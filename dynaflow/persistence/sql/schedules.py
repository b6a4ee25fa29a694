"""The SQL storage's delayed and chained plans (``dynaflow_delayed``, ``dynaflow_chains``) and
recurring schedules (``dynaflow_schedules``).

A due plan is taken with ``FOR UPDATE SKIP LOCKED`` on its delayed row and its plan row
(PostgreSQL; on SQLite the writer holds the database's one write lock), so two worlds never
start it both and neither waits for the other; a schedule changes only at the revision its
writer read (``UPDATE ... WHERE revision = :read``, which waits for a concurrent writer and
then finds the revision changed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)

from dynaflow.persistence import tables
from dynaflow.persistence.schedules import DelayedRow, ScheduleRow
from dynaflow.persistence.sql.codec import bind, corrupt, time_in, time_out
from dynaflow.persistence.sql.transactions import SQLTransactions, retried
from dynaflow.states import PlanState

D, C, P, SC = tables.delayed, tables.chains, tables.plans, tables.schedules
SCHEDULED, STOPPED = PlanState.SCHEDULED.value, PlanState.STOPPED.value
SCHEDULE_COLUMNS = [
    type_coerce(c, Text) if c.name == "arguments" else c for c in SC.columns
]  # fmt: skip


class ScheduleStatements:
    def __init__(self, sqlite: bool) -> None:
        delayed = (D.c.plan_id, D.c.start_at, D.c.start_before, D.c.on_failed)
        Q = P.alias("prerequisite")
        waiting = exists(
            select(C.c.after_id)
            .select_from(C.join(Q, Q.c.id == C.c.after_id))
            .where(C.c.plan_id == D.c.plan_id, Q.c.state != STOPPED)
        )
        startable = and_(
            P.c.state == SCHEDULED,
            or_(
                and_(D.c.start_at <= bindparam("b_now"), ~waiting),
                D.c.start_before < bindparam("b_now"),  # past its deadline: due to be stopped
            ),
        )
        scheduled = select(*delayed).select_from(D.join(P, P.c.id == D.c.plan_id))
        self.due = (
            scheduled.where(startable)
            .order_by(D.c.start_at, D.c.plan_id)
            .limit(bindparam("b_limit"))
        )
        lock = scheduled.where(startable, D.c.plan_id == bindparam("b_id"))
        self.lock = lock if sqlite else lock.with_for_update(of=[D, P], skip_locked=True)
        self.get = select(*delayed).where(D.c.plan_id == bindparam("b_id"))
        self.insert = insert(D).values(
            plan_id=bindparam("b_id"),
            start_at=bindparam("v_start_at"),
            start_before=bindparam("v_start_before"),
            on_failed=bindparam("v_on_failed"),
        )
        self.update = (
            update(D)
            .where(D.c.plan_id == bindparam("b_id"))
            .values(
                start_at=bindparam("v_start_at"),
                start_before=bindparam("v_start_before"),
                on_failed=bindparam("v_on_failed"),
            )
        )
        self.after = select(C.c.plan_id, C.c.after_id).where(
            C.c.plan_id.in_(bindparam("b_ids", expanding=True))
        )
        self.add_after = insert(C).values(plan_id=bindparam("b_id"), after_id=bindparam("b_after"))
        self.drop_after = delete(C).where(C.c.plan_id == bindparam("b_id"))
        self.scheduled = select(P.c.id).where(
            P.c.id.in_(bindparam("b_ids", expanding=True)), P.c.state == SCHEDULED
        )
        self.next_start = (
            select(func.min(D.c.start_at))
            .select_from(D.join(P, P.c.id == D.c.plan_id))
            .where(P.c.state == SCHEDULED)
        )
        self.next_run = select(func.min(SC.c.next_run_at)).where(SC.c.paused_at.is_(None))
        select_schedules = select(*SCHEDULE_COLUMNS)
        self.schedule = select_schedules.where(SC.c.key == bindparam("b_key"))
        self.schedules = select_schedules.order_by(SC.c.key)
        self.due_schedules = (
            select_schedules.where(SC.c.paused_at.is_(None), SC.c.next_run_at <= bindparam("b_now"))
            .order_by(SC.c.next_run_at, SC.c.key)
            .limit(bindparam("b_limit"))
        )
        values = {c.name: bind(c, "v_" + c.name) for c in SC.columns if c.name != "key"}
        self.insert_schedule = insert(SC).values(key=bindparam("b_key"), **values)
        self.update_schedule = (
            update(SC)
            .where(SC.c.key == bindparam("b_key"), SC.c.revision == bindparam("b_expect"))
            .values(**values)
        )
        self.exists_schedule = select(SC.c.key).where(SC.c.key == bindparam("b_key"))
        self.delete_schedule = delete(SC).where(SC.c.key == bindparam("b_key"))


class SQLSchedules(SQLTransactions):
    _schedule_sql: ScheduleStatements | None = None

    @property
    def _ss(self) -> ScheduleStatements:
        if self._schedule_sql is None:
            self._schedule_sql = ScheduleStatements(self._sqlite)
        return self._schedule_sql

    # -- delayed and chained plans ---------------------------------------------------------

    def add_delayed(self, row: DelayedRow) -> None:
        with self.transaction() as conn:
            self._check_plans(conn, [row.plan_id, *row.after])
            conn.execute(self._ss.insert, _delayed_params(row))
            self._set_after(conn, row)

    def update_delayed(self, row: DelayedRow) -> None:
        with self.transaction() as conn:
            self._check_plans(conn, [row.plan_id, *row.after])
            conn.execute(self._ss.update, _delayed_params(row))
            conn.execute(self._ss.drop_after, {"b_id": row.plan_id})
            self._set_after(conn, row)

    def _set_after(self, conn: Any, row: DelayedRow) -> None:
        after = list(dict.fromkeys(row.after))
        if after:
            conn.execute(self._ss.add_after, [{"b_id": row.plan_id, "b_after": a} for a in after])

    @retried
    def get_delayed(self, plan_id: str) -> DelayedRow | None:
        with self._read(snapshot=True) as conn:
            row = conn.execute(self._ss.get, {"b_id": plan_id}).first()
            return None if row is None else self._with_after(conn, [row])[0]

    @retried
    def due_delayed(self, now: datetime, limit: int = 100) -> list[DelayedRow]:
        with self._read(snapshot=True) as conn:
            rows = conn.execute(self._ss.due, {"b_now": time_in(now), "b_limit": limit}).all()
            return self._with_after(conn, rows)

    def lock_delayed(self, plan_id: str, now: datetime) -> DelayedRow | None:
        with self.transaction() as conn:
            row = conn.execute(self._ss.lock, {"b_id": plan_id, "b_now": time_in(now)}).first()
            return None if row is None else self._with_after(conn, [row])[0]

    def _with_after(self, conn: Any, rows: Sequence[Any]) -> list[DelayedRow]:
        after: dict[str, list[str]] = {}
        if rows:
            ids = [r.plan_id for r in rows]
            for plan_id, after_id in conn.execute(self._ss.after, {"b_ids": ids}):
                after.setdefault(plan_id, []).append(after_id)
        return [
            DelayedRow(
                r.plan_id,
                _at(r.start_at),
                time_out(r.start_before),
                sorted(after.get(r.plan_id, [])),
                r.on_failed,
            )
            for r in rows
        ]

    @retried
    def waiting_for(self, plan_ids: Sequence[str]) -> dict[str, list[str]]:
        ids = list(dict.fromkeys(plan_ids))
        if not ids:
            return {}
        with self._read(snapshot=True) as conn:
            scheduled = set(conn.execute(self._ss.scheduled, {"b_ids": ids}).scalars())
            found: dict[str, list[str]] = {plan_id: [] for plan_id in ids if plan_id in scheduled}
            for plan_id, after_id in conn.execute(self._ss.after, {"b_ids": sorted(scheduled)}):
                found[plan_id].append(after_id)
        return {plan_id: sorted(ids) for plan_id, ids in found.items()}

    @retried
    def next_start(self) -> datetime | None:
        with self._read(snapshot=True) as conn:
            times = [
                time_out(conn.execute(self._ss.next_start).scalar()),
                time_out(conn.execute(self._ss.next_run).scalar()),
            ]
        return min((t for t in times if t is not None), default=None)

    # -- recurring schedules -----------------------------------------------------------------

    @retried
    def get_schedule(self, key: str) -> ScheduleRow | None:
        with self._read() as conn:
            row = conn.execute(self._ss.schedule, {"b_key": key}).first()
        return None if row is None else _schedule(row)

    @retried
    def schedules(self) -> list[ScheduleRow]:
        with self._read() as conn:
            return [_schedule(r) for r in conn.execute(self._ss.schedules)]

    @retried
    def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRow]:
        params = {"b_now": time_in(now), "b_limit": limit}
        with self._read() as conn:
            return [_schedule(r) for r in conn.execute(self._ss.due_schedules, params)]

    def save_schedule(self, row: ScheduleRow, expect: int | None) -> bool:
        revision = 1 if expect is None else expect + 1
        params = {
            "b_key": row.key,
            "b_expect": expect,
            "v_action_class": row.action_class,
            "v_arguments": {"args": row.args, "kwargs": row.kwargs},
            "v_cron": row.cron,
            "v_tz": row.tz,
            "v_catch_up": row.catch_up,
            "v_next_run_at": time_in(row.next_run_at),
            "v_paused_at": time_in(row.paused_at),
            "v_last_run_at": time_in(row.last_run_at),
            "v_last_plan_id": row.last_plan_id,
            "v_revision": revision,
            "v_created_at": time_in(row.created_at),
            "v_updated_at": time_in(row.updated_at),
        }
        with self.transaction() as conn:
            if expect is None:
                if conn.execute(self._ss.exists_schedule, params).first() is not None:
                    return False
                conn.execute(self._ss.insert_schedule, params)
            elif not conn.execute(self._ss.update_schedule, params).rowcount:
                return False
        row.revision = revision
        return True

    def delete_schedule(self, key: str) -> bool:
        with self.transaction() as conn:
            return bool(conn.execute(self._ss.delete_schedule, {"b_key": key}).rowcount)


def _delayed_params(row: DelayedRow) -> dict[str, Any]:
    return {
        "b_id": row.plan_id,
        "v_start_at": time_in(row.start_at),
        "v_start_before": time_in(row.start_before),
        "v_on_failed": row.on_failed,
    }


def _at(value: datetime | None) -> datetime:
    at = time_out(value)
    assert at is not None  # the column is NOT NULL
    return at


def _schedule(row: Row[Any]) -> ScheduleRow:
    try:
        arguments = row.arguments
        arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        return ScheduleRow(
            key=row.key,
            action_class=row.action_class,
            args=list(arguments["args"]),
            kwargs=dict(arguments["kwargs"]),
            cron=row.cron,
            tz=row.tz,
            catch_up=row.catch_up,
            next_run_at=_at(row.next_run_at),
            created_at=_at(row.created_at),
            updated_at=_at(row.updated_at),
            paused_at=time_out(row.paused_at),
            last_run_at=time_out(row.last_run_at),
            last_plan_id=row.last_plan_id,
            revision=row.revision,
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise corrupt(f"schedule {row.key!r}", "dynaflow_schedules", exc) from exc
