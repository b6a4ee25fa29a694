"""Storage of execution plans: the interface, a memory and a SQL implementation, migrations."""

from __future__ import annotations

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


def open_storage(url: str, *, migrate: bool | None = None) -> Storage:
    """Open the storage for ``url``: ``memory://`` or any SQLAlchemy URL (SQLite, PostgreSQL).

    ``migrate`` upgrades the schema to head on open; ``None`` means "only an embedded SQLite".
    """
    if url in ("memory://", "memory"):
        return MemoryStorage()
    from dynaflow.persistence.sql import SQLStorage

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
