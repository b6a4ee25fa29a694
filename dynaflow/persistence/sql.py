"""The SQL storage: SQLite (embedded, WAL) and PostgreSQL (psycopg 3) through SQLAlchemy Core.

This is the only module that opens database connections. Statements are built once per storage
and executed with executemany; every state change is a compare-and-set ``UPDATE ... WHERE
state = :expect`` whose row count tells whether it applied.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from enum import Enum
from types import EllipsisType
from typing import Any

import psycopg
from sqlalchemy import (
    JSON,
    URL,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    String,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    null,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert, Update

from dynaflow.exceptions import (
    ConcurrentModification,
    CorruptRecord,
    DatabaseUnavailable,
    StorageError,
    UnknownPlan,
    UnknownStep,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
)
from dynaflow.persistence import migrate as migrations
from dynaflow.persistence import tables
from dynaflow.persistence.base import (
    ORDERABLE,
    Batch,
    BatchResult,
    Claim,
    EventRow,
    HistoryRow,
    NewPlan,
    StepUpdate,
    Storage,
    WorldRow,
)
from dynaflow.states import PlanResult, PlanState, StepKind, StepState

P, A, S, E, H = tables.plans, tables.actions, tables.steps, tables.edges, tables.history
EV = tables.events
W = tables.worlds

#: JSON that stores Python ``None`` as SQL NULL (the tables' plain ``JSON`` would write ``'null'``)
_JSON = JSON(none_as_null=True)
#: execution option marking a SQLite connection as a reader: plain (deferred) BEGIN
_READER = "dynaflow_reader"
#: ids per ``IN (...)`` list, well under SQLite's bound-parameter limit
_CHUNK = 5000

_PLAN_FIELDS = frozenset(c.name for c in P.columns) - {"id"}
_STEP_FIELDS = frozenset(
    {"started_at", "ended_at", "duration", "error", "world_id", "queue", "position"}
)


# -- engines -----------------------------------------------------------------------------------


def make_engine(url: str | URL) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, set up the way dynaflow needs it.

    ``postgresql://`` means psycopg 3. SQLite files run in WAL mode and take the write lock when a
    write transaction begins (``BEGIN IMMEDIATE``), so concurrent writers wait on
    ``busy_timeout`` instead of failing; an in-memory SQLite is one database shared by all threads.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            "cannot parse the database URL; expected e.g. sqlite:///dynaflow.db or "
            "postgresql://user:password@host/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if _is_memory(parsed):
            engine = create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = create_engine(parsed, pool_size=8, max_overflow=-1)
        _setup_sqlite(engine, wal=not _is_memory(parsed))
        return engine
    if backend == "postgresql":
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        return create_engine(parsed, connect_args=connect_args, pool_size=8, max_overflow=16)
    raise StorageError(
        f"dynaflow stores plans in SQLite or PostgreSQL, not {backend!r} "
        f"({parsed.render_as_string(hide_password=True)})"
    )


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _setup_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # dynaflow emits BEGIN itself (below); pysqlite's own transaction handling is off
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout=30000")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a write transaction takes the write lock up front: upgrading a read lock later can
        # fail at once with "database is locked", waiting for it at BEGIN cannot
        reader = conn.get_execution_options().get(_READER)
        conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection from ``engine``; an unreachable database raises :class:`DatabaseUnavailable`."""
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise DatabaseUnavailable(_unavailable(engine.url, exc)) from exc
    with conn:
        yield conn


def _unavailable(url: URL, exc: DBAPIError) -> str:
    reason = " ".join(str(exc.orig).split())
    if url.password:
        reason = reason.replace(str(url.password), "***")
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        hint = "check that its directory exists and that this process may write there"
    else:
        hint = (
            "check that the server is running and reachable at that host and port, and that the "
            "database name, user and password are right"
        )
    return f"cannot open the database {where}: {reason}; {hint}"


# -- value conversion --------------------------------------------------------------------------


