"""Read-only snapshots of persisted execution plans, as returned by ``World.get_plan``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dynaflow import flows
from dynaflow.exceptions import UnknownStep, describe
from dynaflow.states import PlanResult, PlanState, StepKind, StepState


@dataclass(frozen=True, slots=True)
class StepError:
    class_name: str
    message: str
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"class_name": self.class_name, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StepError | None:
        if data is None:
            return None
        return cls(data["class_name"], data["message"], data.get("traceback"))

    @classmethod
    def from_exception(cls, exc: BaseException, traceback: str | None = None) -> StepError:
        return cls(type(exc).__qualname__, describe(exc), traceback)

    def __str__(self) -> str:
        return f"{self.class_name}: {self.message}"


@dataclass(frozen=True, slots=True)
class ActionRecord:
    id: int
    action_class: str
    input: dict[str, Any]
    output: dict[str, Any]
    parent_id: int | None = None
    #: the action whose planning triggered this one through a subscription
    trigger_id: int | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    id: int
    kind: StepKind
    action_id: int
    action_class: str
    state: StepState
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration: float | None = None
    error: StepError | None = None
    queue: str = "default"
    world_id: str | None = None
    #: planning order; finalize steps run in this order
    position: int = 0
    #: a run step's progress as its action reported it (``self.progress``): ``done``,
    #: ``total``, and its ``weight`` in the plan's progress when not 1
    progress: dict[str, Any] | None = None

    @property
    def fraction(self) -> float | None:
        """How far the step got, 0 to 1: 1 once it succeeded or was skipped, else
        ``done / total`` as last reported (``None`` when it never said)."""
        if self.state in (StepState.SUCCESS, StepState.SKIPPED):
            return 1.0
        progress = self.progress or {}
        done, total = progress.get("done"), progress.get("total")
        if isinstance(done, int | float) and isinstance(total, int | float) and total > 0:
            return max(0.0, min(1.0, done / total))
        return None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    at: datetime
    event: str
    world_id: str | None = None
    step_id: int | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """The plan row alone, as ``find_plans`` returns it."""

    id: str
    label: str
    state: PlanState
    result: PlanResult
    root_action_class: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    world_id: str | None = None
    #: the idempotency key, and the arguments it was first given with (``{"action": ...,
    #: "args": [...], "kwargs": {...}}``)
    key: str | None = None
    key_arguments: Any = None
    #: the run flow as nested ``{"sequence": [...]}`` / ``{"concurrence": [...]}`` of step ids
    run_flow: Any = None
    error: StepError | None = None
    #: a sub-plan's parent plan and the step of it that spawned this plan
    parent_id: str | None = None
    parent_step_id: int | None = None


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """A plan with its actions, steps, run graph and history."""

    record: PlanRecord
    actions: tuple[ActionRecord, ...] = ()
    steps: tuple[StepRecord, ...] = ()
    #: the run graph as stored: step ids, plus negative ids of barrier nodes that join the
    #: members of wide sequences (see :func:`dynaflow.flows.edges`)
    edges: tuple[tuple[int, int], ...] = ()
    history: tuple[HistoryRecord, ...] = ()
    _steps_by_id: dict[int, StepRecord] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._steps_by_id.update({step.id: step for step in self.steps})

    # plan-level attributes, flattened for convenience
    id = property(lambda self: self.record.id)
    label = property(lambda self: self.record.label)
    state = property(lambda self: self.record.state)
    result = property(lambda self: self.record.result)
    started_at = property(lambda self: self.record.started_at)
    ended_at = property(lambda self: self.record.ended_at)
    created_at = property(lambda self: self.record.created_at)
    key = property(lambda self: self.record.key)
    idempotency_key = property(lambda self: self.record.key)
    error = property(lambda self: self.record.error)
    run_flow = property(lambda self: self.record.run_flow)
    root_action_class = property(lambda self: self.record.root_action_class)
    parent_id = property(lambda self: self.record.parent_id)
    parent_step_id = property(lambda self: self.record.parent_step_id)

    def flow(self) -> flows.Flow:
        """The run flow as :mod:`dynaflow.flows` values (what the CLI's tree and the console's
        graph draw); if it is missing or unreadable, the run steps as one concurrence."""
        try:
            if self.run_flow is not None:
                return flows.from_json(self.run_flow)
        except ValueError:
            pass
        ids = sorted(step.id for step in self.run_steps())
        return flows.Concurrence([flows.Atom(step_id) for step_id in ids])

    @property
    def progress(self) -> float:
        """How far the plan got, 0 to 1: its run steps' fractions (a step that never reported
        counts 0 until it succeeds), each weighted by its action's ``progress_weight``."""
        weighted = done = 0.0
        for step in self.steps:
            if step.kind != StepKind.RUN:
                continue
            weight = (step.progress or {}).get("weight", 1)
            weight = weight if isinstance(weight, int | float) and weight >= 0 else 1
            weighted += weight
            done += weight * (step.fraction or 0.0)
        if not weighted:
            return 1.0 if self.state == PlanState.STOPPED else 0.0
        return done / weighted

    @property
    def run_edges(self) -> list[tuple[int, int]]:
        """``(from_step_id, to_step_id)`` pairs of the run graph: B waits for A to finish."""
        return flows.expand(self.edges)

    def step(self, step_id: int) -> StepRecord:
        try:
            return self._steps_by_id[step_id]
        except KeyError:
            raise UnknownStep(self.id, step_id) from None

    def action(self, action_id: int) -> ActionRecord:
        for action in self.actions:
            if action.id == action_id:
                return action
        raise LookupError(f"plan {self.id} has no action {action_id}")

    def steps_of(
        self, action_class: str | type, kind: StepKind | str | None = None
    ) -> list[StepRecord]:
        """Steps whose action class is ``action_class`` (a class or its qualified name)."""
        name = action_class if isinstance(action_class, str) else _class_name(action_class)
        return [
            s
            for s in self.steps
            if (s.action_class == name or s.action_class.endswith("." + name))
            and (kind is None or s.kind == kind)
        ]

    def run_steps(self) -> Iterator[StepRecord]:
        return (s for s in self.steps if s.kind == StepKind.RUN)

    def finalize_steps(self) -> list[StepRecord]:
        return sorted(
            (s for s in self.steps if s.kind == StepKind.FINALIZE), key=lambda s: s.position
        )


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class WorldRecord:
    """A registered executor world, as ``World.worlds()`` returns it: alive while its
    ``heartbeat_at`` is younger than its lease."""

    id: str
    hostname: str | None
    pid: int | None
    #: "threads" or "inline"
    executor: str | None
    started_at: datetime
    heartbeat_at: datetime
    #: the queues it serves, with the worker threads of each
    queues: dict[str, int] | None = None
    #: seconds since its last heartbeat, on the database's clock, when it was read
    heartbeat_age: float = 0.0
    #: its lease ran out: it is dead (its plans are taken over on a live world's next beat)
    stale: bool = False
    #: run steps it is running, when it was read
    running_steps: int = 0
