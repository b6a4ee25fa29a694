"""What the phase middleware hooks (``plan_phase``, ``finalize_phase``) receive."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from dynaflow.persistence.base import Storage
from dynaflow.types import WorldHandle


@dataclass(slots=True)
class PhaseContext:
    """One plan's plan phase or finalize phase, as a phase middleware sees it."""

    world: WorldHandle
    plan_id: str
    #: "plan" or "finalize"
    phase: str
    storage: Storage

    def transaction(self) -> AbstractContextManager[Any]:
        """A database transaction around the phase: everything written inside it, the steps'
        states and the application's own rows, commits together or not at all."""
        return self.storage.transaction()

    @property
    def connection(self) -> Any:
        """The database connection of the phase's transaction (``None`` on memory storage)."""
        return self.storage.current_connection()
