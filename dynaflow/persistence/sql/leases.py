"""The SQL storage's cluster rows: executor worlds, their heartbeats, and the plans of worlds
whose lease ran out."""

from __future__ import annotations

from datetime import datetime

from dynaflow.persistence.base import WorldRow
from dynaflow.persistence.sql.codec import EPOCH, time_in, time_out
from dynaflow.persistence.sql.transactions import SQLTransactions


class SQLLeases(SQLTransactions):
    def register_world(self, world: WorldRow) -> None:
        row = {
            "id": world.id,
            "started_at": time_in(world.started_at),
            "heartbeat_at": time_in(world.heartbeat_at),
            "hostname": world.hostname,
            "pid": world.pid,
            "executor": world.executor,
        }
        with self.transaction() as conn:
            conn.execute(self._sql.delete_world, {"b_id": world.id})
            conn.execute(self._sql.insert_world, row)

    def heartbeat(self, world_id: str, at: datetime) -> bool:
        with self.transaction() as conn:
            params = {"b_id": world_id, "v_at": time_in(at)}
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
            )
            for r in rows
        ]

    def orphaned_plans(self, alive_since: datetime) -> list[tuple[str, str]]:
        params = {"b_since": time_in(alive_since)}
        with self._read() as conn:
            return [(r.id, r.world_id) for r in conn.execute(self._sql.orphaned_plans, params)]
