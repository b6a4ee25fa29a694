"""Worker-side code: run one call of a run step and report what came of it."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from dynaflow import registry
from dynaflow.action import Action
from dynaflow.clock import now
from dynaflow.events import RunContext, Suspend, SuspendedHandle, set_current_context
from dynaflow.exceptions import EventRejected, InvalidInput, NotJSON
from dynaflow.execution_plan import StepError
from dynaflow.persistence.base import EventRow, RequestRow
from dynaflow.rebuild import build_action
from dynaflow.reporting import Reporter
from dynaflow.runtime import PlanRuntime
from dynaflow.services import Services
from dynaflow.values import to_json, validation_problems


@dataclass(slots=True)
class StepOutcome:
    plan_id: str
    step_id: int
    action_id: int
    started_at: datetime | None
    ended_at: datetime
    #: the new output (JSON), or None when unchanged
    output: dict[str, Any] | None
    error: StepError | None = None
    #: the call suspended: the step waits for events
    suspended: bool = False
    callback: Callable[[SuspendedHandle], Any] | None = None
    #: events and timers the call planned, with the futures of ``World.event`` senders
    events: list[tuple[EventRow, Future[Any] | None]] = field(default_factory=list)
    #: requests the call left, stored with its outcome
    requests: list[RequestRow] = field(default_factory=list)
    #: the id of the event this call handled
    consumed: int | None = None
    #: the call was ``cancel()`` (or ran while a cancel was requested)
    cancelling: bool = False
    #: the exception behind ``error`` (in memory only: retry policies look at its class)
    exception: BaseException | None = None
    #: run by another world (see :mod:`dynaflow.executor.spreading`)
    remote: bool = False
    #: whether the action's retry policy applies to the error (decided where it ran;
    #: ``None``: decide from ``exception``)
    retryable: bool | None = None
    #: the progress the call reported last and had not stored yet: stored with the outcome
    progress: dict[str, Any] | None = None


#: "no event": the first call of run()
NO_EVENT: Any = object()


def dump_output(action: Action) -> dict[str, Any]:
    """The action's output as JSON, validated against ``Output`` when it has one."""
    cls = type(action)
    where = f"output of {cls.action_class_name}#{action.id}"
    output = action.output
    if cls.Output is not None:
        data = output.__dict__ if isinstance(output, cls.Output) else output
        if isinstance(data, BaseModel):
            data = data.model_dump()
        try:
            output = cls.Output.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(
                f"{where} is invalid: " + validation_problems(exc.errors(), "output")
            ) from None
    if not isinstance(output, dict):
        raise NotJSON(f"{where} must be a dict (or the Output model), got {type(output).__name__}")
    encoded: dict[str, Any] = to_json(output, where)
    return encoded


def error_of(exc: BaseException) -> StepError:
    return StepError.from_exception(
        exc, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )


def run_step(
    services: Services,
    runtime: PlanRuntime,
    step_id: int,
    action_id: int,
    event: Any = NO_EVENT,
    event_id: int | None = None,
    cancel: bool = False,
    *,
    progress_in_outcome: bool = True,
) -> StepOutcome:
    """Call ``run`` (or ``run(event)``, or ``cancel()``) of one run step through the run
    middleware chain; never raises: errors and suspensions become the outcome. The progress
    the call reported last goes with the outcome (``progress_in_outcome``, when the call did
    not fail: a failed attempt may be retried, which stores no outcome) rather than in a
    transaction of its own."""
    step = runtime.steps[step_id]
    started = now()  # not the claim's time: a claimed step may wait for a free worker
    saved = runtime.actions[action_id].output
    woken_by = step.woken_by if event_id is not None else None
    context = RunContext(
        runtime.plan_id, step_id, step=step, woken_by=woken_by, offered=runtime.offered
    )
    # what the call reports (progress, log lines): made on the first report
    context.reporting = lambda: Reporter(
        services,
        runtime.plan_id,
        step_id,
        step.action_class,
        registry.attribute(step.action_class, "progress_weight", 1.0, "weight 1"),
    )
    outcome = StepOutcome(runtime.plan_id, step_id, action_id, started, started, None)
    outcome.consumed = event_id
    outcome.cancelling = cancel
    set_current_context(context)
    try:
        action = build_action(services, runtime, action_id, step_id)
        action._run_context = context
        cls = type(action)
        if cancel:
            action._invoke = "abort" if step.abort else "cancel"  # type: ignore[attr-defined]
            args: tuple[Any, ...] = ()
        elif event is not NO_EVENT:
            args = (event,)
        else:
            args = (None,) if cls.run_takes_event else ()
        try:
            services.chains.action(cls, "run")(action, *args)
        except Suspend as suspend:
            outcome.suspended = True
            outcome.callback = suspend.callback
        output = dump_output(action)
        outcome.output = output if output != saved else None
        outcome.events = context.events
        outcome.requests = context.requests
    except BaseException as exc:  # user code: SystemExit in run() is a step error
        outcome.error = error_of(exc)
        outcome.exception = exc
        for _, future in context.events:
            if future is not None:
                future.set_exception(
                    EventRejected(f"the step that sent this event failed: {outcome.error}")
                )
    finally:
        set_current_context(None)
        if context.reporter is not None:
            if progress_in_outcome and outcome.error is None:
                outcome.progress = context.reporter.take_progress()
            context.reporter.close()
    outcome.ended_at = now()
    return outcome


def call_run(action: Action, *args: Any) -> Any:
    invoke = getattr(action, "_invoke", None)
    if invoke is not None:  # a Cancellable being cancelled: cancel() in place of run()
        return getattr(action, invoke)()
    return action.run(*args)  # type: ignore[attr-defined]


def call_finalize(action: Action) -> Any:
    return action.finalize()  # type: ignore[attr-defined]
