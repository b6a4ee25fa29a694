"""Delayed and chained plans: planned now, stored ``scheduled``, started later by exactly one
executor world.

``world.delay`` stores a plan with the time it may start (``start_at``) and a deadline
(``start_before``); ``world.chain`` one that waits for other plans to stop. Executor worlds look
for plans that became due (:class:`Starter`) and start each in one transaction: its rows are
taken for that transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), the plan moves
``scheduled -> planned`` (a compare-and-set) and an execute request goes with it, which any
executor world that can run the plan takes. A plan past its deadline, or whose prerequisite
did not end well, is stopped instead, with the reason in its history and its error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import EllipsisType
from typing import Any

from dynaflow.clock import MAX_DELAY, now
from dynaflow.exceptions import (
    ConcurrentModification,
    InvalidArgument,
    InvalidState,
    UnknownPlan,
)
from dynaflow.execution_plan import ExecutionPlan, StepError
from dynaflow.executor import PlanFuture
from dynaflow.persistence.base import HistoryRow, NewPlan, RequestRow, Storage
from dynaflow.persistence.schedules import ON_FAILED, DelayedRow
from dynaflow.services import Services
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.transitions import Changes, DetachedStep

log = logging.getLogger("dynaflow.scheduled")

#: due plans started per look
BATCH = 100
#: the notification that makes executor worlds look for due plans at once
TOPIC = "s *"
#: results of a prerequisite that let a chained plan start
ENDED_WELL = frozenset({PlanResult.SUCCESS, PlanResult.WARNING})
#: a time given as either
When = datetime | timedelta


class DelayedPlan:
    """What ``world.delay`` and ``world.chain`` return: the plan id, and :meth:`wait` for the
    end of its execution (it is followed only once asked: a plan due next month costs nothing
    until then)."""

    def __init__(self, world: Any, plan_id: str) -> None:
        self.world = world
        self.plan_id = plan_id
        self._future: PlanFuture | None = None

    @property
    def future(self) -> PlanFuture:
        """Resolves when the plan's execution ends (or it stopped without starting)."""
        if self._future is None:
            self._future = self.world.follow(self.plan_id)
        return self._future

    def wait(self, timeout: float | None = None) -> ExecutionPlan:
        """The plan once its execution ended (stopped, or paused awaiting an operator);
        ``TimeoutError`` after ``timeout`` seconds."""
        return self.future.result(timeout)

    def __repr__(self) -> str:
        return f"<DelayedPlan {self.plan_id}>"


# -- checking what is asked ---------------------------------------------------------------------


def moment(value: object, what: str, at: datetime) -> datetime:
    """``value`` as an aware UTC datetime: a timezone-aware datetime, or a ``timedelta`` from
    ``at``. A naive datetime is refused: it names no instant."""
    if isinstance(value, timedelta):
        if abs(value.total_seconds()) > MAX_DELAY:
            raise InvalidArgument(f"{what}={value!r} is more than 100 years away")
        return at + value
    if not isinstance(value, datetime):
        raise InvalidArgument(
            f"{what} must be a timezone-aware datetime (or a timedelta from now), got {value!r}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(
            f"{what}={value.isoformat()} is a naive datetime, which names no instant; give it "
            "a time zone: datetime(..., tzinfo=UTC) or ZoneInfo('Europe/Prague')"
        )
    return value.astimezone(UTC)


def window(
    start_at: object, start_before: object, at: datetime
) -> tuple[datetime, datetime | None]:
    """The checked ``(start_at, start_before)``: ``start_before`` must not come before
    ``start_at``."""
    start = moment(start_at, "start_at", at)
    if start_before is None:
        return start, None
    deadline = moment(start_before, "start_before", at)
    if deadline < start:
        raise InvalidArgument(
            f"start_before ({deadline.isoformat()}) is before start_at ({start.isoformat()}): "
            "the plan could never start; give a later start_before, or none"
        )
    return start, deadline


