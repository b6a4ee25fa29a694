"""Memory storage: progress and log lines of run steps; see :class:`MemoryStorage`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dynaflow.exceptions import UnknownPlan
from dynaflow.persistence.memory_cluster import _restore
from dynaflow.persistence.reports import StepLogLine
from dynaflow.states import StepState


class MemoryReports:
    _lock: threading.RLock
    _plans: dict[str, Any]
    #: plan id -> (step id, seq) -> line
    _logs: dict[str, dict[tuple[int, int], StepLogLine]]

    if TYPE_CHECKING:  # given by MemoryStorage

        def _write(self) -> Any: ...

        def _plan(self, plan_id: str) -> Any: ...

    def save_progress(
        self, plan_id: str, step_id: int, world_id: str, progress: dict[str, Any]
    ) -> bool:
        with self._write() as undo:
            step = self._plan(plan_id).steps.get(step_id)
            if step is None or step.state != StepState.RUNNING or step.world_id != world_id:
                return False
            steps = self._plan(plan_id).steps
            steps[step_id] = replace(step, progress=dict(progress))
            undo.append(_restore(steps, step_id, step))
            return True

    def add_step_logs(self, plan_id: str, lines: Sequence[StepLogLine]) -> None:
        with self._write() as undo:
            if plan_id not in self._plans:
                raise UnknownPlan(plan_id)
            logs = self._logs.setdefault(plan_id, {})
            for line in lines:
                key = (line.step_id, line.seq)
                if key not in logs:
                    logs[key] = line
                    undo.append(lambda key=key: logs.pop(key, None))

    def last_log_seq(self, plan_id: str, step_id: int) -> int:
        with self._lock:
            logs = self._logs.get(plan_id, {})
            return max((seq for step, seq in logs if step == step_id), default=0)

    def step_logs(
        self, plan_id: str, step_id: int | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[StepLogLine]:
        with self._lock:
            logs = self._logs.get(plan_id, {})
            keys = sorted(
                key for key in logs if step_id is None or (key[0] == step_id and key[1] > after)
            )
            return [logs[key] for key in keys[:limit]]
