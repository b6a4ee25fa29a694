"""In-memory storage: the same contract as the SQL storage, for unit tests and throwaway worlds."""

from __future__ import annotations

import copy
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from types import EllipsisType
from typing import Any

from dynaflow.exceptions import (
    ConcurrentModification,
    SingletonActive,
    UnknownAction,
    UnknownPlan,
    UnknownStep,
)
from dynaflow.execution_plan import (
    ActionRecord,
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
)
from dynaflow.persistence.base import (
    ALL_PLANS,
    PLAN_FIELDS,
    STEP_FIELDS,
    Claim,
    EventRow,
    HistoryRow,
    NewPlan,
    PlanFilter,
    RequestRow,
    StepUpdate,
    Storage,
    WorldRow,
    check_fields,
    plan_order,
)
from dynaflow.persistence.limits import check_plan
from dynaflow.persistence.memory_cluster import MemoryCluster, _forget, _restore
from dynaflow.persistence.memory_reports import MemoryReports
from dynaflow.persistence.memory_retention import MemoryRetention
from dynaflow.persistence.memory_schedules import MemorySchedules
from dynaflow.persistence.reports import StepLogLine
from dynaflow.persistence.schedules import DelayedRow, ScheduleRow
from dynaflow.states import PlanResult, PlanState, StepState


def _copy_action(action: ActionRecord) -> ActionRecord:
    return replace(action, input=copy.deepcopy(action.input), output=copy.deepcopy(action.output))


class _Plan:
    __slots__ = ("actions", "edges", "events", "history", "record", "singletons", "steps")

    def __init__(self, new: NewPlan) -> None:
        self.record = new.plan
        self.actions = {a.id: a for a in new.actions}
        self.steps = {s.id: s for s in new.steps}
        self.edges = list(new.edges)
        self.history: list[HistoryRecord] = []
        self.events: dict[int, EventRow] = {}
        self.singletons = list(dict.fromkeys(new.singletons))


