"""Plans, steps, worlds and queues as the API's documents (:mod:`.views`), which the pages
render too. Inputs and outputs go through the ``present`` middleware chain first."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import quote

from dynaflow.clock import now
from dynaflow.console.operations import plan_actions, step_actions
from dynaflow.console.presenting import Presenter
from dynaflow.console.views import (
    Cluster,
    Counts,
    ErrorView,
    HistoryView,
    LogLine,
    PlanDetail,
    PlanStatus,
    PlanSummary,
    Progress,
    QueueView,
    RequestView,
    StepDetail,
    StepView,
    WorldView,
)
from dynaflow.execution_plan import ExecutionPlan, HistoryRecord, PlanRecord, StepError
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.world import World


class Links:
    """Paths of the console's pages and API under its root path (the prefix it is mounted
    at), so every link works wherever the application mounts it."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def path(self, path: str) -> str:
        return self.root + path

    def plan(self, plan_id: str) -> str:
        return self.path(f"/plans/{quote(plan_id, safe='')}")

    def step(self, plan_id: str, step_id: int) -> str:
        return f"{self.plan(plan_id)}?step={step_id}#step"

    def api_plan(self, plan_id: str) -> str:
        return self.path(f"/api/plans/{quote(plan_id, safe='')}")


def error_view(error: StepError | None) -> ErrorView | None:
    if error is None:
        return None
    return ErrorView(class_name=error.class_name, message=error.message, traceback=error.traceback)


def duration(record: PlanRecord, paused_at: datetime | None = None) -> float | None:
    """Seconds the plan has run: to its end, to when it paused, or until now if it runs."""
    if record.started_at is None:
        return None
    end: datetime | None
    if record.state == PlanState.RUNNING:
        end = now()
    elif record.state == PlanState.PAUSED:
        end = paused_at
    else:
        end = record.ended_at
    return None if end is None else max(0.0, (end - record.started_at).total_seconds())


def summary(record: PlanRecord, links: Links) -> dict[str, Any]:
    return {
        "id": record.id,
        "label": record.label,
        "state": record.state.value,
        "result": record.result.value,
        "action_class": record.root_action_class,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration": duration(record),
        "world_id": record.world_id,
        "parent_id": record.parent_id,
        "parent_step_id": record.parent_step_id,
        "page": links.plan(record.id),
        "api": links.api_plan(record.id),
    }


def plan_summary(record: PlanRecord, links: Links) -> PlanSummary:
    return PlanSummary(**summary(record, links))


def counts(world: World) -> Counts:
    """Plans per state, and the stopped ones per result (one grouped count)."""
    grouped = world.storage.plan_counts()
    by_state = {s.value: 0 for s in PlanState}
    by_result = {r.value: 0 for r in PlanResult if r != PlanResult.PENDING}
    for (state, result), n in grouped.items():
        by_state[state.value] += n
        if state == PlanState.STOPPED and result.value in by_result:
            by_result[result.value] += n
    return Counts(total=sum(by_state.values()), **by_state, **by_result)


