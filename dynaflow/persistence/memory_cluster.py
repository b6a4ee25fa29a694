"""The memory storage's worlds, requests and queues (see :mod:`dynaflow.persistence.cluster`):
a part of :class:`~dynaflow.persistence.memory.MemoryStorage`, on its lock and undo log."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynaflow.persistence.cluster import RequestRow, WorldRow, interrupted
from dynaflow.states import PlanState, StepKind, StepState


def _restore(table: dict[int, Any], key: int, value: Any) -> Callable[[], object]:
    return lambda: table.__setitem__(key, value)


def _forget(table: dict[int, Any], key: int) -> Callable[[], object]:
    return lambda: table.pop(key, None)


class MemoryCluster:
    """Worlds, requests and queues in dicts; see :class:`MemoryStorage`."""

    _lock: threading.RLock
    _plans: dict[str, Any]
    _worlds: dict[str, WorldRow]
    _requests: dict[int, RequestRow]
    _request_ids: itertools.count[int]
    _queues: dict[str, int | None]

    if TYPE_CHECKING:  # given by MemoryStorage

        def _write(self) -> Any: ...

        def _plan(self, plan_id: str) -> Any: ...

        def now(self) -> datetime: ...

    # -- queues ----------------------------------------------------------------------------

    def declare_queue(self, name: str, limit: int | None) -> None:
        with self._lock:
            self._queues[name] = limit

    def queue_limits(self) -> dict[str, int | None]:
        with self._lock:
            return dict(self._queues)

    def queue_room(self, name: str) -> int | None:
        with self._lock:
            limit = self._queues.get(name)
            if limit is None:
                return None
            running = sum(
                1
                for plan in self._plans.values()
                for step in plan.steps.values()
                if step.queue == name and step.state == StepState.RUNNING
            )
            return max(0, limit - running)

    def queue_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        with self._lock:
            for plan in self._plans.values():
                for step in plan.steps.values():
                    if step.kind == StepKind.RUN:
                        per = counts.setdefault(step.queue, {})
                        per[step.state.value] = per.get(step.state.value, 0) + 1
        return counts

    def running_steps(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        with self._lock:
            for plan in self._plans.values():
                for step in plan.steps.values():
                    if step.kind == StepKind.RUN and step.state == StepState.RUNNING:
                        counts[step.world_id] = counts.get(step.world_id, 0) + 1
        return counts

    # -- requests --------------------------------------------------------------------------

    def add_request(self, row: RequestRow, *, new_plan: bool = False) -> None:
        self.add_requests([row])

    def add_requests(self, rows: Sequence[RequestRow]) -> None:
        with self._write() as undo:
            for row in rows:
                self._plan(row.plan_id)
            for row in rows:
                row.id = request_id = next(self._request_ids)
                self._requests[request_id] = replace(row, args=copy.deepcopy(row.args))
                undo.append(_forget(self._requests, request_id))

    def take_requests(
        self, world_id: str, limit: int, skip: Collection[int] = ()
    ) -> list[RequestRow]:
        taken: list[RequestRow] = []
        with self._write() as undo:
            for request_id in sorted(self._requests):
                row = self._requests[request_id]
                if len(taken) >= limit:
                    break
                if (
                    row.kind != "run"
                    and row.taken_by is None
                    and row.answered_at is None
                    and row.world_id in (None, world_id)
                    and request_id not in skip
                ):
                    undo.append(_restore(self._requests, request_id, replace(row)))
                    row.taken_by, row.taken_at = world_id, self.now()
                    taken.append(replace(row))
        return taken

    def answer_request(
        self,
        request_id: int,
        error: dict[str, Any] | None,
        outcome: dict[str, Any] | None = None,
    ) -> None:
        with self._write() as undo:
            row = self._requests.get(request_id)
            if row is not None and row.answered_at is None:  # the first answer stands
                undo.append(_restore(self._requests, request_id, replace(row)))
                row.answered_at, row.error, row.outcome = self.now(), error, outcome

    def take_runs(
        self, world_id: str, room: dict[str, int], skip: Collection[int] = ()
    ) -> list[RequestRow]:
        taken: list[RequestRow] = []
        left = dict(room)
        with self._write() as undo:
            for request_id in sorted(self._requests):
                row = self._requests[request_id]
                queue = row.queue or ""
                if (
                    row.kind == "run"
                    and request_id not in skip
                    and row.taken_by is None
                    and row.answered_at is None
                    and left.get(queue, 0) > 0
                ):
                    left[queue] -= 1
                    undo.append(_restore(self._requests, request_id, replace(row)))
                    row.taken_by, row.taken_at = world_id, self.now()
                    taken.append(replace(row))
        return taken

    def take_answers(self, world_id: str) -> list[RequestRow]:
        with self._write() as undo:
            done = [
                i
                for i, r in sorted(self._requests.items())
                if r.kind == "run" and r.requested_by == world_id and r.answered_at is not None
            ]
            rows = []
            for request_id in done:
                row = self._requests.pop(request_id)
                undo.append(_restore(self._requests, request_id, row))
                rows.append(replace(row))
            return rows

    def decline_request(
        self, request_id: int, world_id: str, reason: str, forward_to: str | None = None
    ) -> None:
        with self._write() as undo:
            row = self._requests.get(request_id)
            if row is not None:
                undo.append(_restore(self._requests, request_id, replace(row)))
                row.taken_by = row.taken_at = None
                row.declined = {**(row.declined or {}), world_id: reason}
                if forward_to is not None:
                    row.world_id = forward_to

    def get_request(self, request_id: int) -> RequestRow | None:
        with self._lock:
            row = self._requests.get(request_id)
            return None if row is None else replace(row)

    def get_requests(self, request_ids: Sequence[int]) -> dict[int, RequestRow]:
        with self._lock:
            found = (self._requests.get(i) for i in request_ids)
            return {row.id: replace(row) for row in found if row is not None and row.id is not None}

    def open_requests(self, limit: int = 1000) -> list[RequestRow]:
        with self._lock:
            rows = [r for _, r in sorted(self._requests.items()) if r.answered_at is None]
            return [replace(r) for r in rows[:limit]]

    def delete_requests(self, ids: Sequence[int]) -> None:
        with self._write() as undo:
            for request_id in ids:
                row = self._requests.pop(request_id, None)
                if row is not None:
                    undo.append(_restore(self._requests, request_id, row))

    def release_requests(self, world_id: str) -> int:
        count = 0
        with self._write() as undo:
            for request_id, row in list(self._requests.items()):
                if row.kind == "run" and row.answered_at is None:
                    if row.taken_by == world_id:
                        undo.append(_restore(self._requests, request_id, replace(row)))
                        row.answered_at, row.error = self.now(), interrupted(world_id)
                        count += 1
                    elif row.requested_by == world_id and row.taken_by is None:
                        del self._requests[request_id]
                        undo.append(_restore(self._requests, request_id, row))
                        count += 1
                    continue
                if row.answered_at is None and world_id in (row.taken_by, row.world_id):
                    undo.append(_restore(self._requests, request_id, replace(row)))
                    row.taken_by = row.taken_at = None
                    if row.world_id == world_id:
                        row.world_id = None
                    count += 1
        return count

    def adopt_runs(self, plan_id: str, world_id: str) -> tuple[list[RequestRow], list[RequestRow]]:
        taken: list[RequestRow] = []
        dropped: list[RequestRow] = []
        with self._write() as undo:
            for request_id, row in sorted(self._requests.items()):
                if row.kind != "run" or row.plan_id != plan_id:
                    continue
                if row.taken_by is None and row.answered_at is None:
                    del self._requests[request_id]
                    undo.append(_restore(self._requests, request_id, row))
                    dropped.append(replace(row))
                elif row.taken_by is not None:
                    undo.append(_restore(self._requests, request_id, replace(row)))
                    row.requested_by = world_id
                    taken.append(replace(row))
        return taken, dropped

    def purge_requests(self, before: datetime) -> int:
        with self._lock:
            gone = [
                i
                for i, r in self._requests.items()
                if r.answered_at is not None and r.answered_at < before
            ]
        self.delete_requests(gone)
        return len(gone)

    # -- worlds ----------------------------------------------------------------------------

    def register_world(self, world: WorldRow) -> None:
        with self._lock:
            self._worlds[world.id] = replace(world)

    def heartbeat(self, world_id: str, at: datetime, lease: float | None = None) -> bool:
        with self._lock:
            world = self._worlds.get(world_id)
            if world is None:
                return False
            world.heartbeat_at = at
            if lease is not None:
                world.lease = lease
            return True

    def unregister_world(self, world_id: str) -> None:
        with self._lock:
            self._worlds.pop(world_id, None)

    def worlds(self) -> list[WorldRow]:
        with self._lock:
            return sorted((replace(w) for w in self._worlds.values()), key=lambda w: w.started_at)

    def released_plans(self, limit: int = 1000) -> list[str]:
        with self._lock:
            plans = sorted(
                (p.record for p in self._plans.values()),
                key=lambda r: (r.created_at, r.id),
            )
            released = [r.id for r in plans if r.state == PlanState.RUNNING and not r.world_id]
            return released[:limit]

    def orphaned_plans(self, now: datetime) -> list[tuple[str, str | None]]:
        with self._lock:
            alive = {w.id for w in self._worlds.values() if w.expires_at >= now}
            return [
                (p.record.id, p.record.world_id)
                for p in self._plans.values()
                if p.record.state == PlanState.RUNNING and p.record.world_id not in alive
            ]
