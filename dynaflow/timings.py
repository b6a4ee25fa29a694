"""What the durations dynaflow shows mean, worked out from a plan's stored times and history.

* A **plan's duration** runs from its start (``started_at``) to its end: ``ended_at`` once it
  stopped, the moment it paused while it is paused, now while it runs. So the duration of a
  paused or stopped plan no longer grows. Time spent paused before a resume is counted in (it is
  wall time since the start).
* A **step's duration** is its wall time: from the moment it started running to the moment it
  ended (now, while it runs or waits, or the plan's last activity when the plan no longer
  runs). Waiting is counted in: the suspensions of a step waiting for an event, a timer or its
  next poll (``Polling``), and the waits of its ``Retry`` policy. A step an operator resumes or
  retries after it failed starts again from then.
* A step's **run time** is the time its ``run`` calls took, summed: a step that polled for
  1.5 s in four calls of 1 ms ran for 4 ms. ``runs`` counts the calls.

The history records each ``step running`` (when a step is claimed to run), ``step suspended``
and the step's end, whatever process ran the step; the step's row keeps the exact start of its
last call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dynaflow.clock import now
from dynaflow.execution_plan import ExecutionPlan, HistoryRecord, PlanRecord, StepRecord
from dynaflow.states import PlanState, StepKind, StepState

#: history events that keep a step's attempt going: it waits, then runs again on its own
_WAITS = frozenset({"step suspended", "step pending"})


@dataclass(frozen=True, slots=True)
class StepTiming:
    #: when the step started running (its first run of the current attempt)
    started_at: datetime | None
    #: when it ended; ``None`` while it has not
    ended_at: datetime | None
    #: seconds from ``started_at`` to ``ended_at`` (or to the end of the plan's activity)
    duration: float | None
    #: seconds its ``run`` calls took, summed
    run_time: float | None
    #: how many times ``run`` was called in this attempt
    runs: int


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def last_activity(plan: ExecutionPlan) -> datetime | None:
    """The time of the plan's last recorded change."""
    times = [row.at for row in plan.history]
    times += [t for s in plan.steps for t in (s.started_at, s.ended_at) if t is not None]
    times += [t for t in (plan.started_at, plan.ended_at) if t is not None]
    return max(times, default=None)


def paused_at(history: Iterable[HistoryRecord]) -> datetime | None:
    """When the plan last paused, from its history."""
    return max((row.at for row in history if row.event == "plan paused"), default=None)


def plan_end(plan: ExecutionPlan, at: datetime | None = None) -> datetime | None:
    """Where the plan's duration ends: ``at`` (now) while it runs, ``ended_at`` once it
    stopped, when it paused while it is paused; ``None`` before it started."""
    record = plan.record
    if record.state == PlanState.RUNNING:
        return at or now()
    if record.ended_at is not None:
        return record.ended_at
    if record.state == PlanState.PAUSED:
        return paused_at(plan.history) or last_activity(plan)
    return None


def plan_duration(plan: PlanRecord | ExecutionPlan, at: datetime | None = None) -> float | None:
    """The plan's duration in seconds (see the module's docstring); ``None`` before it started,
    and for a paused plan's :class:`PlanRecord` alone (it does not say when the plan paused)."""
    if isinstance(plan, ExecutionPlan):
        return _seconds(plan.started_at, plan_end(plan, at))
    end = (at or now()) if plan.state == PlanState.RUNNING else plan.ended_at
    return _seconds(plan.started_at, end)


def step_timings(
    plan: ExecutionPlan,
    at: datetime | None = None,
    *,
    steps: Iterable[StepRecord] | None = None,
    running: bool | None = None,
) -> dict[int, StepTiming]:
    """Each step's timing, by step id (see the module's docstring). ``steps`` in place of the
    plan's own (a live view's) are timed from their stored times; ``running`` says whether the
    plan runs, when the view knows better than ``plan``."""
    events: dict[int, list[HistoryRecord]] = defaultdict(list)
    for row in plan.history:
        if row.step_id is not None:
            events[row.step_id].append(row)
    if running is None:
        running = plan.state == PlanState.RUNNING
    live_end = (at or now()) if running else last_activity(plan)
    timings = {s.id: step_timing(s, events.get(s.id), live_end) for s in plan.steps}
    for step in steps or ():
        timings[step.id] = step_timing(step, None, live_end)
    return timings


def step_timing(
    step: StepRecord, history: list[HistoryRecord] | None, live_end: datetime | None
) -> StepTiming:
    """One step's timing from its own history rows (oldest first; ``None``: a view without
    history, from the step's stored times); ``live_end`` ends the duration of a step that has
    not ended."""
    if step.state == StepState.PENDING:
        return StepTiming(None, None, None, None, 0)
    if step.kind == StepKind.PLAN:
        history = None  # planning is one call, and its history has no "step running"
    ended = None if step.state in (StepState.RUNNING, StepState.SUSPENDED) else step.ended_at
    end = ended or live_end
    if history is None:
        run_time = step.duration if step.duration is not None else _seconds(step.started_at, end)
        runs = 1 if step.started_at is not None else 0
        return StepTiming(step.started_at, ended, _seconds(step.started_at, end), run_time, runs)
    calls = _attempt(history)
    if not calls:  # it never ran in this attempt (skipped or cancelled before running again)
        return StepTiming(None, ended, None, None, 0)
    claimed, stop = calls[-1]
    if step.started_at is not None and claimed <= step.started_at <= (stop or step.started_at):
        calls[-1] = (step.started_at, stop)  # the last call's own start, after its claim
    run_time = sum(_seconds(start, stop or end) or 0.0 for start, stop in calls)
    return StepTiming(calls[0][0], ended, _seconds(calls[0][0], end), run_time, len(calls))


def _attempt(history: list[HistoryRecord]) -> list[tuple[datetime, datetime | None]]:
    """The calls of the step's current attempt: ``(claimed, ended)`` of each ``run`` call,
    from the first after the step last stopped (a failure an operator saw) to the last."""
    runs: list[tuple[datetime, datetime | None]] = []
    for index, row in enumerate(history):
        if row.event == "step running":
            follow = history[index + 1] if index + 1 < len(history) else None
            runs.append((row.at, follow.at if follow is not None else None))
        elif row.event not in _WAITS and not _retry_wait(row) and index < len(history) - 1:
            runs = []  # it stopped for good here (a failure), and was later run again
    return runs


def _retry_wait(row: HistoryRecord) -> bool:
    """A failed run its ``Retry`` policy runs again (a wait, not a failure)."""
    return row.event == "step error" and bool(row.detail and "retry_at" in row.detail)