def prerequisites(storage: Storage, after: object) -> list[str]:
    """The plan ids a chained plan waits for: a non-empty list of ids of existing plans."""
    if isinstance(after, str) or not isinstance(after, Sequence) or not after:
        raise InvalidArgument(
            f"after= must be a non-empty list of plan ids to wait for, got {after!r}"
        )
    ids = list(dict.fromkeys(after))
    for plan_id in ids:
        try:
            if not isinstance(plan_id, str):
                raise UnknownPlan(plan_id)
            storage.get_plan_record(plan_id)
        except UnknownPlan:
            raise InvalidArgument(
                f"after= names plan {plan_id!r}, which does not exist; chain only on existing "
                "plans (world.find_plans() lists them)"
            ) from None
    return ids


def check_on_failed(on_failed: object) -> str:
    if on_failed not in ON_FAILED:
        raise InvalidArgument(
            f"on_failed={on_failed!r}: use 'fail' (the chained plan stops with an error), "
            "'skip' (it stops cancelled) or 'run' (it runs anyway)"
        )
    return str(on_failed)


def check_acyclic(storage: Storage, plan_id: str, after: Sequence[str]) -> None:
    """Refuse ``plan_id`` waiting for ``after`` if one of them waits (through other scheduled
    plans) for ``plan_id``: none of them would ever start."""
    paths: dict[str, list[str]] = {a: [plan_id, a] for a in after}
    todo = list(after)
    while todo:
        waiting = storage.waiting_for(todo)
        todo = []
        for waiter, ids in waiting.items():
            for prerequisite in ids:
                if prerequisite == plan_id:
                    cycle = " -> ".join([*paths[waiter], plan_id])
                    raise InvalidArgument(
                        f"plan {plan_id} cannot wait for {', '.join(after)}: that makes a "
                        f"cycle of chained plans ({cycle}, each waiting for the next); none "
                        "of them would ever start"
                    )
                if prerequisite not in paths:
                    paths[prerequisite] = [*paths[waiter], prerequisite]
                    todo.append(prerequisite)


# -- storing a delayed plan ---------------------------------------------------------------------


def storing(services: Services, row: DelayedRow) -> Callable[[NewPlan], None]:
    """What stores a new plan ``scheduled`` with ``row`` (a plan whose planning failed is
    stored as it is: ``stopped``/``error``)."""
    storage = services.storage

    def store(new: NewPlan) -> None:
        if new.plan.state != PlanState.PLANNED:
            storage.insert_plan(new)
            return
        plan_id = new.plan.id
        new.plan = replace(new.plan, state=PlanState.SCHEDULED)
        new.history.append(
            HistoryRow(plan_id, now(), "plan scheduled", None, services.id, describe(row))
        )
        row.plan_id = plan_id
        with storage.transaction():
            storage.insert_plan(new)
            storage.add_delayed(row)
            storage.notify([TOPIC])

    return store


def describe(row: DelayedRow) -> dict[str, Any]:
    """The row for a history entry."""
    detail: dict[str, Any] = {"start_at": row.start_at.isoformat()}
    if row.start_before is not None:
        detail["start_before"] = row.start_before.isoformat()
    if row.after:
        detail["after"] = list(row.after)
        detail["on_failed"] = row.on_failed
    return detail


def reschedule(
    services: Services,
    plan_id: str,
    start_at: When | None,
    start_before: When | EllipsisType | None,
    after: Sequence[str] | None,
) -> DelayedRow:
    """Change when a ``scheduled`` plan may start (``None`` / ``...``: keep it), or what it
    waits for; in one transaction, on the condition that it is still scheduled."""
    storage, at = services.storage, now()
    if not isinstance(plan_id, str):
        raise UnknownPlan(plan_id)
    changes = Changes(services.world, services.id)
    with storage.transaction():
        record = storage.get_plan_record(plan_id)
        row = storage.get_delayed(plan_id)
        if record.state != PlanState.SCHEDULED or row is None:
            raise InvalidState(
                f"plan {plan_id} is {record.state}; only a scheduled plan (delayed or chained, "
                "not started yet) can be rescheduled"
            )
        start, deadline = window(
            row.start_at if start_at is None else start_at,
            row.start_before if start_before is ... else start_before,
            at,
        )
        waits = row.after if after is None else prerequisites(storage, after)
        if plan_id in waits:
            raise InvalidArgument(f"plan {plan_id} cannot wait for itself (after=)")
        check_acyclic(storage, plan_id, waits)
        new = DelayedRow(plan_id, start, deadline, list(waits), row.on_failed)
        storage.update_delayed(new)
        changes.plan_fields(
            plan_id,
            PlanState.SCHEDULED,
            {"state": PlanState.SCHEDULED},
            history="plan rescheduled",
            at=at,
            detail=describe(new),
        )
        if changes.write(storage).plan_conflicts:
            raise InvalidState(f"plan {plan_id} started meanwhile; it was not rescheduled")
        storage.notify([TOPIC])
    return new


