"""The operator commands: ``dynaflow plans resume|retry|skip|cancel|halt|event``. Each takes a
plan id whole or as a unique prefix, acts through the database (the world that runs the plan,
or any executor world, carries it out) and, when it waits for the plan, exits with how the plan
ended."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from dynaflow.cli_support import (
    Exit,
    _console,
    _fail,
    _imports,
    _require_existing_file,
    hint,
    import_option,
    module_of,
    plan_exit,
    url_option,
)
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.render import plan_tree, safe
from dynaflow.world import World


def operator() -> str:
    """Who acts, for the plan's history: the user running the command."""
    try:
        return f"{getpass.getuser()} (cli)"
    except Exception:  # no user name to be found (a container without one, say)
        return "cli"


def wait_option(function: Any) -> Any:
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help="Wait until the plan's execution ends (stopped or paused) and exit 1 unless it "
        "ended well; --no-wait returns once the request is left for an executor world.",
    )(function)


def timeout_option(function: Any) -> Any:
    return click.option(
        "--timeout",
        default=600.0,
        show_default=True,
        type=click.FloatRange(min=0),
        help="Seconds to wait for the outcome (exit 4 when it has not come by then).",
    )(function)


def _operator_world(url: str, imports: tuple[str, ...]) -> World:
    """A world that only operates: it runs nothing and adopts nothing; what needs an executor
    goes to the executor worlds through the database."""
    _imports(imports)
    _require_existing_file(url)
    return World(url, executor=None)


def _need_executor(world: World, plan_id: str, wait: bool) -> None:
    """Do not wait for an execution no executor world is alive to run."""
    if wait and not any(not w.stale for w in world.worlds()):
        module = module_of(world.get_plan(plan_id).root_action_class or "")
        _fail(
            f"no live executor world on {world.url} runs plans: the request stays queued until "
            f"one starts ({hint('worker', then=f'--import {module}')}); --no-wait leaves it "
            "queued without this error",
            Exit.UNAVAILABLE,
        )


def _need_classes(world: World, plan_id: str, step_id: int | None, what: str) -> None:
    """Refuse up front (exit 2) when operating needs action classes this process lacks."""
    from dynaflow import registry
    from dynaflow.exceptions import UnknownActionClass, UnknownStep

    plan = world.get_plan(plan_id)
    steps = plan.steps if step_id is None else [s for s in plan.steps if s.id == step_id]
    if step_id is not None and not steps:
        raise UnknownStep(plan_id, step_id)
    for step in steps:
        try:
            registry.resolve(step.action_class)
        except UnknownActionClass:
            _fail(
                f"{what} step {step.id} of plan {plan_id} calls its action's code, and this "
                f"process cannot import {step.action_class}: pass --import "
                f"{module_of(step.action_class)} (run from the folder it is in)"
            )


def _finish(future: Any, wait: bool, timeout: float) -> None:
    """Print the outcome and exit with how the plan ended."""
    if not wait:
        _console().print(
            safe(f"plan {future.plan_id}: requested; an executor world carries it out"),
            style="dim",
            soft_wrap=True,
        )
        return
    try:
        plan = future.result(timeout)
    except TimeoutError:
        _fail(
            f"plan {future.plan_id} did not end within {timeout:g}s; it goes on "
            f"({hint(f'plans watch {future.plan_id}')} follows it)",
            Exit.TIMEOUT,
        )
    _outcome(plan)
    sys.exit(plan_exit(plan))


def _outcome(plan: ExecutionPlan) -> None:
    _console().print(plan_tree(plan))
    _console().print(safe(f"plan {plan.id}: {plan.state} / {plan.result}"), soft_wrap=True)


@click.command("resume")
@click.argument("plan_id")
@url_option
@import_option
@wait_option
@timeout_option
def resume_plan(
    plan_id: str, url: str, imports: tuple[str, ...], wait: bool, timeout: float
) -> None:
    """Run a paused plan again (in an executor world): failed steps run again, finished ones
    are left."""
    with _operator_world(url, imports) as world:
        plan_id = world.resolve_plan_id(plan_id)
        future = world.resume(plan_id, by=operator())
        _need_executor(world, plan_id, wait)
        _finish(future, wait, timeout)