class MemoryStorage(MemoryCluster, MemoryReports, MemorySchedules, MemoryRetention, Storage):
    """Plans in dicts, guarded by one re-entrant lock. A transaction holds the lock and keeps an
    undo log, so a block that raises leaves nothing behind."""

    display_url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._plans: dict[str, _Plan] = {}
        self._keys: dict[str, str] = {}
        #: singleton key -> the plan holding it (until that plan stops)
        self._singletons: dict[str, str] = {}
        self._logs: dict[str, dict[tuple[int, int], StepLogLine]] = {}
        self._local = threading.local()
        self._event_ids = itertools.count(1)
        self._worlds: dict[str, WorldRow] = {}
        self._event_plan: dict[int, str] = {}
        self._requests: dict[int, RequestRow] = {}
        self._queues: dict[str, int | None] = {}
        self._request_ids = itertools.count(1)
        self._delayed: dict[str, DelayedRow] = {}
        self._schedules: dict[str, ScheduleRow] = {}

    def close(self) -> None:
        pass

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        undo: list[Callable[[], object]] | None = getattr(self._local, "undo", None)
        if undo is not None:  # nested: join
            yield None
            return
        with self._lock:
            self._local.undo = undo = []
            try:
                yield None
            except BaseException:
                for step in reversed(undo):
                    step()
                raise
            finally:
                self._local.undo = None

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        undo: list[Callable[[], object]] | None = getattr(self._local, "undo", None)
        if undo is None:
            with self.transaction():
                yield None
            return
        mark = len(undo)
        try:
            yield None
        except BaseException:
            for step in reversed(undo[mark:]):
                step()
            del undo[mark:]
            raise

    def current_connection(self) -> Any:
        return None

    @contextmanager
    def _write(self) -> Iterator[list[Callable[[], object]]]:
        with self.transaction():
            yield self._local.undo

    def _plan(self, plan_id: str) -> _Plan:
        try:
            return self._plans[plan_id]
        except KeyError:
            raise UnknownPlan(plan_id) from None

    # -- writes ----------------------------------------------------------------------------

    def insert_plan(self, new: NewPlan) -> None:
        check_plan(new)  # the limits of the SQL storages, so that every storage agrees
        new = NewPlan(
            new.plan,
            [_copy_action(a) for a in new.actions],
            list(new.steps),
            list(new.edges),
            list(new.history),
            list(new.singletons),
        )
        with self._write() as undo:
            plan_id, key = new.plan.id, new.plan.key
            if plan_id in self._plans or (key is not None and key in self._keys):
                raise ConcurrentModification(f"plan {plan_id} (key {key!r}) already exists")
            for singleton in new.singletons:
                holder = self.singleton_holder(singleton)
                if holder is not None:
                    raise SingletonActive(singleton, holder)
            self._plans[plan_id] = _Plan(new)
            undo.append(lambda: self._plans.pop(plan_id, None))
            if key is not None:
                self._keys[key] = plan_id
                undo.append(lambda: self._keys.pop(key, None))
            for singleton in self._plans[plan_id].singletons:
                undo.append(self._put_singleton(singleton, plan_id))
            self.add_history(new.history)

    def _put_singleton(self, key: str, plan_id: str | None) -> Callable[[], object]:
        """Set (or, with ``None``, drop) the holder of ``key``; return the undo."""
        old = self._singletons.pop(key, None)
        if plan_id is not None:
            self._singletons[key] = plan_id

        def undo() -> None:
            self._singletons.pop(key, None)
            if old is not None:
                self._singletons[key] = old

        return undo

    def update_plan(
        self,
        plan_id: str,
        fields: dict[str, Any],
        expect: frozenset[PlanState] | None = None,
        owner: str | EllipsisType | None = ...,
    ) -> bool:
        check_fields("plan", fields, PLAN_FIELDS)
        with self._write() as undo:
            plan = self._plan(plan_id)
            if expect is not None and plan.record.state not in expect:
                return False
            if owner is not ... and plan.record.world_id != owner:
                return False
            old = plan.record
            values = dict(fields)
            if "error" in values:
                values["error"] = StepError.from_json(values["error"])
            plan.record = replace(old, **values)
            undo.append(lambda: setattr(plan, "record", old))
            if plan.record.state == PlanState.STOPPED:
                for singleton in plan.singletons:
                    if self._singletons.get(singleton) == plan_id:
                        undo.append(self._put_singleton(singleton, None))
            return True

    def update_steps(self, updates: Sequence[StepUpdate]) -> list[StepUpdate]:
        for update in updates:
            check_fields("step", update.fields, STEP_FIELDS)
        conflicts = []
        with self._write() as undo:
            for update in updates:
                plan = self._plan(update.plan_id)
                step = plan.steps.get(update.step_id)
                if step is None or step.state != update.expect:
                    conflicts.append(update)
                    continue
                values = dict(update.fields)
                if "error" in values:
                    values["error"] = StepError.from_json(values["error"])
                plan.steps[step.id] = replace(step, state=update.state, **values)
                undo.append(_restore(plan.steps, step.id, step))
        return conflicts

    def claim_steps(self, claim: Claim) -> list[int]:
        claimed = []
        with self._write() as undo:
            plan = self._plan(claim.plan_id)
            for step_id in claim.step_ids:
                step = plan.steps.get(step_id)
                if step is None or step.state not in claim.expect:
                    continue
                plan.steps[step_id] = replace(
                    step,
                    state=StepState.RUNNING,
                    started_at=claim.at,
                    ended_at=None,
                    duration=None,
                    error=None,
                    world_id=claim.world_id,
                )
                undo.append(_restore(plan.steps, step.id, step))
                claimed.append(step_id)
        return claimed

    def save_outputs(self, outputs: Sequence[tuple[str, int, dict[str, Any]]]) -> None:
        with self._write() as undo:
            for plan_id, action_id, output in outputs:
                plan = self._plan(plan_id)
                old = plan.actions.get(action_id)
                if old is None:
                    raise UnknownAction(plan_id, action_id)
                plan.actions[action_id] = replace(old, output=copy.deepcopy(output))
                undo.append(_restore(plan.actions, old.id, old))

    def add_history(self, rows: Sequence[HistoryRow], exists: Collection[str] = ()) -> None:
        with self._write() as undo:
            for row in rows:
                plan = self._plan(row.plan_id)
                plan.history.append(
                    HistoryRecord(row.at, row.event, row.world_id, row.step_id, row.detail)
                )
                undo.append(plan.history.pop)

    def add_events(self, rows: Sequence[EventRow]) -> None:
        with self._write() as undo:
            for row in rows:
                plan = self._plan(row.plan_id)
                if row.step_id not in plan.steps:
                    raise UnknownStep(row.plan_id, row.step_id)
                row.id = event_id = next(self._event_ids)
                plan.events[event_id] = replace(row, payload=copy.deepcopy(row.payload))
                self._event_plan[event_id] = row.plan_id
                undo.append(_forget(plan.events, event_id))

    def delete_events(self, ids: Sequence[int]) -> None:
        with self._write() as undo:
            for event_id in ids:
                plan_id = self._event_plan.get(event_id)
                plan = self._plans.get(plan_id) if plan_id is not None else None
                if plan is None or event_id not in plan.events:
                    continue
                row = plan.events.pop(event_id)
                undo.append(_restore(plan.events, event_id, row))

    def owned_plans(self, plan_ids: Sequence[str], owner: str) -> set[str]:
        # the caller holds the storage's lock for the whole write: no takeover in between
        with self._lock:
            return {
                plan_id
                for plan_id in plan_ids
                if plan_id in self._plans and self._plans[plan_id].record.world_id == owner
            }

    def event_plans(self, ids: Sequence[int]) -> dict[int, str]:
        with self._lock:
            return {
                i: plan_id
                for i in ids
                if (plan_id := self._event_plan.get(i)) is not None
                and plan_id in self._plans
                and i in self._plans[plan_id].events
            }

    # -- reads -----------------------------------------------------------------------------

    def get_step(self, plan_id: str, step_id: int) -> StepRecord:
        with self._lock:
            step = self._plan(plan_id).steps.get(step_id)
            if step is None:
                raise UnknownStep(plan_id, step_id)
            return step

    def _owned(self, world_id: str) -> list[_Plan]:
        return [
            p
            for p in self._plans.values()
            if p.record.state == PlanState.RUNNING and p.record.world_id == world_id
        ]

    def due_events(self, world_id: str, now: datetime, limit: int = 1000) -> list[EventRow]:
        with self._lock:
            rows = [
                e
                for plan in self._owned(world_id)
                for e in plan.events.values()
                if e.due_at is None or e.due_at <= now
            ]
            rows.sort(key=lambda e: e.id or 0)
            return [replace(e, payload=copy.deepcopy(e.payload)) for e in rows[:limit]]

    def next_due(self, world_id: str, after: datetime | None = None) -> datetime | None:
        with self._lock:
            dues = [
                e.due_at
                for plan in self._owned(world_id)
                for e in plan.events.values()
                if e.due_at is not None and (after is None or e.due_at > after)
            ]
            return min(dues, default=None)

    def plan_events(self, plan_id: str) -> list[EventRow]:
        with self._lock:
            plan = self._plan(plan_id)
            return [
                replace(e, payload=copy.deepcopy(e.payload)) for _, e in sorted(plan.events.items())
            ]

    def load_plan(self, plan_id: str, *, history: bool = True) -> ExecutionPlan:
        with self._lock:
            plan = self._plan(plan_id)
            # records are frozen; only the JSON dicts inside them need copying
            return ExecutionPlan(
                record=plan.record,
                actions=tuple(_copy_action(plan.actions[i]) for i in sorted(plan.actions)),
                steps=tuple(plan.steps[i] for i in sorted(plan.steps)),
                edges=tuple(plan.edges),
                history=tuple(plan.history) if history else (),
            )

    def plan_records(self, plan_ids: Sequence[str]) -> list[PlanRecord]:
        with self._lock:
            wanted = dict.fromkeys(plan_ids)
            return [self._plans[p].record for p in wanted if p in self._plans]

    def get_plan_record(self, plan_id: str) -> PlanRecord:
        with self._lock:
            return self._plan(plan_id).record

    def find_plan_by_key(self, key: str) -> PlanRecord | None:
        with self._lock:
            plan_id = self._keys.get(key)
            return None if plan_id is None else self._plans[plan_id].record

    def singleton_holder(self, key: str) -> str | None:
        with self._lock:
            plan_id = self._singletons.get(key)
            plan = self._plans.get(plan_id) if plan_id is not None else None
            if plan is None or plan.record.state == PlanState.STOPPED:
                return None
            return plan_id

    def plan_ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        with self._lock:
            found = [plan_id for plan_id in self._plans if plan_id.startswith(prefix)]
        return sorted(found)[:limit]

    def find_plans(
        self,
        where: PlanFilter = ALL_PLANS,
        *,
        offset: int = 0,
        limit: int | None = None,
        order_by: str = "-created_at",
    ) -> list[PlanRecord]:
        column, descending = plan_order(order_by)
        with self._lock:
            records = [p.record for p in self._plans.values() if where.matches(p.record)]
        # NULLs last in either direction, ties broken by id: the SQL storage orders the same way
        records.sort(key=lambda r: r.id)
        present = [r for r in records if getattr(r, column) is not None]
        present.sort(key=lambda r: getattr(r, column), reverse=descending)
        records = present + [r for r in records if getattr(r, column) is None]
        end = None if limit is None else offset + limit
        return records[offset:end]

    def count_plans(self, where: PlanFilter = ALL_PLANS) -> int:
        with self._lock:
            return sum(1 for p in self._plans.values() if where.matches(p.record))

    def plan_counts(self, where: PlanFilter = ALL_PLANS) -> dict[tuple[PlanState, PlanResult], int]:
        with self._lock:
            counts = Counter(
                (p.record.state, p.record.result)
                for p in self._plans.values()
                if where.matches(p.record)
            )
        return dict(counts)
