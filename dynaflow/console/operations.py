"""Operator actions from the console: which are allowed on a plan or a step now, and doing
one — checked again against the plan as it is, recorded with who asked, never waited for
(the plan's page follows it live)."""

from __future__ import annotations

from typing import Any

from dynaflow import registry
from dynaflow.console.errors import bad_request, conflict
from dynaflow.console.views import ActionDone
from dynaflow.exceptions import UnknownActionClass
from dynaflow.execution_plan import ExecutionPlan, PlanRecord, StepRecord
from dynaflow.states import PlanState, StepKind, StepState
from dynaflow.world import World

PLAN_ACTIONS = ("resume", "cancel", "halt")
STEP_ACTIONS = ("skip", "retry")
#: what each action is called on a button and in a message
TITLES = {
    "resume": "Resume",
    "cancel": "Cancel",
    "halt": "Halt",
    "skip": "Skip",
    "skip_and_resume": "Skip & resume",
    "retry": "Retry",
}


def plan_actions(record: PlanRecord) -> list[str]:
    """The plan-level actions allowed on a plan in its state."""
    if record.state == PlanState.STOPPED:
        return []
    return (["resume"] if record.state == PlanState.PAUSED else []) + ["cancel", "halt"]


def step_actions(record: PlanRecord, step: StepRecord) -> list[str]:
    """The actions allowed on one step: a failed run step can be skipped (plan paused) or
    retried (plan paused or running)."""
    if step.kind != StepKind.RUN or step.state != StepState.ERROR:
        return []
    if record.state == PlanState.PAUSED:
        return ["skip", "retry"]
    return ["retry"] if record.state == PlanState.RUNNING else []


def why_not(action: str, record: PlanRecord, step: StepRecord | None = None) -> str | None:
    """Why ``action`` is not allowed now (``None``: it is)."""
    if action in PLAN_ACTIONS:
        if action in plan_actions(record):
            return None
        if record.state == PlanState.STOPPED:
            return f"plan {record.id} is stopped ({record.result}); there is nothing to {action}"
        return f"plan {record.id} is {record.state}; only a paused plan can be resumed"
    assert step is not None
    if action in step_actions(record, step):
        return None
    if step.kind != StepKind.RUN:
        return f"step {step.id} is a {step.kind} step; only run steps can be {_done(action)}"
    if step.state != StepState.ERROR:
        return f"step {step.id} is {step.state}; only a failed step can be {_done(action)}"
    needs = "paused" if action == "skip" else "paused or running"
    return (
        f"plan {record.id} is {record.state}; a step can be {_done(action)} only while the "
        f"plan is {needs}"
    )


def _done(action: str) -> str:
    return {"skip": "skipped", "retry": "retried"}.get(action, action + "ed")


def perform(
    world: World,
    plan_id: str,
    action: str,
    *,
    by: str,
    step_id: int | None = None,
    abort: bool = False,
    resume: bool = False,
) -> ActionDone:
    """Do ``action`` (a plan action, or ``skip``/``retry`` of ``step_id``) as ``by``. An
    action not allowed now raises :class:`Conflict` and changes nothing."""
    if action not in PLAN_ACTIONS + STEP_ACTIONS:
        raise bad_request(f"unknown action {action!r}; use one of {', '.join(TITLES)}")
    plan = world.get_plan(plan_id)  # UnknownPlan: 404
    step = None
    if action in STEP_ACTIONS:
        if step_id is None:
            raise bad_request(f"{action} needs the step: give its id")
        step = plan.step(step_id)  # UnknownStep: 404
    refusal = why_not(action, plan.record, step)
    if refusal is not None:
        raise conflict(refusal + "; nothing was changed")
    if step is not None and action == "skip":
        _need_class(step, "skipping")
    if action == "resume":
        world.resume(plan_id, by=by)
    elif action == "cancel":
        world.cancel(plan_id, abort=abort, by=by)
    elif action == "halt":
        world.halt(plan_id, by=by)
    elif action == "skip":
        assert step_id is not None
        world.skip(plan_id, step_id, resume=resume, by=by)
    else:
        assert step_id is not None
        world.retry(plan_id, step_id, by=by)
    after = world.get_plan(plan_id)
    return ActionDone(
        plan_id=plan_id,
        action=action,
        step_id=step_id,
        message=_message(world, plan, action, step_id, resume, abort),
        state=after.state,
        result=after.result,
    )


def _need_class(step: StepRecord, what: str) -> None:
    """Skipping calls the action's ``on_skip()`` here: its class must be importable."""
    try:
        registry.resolve(step.action_class)
    except UnknownActionClass:
        raise conflict(
            f"{what} step {step.id} calls {step.action_class}.on_skip() in the console's "
            f"process, which cannot import {step.action_class}: start the console with "
            "--import MODULE (the module that defines it); nothing was changed"
        ) from None


def _message(
    world: World, plan: ExecutionPlan, action: str, step_id: int | None, resume: bool, abort: bool
) -> str:
    what = {
        "resume": f"plan {plan.id}: resume requested",
        "cancel": f"plan {plan.id}: cancel requested" + (" (abort)" if abort else ""),
        "halt": f"plan {plan.id}: halt requested",
        "skip": f"step {step_id} skipped" + (", plan resumed" if resume else ""),
        "retry": f"step {step_id}: retry requested",
    }[action]
    runs_code = action in ("resume", "retry") or (action == "skip" and resume)
    if runs_code and world.executor is None and not any(not w.stale for w in world.worlds()):
        what += (
            "; no live executor world runs plans now: the request waits until one starts "
            "(`dynaflow worker`)"
        )
    return what


def describe(action: str, step_id: int | None = None, **options: Any) -> str:
    """A sentence for the confirmation page."""
    if action == "skip":
        then = " and resume the plan" if options.get("resume") else ""
        return (
            f"Skip step {step_id} (with every step that consumes its output){then}. The "
            "plan's result becomes warning."
        )
    if action == "retry":
        return f"Run step {step_id} again now; when it succeeds, the steps after it go on."
    if action == "resume":
        return "Run the failed steps again; finished steps are left, finalize runs in full."
    if action == "cancel":
        how = "abort()" if options.get("abort") else "cancel()"
        return (
            f"Cancel the plan: steps not started are cancelled, Cancellable steps get {how}; "
            "finalize does not run."
        )
    return "Halt the plan at once: nothing new starts, its events and timers are dropped."
