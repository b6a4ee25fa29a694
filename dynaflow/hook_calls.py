"""Calling the execution-plan hooks of a plan (see :mod:`dynaflow.plan_hooks`) for the
changes to ``stopped`` and ``paused`` one world makes, after they commit."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from dynaflow import registry, signals
from dynaflow.clock import now
from dynaflow.exceptions import DynaflowError
from dynaflow.execution_plan import ExecutionPlan, StepError
from dynaflow.persistence.base import HistoryRow
from dynaflow.plan_hooks import hooked, kinds
from dynaflow.rebuild import build_unvalidated
from dynaflow.services import Services
from dynaflow.states import PlanResult, PlanState

log = logging.getLogger("dynaflow.hooks")


def call_hook(action: Any, kind: str, plan: ExecutionPlan) -> Any:
    """The innermost link of the ``hook`` middleware chain: the action's hook method."""
    return getattr(action, kind)(plan)


class PlanHooks:
    """Calls the hooks for the plan changes one world makes."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def connect(self, world: Any) -> None:
        signals.plan_state_changed.connect(self.changed, sender=world, weak=False)

    def disconnect(self, world: Any) -> None:
        # from every sender: blinker keeps a receiver disconnected from one sender in
        # ``receivers`` (holding this object, its services and the closed world for good)
        signals.plan_state_changed.disconnect(self.changed)

    def changed(
        self, sender: Any, *, plan_id: str, state: PlanState, result: Any, **_: Any
    ) -> None:
        """The receiver of this world's ``plan_state_changed``."""
        if state not in (PlanState.STOPPED, PlanState.PAUSED) or not hooked(""):
            return
        try:
            self.call(plan_id, PlanState(state), result)
        except DynaflowError:  # the plan could not be read, or the history not written
            log.exception("the hooks of plan %s (now %s) were not all called", plan_id, state)

    def call(self, plan_id: str, state: PlanState, result: Any) -> None:
        """Call the hooks of ``plan_id`` for its change to ``state`` and record each call."""
        services = self.services
        plan = services.storage.load_plan(plan_id, history=False)
        names = kinds(state, PlanResult(result) if result is not None else plan.result)
        rows: list[HistoryRow] = []
        for record in plan.actions:
            if not hooked(record.action_class):
                continue
            cls = registry.resolve(record.action_class)
            wanted = [name for name in names if name in cls.plan_hooks]
            if not wanted:
                continue
            action = build_unvalidated(services, plan, record.id)
            chain = services.chains.action(cls, "hook")
            for name in wanted:
                detail: dict[str, Any] = {
                    "action_id": record.id,
                    "action_class": record.action_class,
                }
                event = f"hook {name}"
                try:
                    chain(action, name, plan)
                except Exception as exc:
                    log.exception(
                        "%s#%s.%s() raised for plan %s; the plan is not affected",
                        record.action_class,
                        record.id,
                        name,
                        plan_id,
                    )
                    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                    detail["error"] = StepError.from_exception(exc, text).to_json()
                    event += " failed"
                rows.append(HistoryRow(plan_id, now(), event, None, services.id, detail))
        if rows:
            services.storage.add_history(rows)
