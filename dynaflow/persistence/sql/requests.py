"""The SQL storage's requests between worlds (``dynaflow_requests``) and its notifications.

A request is taken with one ``UPDATE ... RETURNING`` whose candidates are picked ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL (on SQLite the writer holds the database's one write lock), so two
worlds never take the same request and none waits for another. On PostgreSQL a request, an
event for another world and the end of a plan's execution are also announced with ``NOTIFY``
(sent when the transaction commits), which :class:`Listener` turns into wake-ups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Text,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.sql.elements import BindParameter

from dynaflow.persistence import tables
from dynaflow.persistence.base import RequestRow, interrupted
from dynaflow.persistence.sql.codec import CHUNK, bind, corrupt, time_in, time_out
from dynaflow.persistence.sql.notifications import CHANNEL, Listener, payloads
from dynaflow.persistence.sql.transactions import SQLTransactions, retried

log = logging.getLogger("dynaflow.storage")

R = tables.requests
JSON_COLUMNS = ("args", "error", "declined", "outcome")
OPEN = (R.c.answered_at.is_(None),)


class RequestStatements:
    def __init__(self, sqlite: bool) -> None:
        columns = [type_coerce(c, Text) if c.name in JSON_COLUMNS else c for c in R.columns]
        self.select = select(*columns)
        candidates = (
            select(R.c.id)
            .where(
                R.c.answered_at.is_(None),
                R.c.taken_by.is_(None),
                R.c.kind != "run",
                or_(R.c.world_id.is_(None), R.c.world_id == bindparam("b_world")),
                R.c.id.not_in(bindparam("b_skip", expanding=True)),
            )
            .order_by(R.c.id)
            .limit(bindparam("b_limit"))
        )
        runs = (
            select(R.c.id)
            .where(
                R.c.answered_at.is_(None),
                R.c.taken_by.is_(None),
                R.c.kind == "run",
                R.c.queue == bindparam("b_queue"),
                R.c.id.not_in(bindparam("b_skip", expanding=True)),
            )
            .order_by(R.c.id)
            .limit(bindparam("b_limit"))
        )
        if not sqlite:
            candidates = candidates.with_for_update(skip_locked=True)
            runs = runs.with_for_update(skip_locked=True)
        # PostgreSQL stamps the take with its own clock, in the statement (no round trip)
        at: Any = bindparam("v_at") if sqlite else func.clock_timestamp()
        taking: dict[str, Any] = {"taken_by": bindparam("b_world"), "taken_at": at}
        # SQLite reads first: most looks find nothing, and a read takes no write lock there
        # (on PostgreSQL a take that finds nothing locks nothing and costs one statement)
        self.any_request = candidates.with_only_columns(R.c.id).limit(1)
        self.any_run = (
            select(R.c.id)
            .where(
                R.c.answered_at.is_(None),
                R.c.taken_by.is_(None),
                R.c.kind == "run",
                R.c.queue.in_(bindparam("b_queues", expanding=True)),
            )
            .limit(1)
        )
        self.any_answer = (
            select(R.c.id)
            .where(
                R.c.kind == "run",
                R.c.requested_by == bindparam("b_world"),
                R.c.answered_at.is_not(None),
            )
            .limit(1)
        )
        self.take = (
            update(R)
            .where(R.c.id.in_(candidates.scalar_subquery()))
            .values(taking)
            .returning(*columns)
        )
        self.take_runs = (
            update(R).where(R.c.id.in_(runs.scalar_subquery())).values(taking).returning(*columns)
        )
        self.take_answers = (
            delete(R)
            .where(
                R.c.kind == "run",
                R.c.requested_by == bindparam("b_world"),
                R.c.answered_at.is_not(None),
            )
            .returning(*columns)
        )
        self.interrupt = (
            update(R)
            .where(*OPEN, R.c.kind == "run", R.c.taken_by == bindparam("b_world"))
            .values(answered_at=bindparam("v_at"), error=bind(R.c.error, "v_error"))
            .returning(R.c.requested_by)
        )
        self.drop_offers = delete(R).where(
            *OPEN,
            R.c.kind == "run",
            R.c.taken_by.is_(None),
            R.c.requested_by == bindparam("b_world"),
        )
        theirs = (R.c.kind == "run", R.c.plan_id == bindparam("b_plan"))
        self.drop_plan_offers = (
            delete(R).where(*OPEN, *theirs, R.c.taken_by.is_(None)).returning(*columns)
        )
        self.adopt_runs = (
            update(R)
            .where(*theirs, R.c.taken_by.is_not(None))
            .values(requested_by=bindparam("v_world"))
            .returning(*columns)
        )
        self.answer = (
            update(R)
            .where(R.c.id == bindparam("b_id"), R.c.answered_at.is_(None))
            .values(
                answered_at=bindparam("v_at"),
                error=bind(R.c.error, "v_error"),
                outcome=bind(R.c.outcome, "v_outcome"),
            )
            .returning(R.c.kind, R.c.requested_by)
        )
        self.decline = (
            update(R)
            .where(R.c.id == bindparam("b_id"))
            .values(
                taken_by=None,
                taken_at=None,
                declined=bind(R.c.declined, "v_declined"),
                world_id=bindparam("v_world"),
            )
        )
        self.insert = (
            insert(R)
            .values({c.name: bind(c) for c in R.columns if c.name != "id"})
            .returning(R.c.id, sort_by_parameter_order=True)
        )
        self.insert_many = insert(R).values({c.name: bind(c) for c in R.columns if c.name != "id"})
        self.get = self.select.where(R.c.id == bindparam("b_id"))
        self.get_many = self.select.where(R.c.id.in_(bindparam("b_ids", expanding=True)))
        self.open = self.select.where(*OPEN).order_by(R.c.id).limit(bindparam("b_limit"))
        self.delete = delete(R).where(R.c.id.in_(bindparam("b_ids", expanding=True)))
        gone: BindParameter[str] = bindparam("b_world")
        self.release = (
            update(R)
            .where(*OPEN, R.c.kind != "run", or_(R.c.taken_by == gone, R.c.world_id == gone))
            .values(
                taken_by=None,
                taken_at=None,
                world_id=case((R.c.world_id == gone, null()), else_=R.c.world_id),
            )
        )
        self.purge = delete(R).where(R.c.answered_at < bindparam("b_before"))
        self.notify = select(func.pg_notify(CHANNEL, bindparam("b_payload")))


class SQLRequests(SQLTransactions):
    _requests: RequestStatements | None = None

    @property
    def _rq(self) -> RequestStatements:
        if self._requests is None:
            self._requests = RequestStatements(self._sqlite)
        return self._requests

    @property
    def notifies(self) -> bool:  # type: ignore[override]
        return not self._sqlite

    @property
    def poll_interval(self) -> float:  # type: ignore[override]
        # PostgreSQL wakes its worlds with NOTIFY; polling only covers a lost notification
        return 0.25 if self._sqlite else 1.0

    def add_request(self, row: RequestRow, *, new_plan: bool = False) -> None:
        self._insert([row], check=not new_plan)

    def add_requests(self, rows: Sequence[RequestRow]) -> None:
        self._insert(rows, check=True)

    def _insert(self, rows: Sequence[RequestRow], check: bool) -> None:
        """Insert ``rows`` (their plans looked up first with ``check``), set their ids, and
        notify the worlds they are for."""
        if not rows:
            return
        with self.transaction() as conn:
            if check:
                self._check_plans(conn, [row.plan_id for row in rows])
            ids = conn.execute(self._rq.insert, [_new_row(row) for row in rows])
            for row, request_id in zip(rows, ids.scalars(), strict=True):
                row.id = request_id
            topics = {f"r {r.world_id or '*'}" if r.kind != "run" else f"n {r.queue}" for r in rows}
            self.notify(sorted(topics))

    def take_requests(
        self, world_id: str, limit: int, skip: Collection[int] = ()
    ) -> list[RequestRow]:
        params: dict[str, Any] = {"b_world": world_id, "b_limit": limit, "b_skip": list(skip)}
        if self._sqlite:
            check = {**params, "b_limit": 1}
            with self._read() as conn:
                if conn.execute(self._rq.any_request, check).first() is None:
                    return []
            params["v_at"] = time_in(self.now())
        with self.transaction() as conn:
            rows = conn.execute(self._rq.take, params).all()
        return sorted((self._row(r) for r in rows), key=lambda r: r.id or 0)

    def answer_request(
        self,
        request_id: int,
        error: dict[str, Any] | None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        params = {
            "b_id": request_id,
            "v_at": time_in(self.now()),
            "v_error": error,
            "v_outcome": outcome,
        }
        with self.transaction() as conn:
            row = conn.execute(self._rq.answer, params).first()
            if row is not None and row.kind == "run":
                self.notify([f"d {row.requested_by}"])
            elif row is not None:
                self.notify([f"a {request_id}"])

    def add_offers(self, offers: Sequence[RequestRow], claimed: set[tuple[str, int]]) -> None:
        rows = [_new_row(row) for row in offers if (row.plan_id, row.args["step_id"]) in claimed]
        if rows:
            with self.transaction() as conn:
                conn.execute(self._rq.insert_many, rows)
                self.notify(sorted({f"n {row['queue']}" for row in rows}))

    def take_runs(
        self, world_id: str, room: dict[str, int], skip: Collection[int] = ()
    ) -> list[RequestRow]:
        taken: list[Any] = []
        queues = [queue for queue, n in room.items() if n > 0]
        if not queues:
            return []
        if self._sqlite:
            with self._read() as conn:
                if conn.execute(self._rq.any_run, {"b_queues": queues}).first() is None:
                    return []
        with self.transaction() as conn:
            at = time_in(self.now()) if self._sqlite else None
            for queue, n in room.items():
                if n > 0:
                    params = {
                        "b_world": world_id,
                        "b_queue": queue,
                        "b_limit": n,
                        "v_at": at,
                        "b_skip": list(skip),
                    }
                    taken.extend(conn.execute(self._rq.take_runs, params).all())
        return sorted((self._row(r) for r in taken), key=lambda r: r.id or 0)

    def take_answers(self, world_id: str) -> list[RequestRow]:
        if self._sqlite:
            with self._read() as conn:
                if conn.execute(self._rq.any_answer, {"b_world": world_id}).first() is None:
                    return []
        with self.transaction() as conn:
            rows = conn.execute(self._rq.take_answers, {"b_world": world_id}).all()
        return sorted((self._row(r) for r in rows), key=lambda r: r.id or 0)

    def decline_request(
        self, request_id: int, world_id: str, reason: str, forward_to: str | None = None
    ) -> None:
        with self.transaction() as conn:
            row = conn.execute(self._rq.get, {"b_id": request_id}).first()
            if row is None:
                return
            request = self._row(row)
            declined = {**(request.declined or {}), world_id: reason}
            params = {
                "b_id": request_id,
                "v_declined": declined,
                "v_world": forward_to if forward_to is not None else request.world_id,
            }
            conn.execute(self._rq.decline, params)
            if forward_to is not None:
                self.notify([f"r {forward_to}"])

    @retried
    def get_request(self, request_id: int) -> RequestRow | None:
        with self._read() as conn:
            row = conn.execute(self._rq.get, {"b_id": request_id}).first()
        return None if row is None else self._row(row)

    @retried
    def get_requests(self, request_ids: Sequence[int]) -> dict[int, RequestRow]:
        wanted = list(dict.fromkeys(request_ids))
        found: dict[int, RequestRow] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), CHUNK):
                params = {"b_ids": wanted[start : start + CHUNK]}
                for r in conn.execute(self._rq.get_many, params):
                    row = self._row(r)
                    found[row.id or 0] = row
        return found

    @retried
    def open_requests(self, limit: int = 1000) -> list[RequestRow]:
        with self._read() as conn:
            rows = conn.execute(self._rq.open, {"b_limit": limit}).all()
        return [self._row(r) for r in rows]

    def delete_requests(self, ids: Sequence[int]) -> None:
        if ids:
            with self.transaction() as conn:
                conn.execute(self._rq.delete, {"b_ids": list(ids)})

    def release_requests(self, world_id: str) -> int:
        params = {
            "b_world": world_id,
            "v_at": time_in(self.now()),
            "v_error": interrupted(world_id),
        }
        with self.transaction() as conn:
            released = int(conn.execute(self._rq.release, {"b_world": world_id}).rowcount or 0)
            owners = list(conn.execute(self._rq.interrupt, params).scalars())
            dropped = int(conn.execute(self._rq.drop_offers, {"b_world": world_id}).rowcount or 0)
            topics = [f"d {owner}" for owner in owners]
            if released:
                topics.append("r *")
            self.notify(topics)
        return released + len(owners) + dropped

    def adopt_runs(self, plan_id: str, world_id: str) -> tuple[list[RequestRow], list[RequestRow]]:
        params = {"b_plan": plan_id, "v_world": world_id}
        with self.transaction() as conn:
            # untaken offers go first: one a world takes meanwhile is taken when the update
            # below looks (never neither dropped nor adopted)
            dropped = conn.execute(self._rq.drop_plan_offers, params).all()
            taken = [self._row(r) for r in conn.execute(self._rq.adopt_runs, params).all()]
            if any(row.answered_at is not None for row in taken):
                self.notify([f"d {world_id}"])
        return taken, [self._row(r) for r in dropped]

    def purge_requests(self, before: datetime) -> int:
        with self.transaction() as conn:
            return int(conn.execute(self._rq.purge, {"b_before": time_in(before)}).rowcount or 0)

    # -- notifications -----------------------------------------------------------------------

    def notify(self, topics: Iterable[str]) -> None:
        if self._sqlite:
            return
        sent = payloads(topics)
        if not sent:
            return
        with self.transaction() as conn:
            for payload in sent:
                conn.execute(self._rq.notify, {"b_payload": payload})

    def listen(self, callback: Callable[[str | None], None]) -> Listener | None:
        if self._sqlite:
            return None
        return Listener(self._engine.url, callback)

    def _row(self, r: Any) -> RequestRow:
        load = self._decode.load_json
        try:
            args, error, declined = load(r.args), load(r.error), load(r.declined)
            outcome = load(r.outcome)
        except ValueError as exc:
            raise corrupt(f"request {r.id}", R.name, exc) from exc
        created = time_out(r.created_at)
        assert created is not None  # NOT NULL
        return RequestRow(
            r.plan_id,
            r.kind,
            args or {},
            created,
            r.world_id,
            r.requested_by,
            r.id,
            r.taken_by,
            time_out(r.taken_at),
            time_out(r.answered_at),
            error,
            declined,
            r.queue,
            outcome,
        )


def _new_row(row: RequestRow) -> dict[str, Any]:
    """The values inserting ``row`` as a new request (nobody has taken or answered it)."""
    return {
        "plan_id": row.plan_id,
        "kind": row.kind,
        "args": row.args,
        "world_id": row.world_id,
        "requested_by": row.requested_by,
        "created_at": time_in(row.created_at),
        "taken_by": None,
        "taken_at": None,
        "answered_at": None,
        "error": None,
        "declined": None,
        "queue": row.queue,
        "outcome": None,
    }
