"""The memory storage's delayed and chained plans and recurring schedules (see
:mod:`dynaflow.persistence.schedules`): a part of
:class:`~dynaflow.persistence.memory.MemoryStorage`, on its lock and undo log (a transaction
holds the lock, so a compare-and-set here cannot lose a race)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynaflow.exceptions import UnknownPlan
from dynaflow.persistence.schedules import DelayedRow, ScheduleRow
from dynaflow.states import PlanState


def _copy(row: DelayedRow) -> DelayedRow:
    return replace(row, after=sorted(set(row.after)))


class MemorySchedules:
    """Delayed plans and schedules in dicts; see :class:`MemoryStorage`."""

    _lock: threading.RLock
    _plans: dict[str, Any]
    _delayed: dict[str, DelayedRow]
    _schedules: dict[str, ScheduleRow]

    if TYPE_CHECKING:  # given by MemoryStorage

        def _write(self) -> Any: ...

    def _state(self, plan_id: str) -> PlanState | None:
        plan = self._plans.get(plan_id)
        return None if plan is None else plan.record.state

    def _startable(self, row: DelayedRow, now: datetime) -> bool:
        if self._state(row.plan_id) != PlanState.SCHEDULED:
            return False
        if row.start_before is not None and row.start_before < now:
            return True  # past its deadline: due to be stopped
        return row.start_at <= now and all(
            self._state(p) in (PlanState.STOPPED, None) for p in row.after
        )

    # -- delayed and chained plans ---------------------------------------------------------

    def add_delayed(self, row: DelayedRow) -> None:
        with self._write() as undo:
            for plan_id in (row.plan_id, *row.after):
                if plan_id not in self._plans:
                    raise UnknownPlan(plan_id)
            old = self._delayed.get(row.plan_id)
            self._delayed[row.plan_id] = _copy(row)
            undo.append(lambda: self._restore(row.plan_id, old))

    def _restore(self, plan_id: str, old: DelayedRow | None) -> None:
        if old is None:
            self._delayed.pop(plan_id, None)
        else:
            self._delayed[plan_id] = old

    def get_delayed(self, plan_id: str) -> DelayedRow | None:
        with self._lock:
            row = self._delayed.get(plan_id)
            return None if row is None else _copy(row)

    def update_delayed(self, row: DelayedRow) -> None:
        self.add_delayed(row)

    def due_delayed(self, now: datetime, limit: int = 100) -> list[DelayedRow]:
        with self._lock:
            rows = [_copy(r) for r in self._delayed.values() if self._startable(r, now)]
        return sorted(rows, key=lambda r: (r.start_at, r.plan_id))[:limit]

    def lock_delayed(self, plan_id: str, now: datetime) -> DelayedRow | None:
        with self._lock:  # the caller's transaction holds the lock until it ends
            row = self._delayed.get(plan_id)
            return _copy(row) if row is not None and self._startable(row, now) else None

    def waiting_for(self, plan_ids: Sequence[str]) -> dict[str, list[str]]:
        with self._lock:
            return {
                plan_id: sorted(set(self._delayed[plan_id].after))
                for plan_id in plan_ids
                if plan_id in self._delayed and self._state(plan_id) == PlanState.SCHEDULED
            }

    def next_start(self) -> datetime | None:
        with self._lock:
            times = [
                r.start_at
                for r in self._delayed.values()
                if self._state(r.plan_id) == PlanState.SCHEDULED
            ]
            times += [s.next_run_at for s in self._schedules.values() if s.paused_at is None]
        return min(times, default=None)

    # -- recurring schedules -----------------------------------------------------------------

    def get_schedule(self, key: str) -> ScheduleRow | None:
        with self._lock:
            row = self._schedules.get(key)
            return None if row is None else copy.deepcopy(row)

    def schedules(self) -> list[ScheduleRow]:
        with self._lock:
            return [copy.deepcopy(self._schedules[key]) for key in sorted(self._schedules)]

    def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRow]:
        with self._lock:
            rows = [
                copy.deepcopy(s)
                for s in self._schedules.values()
                if s.paused_at is None and s.next_run_at <= now
            ]
        return sorted(rows, key=lambda s: (s.next_run_at, s.key))[:limit]

    def save_schedule(self, row: ScheduleRow, expect: int | None) -> bool:
        with self._write() as undo:
            old = self._schedules.get(row.key)
            if (old is not None) if expect is None else (old is None or old.revision != expect):
                return False
            stored = copy.deepcopy(row)
            stored.revision = row.revision = 1 if old is None else old.revision + 1
            self._schedules[row.key] = stored
            undo.append(lambda: self._put_back(row.key, old))
            return True

    def _put_back(self, key: str, old: ScheduleRow | None) -> None:
        if old is None:
            self._schedules.pop(key, None)
        else:
            self._schedules[key] = old

    def delete_schedule(self, key: str) -> bool:
        with self._write() as undo:
            old = self._schedules.pop(key, None)
            if old is not None:
                undo.append(lambda: self._put_back(key, old))
            return old is not None
