"""Planning without running: :func:`plan_only` and the :class:`Planned` tree it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dynaflow.action import Action
from dynaflow.exceptions import InvalidArgument, PlanningFailed
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.registry import class_name
from dynaflow.states import StepKind
from dynaflow.values import OutputRef, with_refs_as_objects
from dynaflow.world import World

#: an action to look for: its class, or its name (qualified, or the class name alone)
ActionSpec = type[Action] | str


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One planned action: its class, its input as planned (another action's output is an
    :class:`~dynaflow.OutputRef`, equal to ``that_action.output.<key>``), and where it sits."""

    id: int
    #: the qualified class name (``package.module.ClassName``)
    action_class: str
    input: dict[str, Any] = field(hash=False)
    #: the action whose ``plan`` planned this one (``None`` for the root)
    parent_id: int | None = None
    #: the action whose planning triggered this one through a subscription
    trigger_id: int | None = None
    run_step_id: int | None = None
    finalize_step_id: int | None = None

    @property
    def name(self) -> str:
        """The class name alone."""
        return self.action_class.rsplit(".", 1)[-1]

    @property
    def output(self) -> OutputRef:
        """A reference to this action's output, to compare with the inputs of others:
        ``other.input["machine"] == machine.output.uuid``."""
        return OutputRef(self.id, self.action_class)

    def is_a(self, action: ActionSpec) -> bool:
        """Whether this action is of ``action`` (a class, or its qualified or short name)."""
        if isinstance(action, str):
            return self.action_class == action or self.action_class.endswith("." + action)
        return self.action_class == class_name(action)