def _val(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _time_in(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    # SQLite keeps the wall-clock fields only, so everything is stored as UTC
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _time_out(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _error_in(value: Any) -> dict[str, Any] | None:
    return value.to_json() if isinstance(value, StepError) else value


def _json_text(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _identity(value: Any) -> Any:
    return value


_CONVERT_IN: dict[str, Callable[[Any], Any]] = {
    "state": _val,
    "result": _val,
    "kind": _val,
    "created_at": _time_in,
    "started_at": _time_in,
    "ended_at": _time_in,
    "error": _error_in,
}


def _bind(table_column: Any, name: str | None = None) -> Any:
    type_ = _JSON if isinstance(table_column.type, JSON) else table_column.type
    return bindparam(name or table_column.name, type_=type_)


def _insert(table: Any, *, skip: tuple[str, ...] = ()) -> Insert:
    return insert(table).values({c.name: _bind(c) for c in table.columns if c.name not in skip})


class _BulkInsert:
    """Inserts many rows (tuples in the order of ``columns``) without SQLAlchemy's per-row
    parameter handling, which costs several times the insert itself: each value is converted
    by its column type's own bind processor. PostgreSQL receives large sets through COPY (one
    statement per row, even pipelined, is the slow part there)."""

    #: fewer rows than this go to PostgreSQL as an executemany (COPY costs two round trips)
    COPY_FROM = 100

    def __init__(self, table: Any, columns: tuple[str, ...], dialect: Any) -> None:
        self._columns = columns
        self._postgres = dialect.name == "postgresql"
        self._stmt = insert(table).values({n: _bind(table.c[n]) for n in columns})
        types = [_bind(table.c[name]).type for name in columns]
        if self._postgres:
            quote = dialect.identifier_preparer.quote
            names = ", ".join(quote(name) for name in columns)
            self._sql = f"COPY {quote(table.name)} ({names}) FROM STDIN"
            # COPY parses text: JSON goes as its text, everything else psycopg writes as is
            self._convert = [(i, json.dumps) for i, t in enumerate(types) if isinstance(t, JSON)]
        else:
            compiled = self._stmt.compile(dialect=dialect)
            assert tuple(compiled.positiontup or ()) == columns, "bulk insert column order"
            self._sql = str(compiled)
            processors = [t.dialect_impl(dialect).bind_processor(dialect) for t in types]
            self._convert = [(i, p) for i, p in enumerate(processors) if p is not None]

    def __call__(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self._postgres and len(rows) < self.COPY_FROM:
            conn.execute(self._stmt, [dict(zip(self._columns, row, strict=True)) for row in rows])
            return
        if self._convert:
            converted = []
            for row in rows:
                values = list(row)
                for i, convert in self._convert:
                    if values[i] is not None:
                        values[i] = convert(values[i])
                converted.append(tuple(values))
            rows = converted
        if not self._postgres:
            conn.exec_driver_sql(self._sql, rows)
            return
        driver_connection: Any = conn.connection.dbapi_connection
        with driver_connection.cursor() as cursor, cursor.copy(self._sql) as copy:
            for row in rows:
                copy.write_row(row)


#: before any due time ("no lower bound" for next_due)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- the storage -------------------------------------------------------------------------------


class SQLStorage(Storage):
    """Plans in SQLite or PostgreSQL. Thread-safe; each thread has its own ambient transaction."""

    def __init__(self, url: str, *, migrate: bool | None = None) -> None:
        self._engine = make_engine(url)
        self.display_url = make_url(url).render_as_string(hide_password=True)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._local = threading.local()
        # one in-memory SQLite connection serves every thread: its users take turns
        memory = self._sqlite and _is_memory(self._engine.url)
        self._serial: AbstractContextManager[Any] = threading.RLock() if memory else nullcontext()
        if self._sqlite:
            self._reader = self._snapshot = self._engine.execution_options(**{_READER: True})
        else:
            self._reader = self._engine.execution_options(isolation_level="AUTOCOMMIT")
            self._snapshot = self._engine.execution_options(isolation_level="REPEATABLE READ")
        try:
            migrations.ensure_schema(
                self._engine, migrate=self._sqlite if migrate is None else migrate
            )
        except BaseException:
            self._engine.dispose()
            raise
        self._build_statements()
        from dynaflow.persistence.fastpath import DriverBatchWriter

        self._fast = DriverBatchWriter(self, self._engine.dialect)

    def _build_statements(self) -> None:
        # SQLite hands JSON back as text: decode it here, where a bad value can name its row
        self._load_json = _json_text if self._sqlite else _identity

        def column(c: Any) -> Any:
            if self._sqlite and isinstance(c.type, JSON):
                return type_coerce(c, Text).label(c.name)
            return c

        def columns(table: Any, names: Sequence[str] | None = None) -> list[Any]:
            return [column(table.c[n]) for n in names or table.c.keys()]

        dialect = self._engine.dialect
        self._insert_plan = _insert(P)
        self._insert_actions = _BulkInsert(A, _ACTION_COLUMNS, dialect)
        self._insert_steps = _BulkInsert(S, _STEP_COLUMNS, dialect)
        self._insert_edges = _BulkInsert(E, ("plan_id", "from_step", "to_step"), dialect)
        self._insert_history = _BulkInsert(H, _HISTORY_COLUMNS, dialect)
        # events get their ids before a driver-level executemany (or COPY) inserts them, so
        # each row's id is known; see _insert_event_rows
        self._insert_events = _BulkInsert(EV, _EVENT_COLUMNS, dialect)
        if self._sqlite:
            # the highest id ever used (AUTOINCREMENT keeps it), so ids are never reused
            self._last_event_id = text(
                "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = :table), 0)"
            ).bindparams(table=EV.name)
        else:
            sequence = func.pg_get_serial_sequence(EV.name, EV.c.id.name)
            self._next_event_ids = select(func.nextval(sequence)).select_from(
                func.generate_series(1, bindparam("b_n", type_=Integer))
            )
            self._insert_events_returning = (
                insert(EV)
                .values({name: _bind(EV.c[name]) for name in _EVENT_COLUMNS[1:]})
                .returning(EV.c.id, sort_by_parameter_order=True)
            )
        self._delete_events = delete(EV).where(EV.c.id.in_(bindparam("b_ids", expanding=True)))
        self._save_output = (
            update(A)
            .where(A.c.plan_id == bindparam("b_plan"), A.c.id == bindparam("b_id"))
            .values(output=_bind(A.c.output, "v_output"))
        )
        self._claim = (
            update(S)
            .where(
                S.c.plan_id == bindparam("b_plan"),
                S.c.id.in_(bindparam("b_ids", expanding=True)),
                S.c.state.in_(bindparam("b_expect", expanding=True)),
            )
            .values(
                state=StepState.RUNNING.value,
                started_at=_bind(S.c.started_at, "v_at"),
                ended_at=null(),
                duration=null(),
                error=null(),
                world_id=_bind(S.c.world_id, "v_world"),
            )
            .returning(S.c.id)
        )
        self._step_updates: dict[tuple[str, ...], Update] = {}
        self._plan_updates: dict[tuple[tuple[str, ...], bool, bool], Update] = {}

        self._plan_columns = columns(P)
        self._select_plan = select(*self._plan_columns).where(P.c.id == bindparam("b_id"))
        self._select_by_key = select(*self._plan_columns).where(P.c.key == bindparam("b_key"))
        self._select_actions = (
            select(*columns(A, _ACTION_COLUMNS[1:]))
            .where(A.c.plan_id == bindparam("b_id"))
            .order_by(A.c.id)
        )
        self._select_steps = (
            select(*columns(S, _STEP_RECORD_COLUMNS))
            .where(S.c.plan_id == bindparam("b_id"))
            .order_by(S.c.id)
        )
        self._select_edges = (
            select(E.c.from_step, E.c.to_step)
            .where(E.c.plan_id == bindparam("b_id"))
            .order_by(E.c.from_step, E.c.to_step)
        )
        self._select_history = (
            select(*columns(H)).where(H.c.plan_id == bindparam("b_id")).order_by(H.c.id)
        )
        self._existing_plans = select(P.c.id).where(P.c.id.in_(bindparam("b_ids", expanding=True)))
        self._existing_steps = select(S.c.plan_id, S.c.id).where(
            S.c.plan_id.in_(bindparam("b_plans", expanding=True)),
            S.c.id.in_(bindparam("b_ids", expanding=True)),
        )
        self._select_step = select(*columns(S, _STEP_RECORD_COLUMNS)).where(
            S.c.plan_id == bindparam("b_plan"), S.c.id == bindparam("b_id")
        )

        event_columns = columns(EV, _EVENT_COLUMNS)
        self._select_plan_events = (
            select(*event_columns).where(EV.c.plan_id == bindparam("b_id")).order_by(EV.c.id)
        )
        # the events of the running plans a world owns
        owned = select(*event_columns).select_from(EV.join(P, EV.c.plan_id == P.c.id))
        owned = owned.where(
            P.c.state == PlanState.RUNNING.value, P.c.world_id == bindparam("b_world")
        )
        self._select_due = (
            owned.where(or_(EV.c.due_at.is_(None), EV.c.due_at <= _bind(EV.c.due_at, "b_now")))
            .order_by(EV.c.id)
            .limit(bindparam("b_limit", type_=Integer))
        )
        self._select_next_due = owned.with_only_columns(func.min(EV.c.due_at)).where(
            EV.c.due_at > _bind(EV.c.due_at, "b_after")
        )

    def close(self) -> None:
        self._engine.dispose()

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None:  # nested: join
            yield outer
            return
        with self._serial, connect(self._engine) as conn:
            self._local.conn = conn
            try:
                with conn.begin():
                    yield conn
            finally:
                self._local.conn = None

    def current_connection(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    def write(self, batch: Batch) -> BatchResult:
        """The group commit: outside an ambient transaction, straight on the driver's cursor
        (:mod:`dynaflow.persistence.fastpath`); else the exact path of the base class."""
        if getattr(self._local, "conn", None) is not None:
            return super().write(batch)
        from dynaflow.persistence.fastpath import SlowPath

        try:
            with self.transaction() as conn:
                return self._fast.write(conn, batch)
        except (SlowPath, sqlite3.IntegrityError, psycopg.errors.IntegrityError):
            # a missed compare-and-set or a missing plan: the exact path says which
            return super().write(batch)

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """The ambient connection, else a reader: on SQLite a deferred transaction (no write
        lock), on PostgreSQL autocommit or, for multi-statement reads, a repeatable-read
        snapshot."""
        ambient: Connection | None = getattr(self._local, "conn", None)
        if ambient is not None:
            yield ambient
            return
        with self._serial, connect(self._snapshot if snapshot else self._reader) as conn:
            yield conn

    def _missing_plans(self, conn: Connection, plan_ids: Sequence[str]) -> list[str]:
        """Those of ``plan_ids`` that do not exist, in order."""
        wanted = list(dict.fromkeys(plan_ids))
        found: set[str] = set()
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            found.update(conn.execute(self._existing_plans, {"b_ids": chunk}).scalars())
        return [plan_id for plan_id in wanted if plan_id not in found]

    def _check_plans(self, conn: Connection, plan_ids: Sequence[str]) -> None:
        missing = self._missing_plans(conn, plan_ids)
        if missing:
            raise UnknownPlan(missing[0])

    # -- writes ----------------------------------------------------------------------------

    def insert_plan(self, new: NewPlan) -> None:
        plan = new.plan
        if plan.created_at is None:
            raise ValueError(f"plan {plan.id} has no created_at; set it (dynaflow.clock.now())")
        with self.transaction() as conn:
            # a savepoint keeps the transaction usable after a duplicate (PostgreSQL aborts it)
            savepoint = conn.begin_nested()
            try:
                conn.execute(self._insert_plan, _plan_row(plan))
            except IntegrityError:
                savepoint.rollback()
                if self._plan_exists(conn, plan.id, plan.key):
                    raise ConcurrentModification(
                        f"plan {plan.id} (key {plan.key!r}) already exists"
                    ) from None
                raise
            savepoint.commit()
            plan_id = plan.id
            self._insert_actions(conn, [_action_row(plan_id, a) for a in new.actions])
            self._insert_steps(conn, [_step_row(plan_id, s) for s in new.steps])
            self._insert_edges(conn, [(plan_id, f, t) for f, t in new.edges])
            if all(row.plan_id == plan_id for row in new.history):
                self._insert_history(conn, [_history_tuple(h) for h in new.history])
            else:
                self.add_history(new.history)

    def _plan_exists(self, conn: Connection, plan_id: str, key: str | None) -> bool:
        query = select(P.c.id).where(
            (P.c.id == plan_id) | (P.c.key == key) if key else P.c.id == plan_id
        )
        return conn.execute(query.limit(1)).first() is not None

    def update_plan(
        self,
        plan_id: str,
        fields: dict[str, Any],
        expect: frozenset[PlanState] | None = None,
        owner: str | EllipsisType | None = ...,
    ) -> bool:
        names = tuple(sorted(fields))
        unknown = set(names) - _PLAN_FIELDS
        if unknown:
            raise TypeError(
                f"cannot update plan field(s) {sorted(unknown)}; use {sorted(_PLAN_FIELDS)}"
            )
        if not names:  # nothing to set: only the compare
            record = self.get_plan_record(plan_id)
            return (expect is None or record.state in expect) and (
                owner is ... or record.world_id == owner
            )
        owned = owner is not ...
        stmt = self._plan_update(names, expect is not None, owned)
        params: dict[str, Any] = {"b_id": plan_id}
        for name, value in fields.items():
            params["v_" + name] = _CONVERT_IN.get(name, _identity)(value)
        if expect is not None:
            params["b_expect"] = [_val(s) for s in expect]
        if owned:
            params["b_owner"] = owner
        with self.transaction() as conn:
            if conn.execute(stmt, params).rowcount:
                return True
            self._check_plans(conn, [plan_id])
            return False

    def _plan_update(self, names: tuple[str, ...], cas: bool, owned: bool) -> Update:
        stmt = self._plan_updates.get((names, cas, owned))
        if stmt is None:
            stmt = update(P).where(P.c.id == bindparam("b_id"))
            if cas:
                stmt = stmt.where(P.c.state.in_(bindparam("b_expect", expanding=True)))
            if owned:  # NULL-safe: an owner of None matches a plan no world owns
                owner = _bind(P.c.world_id, "b_owner")
                stmt = stmt.where(P.c.world_id.is_not_distinct_from(owner))
            stmt = stmt.values({name: _bind(P.c[name], "v_" + name) for name in names})
            self._plan_updates[(names, cas, owned)] = stmt
        return stmt

    def update_steps(self, updates: Sequence[StepUpdate]) -> list[StepUpdate]:
        if not updates:
            return []
        # one executemany per set of fields; a step updated twice goes in a later round, so
        # updates of the same step apply in the order given
        rounds: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        seen: dict[tuple[str, int], int] = {}
        for index, u in enumerate(updates):
            unknown = u.fields.keys() - _STEP_FIELDS
            if unknown:
                raise TypeError(
                    f"cannot update step field(s) {sorted(unknown)}; use {sorted(_STEP_FIELDS)}"
                )
            step = (u.plan_id, u.step_id)
            n = seen[step] = seen.get(step, -1) + 1
            rounds.setdefault((n, tuple(sorted(u.fields))), []).append(index)

        failed: list[int] = []
        with self.transaction() as conn:
            for (_, names), group in sorted(rounds.items(), key=lambda item: item[0][0]):
                stmt = self._step_update(names)
                params = [_step_update_params(updates[index]) for index in group]
                failed.extend(group[i] for i in self._compare_and_set(conn, stmt, params))
            conflicts = [updates[index] for index in sorted(failed)]
            if conflicts:
                self._check_plans(conn, [u.plan_id for u in conflicts])
        return conflicts

    def _step_update(self, names: tuple[str, ...]) -> Update:
        stmt = self._step_updates.get(names)
        if stmt is None:
            values: dict[str, Any] = {"state": bindparam("b_state")}
            values.update({name: _bind(S.c[name], "v_" + name) for name in names})
            stmt = (
                update(S)
                .where(
                    S.c.plan_id == bindparam("b_plan"),
                    S.c.id == bindparam("b_id"),
                    S.c.state == bindparam("b_expect"),
                )
                .values(values)
            )
            self._step_updates[names] = stmt
        return stmt

    @staticmethod
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

    def claim_steps(self, claim: Claim) -> list[int]:
        wanted = list(dict.fromkeys(claim.step_ids))
        expect = [_val(s) for s in claim.expect]
        claimed: set[int] = set()
        with self.transaction() as conn:
            for i in range(0, len(wanted), _CHUNK):
                params = {
                    "b_plan": claim.plan_id,
                    "b_ids": wanted[i : i + _CHUNK],
                    "b_expect": expect,
                    "v_at": _time_in(claim.at),
                    "v_world": claim.world_id,
                }
                claimed.update(conn.execute(self._claim, params).scalars())
            if not claimed:
                self._check_plans(conn, [claim.plan_id])
        return [step_id for step_id in wanted if step_id in claimed]

    def save_outputs(self, outputs: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        if not outputs:
            return
        params = [{"b_plan": p, "b_id": a, "v_output": o} for p, a, o in outputs]
        with self.transaction() as conn:
            if conn.execute(self._save_output, params).rowcount == len(params):
                return
            self._check_plans(conn, [p for p, _, _ in outputs])
            for plan_id, action_id, _ in outputs:
                query = select(A.c.id).where(A.c.plan_id == plan_id, A.c.id == action_id)
                if conn.execute(query).first() is None:
                    raise KeyError(f"plan {plan_id} has no action {action_id}")

    def add_history(self, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            return
        with self.transaction() as conn:
            self._check_plans(conn, [row.plan_id for row in rows])
            self._insert_history(conn, [_history_tuple(row) for row in rows])

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
        if self._sqlite:
            # the write transaction holds SQLite's write lock: no one inserts meanwhile
            last = conn.execute(self._last_event_id).scalar_one()
            ids = list(range(last + 1, last + 1 + len(rows)))
        elif len(rows) < _BulkInsert.COPY_FROM:
            # one round trip; SQLAlchemy hands the ids back in the order of the parameters
            params = [dict(zip(_EVENT_COLUMNS[1:], _event_tuple(row), strict=True)) for row in rows]
            return list(conn.execute(self._insert_events_returning, params).scalars())
        else:  # many: ids from the sequence, then COPY
            ids = sorted(conn.execute(self._next_event_ids, {"b_n": len(rows)}).scalars())
        self._insert_events(
            conn, [(i, *_event_tuple(row)) for i, row in zip(ids, rows, strict=True)]
        )
        return ids

    def _check_steps(self, conn: Connection, wanted: Sequence[tuple[str, int]]) -> None:
        """Raise for the first ``(plan_id, step_id)`` that does not exist: UnknownPlan if its
        plan is missing, else UnknownStep."""
        wanted = list(dict.fromkeys(wanted))
        plan_ids = list(dict.fromkeys(plan_id for plan_id, _ in wanted))
        step_ids = list(dict.fromkeys(step_id for _, step_id in wanted))
        found: set[tuple[str, int]] = set()
        for i in range(0, len(plan_ids), _CHUNK):
            for j in range(0, len(step_ids), _CHUNK):
                params = {"b_plans": plan_ids[i : i + _CHUNK], "b_ids": step_ids[j : j + _CHUNK]}
                found.update((r[0], r[1]) for r in conn.execute(self._existing_steps, params))
        for plan_id, step_id in wanted:
            if (plan_id, step_id) not in found:
                self._check_plans(conn, [plan_id])
                raise UnknownStep(plan_id, step_id)

    def delete_events(self, ids: Sequence[int]) -> None:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        with self.transaction() as conn:
            for i in range(0, len(wanted), _CHUNK):
                conn.execute(self._delete_events, {"b_ids": wanted[i : i + _CHUNK]})

    # -- reads -----------------------------------------------------------------------------

    def get_step(self, plan_id: str, step_id: int) -> StepRecord:
        with self._read() as conn:
            row = conn.execute(self._select_step, {"b_plan": plan_id, "b_id": step_id}).first()
            if row is None:
                self._check_plans(conn, [plan_id])
                raise UnknownStep(plan_id, step_id)
        return self._step_records(plan_id, [row])[0]

    def due_events(self, world_id: str, now: datetime, limit: int = 1000) -> list[EventRow]:
        params = {"b_world": world_id, "b_now": _time_in(now), "b_limit": limit}
        with self._read() as conn:
            rows = conn.execute(self._select_due, params).all()
        return self._event_records(rows)

    def next_due(self, world_id: str, after: datetime | None = None) -> datetime | None:
        params = {"b_world": world_id, "b_after": _time_in(after or _EPOCH)}
        with self._read() as conn:
            return _time_out(conn.execute(self._select_next_due, params).scalar())

    def plan_events(self, plan_id: str) -> list[EventRow]:
        with self._read() as conn:
            rows = conn.execute(self._select_plan_events, {"b_id": plan_id}).all()
            if not rows:
                self._check_plans(conn, [plan_id])
        return self._event_records(rows)

    # -- worlds --------------------------------------------------------------------------------

    def register_world(self, world: WorldRow) -> None:
        row = {
            "id": world.id,
            "started_at": _time_in(world.started_at),
            "heartbeat_at": _time_in(world.heartbeat_at),
            "hostname": world.hostname,
            "pid": world.pid,
            "executor": world.executor,
        }
        with self.transaction() as conn:
            conn.execute(delete(W).where(W.c.id == world.id))
            conn.execute(insert(W).values(row))

    def heartbeat(self, world_id: str, at: datetime) -> bool:
        stmt = update(W).where(W.c.id == world_id).values(heartbeat_at=_time_in(at))
        with self.transaction() as conn:
            return bool(conn.execute(stmt).rowcount)

    def unregister_world(self, world_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(W).where(W.c.id == world_id))

    def worlds(self) -> list[WorldRow]:
        query = select(
            W.c.id, W.c.started_at, W.c.heartbeat_at, W.c.hostname, W.c.pid, W.c.executor
        ).order_by(W.c.started_at, W.c.id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            WorldRow(
                r.id,
                _time_out(r.started_at) or _EPOCH,
                _time_out(r.heartbeat_at) or _EPOCH,
                r.hostname,
                r.pid,
                r.executor,
            )
            for r in rows
        ]

    def orphaned_plans(self, alive_since: datetime) -> list[tuple[str, str]]:
        alive = select(W.c.id).where(W.c.heartbeat_at >= _time_in(alive_since))
        query = select(P.c.id, P.c.world_id).where(
            P.c.state == PlanState.RUNNING.value,
            P.c.world_id.is_not(None),
            P.c.world_id.not_in(alive),
        )
        with self._read() as conn:
            return [(r.id, r.world_id) for r in conn.execute(query).all()]

    def load_plan(self, plan_id: str) -> ExecutionPlan:
        params = {"b_id": plan_id}
        with self._read(snapshot=True) as conn:
            row = conn.execute(self._select_plan, params).first()
            if row is None:
                raise UnknownPlan(plan_id)
            record = self._plan_record(row)
            actions = self._action_records(
                plan_id, conn.execute(self._select_actions, params).all()
            )
            steps = self._step_records(plan_id, conn.execute(self._select_steps, params).all())
            edges = [(r[0], r[1]) for r in conn.execute(self._select_edges, params).all()]
            history = [
                self._history_record(plan_id, r) for r in conn.execute(self._select_history, params)
            ]
        return ExecutionPlan(
            record=record,
            actions=tuple(actions),
            steps=tuple(steps),
            edges=tuple(edges),
            history=tuple(history),
        )

    def get_plan_record(self, plan_id: str) -> PlanRecord:
        with self._read() as conn:
            row = conn.execute(self._select_plan, {"b_id": plan_id}).first()
        if row is None:
            raise UnknownPlan(plan_id)
        return self._plan_record(row)

    def find_plan_by_key(self, key: str) -> PlanRecord | None:
        with self._read() as conn:
            row = conn.execute(self._select_by_key, {"b_key": key}).first()
        return None if row is None else self._plan_record(row)

    def find_plans(
        self,
        *,
        state: Sequence[PlanState] | None = None,
        result: Sequence[PlanResult] | None = None,
        label: str | None = None,
        action: str | None = None,
        offset: int = 0,
        limit: int | None = None,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        name = order_by.lstrip("-")
        if name not in ORDERABLE:
            raise ValueError(f"cannot order plans by {order_by!r}; use one of {ORDERABLE}")
        column, tiebreak = self._sortable(P.c[name]), self._sortable(P.c.id)
        ordering = column.desc() if order_by.startswith("-") else column.asc()
        query = (
            select(*self._plan_columns)
            .where(*_plan_filters(state, result, label, action))
            .order_by(ordering.nulls_last(), tiebreak.asc())
        )
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [self._plan_record(row) for row in rows]

    def _sortable(self, column: Any) -> ColumnElement[Any]:
        # order strings by code point, as Python (and the memory storage) does
        if not self._sqlite and isinstance(column.type, String):
            return column.collate("C")
        return column

    def count_plans(
        self,
        *,
        state: Sequence[PlanState] | None = None,
        result: Sequence[PlanResult] | None = None,
        label: str | None = None,
        action: str | None = None,
    ) -> int:
        query = (
            select(func.count()).select_from(P).where(*_plan_filters(state, result, label, action))
        )
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    # -- decoding --------------------------------------------------------------------------

    def _plan_record(self, row: Row[Any]) -> PlanRecord:
        try:
            return PlanRecord(
                id=row.id,
                label=row.label,
                state=PlanState(row.state),
                result=PlanResult(row.result),
                root_action_class=row.root_action_class,
                created_at=_time_out(row.created_at),
                started_at=_time_out(row.started_at),
                ended_at=_time_out(row.ended_at),
                world_id=row.world_id,
                key=row.key,
                run_flow=self._load_json(row.run_flow),
                error=StepError.from_json(self._load_json(row.error)),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise _corrupt(f"plan {row.id}", "dynaflow_plans", exc) from exc

    def _action_records(self, plan_id: str, rows: Sequence[Any]) -> list[ActionRecord]:
        load, records = self._load_json, []
        for action_id, action_class, input_, output, parent_id, trigger_id in rows:
            try:
                input_, output = load(input_), load(output)
            except ValueError as exc:
                where = f"plan {plan_id} action {action_id}"
                raise _corrupt(where, "dynaflow_actions", exc) from exc
            records.append(
                ActionRecord(action_id, action_class, input_, output, parent_id, trigger_id)
            )
        return records

    def _step_records(self, plan_id: str, rows: Sequence[Any]) -> list[StepRecord]:
        load, records = self._load_json, []
        for row in rows:
            step_id, kind, action_id, action_class, state, started, ended = row[:7]
            duration, error, queue, world_id, position = row[7:]
            try:
                records.append(
                    StepRecord(
                        step_id,
                        _STEP_KINDS[kind],
                        action_id,
                        action_class,
                        _STEP_STATES[state],
                        _time_out(started),
                        _time_out(ended),
                        duration,
                        None if error is None else StepError.from_json(load(error)),
                        queue,
                        world_id,
                        position,
                    )
                )
            except (ValueError, TypeError, KeyError) as exc:
                where = f"plan {plan_id} step {step_id}"
                raise _corrupt(where, "dynaflow_steps", exc) from exc
        return records

    def _history_record(self, plan_id: str, row: Row[Any]) -> HistoryRecord:
        try:
            detail = self._load_json(row.detail)
        except ValueError as exc:
            raise _corrupt(f"plan {plan_id} history row {row.id}", "dynaflow_history", exc) from exc
        at = _time_out(row.at)
        assert at is not None  # the column is NOT NULL
        return HistoryRecord(at, row.event, row.world_id, row.step_id, detail)

    def _event_records(self, rows: Sequence[Any]) -> list[EventRow]:
        load, records = self._load_json, []
        for event_id, plan_id, step_id, kind, payload, created_at, due_at in rows:
            try:
                payload = load(payload)
            except ValueError as exc:
                where = f"plan {plan_id} event {event_id}"
                raise _corrupt(where, "dynaflow_events", exc) from exc
            created = _time_out(created_at)
            assert created is not None  # the column is NOT NULL
            records.append(
                EventRow(plan_id, step_id, kind, payload, created, _time_out(due_at), event_id)
            )
        return records


def _corrupt(what: str, table: str, exc: Exception) -> CorruptRecord:
    return CorruptRecord(
        f"{what}: its row in {table} cannot be decoded ({type(exc).__name__}: {exc}); it was "
        "written by something other than dynaflow or by a newer version"
    )


# -- rows --------------------------------------------------------------------------------------


def _plan_row(r: PlanRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "label": r.label,
        "state": _val(r.state),
        "result": _val(r.result),
        "root_action_class": r.root_action_class,
        "key": r.key,
        "created_at": _time_in(r.created_at),
        "started_at": _time_in(r.started_at),
        "ended_at": _time_in(r.ended_at),
        "world_id": r.world_id,
        "run_flow": r.run_flow,
        "error": _error_in(r.error),
    }


_ACTION_COLUMNS = ("plan_id", "id", "action_class", "input", "output", "parent_id", "trigger_id")
_STEP_COLUMNS = (
    "plan_id",
    "id",
    "action_id",
    "kind",
    "action_class",
    "state",
    "queue",
    "position",
    "started_at",
    "ended_at",
    "duration",
    "error",
    "world_id",
)
#: the columns of a step row in the order of :class:`StepRecord`'s fields
_STEP_RECORD_COLUMNS = (
    "id",
    "kind",
    "action_id",
    "action_class",
    "state",
    "started_at",
    "ended_at",
    "duration",
    "error",
    "queue",
    "world_id",
    "position",
)
_STEP_KINDS = {kind.value: kind for kind in StepKind}
_STEP_STATES = {state.value: state for state in StepState}
_HISTORY_COLUMNS = ("plan_id", "at", "event", "step_id", "world_id", "detail")
#: the columns of an event row, in the order of :class:`EventRow`'s fields but ``id`` first
_EVENT_COLUMNS = ("id", "plan_id", "step_id", "kind", "payload", "created_at", "due_at")


def _action_row(plan_id: str, a: ActionRecord) -> tuple[Any, ...]:
    return (plan_id, a.id, a.action_class, a.input, a.output, a.parent_id, a.trigger_id)


def _step_row(plan_id: str, s: StepRecord) -> tuple[Any, ...]:
    return (
        plan_id,
        s.id,
        s.action_id,
        _val(s.kind),
        s.action_class,
        _val(s.state),
        s.queue,
        s.position,
        _time_in(s.started_at),
        _time_in(s.ended_at),
        s.duration,
        _error_in(s.error),
        s.world_id,
    )


def _history_tuple(h: HistoryRow) -> tuple[Any, ...]:
    return (h.plan_id, _time_in(h.at), h.event, h.step_id, h.world_id, h.detail)


def _event_tuple(e: EventRow) -> tuple[Any, ...]:
    """The values of ``_EVENT_COLUMNS`` but ``id``."""
    return (e.plan_id, e.step_id, e.kind, e.payload, _time_in(e.created_at), _time_in(e.due_at))


def _step_update_params(u: StepUpdate) -> dict[str, Any]:
    params = {
        "b_plan": u.plan_id,
        "b_id": u.step_id,
        "b_expect": _val(u.expect),
        "b_state": _val(u.state),
    }
    for name, value in u.fields.items():
        params["v_" + name] = _CONVERT_IN.get(name, _identity)(value)
    return params


def _plan_filters(
    state: Sequence[PlanState] | None,
    result: Sequence[PlanResult] | None,
    label: str | None,
    action: str | None,
) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if state is not None:
        clauses.append(P.c.state.in_([_val(s) for s in state]))
    if result is not None:
        clauses.append(P.c.result.in_([_val(r) for r in result]))
    if label is not None:
        clauses.append(P.c.label == label)
    if action is not None:
        clauses.append(P.c.root_action_class == action)
    return clauses
