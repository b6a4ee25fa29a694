"""The one codec between dynaflow's records and SQL rows, shared by both write paths.

In: enums become their values, datetimes timezone-aware UTC (SQLite keeps the wall-clock fields
only), step errors their JSON. Out: the reverse, and a row that cannot be decoded raises
:class:`~dynaflow.exceptions.CorruptRecord` naming the row. Values leave here as the parameter
dicts and row tuples the statements of :mod:`~dynaflow.persistence.sql.statements` bind.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, BindParameter, Column, Row, bindparam

from dynaflow.exceptions import CorruptRecord
from dynaflow.execution_plan import (
    ActionRecord,
    HistoryRecord,
    PlanRecord,
    StepError,
    StepRecord,
)
from dynaflow.persistence import tables
from dynaflow.persistence.base import Claim, EventRow, HistoryRow, StepUpdate
from dynaflow.states import PlanResult, PlanState, StepKind, StepState

#: JSON that stores Python ``None`` as SQL NULL (the tables' plain ``JSON`` would write ``'null'``)
JSON_NULL = JSON(none_as_null=True)
#: ids per ``IN (...)`` list, well under SQLite's bound-parameter limit
CHUNK = 5000
#: before any due time ("no lower bound" for next_due)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

PLAN_FIELDS = frozenset(c.name for c in tables.plans.columns) - {"id"}
STEP_FIELDS = frozenset(
    {"started_at", "ended_at", "duration", "error", "world_id", "queue", "position", "progress"}
)

ACTION_COLUMNS = ("plan_id", "id", "action_class", "input", "output", "parent_id", "trigger_id")
STEP_COLUMNS = (
    "plan_id",
    "id",
    "action_id",
    "kind",
    "action_class",
    "state",
    "queue",
    "position",
    "started_at",
    "ended_at",
    "duration",
    "error",
    "world_id",
    "progress",
)
#: the columns of a step row in the order of :class:`StepRecord`'s fields
STEP_RECORD_COLUMNS = (
    "id",
    "kind",
    "action_id",
    "action_class",
    "state",
    "started_at",
    "ended_at",
    "duration",
    "error",
    "queue",
    "world_id",
    "position",
    "progress",
)
HISTORY_COLUMNS = ("plan_id", "at", "event", "step_id", "world_id", "detail")
#: the columns of an event row, in the order of :class:`EventRow`'s fields but ``id`` first
EVENT_COLUMNS = ("id", "plan_id", "step_id", "kind", "payload", "created_at", "due_at")

_STEP_KINDS = {kind.value: kind for kind in StepKind}
_STEP_STATES = {state.value: state for state in StepState}


# -- values in ---------------------------------------------------------------------------------


def val(value: Any) -> Any:
    """An enum's value; anything else as it is."""
    return value.value if isinstance(value, Enum) else value