@dataclass(frozen=True, slots=True)
class Planned:
    """What a plan planned, to assert on: the actions with their inputs, and the run structure.

    ``flow`` is the run flow as nested ``("sequence", [...])`` and ``("concurrence", [...])``
    tuples of class names; ``edges`` also has the orderings output references add.
    """

    plan: ExecutionPlan
    all: tuple[PlannedAction, ...] = field(default=(), repr=False)

    @classmethod
    def of(cls, plan: ExecutionPlan) -> Planned:
        """The tree of a plan read from a world (``Planned.of(world.plan(...))``)."""
        runs = {s.action_id: s.id for s in plan.steps if s.kind == StepKind.RUN}
        finals = {s.action_id: s.id for s in plan.steps if s.kind == StepKind.FINALIZE}
        actions = tuple(
            PlannedAction(
                id=a.id,
                action_class=a.action_class,
                input=with_refs_as_objects(a.input),
                parent_id=a.parent_id,
                trigger_id=a.trigger_id,
                run_step_id=runs.get(a.id),
                finalize_step_id=finals.get(a.id),
            )
            for a in plan.actions
        )
        return cls(plan, actions)

    # -- the actions -------------------------------------------------------------------------

    def find(self, action: ActionSpec | None = None, **input: Any) -> list[PlannedAction]:
        """The planned actions of ``action`` (any class if ``None``) whose input has every
        given key with the given value, in planning order."""
        return [
            a
            for a in self.all
            if (action is None or a.is_a(action))
            and all(key in a.input and a.input[key] == value for key, value in input.items())
        ]

    def one(self, action: ActionSpec, **input: Any) -> PlannedAction:
        """The one planned action of ``action`` matching ``input``; raises
        :class:`~dynaflow.InvalidArgument` (listing what was planned) unless there is exactly
        one."""
        found = self.find(action, **input)
        if len(found) != 1:
            wanted = _label(action) + (f" with input {input}" if input else "")
            planned = "; ".join(f"{a.name}#{a.id} {a.input}" for a in self.all) or "nothing"
            raise InvalidArgument(
                f"expected one planned {wanted}, found {len(found)}; planned: {planned}"
            )
        return found[0]

    def actions(self, action: ActionSpec | None = None, **input: Any) -> list[dict[str, Any]]:
        """The inputs of the planned actions of ``action`` matching ``input``, in planning
        order."""
        return [a.input for a in self.find(action, **input)]

    def input(self, action: ActionSpec, **input: Any) -> dict[str, Any]:
        """The input of the one planned action of ``action`` matching ``input``."""
        return self.one(action, **input).input

    def action(self, action_id: int) -> PlannedAction:
        """The planned action with id ``action_id``."""
        for a in self.all:
            if a.id == action_id:
                return a
        raise InvalidArgument(f"plan {self.plan.id} has no action {action_id}")

    def children(self, parent: PlannedAction) -> list[PlannedAction]:
        """The actions ``parent``'s ``plan`` planned itself, and its subscribers."""
        return [a for a in self.all if a.parent_id == parent.id]

    def subscribers(self, trigger: PlannedAction) -> list[PlannedAction]:
        """The actions planned because they subscribe to ``trigger``'s class."""
        return [a for a in self.all if a.trigger_id == trigger.id]

    # -- the run structure -------------------------------------------------------------------

    @property
    def flow(self) -> Any:
        """The run flow with class names: a name for one run step, ``("sequence", [...])``
        and ``("concurrence", [...])`` for scopes, members in planning order."""
        return self.flow_by(lambda action: action.name)

    def flow_by(self, label: Callable[[PlannedAction], Any]) -> Any:
        """The run flow with ``label(action)`` for each run step (``lambda a:
        a.input["name"]``, say)."""
        by_step = {a.run_step_id: a for a in self.all if a.run_step_id is not None}

        def shape(node: Any) -> Any:
            if isinstance(node, int):
                return label(by_step[node])
            ((kind, members),) = node.items()
            return (kind, [shape(member) for member in members])

        return shape(self.plan.run_flow)

    def edges(self, label: Callable[[PlannedAction], Any] | None = None) -> set[tuple[Any, Any]]:
        """``(before, after)`` pairs of the run graph (``after`` starts once ``before`` has
        finished), from sequences and from output references; labelled by class name, or by
        ``label(action)``."""
        by_step = {a.run_step_id: a for a in self.all if a.run_step_id is not None}
        name = label or (lambda action: action.name)
        return {(name(by_step[a]), name(by_step[b])) for a, b in self.plan.run_edges}

    def stages(self, label: Callable[[PlannedAction], Any] | None = None) -> list[list[Any]]:
        """The run steps in the order the run graph allows, as stages: the first stage starts
        at once, together; each later one holds the steps whose longest chain of predecessors
        ends in the stage before. ``[["A", "B", "C"], ["D"]]``: A, B and C run concurrently,
        then D. Class names (or ``label(action)``) in planning order within a stage."""
        name = label or (lambda action: action.name)
        runs = {a.run_step_id: a for a in self.all if a.run_step_id is not None}
        after: dict[int, list[int]] = {}
        waiting: dict[int, int] = {}
        for a, b in self.plan.run_edges:
            after.setdefault(a, []).append(b)
            waiting[b] = waiting.get(b, 0) + 1
        depth = {step: 0 for step in runs if step not in waiting}
        ready = list(depth)
        while ready:  # longest path from a start, in topological order
            step = ready.pop()
            for nxt in after.get(step, ()):
                depth[nxt] = max(depth.get(nxt, 0), depth[step] + 1)
                waiting[nxt] -= 1
                if not waiting[nxt]:
                    ready.append(nxt)
        stages: list[list[Any]] = []
        for step in sorted(runs):
            level = depth[step]
            while len(stages) <= level:
                stages.append([])
            stages[level].append(name(runs[step]))
        return stages

    def runs_after(self, later: PlannedAction, earlier: PlannedAction) -> bool:
        """Whether ``later``'s run step waits, directly or not, for ``earlier``'s."""
        if later.run_step_id is None or earlier.run_step_id is None:
            return False
        before: dict[int, set[int]] = {}
        for a, b in self.plan.run_edges:
            before.setdefault(b, set()).add(a)
        seen: set[int] = set()
        stack = [later.run_step_id]
        while stack:
            for step in before.get(stack.pop(), ()):
                if step == earlier.run_step_id:
                    return True
                if step not in seen:
                    seen.add(step)
                    stack.append(step)
        return False


def plan_only(action_class: type[Action], *args: Any, **kwargs: Any) -> Planned:
    """Plan ``action_class`` with these arguments, as ``World.trigger`` would (installed plugins'
    subscribers included), on a throwaway in-memory world, without running anything. Raises
    :class:`~dynaflow.PlanningFailed` (the original error as its cause) if planning raises."""
    with World("memory://", executor=None) as world:
        plan_id, failure = world._plan(action_class, args, kwargs)
        if failure is not None:
            raise PlanningFailed(plan_id, failure) from failure
        return Planned.of(world.get_plan(plan_id))


def _label(action: ActionSpec) -> str:
    return action if isinstance(action, str) else action.__qualname__
