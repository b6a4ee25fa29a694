"""The executor's group commit, straight on the driver's cursor (sqlite3 or psycopg): the hot
path of :meth:`SQLStorage.write <dynaflow.persistence.sql.SQLStorage.write>`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from dynaflow.persistence.base import (
    PLAN_FIELDS,
    STEP_FIELDS,
    Batch,
    BatchResult,
    Claim,
    HistoryRow,
    PlanUpdate,
    StepUpdate,
    Storage,
)
from dynaflow.persistence.sql import codec
from dynaflow.persistence.sql.driver import DriverStatement
from dynaflow.persistence.sql.statements import Statements
from dynaflow.states import PlanState


class SlowPath(Exception):
    """A compare-and-set in the fast path missed: redo the batch on the exact path."""


class DriverBatchWriter:
    """The executor's group commit, straight on the driver's cursor (sqlite3 or psycopg).

    SQLAlchemy's per-statement work (compiling, processing every parameter, building results)
    costs several times what the database itself spends on a small batch, and a batch is
    written for every step of a sequence. The statements are the storage's own
    (:class:`Statements`), compiled once as :class:`DriverStatement`, their parameters built by
    the same codec, so what is written is exactly what the exact path writes. Any
    compare-and-set that misses raises :class:`SlowPath`; the batch is then rolled back and
    written by the exact path, which finds out which rows conflicted. psycopg sends an
    executemany as one pipeline, so a batch costs a few round trips.
    """

    def __init__(self, statements: Statements, dialect: Any) -> None:
        self._sql = statements
        self._dialect = dialect
        self._driver: dict[int, DriverStatement] = {}

    def write(self, conn: Connection, batch: Batch, storage: Storage) -> BatchResult:
        """Write ``batch`` in ``conn``'s transaction; plan updates and events go through
        ``storage`` (the exact path, in the same transaction)."""
        result = BatchResult()
        cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if batch.plans and not self._plans(conn, cursor, batch.plans):
            for change in batch.plans:  # in order, one by one
                if not storage.update_plan(
                    change.plan_id, change.fields, change.expect, change.owner
                ):
                    result.plan_conflicts.append(change)
        if batch.steps:
            self._steps(cursor, batch.steps)
        if batch.outputs:
            rows = [codec.output_params(*output) for output in batch.outputs]
            self._update(cursor, self._sql.save_output, rows, self._sql.save_output_rows)
        history = list(batch.history)
        for claim, claimed in self._claims(cursor, batch.claims, storage, result):
            if not claimed:  # as claim_steps: a claim of a missing plan raises UnknownPlan
                storage.get_plan_record(claim.plan_id)
            for step_id in dict.fromkeys(claim.step_ids):
                if step_id in claimed:
                    result.claimed.add((claim.plan_id, step_id))
                    history.append(
                        HistoryRow(claim.plan_id, claim.at, claim.event, step_id, claim.world_id)
                    )
        if history:
            self._sql.insert_history(conn, [codec.history_row(h) for h in history])
        if batch.events:
            storage.add_events(batch.events)
        if batch.drop_events:
            storage.delete_events(batch.drop_events)
        if batch.offers:
            storage.add_offers(batch.offers, result.claimed)
        if batch.requests:
            storage.add_requests([row for _, row in batch.requests])
        return result

    def _claims(
        self, cursor: Any, claims: Sequence[Claim], storage: Storage, result: BatchResult
    ) -> list[tuple[Claim, set[int]]]:
        """Run the claims: each with the steps it claimed, in the batch's order. On
        PostgreSQL the claims of queues without a limit wait to go in one statement per
        expected states and world; one of a limited queue goes on its own (its room counts
        the claims before it), and a plan claimed again first sends what waits (in order)."""
        done: dict[int, tuple[Claim, set[int]]] = {}
        waiting: dict[tuple[Any, ...], list[tuple[int, Claim]]] = {}
        single = self._compiled(self._sql.claim)

        waiting_plans: set[str] = set()

        def send() -> None:
            for (expect, world), group in waiting.items():
                done.update(self._claim_many(cursor, expect, world, group, single))
            waiting.clear()
            waiting_plans.clear()

        for index, claim in enumerate(claims):
            if claim.queue is None and not self._sql.sqlite:
                if claim.plan_id in waiting_plans:
                    send()
                waiting_plans.add(claim.plan_id)
                key = (tuple(sorted(codec.val(s) for s in claim.expect)), claim.world_id)
                waiting.setdefault(key, []).append((index, claim))
                continue
            claim = storage.room_for(claim, result)
            if claim.step_ids:
                done[index] = (claim, self._claim(cursor, single, claim))
        send()
        return [done[index] for index in sorted(done)]

    def _claim_many(
        self,
        cursor: Any,
        expect: tuple[str, ...],
        world: str,
        group: list[tuple[int, Claim]],
        single: DriverStatement,
    ) -> dict[int, tuple[Claim, set[int]]]:
        """The claims of ``group`` (of different plans) in one statement."""
        if len(group) == 1:
            index, claim = group[0]
            return {index: (claim, self._claim(cursor, single, claim))}
        plans: list[str] = []
        ids: list[int] = []
        ats: list[Any] = []
        for _, claim in group:
            at = codec.time_in(claim.at)
            for step_id in dict.fromkeys(claim.step_ids):
                plans.append(claim.plan_id)
                ids.append(step_id)
                ats.append(at)
        params = {"b_plans": plans, "b_ids": ids, "b_ats": ats, "b_expect": list(expect)}
        sql, values = self._compiled(self._sql.claim_many).prepare({**params, "v_world": world})
        claimed: dict[str, set[int]] = {}
        for plan_id, step_id in cursor.execute(sql, values).fetchall():
            claimed.setdefault(plan_id, set()).add(step_id)
        return {index: (claim, claimed.get(claim.plan_id, set())) for index, claim in group}

    def _claim(self, cursor: Any, statement: DriverStatement, claim: Claim) -> set[int]:
        claimed: set[int] = set()
        for params in codec.claim_params(claim):
            sql, values = statement.prepare(params)
            claimed.update(row[0] for row in cursor.execute(sql, values).fetchall())
        return claimed

    def _plans(self, conn: Connection, cursor: Any, updates: Sequence[PlanUpdate]) -> bool:
        """The plans' compare-and-sets, one executemany per shape; the singletons the stopped
        ones held are released in one statement. ``False`` (nothing written) when they must go
        one by one: a plan changed twice, or only compared."""
        groups: dict[Any, list[dict[str, Any]]] = {}
        seen: set[str] = set()
        stopped: list[str] = []
        for u in updates:
            if u.plan_id in seen or not u.fields:
                return False
            if not u.fields.keys() <= PLAN_FIELDS:
                raise SlowPath  # the exact path says which field is unknown
            seen.add(u.plan_id)
            expect = None if u.expect is None else tuple(sorted(codec.val(s) for s in u.expect))
            key = (tuple(sorted(u.fields)), expect, u.owner is not ...)
            params: dict[str, Any] = {"b_id": u.plan_id, **codec.field_params(u.fields)}
            if u.owner is not ...:
                params["b_owner"] = u.owner
            groups.setdefault(key, []).append(params)
            if u.fields.get("state") == PlanState.STOPPED:
                stopped.append(u.plan_id)
        for (names, expect, owned), rows in groups.items():
            self._update(
                cursor,
                self._sql.plan_update_many(names, expect, owned),
                rows,
                self._sql.plan_update_rows(names, expect, owned),
            )
        if stopped:
            conn.execute(self._sql.release_singletons, {"b_ids": stopped})
        return True

    def _steps(self, cursor: Any, updates: Sequence[StepUpdate]) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        seen: set[tuple[str, int]] = set()
        for u in updates:
            key = (u.plan_id, u.step_id)
            if key in seen or not u.fields.keys() <= STEP_FIELDS:
                raise SlowPath  # the same step twice, or unknown fields: the exact path
            seen.add(key)
            groups.setdefault(tuple(sorted(u.fields)), []).append(codec.step_update_params(u))
        for names, rows in groups.items():
            self._update(
                cursor, self._sql.step_update(names), rows, self._sql.step_update_rows(names)
            )

    def _update(
        self, cursor: Any, statement: Any, rows: list[dict[str, Any]], by_rows: Any
    ) -> None:
        """A compare-and-set ``statement`` for each of ``rows``; :class:`SlowPath` if a row
        missed. On PostgreSQL several rows go as one statement, ``by_rows`` (its form with a
        parameter array per column): one statement per row costs the server and psycopg
        several times what the update itself does, even pipelined."""
        if len(rows) > 1 and not self._sql.sqlite:
            columns = {name: [row[name] for row in rows] for name in rows[0]}
            cursor.execute(*self._compiled(by_rows).prepare(columns))
        else:
            cursor.executemany(*self._compiled(statement).prepare_many(rows))
        if cursor.rowcount != len(rows):
            raise SlowPath

    def _compiled(self, statement: Any) -> DriverStatement:
        # the statements are built once and kept, so their identity is a stable key
        driver = self._driver.get(id(statement))
        if driver is None:
            driver = self._driver[id(statement)] = DriverStatement(statement, self._dialect)
        return driver
