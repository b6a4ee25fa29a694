"""The JSON the ``dynaflow`` commands print with ``--json``: the shapes docs/cli.md describes.

Times are ISO 8601 in UTC (``2026-12-01T18:24:44.429790Z``), durations are seconds (a float)
as :mod:`dynaflow.timings` defines them, absent values are ``null``. The text is plain JSON:
no styling, non-ASCII and control characters escaped (``\\u001b``), so stored text cannot
drive a terminal that shows it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from dynaflow.execution_plan import (
    ExecutionPlan,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
    WorldRecord,
)
from dynaflow.persistence.base import RequestRow
from dynaflow.states import FINISHED_STEP_STATES, PlanState, StepKind
from dynaflow.timings import StepTiming, paused_at, plan_duration, step_timings


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=True)


def iso(at: datetime | None) -> str | None:
    """``at`` as ISO 8601 in UTC, with a ``Z``."""
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error_json(error: StepError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"class_name": error.class_name, "message": error.message, "traceback": error.traceback}


def plan_row(
    record: PlanRecord, duration: float | None, paused: datetime | None = None
) -> dict[str, Any]:
    """A plan's row, as ``plans list --json`` gives each plan."""
    return {
        "id": record.id,
        "label": record.label,
        "state": str(record.state),
        "result": str(record.result),
        "action_class": record.root_action_class,
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "ended_at": iso(record.ended_at),
        "paused_at": iso(paused) if record.state == PlanState.PAUSED else None,
        "duration": duration,
        "world_id": record.world_id,
        "idempotency_key": record.key,
        "parent_id": record.parent_id,
        "parent_step_id": record.parent_step_id,
    }


def plan_document(plan: ExecutionPlan, at: datetime | None = None) -> dict[str, Any]:
    """A whole plan, as ``plans show --json`` gives it."""
    timings = step_timings(plan, at)
    shown = [s for s in plan.steps if s.kind != StepKind.PLAN]
    document = plan_row(plan.record, plan_duration(plan, at), paused_at(plan.history))
    document.update(
        {
            "error": error_json(plan.error),
            "progress": {
                "done": sum(1 for s in shown if s.state in FINISHED_STEP_STATES),
                "total": len(shown),
                "fraction": plan.progress,
            },
            "steps": [step_json(s, timings[s.id]) for s in plan.steps],
            "actions": [
                {
                    "id": a.id,
                    "action_class": a.action_class,
                    "input": a.input,
                    "output": a.output,
                    "parent_id": a.parent_id,
                    "trigger_id": a.trigger_id,
                }
                for a in plan.actions
            ],
            "run_flow": plan.run_flow,
            "run_edges": [list(edge) for edge in plan.run_edges],
            "finalize_order": [s.id for s in plan.finalize_steps()],
            "history": [history_json(row) for row in plan.history],
        }
    )
    return document


def step_json(step: StepRecord, timing: StepTiming) -> dict[str, Any]:
    return {
        "id": step.id,
        "kind": str(step.kind),
        "action_id": step.action_id,
        "action_class": step.action_class,
        "state": str(step.state),
        "queue": step.queue,
        "world_id": step.world_id,
        "started_at": iso(timing.started_at),
        "ended_at": iso(timing.ended_at),
        "duration": timing.duration,
        "run_time": timing.run_time,
        "runs": timing.runs,
        "error": error_json(step.error),
        "progress": step.progress,
    }


def history_json(row: HistoryRecord) -> dict[str, Any]:
    return {
        "at": iso(row.at),
        "event": row.event,
        "step_id": row.step_id,
        "world_id": row.world_id,
        "detail": row.detail,
    }


def world_json(row: WorldRecord, plans: int) -> dict[str, Any]:
    return {
        "id": row.id,
        "hostname": row.hostname,
        "pid": row.pid,
        "executor": row.executor,
        "queues": row.queues or {},
        "started_at": iso(row.started_at),
        "heartbeat_at": iso(row.heartbeat_at),
        "heartbeat_age": row.heartbeat_age,
        "stale": row.stale,
        "running_plans": plans,
    }


def queues_json(overview: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "limit": row["limit"],
            "worlds": dict(row["worlds"]),
            "steps": {k: v for k, v in row.items() if k not in ("limit", "worlds")},
        }
        for name, row in overview.items()
    ]


def requests_json(rows: Sequence[RequestRow], at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "plan_id": r.plan_id,
            "kind": r.kind,
            "world_id": r.world_id,
            "requested_by": r.requested_by,
            "taken_by": r.taken_by,
            "created_at": iso(r.created_at),
            "age": max(0.0, (at - r.created_at).total_seconds()),
            "declined": r.declined or {},
        }
        for r in rows
    ]
