"""The world's side of sub-plans: plan a child of a step, hand planned plans to any executor
world, and carry cancel, halt and resume from a plan to its sub-plans.

:class:`~dynaflow.World` provides the state; the :class:`~dynaflow.SubPlans` mixin calls these
from inside its ``run``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from dynaflow.clock import now
from dynaflow.events import current_context
from dynaflow.exceptions import (
    DynaflowError,
    InvalidArgument,
    InvalidState,
)
from dynaflow.executor import Executor, InlineExecutor
from dynaflow.mailbox import Mailbox
from dynaflow.persistence import Storage
from dynaflow.persistence.base import NewPlan, PlanFilter, RequestRow
from dynaflow.states import PlanState

log = logging.getLogger("dynaflow.world")

#: states of a sub-plan that has not stopped
UNFINISHED = (PlanState.PLANNED, PlanState.SCHEDULED, PlanState.RUNNING, PlanState.PAUSED)
#: sub-plans read at once when an operation goes down to them
PAGE = 500


class SubPlansSide:
    """See the module's docstring."""

    storage: Storage
    executor: Executor | None
    mailbox: Mailbox | None

    if TYPE_CHECKING:  # provided by World

        @property
        def id(self) -> str: ...

        def _check_open(self) -> None: ...

        def _plan(self, *args: Any, **kwargs: Any) -> tuple[str, BaseException | None]: ...

        def cancel(self, plan_id: str, *, abort: bool = False, by: str | None = None) -> Any: ...

        def halt(self, plan_id: str, *, by: str | None = None) -> Any: ...

        def resume(
            self, plan_id: str, *, sub_plans: bool = False, by: str | None = None
        ) -> Any: ...

    def plan_sub_plans(
        self,
        parent_id: str,
        parent_step_id: int,
        children: Sequence[tuple[Any, Sequence[Any], dict[str, Any], int]],
    ) -> list[tuple[str, BaseException | None]]:
        """Plan sub-plans of step ``parent_step_id`` of plan ``parent_id`` — ``children`` are
        ``(action class, args, kwargs, index)`` — in one transaction, without starting them:
        ``(id, planning failure or None)`` of each. A child's id follows from the parent, the
        step and its ``index`` among the step's children, so planning the same child again (a
        step run again after a crash) gives back the one planned. When a sub-plan stops or
        pauses, that step gets the event ``{"sub_plan": id, "state": ..., "result": ...}``."""
        self._check_open()
        if not isinstance(parent_id, str) or not isinstance(parent_step_id, int):
            raise InvalidArgument(
                "plan_sub_plans() takes the parent's plan id (str) and step id (int), got "
                f"{parent_id!r} and {parent_step_id!r}"
            )
        parent = (parent_id, parent_step_id)
        planned: list[tuple[str, BaseException | None]] = []
        ids = [
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{parent_id}/{parent_step_id}/{index}"))
            for _, _, _, index in children
        ]
        with self.storage.transaction():
            news: list[NewPlan] = []
            earlier = {record.id for record in self.storage.plan_records(ids)}
            for (action_class, args, kwargs, _), plan_id in zip(children, ids, strict=True):
                if plan_id in earlier:  # planned by an earlier run
                    planned.append((plan_id, None))
                    continue
                planned.append(
                    self._plan(
                        action_class,
                        tuple(args),
                        dict(kwargs),
                        parent=parent,
                        plan_id=plan_id,
                        collect=news,
                    )
                )
            self.storage.insert_plans(news)
        return planned

    def hand_off(self, plan_ids: Sequence[str]) -> None:
        """Start planned plans without waiting for them: any executor world that serves their
        queues and can import their classes takes them (this one included). An inline
        executor runs them here, in the call that is running."""
        self._check_open()
        ids = list(plan_ids)
        if not ids:
            return
        executor = self.executor
        if isinstance(executor, InlineExecutor):  # deterministic: this world, this thread
            for plan_id in ids:
                executor.engine.execute(plan_id, _ignored(), None, follow_if_taken=True)
            executor.run_pending()  # (inside a step it returns at once; the outer call runs)
            return
        at = now()
        rows = [RequestRow(plan_id, "execute", {}, at, None, self.id) for plan_id in ids]
        context = current_context()
        if context is not None:  # inside a running step: stored with its outcome
            context.requests.extend(rows)
            return
        self.storage.add_requests(rows)
        if self.mailbox is not None and executor is not None:
            self.mailbox.wanted("requests")
            executor.run_pending()

    def sub_plan_ids(
        self, plan_id: str, states: Sequence[PlanState] | None = UNFINISHED
    ) -> list[str]:
        """The ids of ``plan_id``'s sub-plans in ``states`` (every one with ``None``), oldest
        first."""
        where = PlanFilter(state=None if states is None else tuple(states), parent=plan_id)
        ids: list[str] = []
        offset = 0
        while True:
            page = self.storage.find_plans(where, offset=offset, limit=PAGE, order_by="created_at")
            ids.extend(record.id for record in page)
            if len(page) < PAGE:
                return ids
            offset += PAGE

    def _down_to_sub_plans(
        self, plan_id: str, operation: str, abort: bool = False, by: str | None = None
    ) -> None:
        """Carry ``operation`` (cancel, halt, resume) to the sub-plans it applies to (and so on
        down: each call goes on to its own sub-plans). A sub-plan that has just stopped by
        itself is left alone."""
        states = (PlanState.PAUSED,) if operation == "resume" else UNFINISHED
        for child in self.sub_plan_ids(plan_id, states):
            try:
                if operation == "cancel":
                    self.cancel(child, abort=abort, by=by)
                elif operation == "halt":
                    self.halt(child, by=by)
                else:
                    self.resume(child, sub_plans=True, by=by)
            except InvalidState:  # it stopped (or was resumed) in the meantime
                continue
            except DynaflowError as exc:
                log.warning(
                    "could not %s sub-plan %s of plan %s: %s", operation, child, plan_id, exc
                )


def _ignored() -> Future[Any]:
    return Future()
