"""The SQL storage's writes. Every state change is a compare-and-set ``UPDATE ... WHERE
state = :expect`` whose row count tells whether it applied; a write that changed nothing
checks whether its plan exists, so a missing one raises instead of looking like a conflict."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from types import EllipsisType
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.dml import Update

from dynaflow.exceptions import (
    ConcurrentModification,
    InvalidArgument,
    SingletonActive,
    StorageError,
    UnknownAction,
)
from dynaflow.persistence.base import (
    PLAN_FIELDS,
    STEP_FIELDS,
    Claim,
    EventRow,
    HistoryRow,
    NewPlan,
    StepUpdate,
    check_fields,
)
from dynaflow.persistence.limits import check_plan
from dynaflow.persistence.sql import codec
from dynaflow.persistence.sql.codec import CHUNK, val
from dynaflow.persistence.sql.driver import INTEGRITY_ERRORS, BulkInsert
from dynaflow.persistence.sql.transactions import SQLTransactions
from dynaflow.states import PlanState


class SQLWrites(SQLTransactions):
    def insert_plan(self, new: NewPlan) -> None:
        check_plan(new)
        plan, sql = new.plan, self._sql
        if plan.created_at is None:
            raise InvalidArgument(
                f"plan {plan.id} has no created_at; set it (dynaflow.clock.now())"
            )
        with self.transaction() as conn:
            # a duplicate id or key inserts nothing (and leaves the transaction usable: an
            # error would abort it on PostgreSQL)
            try:
                inserted = conn.execute(sql.insert_new_plan, codec.plan_row(plan)).first()
            except IntegrityError as exc:
                raise _unstorable(plan.id, exc) from exc
            if inserted is None:
                raise ConcurrentModification(f"plan {plan.id} (key {plan.key!r}) already exists")
            plan_id = plan.id
            for key in dict.fromkeys(new.singletons):
                self._take_singleton(conn, key, plan_id)
            own_history = all(row.plan_id == plan_id for row in new.history)
            rows = max(len(new.actions), len(new.steps), len(new.edges), len(new.history))
            try:
                with self._pipeline(conn, rows):  # PostgreSQL: one round trip for the lot
                    sql.insert_actions(conn, [codec.action_row(plan_id, a) for a in new.actions])
                    sql.insert_steps(conn, [codec.step_row(plan_id, s) for s in new.steps])
                    sql.insert_edges(conn, [(plan_id, f, t) for f, t in new.edges])
                    if own_history:
                        sql.insert_history(conn, [codec.history_row(h) for h in new.history])
            except INTEGRITY_ERRORS as exc:
                raise _unstorable(plan_id, exc) from exc
            if not own_history:
                self.add_history(new.history)

    def insert_plans(self, news: Sequence[NewPlan]) -> set[str]:
        """All the rows of all the plans at once (a statement per table); if one of them
        exists already, plan by plan."""
        if len(news) < 2 or any(new.singletons for new in news):
            return super().insert_plans(news)  # (singleton keys are checked plan by plan)
        sql = self._sql
        for new in news:
            check_plan(new)
            if new.plan.created_at is None:
                raise InvalidArgument(
                    f"plan {new.plan.id} has no created_at; set it (dynaflow.clock.now())"
                )
        with self.transaction() as conn:
            savepoint = conn.begin_nested()
            try:
                conn.execute(sql.insert_plan, [codec.plan_row(new.plan) for new in news])
                sql.insert_actions(
                    conn, [codec.action_row(n.plan.id, a) for n in news for a in n.actions]
                )
                sql.insert_steps(
                    conn, [codec.step_row(n.plan.id, s) for n in news for s in n.steps]
                )
                sql.insert_edges(conn, [(n.plan.id, f, t) for n in news for f, t in n.edges])
                sql.insert_history(conn, [codec.history_row(h) for n in news for h in n.history])
            except INTEGRITY_ERRORS:  # a duplicate, or a row the schema refuses: say which
                savepoint.rollback()
                return super().insert_plans(news)
            savepoint.commit()
        return set()

    def update_plan(
        self,
        plan_id: str,
        fields: dict[str, Any],
        expect: frozenset[PlanState] | None = None,
        owner: str | EllipsisType | None = ...,
    ) -> bool:
        check_fields("plan", fields, PLAN_FIELDS)
        if not fields:  # nothing to set: only the compare
            record = self.get_plan_record(plan_id)
            return (expect is None or record.state in expect) and (
                owner is ... or record.world_id == owner
            )
        owned = owner is not ...
        stmt = self._sql.plan_update(tuple(sorted(fields)), expect is not None, owned)
        params: dict[str, Any] = {"b_id": plan_id, **codec.field_params(fields)}
        if expect is not None:
            params["b_expect"] = [val(s) for s in expect]
        if owned:
            params["b_owner"] = owner
        with self.transaction() as conn:
            if conn.execute(stmt, params).rowcount:
                if fields.get("state") == PlanState.STOPPED:
                    conn.execute(self._sql.release_singletons, {"b_ids": [plan_id]})
                return True
            self._check_plans(conn, [plan_id])
            return False

    def _take_singleton(self, conn: Connection, key: str, plan_id: str) -> None:
        """Record that ``plan_id`` holds singleton ``key``; :class:`SingletonActive` if a plan
        that has not stopped holds it. (On PostgreSQL a concurrent insert of the key waits here
        for the other transaction, then fails if it committed.)"""
        sql = self._sql
        for _ in range(3):
            savepoint = conn.begin_nested()
            try:
                conn.execute(sql.insert_singleton, {"b_key": key, "b_id": plan_id})
            except IntegrityError:
                savepoint.rollback()
                holder = conn.execute(sql.singleton_holder, {"b_key": key}).first()
                if holder is None:
                    continue  # released meanwhile: try again
                if holder.state != PlanState.STOPPED.value:
                    raise SingletonActive(key, holder.plan_id) from None
                conn.execute(sql.drop_stale_singleton, {"b_key": key, "b_id": holder.plan_id})
                continue
            savepoint.commit()
            return
        raise ConcurrentModification(
            f"singleton {key!r} changed hands three times while plan {plan_id} took it; plan again"
        )

    def update_steps(self, updates: Sequence[StepUpdate]) -> list[StepUpdate]:
        if not updates:
            return []
        # one executemany per set of fields; a step updated twice goes in a later round, so
        # updates of the same step apply in the order given
        rounds: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        seen: dict[tuple[str, int], int] = {}
        for index, u in enumerate(updates):
            check_fields("step", u.fields, STEP_FIELDS)
            step = (u.plan_id, u.step_id)
            n = seen[step] = seen.get(step, -1) + 1
            rounds.setdefault((n, tuple(sorted(u.fields))), []).append(index)

        failed: list[int] = []
        with self.transaction() as conn:
            for (_, names), group in sorted(rounds.items(), key=lambda item: item[0][0]):
                stmt = self._sql.step_update(names)
                params = [codec.step_update_params(updates[index]) for index in group]
                failed.extend(group[i] for i in _compare_and_set(conn, stmt, params))
            conflicts = [updates[index] for index in sorted(failed)]
            if conflicts:
                self._check_plans(conn, [u.plan_id for u in conflicts])
        return conflicts

    def claim_steps(self, claim: Claim) -> list[int]:
        claimed: set[int] = set()
        with self.transaction() as conn:
            for params in codec.claim_params(claim):
                claimed.update(conn.execute(self._sql.claim, params).scalars())
            if not claimed:
                self._check_plans(conn, [claim.plan_id])
        return [step_id for step_id in dict.fromkeys(claim.step_ids) if step_id in claimed]

    def save_outputs(self, outputs: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        if not outputs:
            return
        params = [codec.output_params(*output) for output in outputs]
        with self.transaction() as conn:
            if conn.execute(self._sql.save_output, params).rowcount == len(params):
                return
            self._check_plans(conn, [p for p, _, _ in outputs])
            for plan_id, action_id, _ in outputs:
                query = self._sql.action_exists
                if conn.execute(query, {"b_plan": plan_id, "b_id": action_id}).first() is None:
                    raise UnknownAction(plan_id, action_id)

    def add_history(self, rows: Sequence[HistoryRow], exists: Collection[str] = ()) -> None:
        if not rows:
            return
        with self.transaction() as conn:
            unknown = [row.plan_id for row in rows if row.plan_id not in exists]
            if unknown:
                self._check_plans(conn, unknown)
            self._sql.insert_history(conn, [codec.history_row(row) for row in rows])

    def add_events(self, rows: Sequence[EventRow]) -> None:
        if not rows:
            return
        with self.transaction() as conn:
            self._check_steps(conn, [(row.plan_id, row.step_id) for row in rows])
            ids = self._insert_event_rows(conn, rows)
        for event_id, row in zip(ids, rows, strict=True):
            row.id = event_id

    def _insert_event_rows(self, conn: Connection, rows: Sequence[EventRow]) -> list[int]:
        """Insert ``rows``; return their ids, ascending in the order of the rows."""
        sql = self._sql
        if self._sqlite:
            # the write transaction holds SQLite's write lock: no one inserts meanwhile
            last = conn.execute(sql.last_event_id).scalar_one()
            ids = list(range(last + 1, last + 1 + len(rows)))
        elif len(rows) < BulkInsert.COPY_FROM:
            # one round trip; SQLAlchemy hands the ids back in the order of the parameters
            names = codec.EVENT_COLUMNS[1:]
            params = [dict(zip(names, codec.event_row(row), strict=True)) for row in rows]
            return list(conn.execute(sql.insert_events_returning, params).scalars())
        else:  # many: ids from the sequence, then COPY
            ids = sorted(conn.execute(sql.next_event_ids, {"b_n": len(rows)}).scalars())
        sql.insert_events(
            conn, [(i, *codec.event_row(row)) for i, row in zip(ids, rows, strict=True)]
        )
        return ids

    def delete_events(self, ids: Sequence[int]) -> None:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        with self.transaction() as conn:
            for i in range(0, len(wanted), CHUNK):
                conn.execute(self._sql.delete_events, {"b_ids": wanted[i : i + CHUNK]})


def _compare_and_set(conn: Connection, stmt: Update, params: list[dict[str, Any]]) -> list[int]:
    """Run ``stmt`` once per parameter set; the indexes of those that changed no row."""
    if len(params) == 1:
        return [] if conn.execute(stmt, params[0]).rowcount == 1 else [0]
    # an executemany only tells how many rows changed in all; when some did not, redo it
    # one by one to learn which (rare: a conflict means another writer got there first)
    savepoint = conn.begin_nested()
    if conn.execute(stmt, params).rowcount == len(params):
        savepoint.commit()
        return []
    savepoint.rollback()
    return [i for i, p in enumerate(params) if conn.execute(stmt, p).rowcount != 1]


def _unstorable(plan_id: str, exc: Exception) -> StorageError:
    reason = " ".join(str(getattr(exc, "orig", exc)).split())
    return StorageError(
        f"plan {plan_id} cannot be stored ({reason}): its rows break a constraint of the "
        "schema (a duplicate action or step id, or a missing value); plan it through a World"
    )
