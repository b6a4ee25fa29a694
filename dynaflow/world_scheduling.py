"""The World's side of plans that start later: delayed and chained plans
(:mod:`dynaflow.scheduled`), recurring schedules (:mod:`dynaflow.schedules`), and the
:class:`Starter` with which an executor world looks for what fell due. A part of
:class:`~dynaflow.World`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from dynaflow import schedules
from dynaflow.action import Action
from dynaflow.clock import now
from dynaflow.exceptions import (
    ConfigurationError,
    DynaflowError,
    PlanningFailed,
    UnknownSchedule,
)
from dynaflow.executor import Executor, InlineExecutor, ThreadedExecutor
from dynaflow.mailbox import Mailbox
from dynaflow.persistence import Storage
from dynaflow.persistence.base import NewPlan, RequestRow
from dynaflow.persistence.schedules import DelayedRow
from dynaflow.scheduled import (
    DelayedPlan,
    When,
    check_on_failed,
    prerequisites,
    reschedule,
    start_due,
    storing,
    window,
)
from dynaflow.schedules import Schedule
from dynaflow.services import Services
from dynaflow.values import to_json

log = logging.getLogger("dynaflow.scheduled")

#: seconds between two looks for due plans and runs when nothing asks for one sooner
LOOK = 1.0


class Starter:
    """An executor world's look for what fell due: delayed and chained plans to start (or to
    stop, past their deadline), runs of recurring schedules to plan. It looks every
    :data:`LOOK` seconds of dynaflow's clock, at the earliest due time if that comes sooner,
    and at once when asked (:meth:`wanted`: a plan delayed here, a notification from another
    world)."""

    def __init__(self, services: Services, plan: schedules.Plan) -> None:
        self.services = services
        self.plan = plan
        self._look_at: datetime | None = None
        self._wanted = True

    def wanted(self) -> None:
        self._wanted = True

    def poll(self, force: bool = False) -> int:
        """Look now if it is time; how many plans were started, stopped or planned."""
        at = now()
        if not (force or self._wanted or self._look_at is None or at >= self._look_at):
            return 0
        self._wanted = False
        storage, done = self.services.storage, 0
        try:
            earliest = storage.next_start()
            if earliest is not None and earliest <= at:
                done = start_due(self.services, at) + schedules.plan_due(
                    self.services, self.plan, at
                )
                earliest = storage.next_start()
        except DynaflowError:
            log.exception("looking for due plans failed; looking again in %ss", LOOK)
            earliest = None
        if done:  # there may be more: look again on the next poll
            self._look_at = at
        elif earliest is not None and earliest > at:
            self._look_at = min(at + timedelta(seconds=LOOK), earliest)
        else:
            self._look_at = at + timedelta(seconds=LOOK)
        return done


class SchedulingSide:
    """See the module's docstring; :class:`~dynaflow.World` provides the state."""

    storage: Storage
    services: Services
    executor: Executor | None
    mailbox: Mailbox | None
    starter: Starter | None

    if TYPE_CHECKING:  # given by World

        def _check_open(self) -> None: ...

        def _plan(
            self,
            action_class: type[Action],
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            options: Any = ...,
            hand_off: RequestRow | None = None,
            *,
            store: Callable[[NewPlan], None] | None = None,
        ) -> tuple[str, BaseException | None]: ...

    # -- delayed and chained plans ---------------------------------------------------------

    def delay(
        self,
        action_class: type[Action],
        *args: Any,
        start_at: When,
        start_before: When | None = None,
        **kwargs: Any,
    ) -> DelayedPlan:
        """Plan now; start at ``start_at`` (a timezone-aware datetime, or a timedelta from
        now). The plan is stored ``scheduled``; exactly one executor world starts it when it
        is due. If no world could start it by ``start_before``, it stops with result
        ``error`` instead of starting late. Naive datetimes are refused. A planning failure
        raises :class:`PlanningFailed`."""
        self._check_open()
        start, deadline = window(start_at, start_before, now())
        return self._scheduled(action_class, args, kwargs, DelayedRow("", start, deadline))

    def chain(
        self,
        action_class: type[Action],
        *args: Any,
        after: Sequence[str],
        on_failed: str = "fail",
        start_at: When | None = None,
        start_before: When | None = None,
        **kwargs: Any,
    ) -> DelayedPlan:
        """Plan now; start once every plan of ``after`` (plan ids) has stopped with result
        ``success`` or ``warning`` (and ``start_at`` has come, if given). If one of them ended
        otherwise (``error``, ``cancelled``), ``on_failed`` decides: ``"fail"`` (the plan stops
        with result ``error`` naming it), ``"skip"`` (it stops ``cancelled``) or ``"run"`` (it
        runs anyway). Unknown plan ids are refused, and nothing is planned."""
        self._check_open()
        at = now()
        start, deadline = window(at if start_at is None else start_at, start_before, at)
        policy = check_on_failed(on_failed)
        waits = prerequisites(self.storage, after)
        row = DelayedRow("", start, deadline, waits, policy)
        return self._scheduled(action_class, args, kwargs, row)

    def _scheduled(
        self,
        action_class: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        row: DelayedRow,
    ) -> DelayedPlan:
        plan_id, failure = self._plan(action_class, args, kwargs, store=storing(self.services, row))
        if failure is not None:
            raise PlanningFailed(plan_id, failure) from failure
        self._wake()
        return DelayedPlan(self, plan_id)

    def delayed(self, plan_id: str) -> DelayedRow | None:
        """When a delayed or chained plan may start (``start_at``), its deadline
        (``start_before``), the plans it waits for (``after``) and its ``on_failed``; ``None``
        for a plan that was neither."""
        self._check_open()
        self.storage.get_plan_record(plan_id)  # UnknownPlan
        return self.storage.get_delayed(plan_id)

    def reschedule(
        self,
        plan_id: str,
        *,
        start_at: When | None = None,
        start_before: When | EllipsisType | None = ...,
        after: Sequence[str] | None = None,
    ) -> DelayedRow:
        """Change when a scheduled plan starts: ``start_at``, ``start_before`` (``None``: no
        deadline; left out: keep it), or the plans it waits for (``after``). Raises
        :class:`InvalidState` unless the plan is still ``scheduled``; a change of ``after``
        that would make a cycle of chained plans is refused."""
        self._check_open()
        row = reschedule(self.services, plan_id, start_at, start_before, after)
        self._wake()
        return row

    # -- recurring plans ---------------------------------------------------------------------

    def schedule(
        self,
        action_class: type[Action],
        *args: Any,
        cron: str,
        key: str,
        tz: str = "UTC",
        catch_up: str = "skip",
        **kwargs: Any,
    ) -> Schedule:
        """Plan ``action_class(*args, **kwargs)`` at each time of ``cron`` (five fields,
        ``"0 2 * * *"``) in the time zone ``tz`` (an IANA name), under ``key``. Calling it again
        with the same key changes the schedule; runs already planned are never planned again.
        ``catch_up`` says what happens to runs missed while no executor world could plan them:
        ``"skip"`` drops them, ``"once"`` plans one run for them, ``"all"`` plans each."""
        self._check_open()
        if not (isinstance(action_class, type) and issubclass(action_class, Action)):
            raise ConfigurationError(
                f"{action_class!r} is not an Action class; pass a subclass of dynaflow.Action"
            )
        schedules.check(cron, tz, catch_up, key)
        where = f"arguments of schedule {key!r}"
        row = schedules.define(
            self.services,
            key,
            action_class.action_class_name,
            to_json(list(args), where),
            to_json(kwargs, where),
            cron,
            tz,
            catch_up,
        )
        self._wake()
        return Schedule.of(row)

    def schedules(self) -> list[Schedule]:
        """Every recurring schedule, by key, with the time of its next run."""
        self._check_open()
        return [Schedule.of(row) for row in self.storage.schedules()]

    def pause_schedule(self, key: str) -> Schedule:
        """Plan no run of the schedule until it is resumed. :class:`UnknownSchedule` if there
        is none."""
        self._check_open()
        return Schedule.of(schedules.pause(self.services, key, True))

    def resume_schedule(self, key: str) -> Schedule:
        """Plan the schedule's runs again, from its next time after now (runs whose time
        passed while it was paused are not planned)."""
        self._check_open()
        row = schedules.pause(self.services, key, False)
        self._wake()
        return Schedule.of(row)

    def unschedule(self, key: str) -> None:
        """Delete a schedule; the runs it planned stay. :class:`UnknownSchedule` if there is
        none."""
        self._check_open()
        if not self.storage.delete_schedule(key):
            raise UnknownSchedule(key)

    def _look_now(self) -> None:
        """``run_pending``: on the inline executor, start what fell due and take the requests
        (a started plan may end, and another become due) until nothing more fell due; on the
        threaded one, have the scheduler thread look."""
        if self.mailbox is not None and isinstance(self.executor, InlineExecutor):
            while True:
                started = self.starter.poll(force=True) if self.starter is not None else 0
                self.mailbox.poll(force=True)
                if not started:
                    return
        elif self.starter is not None:
            self.starter.wanted()

    def _wake(self) -> None:
        """Have this world's executor look for due plans now (others are notified)."""
        if self.starter is not None and self.executor is not None:
            self.starter.wanted()
            if isinstance(self.executor, ThreadedExecutor):  # its scheduler thread looks
                self.executor.run_pending()
