"""The plan phase: runs ``plan`` methods depth first, builds the flow, the run graph and the
finalize order, and hands back everything to persist in one go.

Nothing is written while planning runs; :meth:`Planner.finish` returns a
:class:`~dynaflow.persistence.NewPlan` that the world inserts in one transaction.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from dynaflow import flows, registry, singletons
from dynaflow.action import CONTEXT_KEY, Action, plan_signature
from dynaflow.clock import now
from dynaflow.exceptions import PlanningError
from dynaflow.execution_plan import ActionRecord, PlanRecord, StepError, StepRecord
from dynaflow.persistence.base import HistoryRow, NewPlan
from dynaflow.services import Services
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.values import (
    OutputRef,
    find_refs,
    has_refs,
    to_json,
    validation_problems,
    with_refs_as_objects,
)


class _Failed:
    """Marks an exception already recorded on the plan step where it was raised."""

    __slots__ = ("step_id",)

    def __init__(self, step_id: int) -> None:
        self.step_id = step_id


class Planner:
    def __init__(
        self,
        services: Services,
        plan_id: str,
        key: str | None = None,
        key_arguments: dict[str, Any] | None = None,
        parent: tuple[str, int] | None = None,
    ) -> None:
        self.services = services
        self.plan_id = plan_id
        self.key = key
        #: a sub-plan's parent plan and step
        self.parent = parent
        self.key_arguments = key_arguments
        #: the singleton keys of the singleton actions planned
        self.singletons: list[str] = []
        self.created_at = now()
        self.root: Action | None = None
        self.actions: list[Action] = []
        self.parents: dict[int, int | None] = {}
        self.triggers: dict[int, int | None] = {}
        self.steps: list[dict[str, Any]] = []
        self.run_step_of: dict[int, int] = {}
        self.flow = flows.Concurrence()
        self._scopes: list[flows.Sequence | flows.Concurrence] = [self.flow]
        #: the first exception raised by any plan() — even one a parent caught
        self.failure: BaseException | None = None
        self.history: list[HistoryRow] = [
            HistoryRow(plan_id, self.created_at, "plan planning", world_id=services.id)
        ]

    # -- called by actions -----------------------------------------------------------------

    def plan_action(
        self,
        cls: type[Action],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        parent: Action | None,
        trigger: Action | None = None,
    ) -> Action:
        if not (isinstance(cls, type) and issubclass(cls, Action)):
            raise PlanningError(
                f"{cls!r} is not an Action class; plan_action() takes Action subclasses"
            )
        action = cls.instance(
            self.services.world,
            self.plan_id,
            len(self.actions) + 1,
            None,
            self.services.storage,
        )
        action.input = cls.Input.model_construct() if cls.Input else {}
        action.output = OutputRef(action.id, cls.action_class_name)
        action.triggering_action = trigger
        action._planner = self
        self.actions.append(action)
        self.parents[action.id] = parent.id if parent is not None else None
        self.triggers[action.id] = trigger.id if trigger is not None else None
        if self.root is None:
            self.root = action

        step = self._add_step(action, StepKind.PLAN)
        step["started_at"] = started = now()
        scope = flows.Concurrence()
        self._scopes.append(scope)
        try:
            try:
                plan_signature(cls).bind(action, *args, **kwargs)
            except TypeError as exc:
                raise PlanningError(
                    f"{cls.action_class_name}.plan{plan_signature(cls)} does not accept "
                    f"args={args!r} kwargs={kwargs!r}: {exc}"
                ) from None
            self.services.chains.action(cls, "plan")(action, *args, **kwargs)
            if singletons.is_singleton(cls):
                self.singletons.append(singletons.key_of(action))
        except BaseException as exc:
            self._record_failure(step, action, exc, started)
            raise
        finally:
            self._scopes.pop()
            self._scopes[-1].children.append(scope)
            action._planner = None
        ended = now()
        step.update(
            state=StepState.SUCCESS,
            ended_at=ended,
            duration=_seconds(started, ended),
            world_id=self.services.id,
        )
        self.history.append(
            HistoryRow(self.plan_id, ended, "step success", step["id"], self.services.id)
        )
        return action

    def plan_self(self, action: Action, input: dict[str, Any]) -> None:
        cls = type(action)
        if action.has_planned_self:
            raise PlanningError(f"{cls.action_class_name}#{action.id} called plan_self() twice")
        where = f"input of {cls.action_class_name}#{action.id}"
        encoded = to_json(input, where)
        if cls.Input is not None:
            encoded = _validate_input(cls, action.id, encoded)
            action.input = cls.Input.model_construct(**with_refs_as_objects(encoded))
        else:
            action.input = with_refs_as_objects(encoded)
        action.raw_input = encoded
        action.has_planned_self = True
        if cls.has_run:
            run_step = self._add_step(action, StepKind.RUN)
            self.run_step_of[action.id] = run_step["id"]
            self._scopes[-1].children.append(flows.Atom(run_step["id"]))
        if cls.has_finalize:
            self._add_step(action, StepKind.FINALIZE)

    @contextmanager
    def scope(self, flow: flows.Sequence | flows.Concurrence) -> Iterator[None]:
        self._scopes.append(flow)
        try:
            yield
        finally:
            self._scopes.pop()
            self._scopes[-1].children.append(flow)

    # -- results ---------------------------------------------------------------------------

    def finish(self, failure: BaseException | None = None) -> NewPlan:
        """What to persist: the plan ``planned``, or ``stopped``/``error`` after ``failure``."""
        at = now()
        run_flow = flows.simplify(self.flow)
        edge_set = set(flows.edges(run_flow, itertools.count(-1, -1)))
        for action in self.actions:
            consumer = self.run_step_of.get(action.id)
            if consumer is None:
                continue
            for ref in find_refs(action.raw_input):
                producer = self.run_step_of.get(ref.action_id)
                if producer is not None and producer != consumer:
                    edge_set.add((producer, consumer))
        edges = sorted(edge_set)
        if failure is None:
            _check_acyclic(edges, self.steps)
        root = self.root
        root_class = type(root).action_class_name if root is not None else None
        label = getattr(type(root), "label", None) if root is not None else None
        if failure is None:
            state, result, error, event = (
                PlanState.PLANNED,
                PlanResult.PENDING,
                None,
                "plan planned",
            )
        else:
            state, result, event = PlanState.STOPPED, PlanResult.ERROR, "plan planning failed"
            error = StepError.from_exception(failure, _format_tb(failure))
        record = PlanRecord(
            id=self.plan_id,
            label=label if isinstance(label, str) else (root_class or "?").rsplit(".", 1)[-1],
            state=state,
            result=result,
            root_action_class=root_class,
            created_at=self.created_at,
            ended_at=at if failure is not None else None,
            key=self.key,
            key_arguments=self.key_arguments,
            run_flow=flows.to_json(run_flow),
            error=error,
            parent_id=self.parent[0] if self.parent else None,
            parent_step_id=self.parent[1] if self.parent else None,
        )
        actions = [
            ActionRecord(
                id=action.id,
                action_class=type(action).action_class_name,
                input=action.raw_input,
                output={},
                parent_id=self.parents[action.id],
                trigger_id=self.triggers[action.id],
            )
            for action in self.actions
        ]
        steps = [StepRecord(**step) for step in self.steps]
        history = [*self.history, HistoryRow(self.plan_id, at, event, world_id=self.services.id)]
        held = self.singletons if failure is None else []
        return NewPlan(record, actions, steps, edges, history, held)

    # -- internals -------------------------------------------------------------------------

    def _add_step(self, action: Action, kind: StepKind) -> dict[str, Any]:
        cls = type(action)
        step = {
            "id": len(self.steps) + 1,
            "kind": kind,
            "action_id": action.id,
            "action_class": cls.action_class_name,
            "state": StepState.PENDING,
            "queue": cls.queue,
            "position": len(self.steps) + 1,
        }
        if kind == StepKind.RUN and cls.progress_weight != 1:
            step["progress"] = {"weight": cls.progress_weight}
        self.steps.append(step)
        return step

    def _record_failure(
        self, step: dict[str, Any], action: Action, exc: BaseException, started: Any
    ) -> None:
        ended = now()
        marker = getattr(exc, "__dynaflow_failed__", None)
        if isinstance(marker, _Failed):
            failed = self.steps[marker.step_id - 1]
            error = StepError(
                "PlanningError",
                f"child {failed['action_class']}#{failed['action_id']} failed to plan",
            )
        else:
            error = StepError.from_exception(exc, _format_tb(exc))
            if self.failure is None:
                self.failure = exc
            try:
                exc.__dynaflow_failed__ = _Failed(step["id"])  # type: ignore[attr-defined]
            except AttributeError:
                pass
        step.update(
            state=StepState.ERROR,
            ended_at=ended,
            duration=_seconds(started, ended),
            error=error,
            world_id=self.services.id,
        )
        self.history.append(
            HistoryRow(
                self.plan_id,
                ended,
                "step error",
                step["id"],
                self.services.id,
                {"error": error.to_json()},
            )
        )


def plan_core(action: Action, *args: Any, **kwargs: Any) -> None:
    """The innermost link of the ``plan`` middleware chain: the action's ``plan``, then its
    subscribers, planned right after it with the same arguments."""
    action.plan(*args, **kwargs)
    planner = action._planner
    assert planner is not None
    for subscriber in registry.subscribers(type(action)):
        planner.plan_action(subscriber, args, kwargs, parent=action, trigger=action)


def _validate_input(cls: type[Action], action_id: int, encoded: dict[str, Any]) -> dict[str, Any]:
    """Validate plan-time input against ``cls.Input``. Fields holding output references cannot
    be checked yet (they are checked again before run); everything else must pass now."""
    assert cls.Input is not None
    ref_fields = {name for name, value in encoded.items() if has_refs(value)}
    data = {k: v for k, v in encoded.items() if k not in ref_fields and k != CONTEXT_KEY}
    try:
        model = cls.Input.model_validate(data)
    except ValidationError as exc:
        problems = [err for err in exc.errors() if not (err["loc"] and err["loc"][0] in ref_fields)]
        if problems:
            raise PlanningError(
                f"input of {cls.action_class_name}#{action_id} is invalid: "
                + validation_problems(problems)
            ) from None
        return encoded
    if ref_fields:
        return encoded
    validated: dict[str, Any] = model.model_dump(mode="json")
    if CONTEXT_KEY in encoded:
        validated[CONTEXT_KEY] = encoded[CONTEXT_KEY]
    return validated


def _check_acyclic(edges: list[tuple[int, int]], steps: list[dict[str, Any]]) -> None:
    successors: dict[int, list[int]] = {}
    indegree: dict[int, int] = {}
    nodes = {s["id"] for s in steps}
    for a, b in edges:
        successors.setdefault(a, []).append(b)
        indegree[b] = indegree.get(b, 0) + 1
        nodes.update((a, b))
    ready = [node for node in nodes if node not in indegree]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for nxt in successors.get(node, ()):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if seen != len(nodes):
        stuck = sorted(s for s, n in indegree.items() if n > 0 and s > 0)
        raise PlanningError(
            f"output references and sequences form a cycle between run steps {stuck}; an action "
            "cannot (indirectly) wait for its own output"
        )


def _seconds(start: Any, end: Any) -> float:
    return (end - start).total_seconds()


def _format_tb(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
