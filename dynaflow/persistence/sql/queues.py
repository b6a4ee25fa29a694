"""The SQL storage's declared queues (``dynaflow_queues``) and the room a limited queue has.

The room is counted inside the claiming transaction, after locking the queue's row (``FOR
UPDATE`` on PostgreSQL; on SQLite the writer holds the database's one write lock), so two
worlds claiming at once cannot both take the last of it.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, insert, select

from dynaflow.persistence import tables
from dynaflow.persistence.sql.codec import time_in
from dynaflow.persistence.sql.transactions import SQLTransactions, retried
from dynaflow.states import StepKind, StepState

Q, S = tables.queues, tables.steps


class QueueStatements:
    def __init__(self, sqlite: bool) -> None:
        self.delete = delete(Q).where(Q.c.name == bindparam("b_name"))
        self.insert = insert(Q).values(
            name=bindparam("b_name"), limit=bindparam("v_limit"), updated_at=bindparam("v_at")
        )
        self.limits = select(Q.c.name, Q.c.limit).order_by(Q.c.name)
        limit = select(Q.c.limit).where(Q.c.name == bindparam("b_name"))
        self.limit = limit if sqlite else limit.with_for_update()
        self.running = (
            select(func.count())
            .select_from(S)
            .where(S.c.state == StepState.RUNNING.value, S.c.queue == bindparam("b_name"))
        )
        self.counts = (
            select(S.c.queue, S.c.state, func.count())
            .where(S.c.kind == StepKind.RUN.value)
            .group_by(S.c.queue, S.c.state)
        )
        self.by_world = (
            select(S.c.world_id, func.count())
            .where(S.c.kind == StepKind.RUN.value, S.c.state == StepState.RUNNING.value)
            .group_by(S.c.world_id)
        )


class SQLQueues(SQLTransactions):
    _queue_sql: QueueStatements | None = None

    @property
    def _qs(self) -> QueueStatements:
        if self._queue_sql is None:
            self._queue_sql = QueueStatements(self._sqlite)
        return self._queue_sql

    def declare_queue(self, name: str, limit: int | None) -> None:
        with self.transaction() as conn:
            conn.execute(self._qs.delete, {"b_name": name})
            conn.execute(
                self._qs.insert, {"b_name": name, "v_limit": limit, "v_at": time_in(self.now())}
            )

    @retried
    def queue_limits(self) -> dict[str, int | None]:
        with self._read() as conn:
            return {name: limit for name, limit in conn.execute(self._qs.limits)}

    def queue_room(self, name: str) -> int | None:
        with self.transaction() as conn:
            limit = conn.execute(self._qs.limit, {"b_name": name}).scalar()
            if limit is None:
                return None
            running = conn.execute(self._qs.running, {"b_name": name}).scalar_one()
        return max(0, int(limit) - int(running))

    @retried
    def queue_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for queue, state, count in conn.execute(self._qs.counts):
                counts.setdefault(queue, {})[state] = int(count)
        return counts

    @retried
    def running_steps(self) -> dict[str | None, int]:
        with self._read() as conn:
            return {world_id: int(count) for world_id, count in conn.execute(self._qs.by_world)}
