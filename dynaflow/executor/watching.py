"""Following plans this world does not run: a future that resolves when the plan's execution
ends wherever it runs (another process, another host), found by looking at its row on the
executor's tick."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from dynaflow.exceptions import DynaflowError
from dynaflow.executor.base import EngineBase
from dynaflow.states import PlanState

#: the plan states in which an execution has ended (for now: a paused plan awaits an operator)
ENDED = frozenset({PlanState.STOPPED, PlanState.PAUSED})


class Watching(EngineBase):
    def follow(self, plan_id: str, future: Future[Any]) -> None:
        """Resolve ``future`` when the plan's execution ends: here, or wherever it runs."""
        runtime = self.plans.get(plan_id)
        if runtime is not None:
            runtime.futures.append(future)
            return
        self.watched.setdefault(plan_id, []).append(future)
        self.check_watched = True

    def poll_watched(self) -> None:
        """Resolve the futures of watched plans whose execution ended; hand those of plans
        that came to run here to their runtime."""
        self.check_watched = False
        for plan_id in list(self.watched):
            runtime = self.plans.get(plan_id)
            if runtime is not None:
                runtime.futures.extend(self.watched.pop(plan_id))
                continue
            try:
                record = self.storage.get_plan_record(plan_id)
            except DynaflowError as exc:
                for future in self.watched.pop(plan_id):
                    if not future.done():
                        future.set_exception(exc)
                continue
            if record.state in ENDED:
                for future in self.watched.pop(plan_id):
                    if not future.done():
                        future.set_result(plan_id)
            else:
                futures = [f for f in self.watched[plan_id] if not f.done()]
                if futures:
                    self.watched[plan_id] = futures
                else:
                    del self.watched[plan_id]