# -- starting due plans -------------------------------------------------------------------------


def start_due(services: Services, at: datetime) -> int:
    """Start (or stop, past a deadline or after a failed prerequisite) the plans due at
    ``at`` that no other world takes first; how many this world did."""
    done = 0
    for row in services.storage.due_delayed(at, BATCH):
        try:
            done += start(services, row.plan_id, at)
        except Exception:  # one plan must not keep the others from starting
            log.exception("starting scheduled plan %s failed; trying again later", row.plan_id)
    return done


def start(services: Services, plan_id: str, at: datetime) -> bool:
    """Start one due plan, or stop it; ``False`` if it was not due any more, or another
    world took it."""
    storage = services.storage
    changes = Changes(services.world, services.id)
    with storage.transaction():
        row = storage.lock_delayed(plan_id, at)
        if row is None:
            return False
        verdict = _verdict(storage, row, at)
        if verdict is None:
            reason = "prerequisites ended" if row.after else "due"
            changes.plan(
                plan_id, PlanState.SCHEDULED, PlanState.PLANNED, at, None, {"reason": reason}
            )
        else:
            result, error = verdict
            plan = storage.load_plan(plan_id, history=False)
            for step in plan.steps:
                if step.kind != StepKind.PLAN and step.state == StepState.PENDING:
                    changes.step(
                        plan_id, DetachedStep.of(step), StepState.CANCELLED, at, {"ended_at": at}
                    )
            changes.plan(
                plan_id,
                PlanState.SCHEDULED,
                PlanState.STOPPED,
                at,
                {"ended_at": at, "error": error.to_json()},
                {"reason": error.message},
                result=result,
            )
        written = changes.write(storage)
        if written.plan_conflicts or written.step_conflicts:  # rolls everything back
            raise ConcurrentModification(f"scheduled plan {plan_id} changed while starting")
        if verdict is None:
            storage.add_request(RequestRow(plan_id, "execute", {}, at, None, services.id))
    changes.committed()
    if verdict is None:
        log.info("scheduled plan %s is due: handed to an executor world", plan_id)
    else:
        log.warning("scheduled plan %s stopped without starting: %s", plan_id, verdict[1].message)
    return True


def _verdict(
    storage: Storage, row: DelayedRow, at: datetime
) -> tuple[PlanResult, StepError] | None:
    """``None`` if the plan starts now, else the result it stops with and why."""
    if row.start_before is not None and at > row.start_before:
        return PlanResult.ERROR, StepError(
            "DeadlinePassed",
            f"not started: its deadline start_before={row.start_before.isoformat()} passed "
            f"before it could start (start_at={row.start_at.isoformat()}); nothing ran",
        )
    if row.on_failed == "run":
        return None
    failed = []
    for prerequisite in row.after:
        try:
            result: str = storage.get_plan_record(prerequisite).result
        except UnknownPlan:
            result = "gone"
        if result not in ENDED_WELL:
            failed.append(f"{prerequisite} ({result})")
    if not failed:
        return None
    message = (
        f"not started: prerequisite plan {', '.join(failed)} did not end well "
        f"(on_failed={row.on_failed!r}); nothing ran"
    )
    return (
        PlanResult.CANCELLED if row.on_failed == "skip" else PlanResult.ERROR,
        StepError("PrerequisiteFailed", message),
    )
