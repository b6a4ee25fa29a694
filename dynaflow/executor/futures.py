"""Futures handed out by ``World.execute``, the operators and ``Triggered``."""

from __future__ import annotations

from concurrent.futures import Future

from dynaflow.execution_plan import ExecutionPlan
from dynaflow.types import WorldHandle


class PlanFuture(Future[str]):
    """Resolves when the plan's execution ends (``stopped``, or ``paused`` awaiting an
    operator). ``result()`` returns a fresh snapshot of the plan, loaded when asked for."""

    def __init__(self, world: WorldHandle, plan_id: str) -> None:
        super().__init__()
        self.world = world
        self.plan_id = plan_id

    def result(self, timeout: float | None = None) -> ExecutionPlan:  # type: ignore[override]
        super().result(timeout)
        plan: ExecutionPlan = self.world.get_plan(self.plan_id)
        return plan

    def __repr__(self) -> str:
        return f"<PlanFuture plan {self.plan_id} {self._state.lower()}>"


class Triggered:
    """What ``World.trigger`` returns: the plan id and a future for the end of its execution."""

    def __init__(self, plan_id: str, future: PlanFuture) -> None:
        self.plan_id = plan_id
        self.future = future

    def wait(self, timeout: float | None = None) -> ExecutionPlan:
        """The plan once its execution ends (stopped, or paused awaiting an operator); raises
        ``TimeoutError`` if that takes longer than ``timeout`` seconds."""
        return self.future.result(timeout)

    def __repr__(self) -> str:
        return f"<Triggered plan {self.plan_id}>"
