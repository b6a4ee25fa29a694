"""Execution-plan hooks: ``on_success``, ``on_failure``, ``on_stopped`` and ``on_paused``
methods on action classes, called when their plan stops or pauses.

A world calls them for each change of a plan to ``stopped`` or ``paused`` that it made itself,
right after the change has committed (receiving its own ``plan_state_changed`` signal): the
hooks of every action of the plan whose class defines them, in planning order (the root
first), each through the ``hook`` middleware chain. A stop calls ``on_success`` (result
``success`` or ``warning``) or ``on_failure`` (``error`` or ``cancelled``), then
``on_stopped``. Each call is recorded in the plan's history; a hook that raises is logged and
recorded with its error, and nothing else changes. A process that dies between the commit and
the call does not call it, and no other world calls it for it: at most once per change.
"""

from __future__ import annotations

import copy
import inspect
import logging
import traceback
from typing import Any

from dynaflow import registry, signals
from dynaflow.clock import now
from dynaflow.exceptions import ConfigurationError, DynaflowError
from dynaflow.execution_plan import ActionRecord, ExecutionPlan, StepError
from dynaflow.persistence.base import HistoryRow
from dynaflow.services import Services
from dynaflow.states import PlanResult, PlanState
from dynaflow.values import resolve, with_refs_as_objects

log = logging.getLogger("dynaflow.hooks")

#: the hook methods, in the order a stop calls them
HOOKS = ("on_paused", "on_success", "on_failure", "on_stopped")
#: results that call ``on_success`` (the others call ``on_failure``)
SUCCEEDED = frozenset({PlanResult.SUCCESS, PlanResult.WARNING})

#: the names of the action classes defined in this process that have a hook
_hooked: set[str] = set()


def methods(cls: Any) -> frozenset[str]:
    """The hooks ``cls`` defines or inherits; :class:`ConfigurationError` for one that does
    not take the plan (called when the class is defined)."""
    found = set()
    for name in HOOKS:
        method = getattr(cls, name, None)
        if method is None:
            continue
        if not callable(method):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name} must be a method: def {name}(self, plan)"
            )
        try:
            inspect.signature(method).bind(cls, None)
        except TypeError:
            raise ConfigurationError(
                f"{cls.__qualname__}.{name} must take the plan: def {name}(self, plan)"
            ) from None
        except ValueError:  # no signature to check (a builtin): it is called as it is
            pass
        found.add(name)
    if found:
        _hooked.add(registry.class_name(cls))
    return frozenset(found)


def kinds(state: PlanState, result: PlanResult) -> tuple[str, ...]:
    """The hooks a change to ``state`` with ``result`` calls, in order."""
    if state == PlanState.PAUSED:
        return ("on_paused",)
    if state == PlanState.STOPPED:
        return ("on_success" if result in SUCCEEDED else "on_failure", "on_stopped")
    return ()


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
        signals.plan_state_changed.disconnect(self.changed, sender=world)

    def changed(
        self, sender: Any, *, plan_id: str, state: PlanState, result: Any, **_: Any
    ) -> None:
        """The receiver of this world's ``plan_state_changed``."""
        if state not in (PlanState.STOPPED, PlanState.PAUSED) or not _hooked:
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
            if record.action_class not in _hooked:
                continue
            cls = registry.resolve(record.action_class)
            wanted = [name for name in names if name in cls.plan_hooks]
            if not wanted:
                continue
            action = _rebuild(services, cls, plan, record)
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


def _rebuild(services: Services, cls: Any, plan: ExecutionPlan, record: ActionRecord) -> Any:
    """The action with its input (references resolved where their producers set them) and
    output, unvalidated: a hook may run for a plan whose steps never ran."""
    action = cls.instance(services.world, plan.id, record.id, None, services.storage)
    outputs = {a.id: a.output for a in plan.actions}
    try:
        raw = resolve(record.input, outputs.__getitem__, f"input of {cls.__name__}#{record.id}")
    except (DynaflowError, KeyError):
        raw = with_refs_as_objects(record.input)
    action.raw_input = raw
    fields = {k: v for k, v in raw.items() if k != "__context__"}
    action.input = cls.Input.model_construct(**fields) if cls.Input is not None else fields
    output = copy.deepcopy(record.output) if record.output else {}
    action.output = cls.Output.model_construct(**output) if cls.Output is not None else output
    return action