@click.command("retry")
@click.argument("plan_id")
@click.argument("step_id", type=int)
@url_option
@import_option
@wait_option
@timeout_option
def retry_step(
    plan_id: str, step_id: int, url: str, imports: tuple[str, ...], wait: bool, timeout: float
) -> None:
    """Run one failed step again now, leaving the other failed steps as they are."""
    with _operator_world(url, imports) as world:
        plan_id = world.resolve_plan_id(plan_id)
        future = world.retry(plan_id, step_id, by=operator())
        _need_executor(world, plan_id, wait)
        _finish(future, wait, timeout)


@click.command("skip")
@click.argument("plan_id")
@click.argument("step_id", type=int)
@url_option
@import_option
@click.option("--resume", is_flag=True, help="Resume the plan right after skipping.")
@timeout_option
def skip_step(
    plan_id: str, step_id: int, url: str, imports: tuple[str, ...], resume: bool, timeout: float
) -> None:
    """Skip a failed step of a paused plan (with the steps that consume its output); the
    action's on_skip() runs here, so its module must be importable (--import)."""
    with _operator_world(url, imports) as world:
        plan_id = world.resolve_plan_id(plan_id)
        _need_classes(world, plan_id, step_id, "skipping")
        future = world.skip(plan_id, step_id, resume=resume, by=operator())
        if resume:
            _need_executor(world, plan_id, True)
            _finish(future, True, timeout)
        else:
            _console().print(plan_tree(world.get_plan(plan_id)))
            _console().print(
                f"skipped; {hint(f'plans resume {plan_id}')} goes on", style="dim", soft_wrap=True
            )


@click.command("cancel")
@click.argument("plan_id")
@url_option
@import_option
@click.option("--abort", is_flag=True, help="Call abort() on Cancellable steps, not cancel().")
@timeout_option
def cancel_plan(
    plan_id: str, url: str, imports: tuple[str, ...], abort: bool, timeout: float
) -> None:
    """Cancel a plan: steps not started are cancelled, Cancellable ones are told (by the world
    that runs the plan). Exits 0 once it stopped."""
    with _operator_world(url, imports) as world:
        plan_id = world.resolve_plan_id(plan_id)
        _stopped(world.cancel(plan_id, abort=abort, by=operator()), timeout)


@click.command("halt")
@click.argument("plan_id")
@url_option
@import_option
@timeout_option
def halt_plan(plan_id: str, url: str, imports: tuple[str, ...], timeout: float) -> None:
    """Stop a plan at once: nothing new starts, its events and timers are dropped. Exits 0 once
    it stopped."""
    with _operator_world(url, imports) as world:
        plan_id = world.resolve_plan_id(plan_id)
        _stopped(world.halt(plan_id, by=operator()), timeout)


def _stopped(future: Any, timeout: float) -> None:
    try:
        plan = future.result(timeout)
    except TimeoutError:
        _fail(
            f"plan {future.plan_id} has not stopped within {timeout:g}s; it is still asked to "
            f"({hint(f'plans watch {future.plan_id}')} follows it)",
            Exit.TIMEOUT,
        )
    _outcome(plan)


@click.command("event")
@click.argument("plan_id")
@click.argument("step_id", type=int)
@click.argument("payload")
@url_option
def send_event(plan_id: str, step_id: int, payload: str, url: str) -> None:
    """Send an event (a JSON value) to a suspended run step, whatever process runs its plan."""
    import json

    try:
        value = json.loads(payload)
    except ValueError as exc:
        _fail(f"the event must be JSON ({exc}); quote it for the shell, like '{{\"ok\": 1}}'")
    with _operator_world(url, ()) as world:
        plan_id = world.resolve_plan_id(plan_id)
        world.event(plan_id, step_id, value).result(timeout=30)
    _console().print(safe(f"event queued for step {step_id} of plan {plan_id}"), soft_wrap=True)


#: the commands of ``dynaflow plans`` this module has
COMMANDS = (resume_plan, retry_step, skip_step, cancel_plan, halt_plan, send_event)
