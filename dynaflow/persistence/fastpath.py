"""The executor's group commit, straight on the driver's cursor (sqlite3 or psycopg): the hot
path of :meth:`SQLStorage.write <dynaflow.persistence.sql.SQLStorage.write>`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Connection

from dynaflow.persistence import tables
from dynaflow.persistence.base import Batch, BatchResult, Claim, StepUpdate
from dynaflow.persistence.sql import (
    _CHUNK,
    _CONVERT_IN,
    _HISTORY_COLUMNS,
    _STEP_FIELDS,
    _bind,
    _history_tuple,
    _identity,
    _time_in,
    _val,
)

if TYPE_CHECKING:
    from dynaflow.persistence.sql import SQLStorage

A, S, H = tables.actions, tables.steps, tables.history


class SlowPath(Exception):
    """A compare-and-set in the fast path missed: redo the batch on the exact path."""


class DriverBatchWriter:
    """The executor's group commit, straight on the driver's cursor (sqlite3 or psycopg).

    SQLAlchemy's per-statement work (compiling, processing every parameter, building results)
    costs several times what the database itself spends on a small batch, and a batch is
    written for every step of a sequence. Statements here are SQL strings built once (per set
    of columns, per number of ids), values converted as SQLAlchemy would convert them (on
    SQLite by the columns' own bind processors), so what is written is exactly what the exact
    path would write. Any compare-and-set that misses raises :class:`SlowPath`; the batch is
    then rolled back and written by the exact path, which finds out which rows conflicted.
    psycopg sends an executemany as one pipeline, so a batch costs a few round trips.
    """

    STEP_FIELDS = ("started_at", "ended_at", "duration", "error", "world_id")

    def __init__(self, storage: SQLStorage, dialect: Any) -> None:
        self.storage = storage
        self.postgres = postgres = dialect.name == "postgresql"
        mark = "%s" if postgres else "?"

        def processor(column: Any) -> Callable[[Any], Any]:
            convert = _CONVERT_IN.get(column.name, _identity)
            if postgres:  # psycopg adapts datetimes itself; JSON goes as text, cast in the SQL
                if isinstance(column.type, JSON):
                    return lambda value: None if value is None else json.dumps(value)
                return convert
            bind = _bind(column).type.dialect_impl(dialect).bind_processor(dialect)
            if bind is None:
                return convert
            return lambda value: None if value is None else bind(convert(value))

        def param(column: Any) -> str:
            return f"{mark}::json" if postgres and isinstance(column.type, JSON) else mark

        self.mark, self.param = mark, param

        self.step_in = {name: processor(S.c[name]) for name in self.STEP_FIELDS}
        self.time_in = processor(S.c.started_at)
        self.output_in = processor(A.c.output)
        self.history_in = [processor(H.c[n]) for n in _HISTORY_COLUMNS]
        self.step_sql: dict[tuple[str, ...], str] = {}
        self.claim_sql: dict[tuple[int, int], str] = {}
        self.output_sql = (
            f"UPDATE {A.name} SET output = {param(A.c.output)} WHERE plan_id = {mark} "
            f"AND id = {mark}"
        )
        names = ", ".join(_HISTORY_COLUMNS)
        marks = ", ".join(param(H.c[n]) for n in _HISTORY_COLUMNS)
        self.history_sql = f"INSERT INTO {H.name} ({names}) VALUES ({marks})"

    def write(self, conn: Connection, batch: Batch) -> BatchResult:
        result = BatchResult()
        storage = self.storage
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for change in batch.plans:
            if not storage.update_plan(change.plan_id, change.fields, change.expect, change.owner):
                result.plan_conflicts.append(change)
        if batch.steps:
            self._steps(cursor, batch.steps)
        if batch.outputs:
            rows = [(self.output_in(o), p, a) for p, a, o in batch.outputs]
            cursor.executemany(self.output_sql, rows)
            if cursor.rowcount != len(rows):
                raise SlowPath
        history = [_history_tuple(h) for h in batch.history]
        for claim in batch.claims:
            claimed = self._claim(cursor, claim)
            at = _time_in(claim.at)
            for step_id in claimed:
                result.claimed.add((claim.plan_id, step_id))
                history.append((claim.plan_id, at, claim.event, step_id, claim.world_id, None))
        if history:
            converted = [
                tuple(
                    convert(v) if v is not None else None
                    for convert, v in zip(self.history_in, row, strict=True)
                )
                for row in history
            ]
            cursor.executemany(self.history_sql, converted)
        if batch.events:
            storage.add_events(batch.events)
        if batch.drop_events:
            storage.delete_events(batch.drop_events)
        return result

    def _steps(self, cursor: Any, updates: Sequence[StepUpdate]) -> None:
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        seen: set[tuple[str, int]] = set()
        for u in updates:
            key = (u.plan_id, u.step_id)
            if key in seen or not u.fields.keys() <= _STEP_FIELDS:
                raise SlowPath  # the same step twice, or unusual fields: the exact path
            seen.add(key)
            names = tuple(sorted(u.fields))
            values = [self.step_in[n](u.fields[n]) for n in names]
            groups.setdefault(names, []).append(
                (_val(u.state), *values, u.plan_id, u.step_id, _val(u.expect))
            )
        for names, rows in groups.items():
            sql = self.step_sql.get(names)
            if sql is None:
                m = self.mark
                sets = "".join(f", {n} = {self.param(S.c[n])}" for n in names)
                sql = self.step_sql[names] = (
                    f"UPDATE {S.name} SET state = {m}{sets} "
                    f"WHERE plan_id = {m} AND id = {m} AND state = {m}"
                )
            cursor.executemany(sql, rows)
            if cursor.rowcount != len(rows):
                raise SlowPath

    def _claim(self, cursor: Any, claim: Claim) -> list[int]:
        wanted = list(dict.fromkeys(claim.step_ids))
        expect = sorted(_val(s) for s in claim.expect)
        claimed: set[int] = set()
        if self.postgres:  # arrays: one statement whatever the number of ids
            sql = (
                f"UPDATE {S.name} SET state = 'running', started_at = %s, ended_at = NULL, "
                "duration = NULL, error = NULL, world_id = %s WHERE plan_id = %s AND "
                "id = ANY(%s) AND state = ANY(%s) RETURNING id"
            )
            params = (self.time_in(claim.at), claim.world_id, claim.plan_id, wanted, expect)
            claimed.update(row[0] for row in cursor.execute(sql, params).fetchall())
            return [step_id for step_id in wanted if step_id in claimed]
        for i in range(0, len(wanted), _CHUNK):
            ids = wanted[i : i + _CHUNK]
            key = (len(ids), len(expect))
            cached = self.claim_sql.get(key)
            if cached is None:
                cached = self.claim_sql[key] = (
                    f"UPDATE {S.name} SET state = 'running', started_at = ?, ended_at = NULL, "
                    "duration = NULL, error = NULL, world_id = ? WHERE plan_id = ? AND id IN "
                    f"({', '.join('?' * len(ids))}) AND state IN ({', '.join('?' * len(expect))})"
                    " RETURNING id"
                )
            params = (self.time_in(claim.at), claim.world_id, claim.plan_id, *ids, *expect)
            claimed.update(row[0] for row in cursor.execute(cached, params).fetchall())
        return [step_id for step_id in wanted if step_id in claimed]
