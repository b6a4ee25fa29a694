"""Memory storage: removing finished plans (see :mod:`dynaflow.persistence.retention`); a part
of :class:`~dynaflow.persistence.memory.MemoryStorage`, on its lock and undo log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynaflow.persistence.cluster import RequestRow
from dynaflow.persistence.reports import StepLogLine
from dynaflow.persistence.retention import no_rows
from dynaflow.persistence.schedules import DelayedRow
from dynaflow.states import PlanResult, PlanState


class MemoryRetention:
    _lock: threading.RLock
    _plans: dict[str, Any]
    _keys: dict[str, str]
    _singletons: dict[str, str]
    _logs: dict[str, dict[tuple[int, int], StepLogLine]]
    _event_plan: dict[int, str]
    _requests: dict[int, RequestRow]
    _delayed: dict[str, DelayedRow]

    if TYPE_CHECKING:  # given by MemoryStorage

        def _write(self) -> Any: ...

    def prune_plans(
        self, cutoff: datetime, result: PlanResult | None = None, limit: int = 500
    ) -> dict[str, int]:
        counts = no_rows()
        with self._write() as undo:
            parents = {p.record.parent_id for p in self._plans.values()}
            chosen = sorted(
                (
                    p.record
                    for p in self._plans.values()
                    if p.record.id not in parents and self._qualifies(p.record, cutoff, result)
                ),
                key=lambda record: (record.ended_at, record.id),
            )[:limit]
            for record in chosen:
                self._remove(record.id, counts, undo)
        return counts

    def count_prunable(self, cutoff: datetime, result: PlanResult | None = None) -> dict[str, int]:
        counts = no_rows()
        with self._lock:
            removable = self._removable(cutoff, result)
            for plan_id in removable:
                plan = self._plans[plan_id]
                counts["plans"] += 1
                counts["actions"] += len(plan.actions)
                counts["steps"] += len(plan.steps)
                counts["edges"] += len(plan.edges)
                counts["history"] += len(plan.history)
                counts["events"] += len(plan.events)
                counts["step_logs"] += len(self._logs.get(plan_id, {}))
                counts["singletons"] += sum(1 for h in self._singletons.values() if h == plan_id)
                counts["delayed"] += plan_id in self._delayed
            counts["requests"] = sum(1 for r in self._requests.values() if r.plan_id in removable)
            counts["chains"] = sum(
                1
                for row in self._delayed.values()
                for after in set(row.after)
                if row.plan_id in removable or after in removable
            )
        return counts

    # -- which plans ---------------------------------------------------------------------------

    def _qualifies(self, record: Any, cutoff: datetime, result: PlanResult | None) -> bool:
        """Removable, but for its sub-plans (see :mod:`dynaflow.persistence.retention`)."""
        if record.state != PlanState.STOPPED or record.ended_at is None:
            return False
        if record.ended_at >= cutoff or (result is not None and record.result != result):
            return False
        parent = self._plans.get(record.parent_id) if record.parent_id is not None else None
        if parent is not None and parent.record.state != PlanState.STOPPED:
            return False
        return not any(
            record.id in row.after and self._is_scheduled(row.plan_id)
            for row in self._delayed.values()
        )

    def _is_scheduled(self, plan_id: str) -> bool:
        plan = self._plans.get(plan_id)
        return plan is not None and plan.record.state == PlanState.SCHEDULED

    def _removable(self, cutoff: datetime, result: PlanResult | None) -> set[str]:
        """The plans that qualify with all their sub-plans, down the tree."""
        qualifying = {
            plan_id
            for plan_id, plan in self._plans.items()
            if self._qualifies(plan.record, cutoff, result)
        }
        blocked: set[str] = set()
        for plan_id, plan in self._plans.items():
            if plan_id in qualifying:
                continue
            parent_id = plan.record.parent_id
            while parent_id is not None and parent_id not in blocked:
                blocked.add(parent_id)
                parent = self._plans.get(parent_id)
                parent_id = parent.record.parent_id if parent is not None else None
        return qualifying - blocked

    # -- removing one plan -----------------------------------------------------------------------

    def _remove(
        self, plan_id: str, counts: dict[str, int], undo: list[Callable[[], object]]
    ) -> None:
        plan = self._plans.pop(plan_id)
        undo.append(lambda: self._plans.__setitem__(plan_id, plan))
        counts["plans"] += 1
        counts["actions"] += len(plan.actions)
        counts["steps"] += len(plan.steps)
        counts["edges"] += len(plan.edges)
        counts["history"] += len(plan.history)
        counts["events"] += len(plan.events)
        key = plan.record.key
        if key is not None and self._keys.get(key) == plan_id:  # the key is free again
            del self._keys[key]
            undo.append(lambda: self._keys.__setitem__(key, plan_id))
        for event_id in plan.events:
            self._pop(self._event_plan, event_id, undo)
        logs = self._pop(self._logs, plan_id, undo)
        counts["step_logs"] += len(logs or {})
        for singleton in [k for k, holder in self._singletons.items() if holder == plan_id]:
            self._pop(self._singletons, singleton, undo)
            counts["singletons"] += 1
        for request_id in [i for i, r in self._requests.items() if r.plan_id == plan_id]:
            self._pop(self._requests, request_id, undo)
            counts["requests"] += 1
        delayed = self._pop(self._delayed, plan_id, undo)
        if delayed is not None:
            counts["delayed"] += 1
            counts["chains"] += len(set(delayed.after))
        for other, row in list(self._delayed.items()):  # plans chained after it: the link goes
            if plan_id in row.after:
                self._delayed[other] = replace(row, after=[p for p in row.after if p != plan_id])
                undo.append(_put_back(self._delayed, other, row))
                counts["chains"] += 1

    @staticmethod
    def _pop(table: dict[Any, Any], key: Any, undo: list[Callable[[], object]]) -> Any:
        if key not in table:
            return None
        value = table.pop(key)
        undo.append(lambda: table.__setitem__(key, value))
        return value


def _put_back(table: dict[str, DelayedRow], key: str, row: DelayedRow) -> Callable[[], object]:
    return lambda: table.__setitem__(key, row)
