"""Futures handed out by ``World.execute`` and ``Triggered``."""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from dynaflow.execution_plan import ExecutionPlan

if TYPE_CHECKING:
    from dynaflow.world import World


class PlanFuture(Future[str]):
    """Resolves when the plan's execution ends (``stopped``, or ``paused`` awaiting an
    operator). ``result()`` returns a fresh snapshot of the plan, loaded when asked for."""

    def __init__(self, world: World, plan_id: str) -> None:
        super().__init__()
        self.world = world
        self.plan_id = plan_id

    def result(self, timeout: float | None = None) -> ExecutionPlan:  # type: ignore[override]
        super().result(timeout)
        return self.world.get_plan(self.plan_id)
