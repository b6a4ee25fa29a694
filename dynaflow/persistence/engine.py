"""Connecting to the database: SQLAlchemy engines set up the way dynaflow needs them.

The SQL storage and the migrations both open their connections here: ``postgresql://`` means
psycopg 3; SQLite files run in WAL mode, and a write transaction takes SQLite's write lock when it
begins (``BEGIN IMMEDIATE``), so concurrent writers queue instead of failing.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from dynaflow.exceptions import ConfigurationError, StorageError
from dynaflow.persistence.errors import busy_timeout, translated
from dynaflow.urls import display_url

#: execution option marking a SQLite connection as a reader: plain (deferred) BEGIN
READER = "dynaflow_reader"


#: the engines :func:`make_engine` made (an application may share one with its world)
_MADE: weakref.WeakSet[Engine] = weakref.WeakSet()


def make_engine(url: str | URL) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, set up the way dynaflow needs it.

    ``postgresql://`` means psycopg 3. SQLite files run in WAL mode and take the write lock when a
    write transaction begins (``BEGIN IMMEDIATE``), so concurrent writers wait for it instead of
    failing: 30 s, or the URL's ``?timeout=`` seconds; an in-memory SQLite is one database shared
    by all threads.
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
        timeout = busy_timeout(parsed)  # checked before SQLAlchemy reads it
        if is_memory(parsed):
            engine = create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = create_engine(parsed, pool_size=8, max_overflow=-1)
        _setup_sqlite(engine, wal=not is_memory(parsed), timeout=timeout)
        _MADE.add(engine)
        return engine
    if backend == "postgresql":
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        engine = create_engine(parsed, connect_args=connect_args, pool_size=8, max_overflow=16)
        _MADE.add(engine)
        return engine
    raise StorageError(
        f"dynaflow stores plans in SQLite or PostgreSQL, not {backend!r} "
        f"({display_url(parsed.render_as_string(hide_password=False))})"
    )


def check_shared(engine: Any, what: str = "World(engine=...)") -> Engine:
    """An application's engine a world may share (or whose connections it may join):
    PostgreSQL through psycopg 3, or one that :func:`make_engine` made (a SQLite engine needs
    dynaflow's connection setup)."""
    if not isinstance(engine, Engine):
        raise ConfigurationError(f"{what} takes a SQLAlchemy Engine, got {type(engine).__name__}")
    if engine in _MADE:
        return engine
    if engine.dialect.name == "postgresql":
        if engine.dialect.driver != "psycopg":
            raise ConfigurationError(
                f"{what}: dynaflow talks to PostgreSQL through psycopg 3, and this "
                f"engine uses {engine.dialect.driver!r}; create it with a "
                "postgresql+psycopg:// URL (or with dynaflow.make_engine(url))"
            )
        return engine
    raise ConfigurationError(
        f"{what}: a {engine.dialect.name} engine must come from "
        "dynaflow.make_engine(url), which sets its connections up the way dynaflow needs "
        "(SQLite: WAL, BEGIN IMMEDIATE, a busy timeout); use that engine in your application too"
    )


def is_memory(url: URL) -> bool:
    """Whether ``url`` is an in-memory SQLite database."""
    return url.database in (None, "", ":memory:")


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection from ``engine``; an unreachable database raises :class:`DatabaseUnavailable`
    (a read-only or locked one the error of :mod:`~dynaflow.persistence.errors` that says so)."""
    with translated(engine.url, connecting=True):
        conn = engine.connect()
    with conn:
        yield conn


class Connections:
    """Connections of one engine, kept between transactions: up to ``keep`` idle ones.

    Checking a connection out of SQLAlchemy's pool and back in costs about three times what a
    short SQLite transaction itself does, and the executor commits one for every step of a
    sequence. A connection that was lost (invalidated) is closed, and the idle ones with it:
    when the database went away they went with it. Thread-safe: each connection is used by one
    thread at a time."""

    def __init__(self, engine: Engine, keep: int = 2) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Connection] = []
        self._closed = False

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; an unreachable database raises
        :class:`~dynaflow.exceptions.DatabaseUnavailable`."""
        try:
            conn = self._idle.pop()
        except IndexError:
            with translated(self._engine.url, connecting=True):
                conn = self._engine.connect()
        try:
            yield conn
        finally:
            self._put_back(conn)

    def _put_back(self, conn: Connection) -> None:
        keep = len(self._idle) < self._keep
        keep = keep and not (self._closed or conn.closed or conn.invalidated)
        if keep and conn.in_transaction():
            try:
                conn.rollback()  # a read's transaction: what the pool does on check-in
            except Exception:  # the connection is closed below
                keep = False
        if conn.invalidated:  # lost: the idle ones most likely went with it
            self.close_idle()
            keep = False
        if keep:
            self._idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        """Close the idle connections (back into the engine's pool)."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return
            conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use close when they are done."""
        self._closed = True
        self.close_idle()


def _setup_sqlite(engine: Engine, *, wal: bool, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # dynaflow emits BEGIN itself (below); pysqlite's own transaction handling is off
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            if wal:
                _enable_wal(cursor, timeout)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a write transaction takes the write lock up front: upgrading a read lock later can
        # fail at once with "database is locked", waiting for it at BEGIN cannot
        # on the driver's connection: SQLAlchemy's statement machinery costs more than BEGIN
        reader = conn.get_execution_options().get(READER)
        conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN" if reader else "BEGIN IMMEDIATE"
        )


def _enable_wal(cursor: sqlite3.Cursor, timeout: float) -> None:
    """Switch the file to WAL (a no-op once it is: the mode is stored in the file).

    Switching needs the file to itself, and SQLite answers a switch that finds another
    connection holding a lock with "database is locked" at once, without waiting on
    ``busy_timeout``: the first connections to a new file, opened together, race here. So wait
    for the lock the way ``busy_timeout`` would, retrying until it has passed.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
