"""The SQL storage's cluster rows: executor worlds, their heartbeats, the plans of worlds whose
lease ran out, and the ownership check that fences a world out of plans it lost. Leases are
judged on the database's clock (:meth:`SQLLeases.now`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dynaflow.persistence.base import DEFAULT_LEASE, WorldRow
from dynaflow.persistence.sql.codec import EPOCH, time_in, time_out
from dynaflow.persistence.sql.driver import DriverStatement
from dynaflow.persistence.sql.transactions import SQLTransactions

#: ids per ``IN (...)`` list, well under SQLite's bound-parameter limit
CHUNK = 5000


class SQLLeases(SQLTransactions):
    _owned: DriverStatement | None = None
    _owned_one: DriverStatement

    def now(self) -> datetime:
        """The database's clock: PostgreSQL's ``clock_timestamp()``, SQLite's ``'now'`` (the
        host's clock, which every process using the file shares)."""
        conn = self.current_connection()
        if conn is not None:
            value = conn.execute(self._sql.clock).scalar_one()
        else:
            with self._read() as reader:
                value = reader.execute(self._sql.clock).scalar_one()
        if isinstance(value, str):  # SQLite: 'YYYY-MM-DD HH:MM:SS.SSS', UTC
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        at = time_out(value)
        assert at is not None
        return at

    def register_world(self, world: WorldRow) -> None:
        row = {
            "id": world.id,
            "started_at": time_in(world.started_at),
            "heartbeat_at": time_in(world.heartbeat_at),
            "hostname": world.hostname,
            "pid": world.pid,
            "executor": world.executor,
            "lease": world.lease,
            "expires_at": time_in(world.expires_at),
            "queues": world.queues,
        }
        with self.transaction() as conn:
            conn.execute(self._sql.delete_world, {"b_id": world.id})
            conn.execute(self._sql.insert_world, row)

    def heartbeat(self, world_id: str, at: datetime, lease: float | None = None) -> bool:
        with self.transaction() as conn:
            if lease is None:
                row = conn.execute(self._sql.world_lease, {"b_id": world_id}).first()
                if row is None:
                    return False
                lease = row[0] or DEFAULT_LEASE
            expires = at + timedelta(seconds=lease)
            params = {
                "b_id": world_id,
                "v_at": time_in(at),
                "v_expires": time_in(expires),
                "v_lease": lease,
            }
            return bool(conn.execute(self._sql.heartbeat, params).rowcount)

    def unregister_world(self, world_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(self._sql.delete_world, {"b_id": world_id})

    def worlds(self) -> list[WorldRow]:
        with self._read() as conn:
            rows = conn.execute(self._sql.select_worlds).all()
        return [
            WorldRow(
                r.id,
                time_out(r.started_at) or EPOCH,
                time_out(r.heartbeat_at) or EPOCH,
                r.hostname,
                r.pid,
                r.executor,
                r.lease or DEFAULT_LEASE,
                _queues(r.queues),
            )
            for r in rows
        ]

    def orphaned_plans(self, now: datetime) -> list[tuple[str, str | None]]:
        params = {"b_now": time_in(now)}
        with self._read() as conn:
            return [(r.id, r.world_id) for r in conn.execute(self._sql.orphaned_plans, params)]

    def released_plans(self, limit: int = 1000) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(self._sql.released_plans, {"b_limit": limit}).scalars())

    def owned_plans(self, plan_ids: Sequence[str], owner: str) -> set[str]:
        # on the executor's hot path (every batch): run on the driver's cursor, as the fast
        # path runs its statements, skipping SQLAlchemy's per-statement work
        owned: set[str] = set()
        if self._owned is None:
            dialect = self._engine.dialect
            self._owned = DriverStatement(self._sql.owned_plans, dialect)
            self._owned_one = DriverStatement(self._sql.owned_plan, dialect)
        conn = self.current_connection()
        if conn is None:  # not in the batch's transaction: the lock would end at once
            with self.transaction():
                return self.owned_plans(plan_ids, owner)
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if len(plan_ids) == 1:  # the common case: a batch for one plan
            sql, values = self._owned_one.prepare({"b_id": plan_ids[0], "b_owner": owner})
            return {row[0] for row in cursor.execute(sql, values).fetchall()}
        for start in range(0, len(plan_ids), CHUNK):
            params = {"b_ids": list(plan_ids[start : start + CHUNK]), "b_owner": owner}
            sql, values = self._owned.prepare(params)
            owned.update(row[0] for row in cursor.execute(sql, values).fetchall())
        return owned

    def event_plans(self, ids: Sequence[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        with self.transaction() as conn:
            for start in range(0, len(ids), CHUNK):
                params = {"b_ids": list(ids[start : start + CHUNK])}
                found.update((r[0], r[1]) for r in conn.execute(self._sql.event_plans, params))
        return found


def _queues(value: Any) -> dict[str, int] | None:
    """The queues column (JSON; text on SQLite), or ``None`` if it is not a queue map."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None