def fingerprint(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()[:16]


def history_view(row: HistoryRecord) -> HistoryView:
    # built from stored rows, already of the right types: no validation (thousands per page)
    return HistoryView.model_construct(
        at=row.at, event=row.event, step_id=row.step_id, world_id=row.world_id, detail=row.detail
    )


def progress(plan: ExecutionPlan) -> Progress:
    steps = list(plan.run_steps())
    states = [s.state for s in steps]
    return Progress(
        done=sum(s in (StepState.SUCCESS, StepState.SKIPPED) for s in states),
        total=len(steps),
        running=states.count(StepState.RUNNING),
        failed=states.count(StepState.ERROR),
        waiting=states.count(StepState.SUSPENDED),
        fraction=plan.progress,
    )


def plan_version(plan: ExecutionPlan) -> str:
    return fingerprint(
        plan.state,
        plan.result,
        [(s.id, s.state, s.progress) for s in plan.steps],
        len(plan.history),
    )


def plan_status(plan: ExecutionPlan) -> PlanStatus:
    return PlanStatus(
        id=plan.id,
        state=plan.state.value,
        result=plan.result.value,
        progress=progress(plan),
        version=plan_version(plan),
        final=plan.state == PlanState.STOPPED,
    )


def _attempts(plan: ExecutionPlan) -> dict[int, int]:
    attempts: dict[int, int] = {}
    for row in plan.history:
        if row.event == "step running" and row.step_id is not None:
            attempts[row.step_id] = attempts.get(row.step_id, 0) + 1
    return attempts


def step_view(plan: ExecutionPlan, step_id: int, attempts: dict[int, int]) -> StepView:
    step = plan.step(step_id)
    return StepView.model_construct(
        id=step.id,
        kind=step.kind.value,
        state=step.state.value,
        action_id=step.action_id,
        action_class=step.action_class,
        queue=step.queue,
        world_id=step.world_id,
        started_at=step.started_at,
        ended_at=step.ended_at,
        duration=step.duration,
        attempts=attempts.get(step.id, 0),
        progress=step.progress,
        error=error_view(step.error),
        actions=step_actions(plan.record, step),
    )


def plan_detail(
    plan: ExecutionPlan,
    links: Links,
    history: int | None = None,
    sub_plans: dict[tuple[PlanState, PlanResult], int] | None = None,
) -> PlanDetail:
    """The plan's document; with ``history``, only that many of its newest history rows;
    ``sub_plans``: its sub-plans counted per state and result."""
    paused_at = next((h.at for h in reversed(plan.history) if h.event == "plan paused"), None)
    attempts = _attempts(plan)
    record = plan.record
    worlds = {s.world_id for s in plan.steps if s.state == StepState.RUNNING and s.world_id}
    if record.world_id and record.state == PlanState.RUNNING:
        worlds.add(record.world_id)
    return PlanDetail(
        **{**summary(record, links), "duration": duration(record, paused_at)},
        key=record.key,
        error=error_view(record.error),
        progress=progress(plan),
        worlds=sorted(worlds),
        steps=[step_view(plan, s.id, attempts) for s in sorted(plan.steps, key=lambda s: s.id)],
        finalize_order=[s.id for s in plan.finalize_steps()],
        history=[history_view(h) for h in (plan.history[-history:] if history else plan.history)],
        actions=plan_actions(record),  # type: ignore[arg-type]
        sub_plans={
            (
                f"{state}/{result}"
                if state in (PlanState.STOPPED, PlanState.PAUSED)
                else str(state)
            ): n
            for (state, result), n in sorted((sub_plans or {}).items())
        },
        version=plan_version(plan),
        final=record.state == PlanState.STOPPED,
    )


def step_detail(
    plan: ExecutionPlan, step_id: int, presenter: Presenter, world: World | None = None
) -> StepDetail:
    view = step_view(plan, step_id, _attempts(plan))
    action = plan.action(view.action_id)
    shown = presenter.present(action)
    return StepDetail(
        **view.model_dump(),
        plan_id=plan.id,
        parent_action_id=action.parent_id,
        input=shown.get("input"),
        output=shown.get("output"),
        history=[history_view(h) for h in plan.history if h.step_id == step_id],
        log=_log(world, plan, step_id) if world is not None else [],
    )


#: the log lines a step's panel shows (its last ones)
LOG_LINES = 500


def _log(world: World, plan: ExecutionPlan, step_id: int) -> list[LogLine]:
    if plan.step(step_id).kind != StepKind.RUN:
        return []
    lines = world.step_logs(plan.id, step_id, limit=1000)[-LOG_LINES:]
    return [LogLine(seq=line.seq, at=line.at, message=line.message) for line in lines]


def cluster(world: World) -> Cluster:
    """The executor worlds, the queues and the requests no world has taken yet."""
    at = world.now()
    worlds = world.worlds()
    owners: dict[str | None, int] = {}
    for record in world.find_plans(state="running", per_page=10_000):
        owners[record.world_id] = owners.get(record.world_id, 0) + 1
    queues = []
    for name, info in world.queues().items():
        served: dict[str, int] = info.get("worlds", {})
        queues.append(
            QueueView(
                name=name,
                limit=info.get("limit"),
                threads=sum(served.values()),
                worlds=served,
                pending=info.get(StepState.PENDING.value, 0),
                running=info.get(StepState.RUNNING.value, 0),
                suspended=info.get(StepState.SUSPENDED.value, 0),
                failed=info.get(StepState.ERROR.value, 0),
                done=info.get(StepState.SUCCESS.value, 0) + info.get(StepState.SKIPPED.value, 0),
            )
        )
    return Cluster(
        now=at,
        worlds=[
            WorldView(
                id=w.id,
                hostname=w.hostname,
                pid=w.pid,
                executor=w.executor,
                queues=dict(w.queues or {}),
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                heartbeat_age=w.heartbeat_age,
                stale=w.stale,
                running_steps=w.running_steps,
                plans=owners.get(w.id, 0),
            )
            for w in worlds
        ],
        queues=queues,
        waiting=[
            RequestView(
                id=r.id,
                plan_id=r.plan_id,
                kind=r.kind,
                for_world=r.world_id,
                taken_by=r.taken_by,
                age=max(0.0, (at - r.created_at).total_seconds()),
                declined=dict(r.declined or {}),
            )
            for r in world.waiting_requests()
        ],
        released_plans=owners.get(None, 0),
    )


def run_steps_first(plan: ExecutionPlan) -> list[int]:
    """Step ids in the order a table lists them: run steps, then finalize, plan steps last."""
    order = {StepKind.RUN: 0, StepKind.FINALIZE: 1, StepKind.PLAN: 2}
    return [s.id for s in sorted(plan.steps, key=lambda s: (order[s.kind], s.id))]
