"""What every part of the SQL storage stands on: the engine, one ambient transaction per
thread, readers that take no write lock, and the existence checks that turn a write that
changed nothing into :class:`~dynaflow.exceptions.UnknownPlan` or ``UnknownStep``.

Every connection is used inside :func:`~dynaflow.persistence.errors.translated`, so no
driver's error leaves the storage: a transaction or read that fails raises the
:class:`~dynaflow.exceptions.StorageError` that says why. A read whose connection was lost is
tried once more on a fresh one (:func:`retried`); a write is not (the executor takes its plans
up again after a failed iteration; a caller sees :class:`~dynaflow.exceptions.ConnectionLost`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import URL, Connection, Engine, make_url

from dynaflow.exceptions import ConfigurationError, ConnectionLost, UnknownPlan, UnknownStep
from dynaflow.persistence import migrate as migrations
from dynaflow.persistence.base import Storage
from dynaflow.persistence.engine import (
    READER,
    Connections,
    check_shared,
    is_memory,
    make_engine,
)
from dynaflow.persistence.errors import translated
from dynaflow.persistence.sql.codec import CHUNK, Decoder
from dynaflow.persistence.sql.driver import BulkInsert
from dynaflow.persistence.sql.statements import Statements

log = logging.getLogger("dynaflow.storage")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T", bound="SQLTransactions")


class SQLTransactions(Storage):
    """The connection handling shared by the SQL storage's reads, writes and leases."""

    def __init__(
        self, url: str | None, *, migrate: bool | None = None, engine: Engine | None = None
    ) -> None:
        #: an application's engine is shared, not disposed of on close
        self._owns_engine = engine is None
        if engine is not None:
            self._engine = check_shared(engine)
            url = engine.url.render_as_string(hide_password=False)
        else:
            assert url is not None
            self._engine = make_engine(url)
        self.display_url = make_url(url).render_as_string(hide_password=True)
        self._sqlite = self._engine.dialect.name == "sqlite"
        #: database errors raised inside become library errors (reused: it keeps no state)
        self._translated = translated(self._engine.url)
        self._local = threading.local()
        # one in-memory SQLite connection serves every thread: its users take turns
        memory = self._sqlite and is_memory(self._engine.url)
        self._serial: AbstractContextManager[Any] = threading.RLock() if memory else nullcontext()
        if self._sqlite:
            reader = snapshot = self._engine.execution_options(**{READER: True})
        else:
            reader = self._engine.execution_options(isolation_level="AUTOCOMMIT")
            snapshot = self._engine.execution_options(isolation_level="REPEATABLE READ")
        # idle connections kept between transactions: fewer of an application's pool
        keep = 2 if self._owns_engine else 1
        self._writers = Connections(self._engine, keep)
        self._reader = Connections(reader, keep)
        self._snapshot = self._reader if snapshot is reader else Connections(snapshot, keep)
        try:
            migrations.ensure_schema(
                self._engine, migrate=self._sqlite if migrate is None else migrate
            )
        except BaseException:
            if self._owns_engine:
                self._engine.dispose()
            raise
        self._sql = Statements(self._engine.dialect)
        self._decode = Decoder(json_as_text=self._sqlite)

    def close(self) -> None:
        for connections in (self._writers, self._reader, self._snapshot):
            connections.close()
        if self._owns_engine:
            self._engine.dispose()

    @contextmanager
    def joined(self, connection: Any) -> Iterator[Connection]:
        if not isinstance(connection, Connection):
            raise ConfigurationError(
                "connection= takes a SQLAlchemy Connection (session.connection() gives a "
                f"Session's), got {type(connection).__name__}"
            )
        if not _same_database(connection.engine.url, self._engine.url):
            raise ConfigurationError(
                "connection= is a connection to another database than this world's "
                f"({self.display_url}); plan inside a transaction on the world's database"
            )
        if self._sqlite:  # savepoints need dynaflow's SQLite setup (pysqlite's own breaks them)
            check_shared(connection.engine, "connection=")
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None and outer is not connection:
            raise ConfigurationError(
                "connection= given inside another transaction of this world in this thread"
            )
        self._local.conn = connection
        try:
            with self._serial, self._translated:
                yield connection
        finally:
            self._local.conn = outer

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is not None:  # nested: join
            yield outer
            return
        with self._serial, self._translated, self._writers.connect() as conn:
            self._local.conn = conn
            try:
                with conn.begin():
                    yield conn
            finally:
                self._local.conn = None

    @contextmanager
    def savepoint(self) -> Iterator[Connection]:
        outer: Connection | None = getattr(self._local, "conn", None)
        if outer is None:
            with self.transaction() as conn:
                yield conn
            return
        with self._translated, outer.begin_nested():
            yield outer

    @contextmanager
    def _pipeline(self, conn: Connection, rows: int) -> Iterator[None]:
        """On PostgreSQL the driver's statements sent inside go as one pipeline (one round
        trip), when each sends fewer than ``BulkInsert.COPY_FROM`` rows (COPY cannot go in a
        pipeline). Only for statements whose results nothing reads inside."""
        if self._sqlite or rows >= BulkInsert.COPY_FROM:
            yield
            return
        with conn.connection.dbapi_connection.pipeline():  # type: ignore[union-attr]
            yield

    def current_connection(self) -> Connection | None:
        return getattr(self._local, "conn", None)

    @contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """The ambient connection, else a reader: on SQLite a deferred transaction (no write
        lock), on PostgreSQL autocommit or, for multi-statement reads, a repeatable-read
        snapshot."""
        ambient: Connection | None = getattr(self._local, "conn", None)
        if ambient is not None:
            yield ambient
            return
        connections = self._snapshot if snapshot else self._reader
        with self._serial, self._translated, connections.connect() as conn:
            yield conn

    def _missing_plans(self, conn: Connection, plan_ids: Sequence[str]) -> list[str]:
        """Those of ``plan_ids`` that do not exist, in order."""
        wanted = list(dict.fromkeys(plan_ids))
        found: set[str] = set()
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i : i + CHUNK]
            found.update(conn.execute(self._sql.existing_plans, {"b_ids": chunk}).scalars())
        return [plan_id for plan_id in wanted if plan_id not in found]

    def _check_plans(self, conn: Connection, plan_ids: Sequence[str]) -> None:
        missing = self._missing_plans(conn, plan_ids)
        if missing:
            raise UnknownPlan(missing[0])

    def _check_steps(self, conn: Connection, wanted: Sequence[tuple[str, int]]) -> None:
        """Raise for the first ``(plan_id, step_id)`` that does not exist: UnknownPlan if its
        plan is missing, else UnknownStep."""
        wanted = list(dict.fromkeys(wanted))
        plan_ids = list(dict.fromkeys(plan_id for plan_id, _ in wanted))
        step_ids = list(dict.fromkeys(step_id for _, step_id in wanted))
        found: set[tuple[str, int]] = set()
        for i in range(0, len(plan_ids), CHUNK):
            for j in range(0, len(step_ids), CHUNK):
                params = {"b_plans": plan_ids[i : i + CHUNK], "b_ids": step_ids[j : j + CHUNK]}
                found.update((r[0], r[1]) for r in conn.execute(self._sql.existing_steps, params))
        for plan_id, step_id in wanted:
            if (plan_id, step_id) not in found:
                self._check_plans(conn, [plan_id])
                raise UnknownStep(plan_id, step_id)


def retried(read: Callable[Concatenate[T, P], R]) -> Callable[Concatenate[T, P], R]:
    """``read``, tried once more on a fresh connection if the connection it had was lost
    (safe: it only reads). Not inside a transaction: that one is lost with its connection."""

    @functools.wraps(read)
    def reading(self: T, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(self, *args, **kwargs)
        except ConnectionLost as exc:
            if self.current_connection() is not None:
                raise
            log.warning("%s: %s; trying once more on a fresh connection", read.__name__, exc)
        return read(self, *args, **kwargs)

    return reading


def _same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name one database (drivers and passwords aside)."""
    return (a.get_backend_name(), a.host, a.port, a.database) == (
        b.get_backend_name(),
        b.host,
        b.port,
        b.database,
    )
