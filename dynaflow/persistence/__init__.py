"""Storage of execution plans: the interface, a memory and a SQL implementation, migrations."""

from __future__ import annotations

from typing import Any

from dynaflow.persistence.base import (
    Batch,
    BatchResult,
    Claim,
    HistoryRow,
    NewPlan,
    PlanFilter,
    PlanUpdate,
    StepUpdate,
    Storage,
)
from dynaflow.persistence.memory import MemoryStorage

# The SQL storage and its database drivers are imported with dynaflow, not when the first World
# opens a database: psycopg's C extension looks up ``datetime.datetime`` and ``datetime.date``
# once, when it is imported, and a program that opens its first World inside freezegun's
# ``freeze_time`` would hand it freezegun's classes (a "datetime.date size changed" warning, and
# every time read from PostgreSQL a ``FakeDatetime`` for the rest of the process).
from dynaflow.persistence.sql import SQLStorage


def open_storage(url: str | None, *, migrate: bool | None = None, engine: Any = None) -> Storage:
    """Open the storage for ``url``: ``memory://`` or any SQLAlchemy URL (SQLite, PostgreSQL);
    or on ``engine``, an application's SQLAlchemy engine, shared (not disposed of on close).

    ``migrate`` upgrades the schema to head on open; ``None`` means "only an embedded SQLite".
    """
    if engine is not None:
        return SQLStorage(None, migrate=migrate, engine=engine)
    if url in ("memory://", "memory"):
        return MemoryStorage()
    return SQLStorage(url, migrate=migrate)


__all__ = [
    "Batch",
    "BatchResult",
    "Claim",
    "HistoryRow",
    "MemoryStorage",
    "NewPlan",
    "PlanFilter",
    "PlanUpdate",
    "StepUpdate",
    "Storage",
    "open_storage",
]