def time_in(value: datetime | None) -> datetime | None:
    """A datetime as stored: timezone-aware UTC (naive means UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    # SQLite keeps the wall-clock fields only, so everything is stored as UTC
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def error_in(value: Any) -> dict[str, Any] | None:
    return value.to_json() if isinstance(value, StepError) else value


def bind(column: Column[Any], name: str | None = None) -> BindParameter[Any]:
    """The parameter ``name`` (default: the column's name) setting ``column``; a JSON one stores
    ``None`` as SQL NULL."""
    type_ = JSON_NULL if isinstance(column.type, JSON) else column.type
    return bindparam(name or column.name, type_=type_)


def _identity(value: Any) -> Any:
    return value


#: how the value of each updatable plan or step field is stored
CONVERT_IN: dict[str, Callable[[Any], Any]] = {
    "state": val,
    "result": val,
    "kind": val,
    "created_at": time_in,
    "started_at": time_in,
    "ended_at": time_in,
    "error": error_in,
}


def field_params(fields: dict[str, Any]) -> dict[str, Any]:
    """The ``v_<name>`` parameters setting ``fields`` of a plan or step update."""
    return {"v_" + name: CONVERT_IN.get(name, _identity)(value) for name, value in fields.items()}


def plan_row(r: PlanRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "label": r.label,
        "state": val(r.state),
        "result": val(r.result),
        "root_action_class": r.root_action_class,
        "key": r.key,
        "key_arguments": r.key_arguments,
        "created_at": time_in(r.created_at),
        "started_at": time_in(r.started_at),
        "ended_at": time_in(r.ended_at),
        "world_id": r.world_id,
        "run_flow": r.run_flow,
        "error": error_in(r.error),
        "parent_id": r.parent_id,
        "parent_step_id": r.parent_step_id,
    }


def action_row(plan_id: str, a: ActionRecord) -> tuple[Any, ...]:
    """The values of :data:`ACTION_COLUMNS`."""
    return (plan_id, a.id, a.action_class, a.input, a.output, a.parent_id, a.trigger_id)


def step_row(plan_id: str, s: StepRecord) -> tuple[Any, ...]:
    """The values of :data:`STEP_COLUMNS`."""
    return (
        plan_id,
        s.id,
        s.action_id,
        val(s.kind),
        s.action_class,
        val(s.state),
        s.queue,
        s.position,
        time_in(s.started_at),
        time_in(s.ended_at),
        s.duration,
        error_in(s.error),
        s.world_id,
        s.progress,
    )


def history_row(h: HistoryRow) -> tuple[Any, ...]:
    """The values of :data:`HISTORY_COLUMNS`."""
    return (h.plan_id, time_in(h.at), h.event, h.step_id, h.world_id, h.detail)


def event_row(e: EventRow) -> tuple[Any, ...]:
    """The values of :data:`EVENT_COLUMNS` but ``id``."""
    return (e.plan_id, e.step_id, e.kind, e.payload, time_in(e.created_at), time_in(e.due_at))


def step_update_params(u: StepUpdate) -> dict[str, Any]:
    """The parameters of ``Statements.step_update`` for one update."""
    params = field_params(u.fields)
    params.update(b_plan=u.plan_id, b_id=u.step_id, b_expect=val(u.expect), b_state=val(u.state))
    return params


def output_params(plan_id: str, action_id: int, output: Any) -> dict[str, Any]:
    """The parameters of ``Statements.save_output``."""
    return {"b_plan": plan_id, "b_id": action_id, "v_output": output}


def claim_params(claim: Claim) -> Iterator[dict[str, Any]]:
    """The parameters of ``Statements.claim``: one set per :data:`CHUNK` of step ids."""
    wanted = list(dict.fromkeys(claim.step_ids))
    expect = sorted(val(s) for s in claim.expect)
    at = time_in(claim.at)
    for i in range(0, len(wanted), CHUNK):
        yield {
            "b_plan": claim.plan_id,
            "b_ids": wanted[i : i + CHUNK],
            "b_expect": expect,
            "v_at": at,
            "v_world": claim.world_id,
        }


# -- values out --------------------------------------------------------------------------------


def time_out(value: datetime | None) -> datetime | None:
    """A stored datetime as timezone-aware UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _json_text(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class Decoder:
    """Rows back into records. SQLite hands JSON back as text (the statements select it so):
    it is decoded here, where a bad value can name its row."""

    def __init__(self, *, json_as_text: bool) -> None:
        self.load_json = _json_text if json_as_text else _identity

    def plan_record(self, row: Row[Any]) -> PlanRecord:
        try:
            return PlanRecord(
                id=row.id,
                label=row.label,
                state=PlanState(row.state),
                result=PlanResult(row.result),
                root_action_class=row.root_action_class,
                created_at=time_out(row.created_at),
                started_at=time_out(row.started_at),
                ended_at=time_out(row.ended_at),
                world_id=row.world_id,
                key=row.key,
                key_arguments=self.load_json(row.key_arguments),
                run_flow=self.load_json(row.run_flow),
                error=StepError.from_json(self.load_json(row.error)),
                parent_id=row.parent_id,
                parent_step_id=row.parent_step_id,
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise corrupt(f"plan {row.id}", "dynaflow_plans", exc) from exc

    def action_records(self, plan_id: str, rows: Sequence[Any]) -> list[ActionRecord]:
        load, records = self.load_json, []
        for action_id, action_class, input_, output, parent_id, trigger_id in rows:
            try:
                input_, output = load(input_), load(output)
            except ValueError as exc:
                where = f"plan {plan_id} action {action_id}"
                raise corrupt(where, "dynaflow_actions", exc) from exc
            records.append(
                ActionRecord(action_id, action_class, input_, output, parent_id, trigger_id)
            )
        return records

    def step_records(self, plan_id: str, rows: Sequence[Any]) -> list[StepRecord]:
        load, records = self.load_json, []
        for row in rows:
            step_id, kind, action_id, action_class, state, started, ended = row[:7]
            duration, error, queue, world_id, position, progress = row[7:]
            try:
                records.append(
                    StepRecord(
                        step_id,
                        _STEP_KINDS[kind],
                        action_id,
                        action_class,
                        _STEP_STATES[state],
                        time_out(started),
                        time_out(ended),
                        duration,
                        None if error is None else StepError.from_json(load(error)),
                        queue,
                        world_id,
                        position,
                        None if progress is None else load(progress),
                    )
                )
            except (ValueError, TypeError, KeyError) as exc:
                where = f"plan {plan_id} step {step_id}"
                raise corrupt(where, "dynaflow_steps", exc) from exc
        return records

    def history_record(self, plan_id: str, row: Row[Any]) -> HistoryRecord:
        try:
            detail = self.load_json(row.detail)
        except ValueError as exc:
            raise corrupt(f"plan {plan_id} history row {row.id}", "dynaflow_history", exc) from exc
        at = time_out(row.at)
        assert at is not None  # the column is NOT NULL
        return HistoryRecord(at, row.event, row.world_id, row.step_id, detail)

    def event_records(self, rows: Sequence[Any]) -> list[EventRow]:
        load, records = self.load_json, []
        for event_id, plan_id, step_id, kind, payload, created_at, due_at in rows:
            try:
                payload = load(payload)
            except ValueError as exc:
                where = f"plan {plan_id} event {event_id}"
                raise corrupt(where, "dynaflow_events", exc) from exc
            created = time_out(created_at)
            assert created is not None  # the column is NOT NULL
            records.append(
                EventRow(plan_id, step_id, kind, payload, created, time_out(due_at), event_id)
            )
        return records


def corrupt(what: str, table: str, exc: Exception) -> CorruptRecord:
    return CorruptRecord(
        f"{what}: its row in {table} cannot be decoded ({type(exc).__name__}: {exc}); it was "
        "written by something other than dynaflow or by a newer version"
    )
