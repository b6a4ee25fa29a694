"""Running a step another world offered (see :mod:`.spreading`): rebuild just that action
from the offer, run it through the run middleware chain, and describe the outcome as JSON for
the world that owns the plan."""

from __future__ import annotations

from typing import Any

from dynaflow import registry
from dynaflow.events import SuspendedHandle
from dynaflow.executor.steps import StepOutcome, run_step
from dynaflow.persistence.base import RequestRow
from dynaflow.runtime import ActionRuntime, PlanRuntime, StepRuntime
from dynaflow.services import Services
from dynaflow.states import StepKind, StepState


class OfferedRuntime(PlanRuntime):
    """The one action and step an offer carries, in the shape ``run_step`` reads."""

    offered = True

    def __init__(self, row: RequestRow) -> None:  # a plan of one step: no super().__init__
        args = row.args
        action_id, step_id = int(args["action_id"]), int(args["step_id"])
        self.plan_id = row.plan_id
        self.futures = []
        self.actions = {
            action_id: ActionRuntime(
                action_id, str(args["action_class"]), dict(args["input"]), args["output"] or {}
            )
        }
        step = StepRuntime(step_id, StepKind.RUN, action_id, str(args["action_class"]), S_RUNNING)
        step.attempt = int(args.get("attempt") or 1)
        step.queue = row.queue or "default"
        self.steps = {step_id: step}


S_RUNNING = StepState.RUNNING


def run_offered(services: Services, row: RequestRow) -> tuple[StepOutcome, dict[str, Any]]:
    """Run the offered step: its outcome, and that outcome as JSON for the answer. Once the
    answer is stored, :func:`after_answer` finishes the outcome here."""
    runtime = OfferedRuntime(row)
    step_id, action_id = int(row.args["step_id"]), int(row.args["action_id"])
    # (the answer carries no progress: the call stores its own)
    outcome = run_step(services, runtime, step_id, action_id, progress_in_outcome=False)
    retryable = None
    if outcome.error is not None:
        policy = registry.attribute(str(row.args["action_class"]), "retry", None, "not retried")
        retryable = bool(policy is not None and policy.applies(outcome.exception))
    return outcome, {
        "started_at": outcome.started_at.isoformat() if outcome.started_at else None,
        "ended_at": outcome.ended_at.isoformat(),
        "output": outcome.output,
        "error": outcome.error.to_json() if outcome.error is not None else None,
        "suspended": outcome.suspended,
        "retryable": retryable,
        "events": [
            {
                "step_id": event.step_id,
                "kind": event.kind,
                "payload": event.payload,
                "created_at": event.created_at.isoformat(),
                "due_at": event.due_at.isoformat() if event.due_at else None,
            }
            for event, _ in outcome.events
        ],
    }


def after_answer(services: Services, row: RequestRow, outcome: StepOutcome) -> None:
    """The answer is stored: run the suspend callback here (the owner records the suspension
    with the answer), and tell the senders of events the step sent that they are queued."""
    for _, future in outcome.events:
        if future is not None and not future.done():
            future.set_result(None)
    if outcome.callback is not None and outcome.error is None:
        step_id = int(row.args["step_id"])
        outcome.callback(SuspendedHandle(services.world, row.plan_id, step_id))
