"""What the phase middleware hooks (``plan_phase``, ``finalize_phase``) receive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynaflow.world import World


@dataclass(slots=True)
class PhaseContext:
    world: World
    plan_id: str
    #: "plan" or "finalize"
    phase: str

    @property
    def connection(self) -> Any:
        """The database connection of the phase's transaction (``None`` on memory storage)."""
        return self.world.storage.current_connection()
