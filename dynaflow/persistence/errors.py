"""Database errors as library errors: no driver's or SQLAlchemy's exception leaves the storage.

:func:`translated` wraps every use of a connection (the SQL storage's transactions and reads,
the migrations): a lost connection, a lock held too long, a full disk, a read-only database or a
value the database refuses become the :class:`~dynaflow.exceptions.StorageError` that says so,
naming the database (passwords hidden) and what to do, with the driver's error as
``__cause__``. Constraint violations pass through untouched: the storage's writes catch them to
tell a duplicate from a conflict.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from sqlalchemy import URL
from sqlalchemy import exc as sa_exc

from dynaflow.exceptions import (
    ConnectionLost,
    DatabaseBusy,
    DatabaseFull,
    DatabaseReadOnly,
    DatabaseUnavailable,
    DataRejected,
    StorageError,
)
from dynaflow.urls import display_url, hide_passwords

#: how long a SQLite connection waits for another one's lock unless the URL says (``?timeout=``)
BUSY_TIMEOUT = 30.0

#: what the storage turns into library errors: through SQLAlchemy, or raw from a driver's cursor
DATABASE_ERRORS = (sa_exc.DBAPIError, sa_exc.TimeoutError, sqlite3.Error, psycopg.Error)
_INTEGRITY = (sqlite3.IntegrityError, psycopg.IntegrityError)

# SQLite's primary result codes (the low byte of an extended code)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_IOERR = 5, 6, 8, 10
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_TOOBIG, _SQLITE_NOTADB = 11, 13, 14, 18, 26
# PostgreSQL SQLSTATEs (class 08 is every connection exception)
_PG_LOST = {"57P01", "57P02", "57P03", "53300"}  # shut down, crashed, starting, too many clients
_PG_FULL = {"53100", "58030"}  # disk full, I/O error
_PG_BUSY = {"40001", "40P01", "55P03", "57014"}  # serialization, deadlock, lock wait, timeout
_PG_READ_ONLY = "25006"


def busy_timeout(url: URL) -> float:
    """Seconds a SQLite connection waits for another one's write lock: the URL's
    ``?timeout=`` (as for :func:`sqlite3.connect`), else :data:`BUSY_TIMEOUT`."""
    value = url.query.get("timeout")
    if value is None:
        return BUSY_TIMEOUT
    try:
        seconds = float(value if isinstance(value, str) else value[-1])
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise StorageError(
            f"the database URL's timeout={value!r} is not a number of seconds >= 0; it is how "
            "long a SQLite connection waits for another one's write lock"
        )
    return seconds


class translated:
    """Raise what :func:`translate` makes of a database error raised inside. A class, not a
    generator: it wraps every transaction, on the executor's hot path."""

    __slots__ = ("connecting", "url")

    def __init__(self, url: URL, *, connecting: bool = False) -> None:
        self.url, self.connecting = url, connecting

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or not isinstance(exc, DATABASE_ERRORS):
            return
        error = translate(exc, self.url, connecting=self.connecting)
        if error is not None:
            raise error from exc


