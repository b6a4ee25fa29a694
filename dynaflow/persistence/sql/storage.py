"""The SQL storage: SQLite (embedded, WAL) and PostgreSQL (psycopg 3) through SQLAlchemy Core.

This package is the only code that opens database connections. :class:`SQLStorage` is its
reads, writes and leases over one set of statements built once per storage; the executor's
group commit takes the fast path (:mod:`~dynaflow.persistence.sql.fastpath`) when it can.
"""

from __future__ import annotations

from typing import Any

from dynaflow.persistence.base import Batch, BatchResult, batch_topics
from dynaflow.persistence.sql.driver import INTEGRITY_ERRORS
from dynaflow.persistence.sql.fastpath import DriverBatchWriter, SlowPath
from dynaflow.persistence.sql.leases import SQLLeases
from dynaflow.persistence.sql.queues import SQLQueues
from dynaflow.persistence.sql.reads import SQLReads
from dynaflow.persistence.sql.reports import SQLReports
from dynaflow.persistence.sql.requests import SQLRequests
from dynaflow.persistence.sql.retention import SQLRetention
from dynaflow.persistence.sql.schedules import SQLSchedules
from dynaflow.persistence.sql.writes import SQLWrites

#: plans changed by one write inside a transaction from which it goes through the fast path
#: in a savepoint of its own (the savepoint costs two round trips; each plan saves one)
FAST_IN_SAVEPOINT = 4


class SQLStorage(
    SQLWrites,
    SQLReads,
    SQLLeases,
    SQLRequests,
    SQLQueues,
    SQLReports,
    SQLSchedules,
    SQLRetention,
):
    """Plans in SQLite or PostgreSQL. Thread-safe; each thread has its own ambient transaction."""

    def __init__(self, url: str | None, *, migrate: bool | None = None, engine: Any = None) -> None:
        super().__init__(url, migrate=migrate, engine=engine)
        notify = None if self._sqlite else self._rq.notify
        self._fast = DriverBatchWriter(self._sql, self._engine.dialect, notify)

    def write(self, batch: Batch) -> BatchResult:
        """The group commit: outside an ambient transaction, straight on the driver's cursor
        (:mod:`~dynaflow.persistence.sql.fastpath`; on PostgreSQL in a pipeline with the
        fencing check when the batch allows); else the exact path of the base class. On
        PostgreSQL the worlds waiting for what it changes are notified."""
        if self.current_connection() is not None:
            if len(batch.plans) >= FAST_IN_SAVEPOINT:
                try:  # many plans at once (claimed together): worth the savepoint's round trips
                    with self.savepoint() as conn:
                        return self._write_fast(conn, batch)
                except (SlowPath, *INTEGRITY_ERRORS):
                    pass  # rolled back to the savepoint: the exact path says what conflicted
            return self._write_exact(batch)
        try:
            with self.transaction() as conn:
                plans = self._fast.pipelines(batch)
                if plans is None:
                    return self._write_fast(conn, batch)
                return self._fast.write_pipelined(conn, batch, self, plans)  # (notifies too)
        except (SlowPath, *INTEGRITY_ERRORS):
            # a missed compare-and-set or a missing plan: the exact path says which
            with self.transaction():
                return self._write_exact(batch)

    def _write_fast(self, conn: Any, batch: Batch) -> BatchResult:
        mine, fenced = self.fence(batch)
        result = self._fast.write(conn, mine, self)
        result.fenced = fenced
        self._announce(mine, result)
        return result

    def _write_exact(self, batch: Batch) -> BatchResult:
        result = super().write(batch)
        self._announce(batch, result)
        return result

    def _announce(self, batch: Batch, result: BatchResult) -> None:
        if not self._sqlite:
            topics = batch_topics(batch, result)
            if topics:
                self.notify(topics)
