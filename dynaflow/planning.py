"""Planning one plan for ``World.plan`` and ``World.trigger``: the plan phase around the
planner, or the plan an idempotency key (or a held singleton, with ``on_conflict="return"``)
gives back instead."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from dynaflow import idempotency, signals
from dynaflow.action import Action
from dynaflow.exceptions import ConcurrentModification, SingletonActive, StorageError
from dynaflow.persistence.base import NewPlan, RequestRow
from dynaflow.phases import PhaseContext
from dynaflow.plan_options import NO_OPTIONS, PlanOptions
from dynaflow.planner import Planner
from dynaflow.services import Services
from dynaflow.states import PlanResult, PlanState

log = logging.getLogger("dynaflow.world")


def plan_or_find(
    services: Services,
    action_class: type[Action],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: PlanOptions = NO_OPTIONS,
    hand_off: RequestRow | None = None,
    *,
    parent: tuple[str, int] | None = None,
    plan_id: str | None = None,
    collect: list[NewPlan] | None = None,
    store: Callable[[NewPlan], None] | None = None,
) -> tuple[str, BaseException | None]:
    """Plan, or find the plan ``options`` point at: ``(plan id, planning failure)``.
    ``hand_off``: an execute request stored with a new plan, in its transaction (its
    ``plan_id`` is set here). Raises :class:`IdempotencyConflict` for a key given with other
    arguments, :class:`SingletonActive` for a held singleton (unless ``on_conflict="return"``).
    ``parent``: a sub-plan's parent plan and step; ``plan_id``: the new plan's id (a fresh one
    if not given); ``collect``: the planned plan goes there, for the caller to insert with
    others, rather than being inserted here; ``store``: what stores it (and a planning
    failure) instead of ``insert_plan`` (a delayed plan, a scheduled run)."""
    storage, world, key = services.storage, services.world, options.idempotency_key
    if key is not None:
        existing = _keyed(services, options)
        if existing is not None:
            return existing, None
    plan_id = plan_id or str(uuid.uuid4())
    planner = Planner(services, plan_id, key, options.arguments, parent)
    context = PhaseContext(world, plan_id, "plan", storage)
    planned = False
    state = PlanState.PLANNED
    inserted = store is None  # insert_plan stores it (else the plan may be elsewhere)
    store = store or storage.insert_plan

    def core(context: PhaseContext) -> None:
        nonlocal planned, state
        planner.plan_action(action_class, args, kwargs, parent=None)
        if planner.failure is not None:  # a parent caught a child's error: still a failure
            raise planner.failure
        new = planner.finish()
        planned = True
        if collect is not None:  # the caller inserts it, with others
            collect.append(new)
            return
        store(new)
        state = new.plan.state
        if hand_off is not None:
            hand_off.plan_id = plan_id
            storage.add_request(hand_off, new_plan=inserted)

    try:
        services.chains.phase("plan_phase", core)(context)
    except Exception as exc:
        if isinstance(exc, ConcurrentModification) and key is not None:
            existing = _keyed(services, options)
            if existing is not None:  # another caller planned the same key first
                return existing, None
        if isinstance(exc, SingletonActive) and options.on_conflict == "return":
            return exc.plan_id, None
        if planned or isinstance(exc, StorageError):
            raise  # planning succeeded; storing it failed (or a singleton is held)
        store(planner.finish(failure=exc))
        log.info("plan %s stopped (error) in planning: %s", plan_id, exc)
        _signal(world, plan_id, PlanState.STOPPED, PlanResult.ERROR)
        return plan_id, exc
    _signal(world, plan_id, state, PlanResult.PENDING)
    return plan_id, None


def _keyed(services: Services, options: PlanOptions) -> str | None:
    """The plan holding the options' idempotency key, checked against this call's arguments."""
    assert options.idempotency_key is not None and options.arguments is not None
    record = services.storage.find_plan_by_key(options.idempotency_key)
    if record is None:
        return None
    idempotency.check_same(record, options.arguments, options.idempotency_key)
    return record.id


def _signal(world: Any, plan_id: str, state: PlanState, result: PlanResult) -> None:
    signals.emit(signals.plan_state_changed, world, plan_id=plan_id, state=state, result=result)