def translate(exc: BaseException, url: URL, *, connecting: bool = False) -> StorageError | None:
    """The library error for a database error ``exc`` on ``url``; ``None`` for a constraint
    violation (the caller's to handle). ``connecting``: it was raised opening a connection."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection free in time
        return DatabaseBusy(
            f"no connection to the database {where(url)} came free in time: every connection "
            "of the pool is in use; fewer threads, or shorter transactions, wait less"
        )
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    if isinstance(exc, sa_exc.IntegrityError) or isinstance(orig, _INTEGRITY):
        return None
    reason = _reason(orig, url)
    if isinstance(orig, sqlite3.Error):
        return _sqlite(orig, url, reason, connecting)
    lost = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    if isinstance(orig, psycopg.Error):
        return _postgres(orig, url, reason, connecting, lost)
    if connecting:
        return DatabaseUnavailable(unavailable(url, reason))
    return _unknown(url, reason, orig)


def _sqlite(orig: sqlite3.Error, url: URL, reason: str, connecting: bool) -> StorageError:
    code = getattr(orig, "sqlite_errorcode", None)
    code = None if code is None else code & 0xFF
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return DatabaseBusy(busy(url))
    if code in (_SQLITE_FULL, _SQLITE_IOERR):
        return DatabaseFull(
            f"the SQLite database {where(url)} could not be written ({reason}): the disk or a "
            "file-size limit is full, or the disk failed; nothing of this call was written. "
            "Free space (SQLite also needs room for its -wal file next to the database); a "
            "World takes its plans up again once writes succeed"
        )
    if code == _SQLITE_READONLY:
        return DatabaseReadOnly(
            f"the SQLite database {where(url)} is read-only ({reason}), and dynaflow writes to "
            "it: make the file and its directory writable by this process (SQLite creates the "
            "-wal and -shm files next to it), and open it without ?mode=ro or immutable=1"
        )
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StorageError(
            f"the SQLite database {where(url)} is damaged or not a SQLite database ({reason}); "
            "restore it from a backup"
        )
    if code == _SQLITE_TOOBIG:
        return DataRejected(_rejected(url, reason))
    if connecting or code == _SQLITE_CANTOPEN:
        return DatabaseUnavailable(unavailable(url, reason))
    return _unknown(url, reason, orig)


def _postgres(
    orig: psycopg.Error, url: URL, reason: str, connecting: bool, lost: bool
) -> StorageError:
    state = orig.sqlstate or ""
    disconnected = (
        lost
        or state.startswith("08")
        or state in _PG_LOST
        or (not state and isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError))
    )
    if connecting:
        return DatabaseUnavailable(unavailable(url, reason))
    if disconnected:
        return ConnectionLost(
            f"lost the connection to the database {where(url)} ({reason}): what this call "
            "wrote was rolled back, unless the connection dropped while committing (then it "
            "may have committed: read it back before doing it again). Check that the server "
            "is up; a World takes its plans up again once the database answers"
        )
    if state in _PG_FULL:
        return DatabaseFull(
            f"the database {where(url)} could not write ({reason}): the server's disk is full "
            "or failed; nothing of this call was written. Free space on the server; a World "
            "takes its plans up again once writes succeed"
        )
    if state == _PG_READ_ONLY:
        return DatabaseReadOnly(
            f"the database {where(url)} takes no writes ({reason}): it is a standby, or the "
            "user or database defaults to read-only transactions; point the URL at the primary"
        )
    if state in _PG_BUSY:
        return DatabaseBusy(
            f"the database {where(url)} gave up on this call ({reason}): another transaction "
            "held a lock it needed, or changed the same rows; nothing of this call was "
            "written, and it may be tried again"
        )
    if state.startswith("22") or isinstance(orig, psycopg.DataError):
        return DataRejected(_rejected(url, reason))
    return _unknown(url, reason, orig)


def busy(url: URL) -> str:
    """The message of a SQLite database that stayed locked for the whole busy timeout."""
    return (
        f"the SQLite database {where(url)} stayed locked for {busy_timeout(url):g} s, its busy "
        "timeout: another transaction held SQLite's one write lock longer than that — "
        "typically a long finalize (the finalize phase runs in one transaction) or another "
        "process's transaction. Nothing of this call was written. Keep finalizers short and "
        "do slow work in run(); raise the wait with ?timeout=<seconds> in the database URL; "
        "or use PostgreSQL for many concurrent writers"
    )


def unavailable(url: URL, reason: str) -> str:
    """The message for a database that cannot be opened: where (no password), why, what to do."""
    if url.get_backend_name() == "sqlite":
        hint = "check that its directory exists and that this process may write there"
    else:
        hint = (
            "check that the server is running and reachable at that host and port, and that the "
            "database name, user and password are right"
        )
    return f"cannot open the database {where(url)}: {reason}; {hint}"


def _rejected(url: URL, reason: str) -> str:
    return (
        f"the database {where(url)} refused a value ({reason}); nothing of this call was "
        "written: look for a string longer than its column or holding a NUL character"
    )


def _unknown(url: URL, reason: str, orig: BaseException) -> StorageError:
    return StorageError(
        f"the database {where(url)} failed: {type(orig).__name__}: {reason}; nothing of this "
        "call was written (the error is the database's: its __cause__ has the details)"
    )


def where(url: URL) -> str:
    """``url`` as messages show it: every password hidden."""
    return display_url(url.render_as_string(hide_password=False))


def _reason(orig: BaseException, url: URL) -> str:
    """The driver's message on one line (not SQLAlchemy's, which quotes the SQL), no passwords."""
    reason = hide_passwords(" ".join(str(orig).split()) or type(orig).__name__)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason
