"""The executor's group commit, straight on the driver's cursor (sqlite3 or psycopg): the hot
path of :meth:`SQLStorage.write <dynaflow.persistence.sql.SQLStorage.write>`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
    batch_topics,
)
from dynaflow.persistence.sql import codec
from dynaflow.persistence.sql.codec import CHUNK
from dynaflow.persistence.sql.driver import BulkInsert, DriverStatement
from dynaflow.persistence.sql.notifications import payloads
from dynaflow.persistence.sql.statements import Statements
from dynaflow.states import PlanState


class SlowPath(Exception):
    """A compare-and-set in the fast path missed: redo the batch on the exact path."""


@dataclass
class PlanGroups:
    """A batch's plan updates for the fast path: the rows of each statement shape (names,
    expected states, owner compared), and the plans they stop."""

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)


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

    #: rows of one update shape from which PostgreSQL gets one statement with arrays
    ARRAYS_FROM = 100

    def __init__(self, statements: Statements, dialect: Any, notify: Any = None) -> None:
        self._sql = statements
        self._dialect = dialect
        self._driver: dict[int, DriverStatement] = {}
        #: PostgreSQL's NOTIFY statement (parameter ``b_payload``), sent in the pipeline
        self._notify = notify

    def write(self, conn: Connection, batch: Batch, storage: Storage) -> BatchResult:
        """Write ``batch`` (fenced already) in ``conn``'s transaction; plan updates that must
        go one by one, and events, go through ``storage`` (the exact path, in the same
        transaction)."""
        result = BatchResult()
        dbapi: Any = conn.connection.dbapi_connection
        plans = self.plan_groups(batch.plans)
        if plans is None:
            plans = PlanGroups()
            for change in batch.plans:  # in order, one by one
                if not storage.update_plan(
                    change.plan_id, change.fields, change.expect, change.owner
                ):
                    result.plan_conflicts.append(change)
        claims = self._send(dbapi, batch, plans, storage, result, None)
        history = self._history(batch, claims, result)
        if history:
            self._sql.insert_history(conn, history)
        self._finish(batch, storage, result, claims)
        return result

    def pipelines(self, batch: Batch) -> PlanGroups | None:
        """The plan updates of ``batch`` grouped for :meth:`write_pipelined`, or ``None`` when
        it cannot take the batch: on SQLite (no pipelines), and when something must be read
        before the claims are in (plans changed twice, the room of a limited queue, the
        plans of events to drop) or the plans to fence take more than one statement."""
        if self._sql.sqlite or batch.drop_events:
            return None
        if any(claim.queue is not None for claim in batch.claims):
            return None
        if len(batch.plan_ids()) > CHUNK:  # (so are its plan updates, or some change twice)
            return None
        return self.plan_groups(batch.plans)

    def write_pipelined(
        self, conn: Connection, batch: Batch, storage: Storage, plans: PlanGroups
    ) -> BatchResult:
        """PostgreSQL: the fencing check and the writes up to the claims sent as one pipeline
        (one round trip where they took one each), the history rows and the notification of
        the batch's topics (:func:`batch_topics`; sent when the transaction commits) in a
        second. The check goes first, so the plans stay locked against a takeover as with
        :meth:`Storage.fence`; a plan the batch's ``owner`` no longer owns, like any
        compare-and-set that missed, raises :class:`SlowPath` (the exact path then fences the
        batch)."""
        result = BatchResult()
        dbapi: Any = conn.connection.dbapi_connection
        wanted = sorted(batch.plan_ids() - batch.unowned) if batch.owner is not None else []
        checks: list[tuple[Any, int]] = []
        with dbapi.pipeline():
            owned = dbapi.cursor()
            if wanted:
                owned.execute(*self._owned(wanted, batch.owner))
            claims = self._send(dbapi, batch, plans, storage, result, checks)
            history = self._history(batch, claims, result)
            if history and len(history) < BulkInsert.COPY_FROM:  # no COPY in a pipeline
                self._sql.insert_history(conn, history)
                history = []
            if self._notify is not None:  # (nothing is fenced here: that raises SlowPath)
                notify = self._compiled(self._notify)
                for payload in payloads(batch_topics(batch, result)):
                    dbapi.cursor().execute(*notify.prepare({"b_payload": payload}))
        if wanted and len(owned.fetchall()) != len(wanted):
            raise SlowPath  # taken over: the exact path fences the batch
        if any(cursor.rowcount != expected for cursor, expected in checks):
            raise SlowPath
        if history:
            self._sql.insert_history(conn, history)
        self._finish(batch, storage, result, claims)
        return result

    def _owned(self, plan_ids: list[str], owner: str | None) -> tuple[str, Any]:
        if len(plan_ids) == 1:
            return self._compiled(self._sql.owned_plan).prepare(
                {"b_id": plan_ids[0], "b_owner": owner}
            )
        return self._compiled(self._sql.owned_plans).prepare({"b_ids": plan_ids, "b_owner": owner})

    def _send(
        self,
        dbapi: Any,
        batch: Batch,
        plans: PlanGroups,
        storage: Storage,
        result: BatchResult,
        checks: list[tuple[Any, int]] | None,
    ) -> list[tuple[Claim, set[int]]]:
        """Send the plans', steps' and outputs' updates and the claims; the claims' results."""
        for (names, expect, owned), rows in plans.groups.items():
            self._update(
                dbapi,
                self._sql.plan_update_many(names, expect, owned),
                rows,
                self._sql.plan_update_rows(names, expect, owned),
                checks,
            )
        if plans.stopped:  # the singletons the stopped plans held
            released = self._compiled(self._sql.release_singletons)
            dbapi.cursor().execute(*released.prepare({"b_ids": plans.stopped}))
        if batch.steps:
            self._steps(dbapi, batch.steps, checks)
        if batch.outputs:
            rows = [codec.output_params(*output) for output in batch.outputs]
            self._update(dbapi, self._sql.save_output, rows, self._sql.save_output_rows, checks)
        return self._claims(dbapi.cursor(), batch.claims, storage, result)

    @staticmethod
    def _history(
        batch: Batch, claims: list[tuple[Claim, set[int]]], result: BatchResult
    ) -> list[tuple[Any, ...]]:
        """The history rows to insert: the batch's, and one per step claimed (each also
        added to ``result.claimed``)."""
        history = list(batch.history)
        for claim, claimed in claims:
            for step_id in dict.fromkeys(claim.step_ids):
                if step_id in claimed:
                    result.claimed.add((claim.plan_id, step_id))
                    history.append(
                        HistoryRow(claim.plan_id, claim.at, claim.event, step_id, claim.world_id)
                    )
        return [codec.history_row(h) for h in history]

    @staticmethod
    def _finish(
        batch: Batch,
        storage: Storage,
        result: BatchResult,
        claims: list[tuple[Claim, set[int]]],
    ) -> None:
        for claim, claimed in claims:
            if not claimed:  # as claim_steps: a claim of a missing plan raises UnknownPlan
                storage.get_plan_record(claim.plan_id)
        if batch.events:
            storage.add_events(batch.events)
        if batch.drop_events:
            storage.delete_events(batch.drop_events)
        if batch.offers:
            storage.add_offers(batch.offers, result.claimed)
        if batch.requests:
            storage.add_requests([row for _, row in batch.requests])

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

    @staticmethod
    def plan_groups(updates: Sequence[PlanUpdate]) -> PlanGroups | None:
        """The plans' compare-and-sets, grouped by shape (one executemany each), and the plans
        they stop; ``None`` when they must go one by one: a plan changed twice, or only
        compared."""
        plans = PlanGroups()
        seen: set[str] = set()
        for u in updates:
            if u.plan_id in seen or not u.fields:
                return None
            if not u.fields.keys() <= PLAN_FIELDS:
                raise SlowPath  # the exact path says which field is unknown
            seen.add(u.plan_id)
            expect = None if u.expect is None else tuple(sorted(codec.val(s) for s in u.expect))
            key = (tuple(sorted(u.fields)), expect, u.owner is not ...)
            params: dict[str, Any] = {"b_id": u.plan_id, **codec.field_params(u.fields)}
            if u.owner is not ...:
                params["b_owner"] = u.owner
            plans.groups.setdefault(key, []).append(params)
            if u.fields.get("state") == PlanState.STOPPED:
                plans.stopped.append(u.plan_id)
        return plans

    def _steps(
        self, dbapi: Any, updates: Sequence[StepUpdate], checks: list[tuple[Any, int]] | None
    ) -> None:
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
                dbapi,
                self._sql.step_update(names),
                rows,
                self._sql.step_update_rows(names),
                checks,
            )

    def _update(
        self,
        dbapi: Any,
        statement: Any,
        rows: list[dict[str, Any]],
        by_rows: Any,
        checks: list[tuple[Any, int]] | None,
    ) -> None:
        """A compare-and-set ``statement`` for each of ``rows``; :class:`SlowPath` if a row
        missed (in a pipeline: added to ``checks``, to look at once the results are in). On
        PostgreSQL, from :attr:`ARRAYS_FROM` rows on they go as one statement, ``by_rows`` (its
        form with a parameter array per column); fewer go as an executemany, which psycopg
        pipelines and which costs less than building the arrays."""
        cursor = dbapi.cursor()
        if len(rows) >= self.ARRAYS_FROM and not self._sql.sqlite:
            columns = {name: [row[name] for row in rows] for name in rows[0]}
            cursor.execute(*self._compiled(by_rows).prepare(columns))
        else:
            cursor.executemany(*self._compiled(statement).prepare_many(rows))
        if checks is not None:
            checks.append((cursor, len(rows)))
        elif cursor.rowcount != len(rows):
            raise SlowPath

    def _compiled(self, statement: Any) -> DriverStatement:
        # the statements are built once and kept, so their identity is a stable key
        driver = self._driver.get(id(statement))
        if driver is None:
            driver = self._driver[id(statement)] = DriverStatement(statement, self._dialect)
        return driver
