"""The ``dynaflow`` command: run the demo, migrate the database, list, show and operate plans.

Errors dynaflow raises for things a user can get wrong (an unknown plan id, an unreachable
database, a module given to ``--import`` that cannot be imported) are printed as one red line and
exit with status 1, without a traceback. Passwords in database URLs are shown as ``***``, and
stored text (labels, errors, world ids) is printed with its control characters escaped.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from dynaflow.cli_cluster import queues, status, worker, worlds
from dynaflow.cli_schedules import register as register_schedules
from dynaflow.cli_support import (
    _console,
    _fail,
    _Group,
    _imports,
    _open,
    _require_existing_file,
    import_option,
    url_option,
)
from dynaflow.exceptions import UnknownPlan
from dynaflow.render import plan_tree, plans_table, safe
from dynaflow.states import PlanResult, PlanState
from dynaflow.urls import display_url
from dynaflow.world import World


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dynaflow")
def main() -> None:
    """dynaflow: durable plan-then-execute workflows."""


# -- demo ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--db",
    "url",
    default="sqlite:///dynaflow-demo.db",
    show_default=True,
    metavar="URL",
    help="Database to plan and run the demo in (the demo's own table goes there too).",
)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1))
def demo(url: str, workers: int) -> None:
    """Plan and run CreateInfrastructure: concurrent machines, an output reference, a
    subscribed plugin action and a finalize writing the application's own table."""
    from dynaflow.demo import run_demo

    if not run_demo(url, workers=workers, console=_console()):
        sys.exit(1)


# -- db --------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command()
@url_option
def upgrade(url: str) -> None:
    """Migrate the database schema to the newest version."""
    from dynaflow.persistence import migrate

    before = migrate.current(url)
    migrate.upgrade(url)
    after = migrate.current(url)
    change = (
        f"already at {after}"
        if before == after
        else f"upgraded from {before or '(empty)'} to {after}"
    )
    _console().print(safe(f"{display_url(url)}: {change}"))


@db.command()
@url_option
def current(url: str) -> None:
    """Show the database's schema version and the newest one this code knows."""
    from dynaflow.persistence import migrate

    _require_existing_file(url)
    revision = migrate.current(url)
    head = migrate.head()
    status = "up to date" if revision == head else "needs `dynaflow db upgrade`"
    _console().print(safe(f"{display_url(url)}: {revision or '(empty)'} (head {head}, {status})"))


# -- plans -----------------------------------------------------------------------------------


@main.group()
def plans() -> None:
    """List and inspect execution plans."""


@plans.command("list")
@url_option
@click.option("--state", type=click.Choice([s.value for s in PlanState]), help="Only this state.")
@click.option(
    "--result", type=click.Choice([r.value for r in PlanResult]), help="Only this result."
)
@click.option("--label", help="Only plans with exactly this label.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--per-page", default=20, show_default=True, type=click.IntRange(min=1))
def list_plans(
    url: str, state: str | None, result: str | None, label: str | None, page: int, per_page: int
) -> None:
    """Plans, newest first."""
    with _open(url) as world:
        rows = world.find_plans(
            state=state, result=result, label=label, page=page, per_page=per_page
        )
        total = world.count_plans(state=state, result=result, label=label)
    console = _console()
    pages = max(1, -(-total // per_page))
    if not rows:
        console.print(f"no plans match (page {page} of {pages}, {total} plans in all)")
        return
    console.print(plans_table(rows))
    console.print(f"page {page} of {pages}, {total} plans", style="dim")


@plans.command("show")
@click.argument("plan_id")
@url_option
@click.option("--traceback", "tracebacks", is_flag=True, help="Show each error's traceback.")
@click.option("--history", is_flag=True, help="Show the plan's execution history too.")
def show_plan(plan_id: str, url: str, tracebacks: bool, history: bool) -> None:
    """One plan as a tree: its run flow and finalize steps with states, durations, errors."""
    with _open(url) as world:
        try:
            plan = world.get_plan(plan_id)
        except UnknownPlan:
            _fail(
                f"no execution plan with id {plan_id!r} in {world.url}; "
                "`dynaflow plans list` lists the plans there"
            )
    console = _console()
    console.print(plan_tree(plan, tracebacks=tracebacks))
    if history:
        table = Table(title="history", title_justify="left", header_style="bold")
        for column in ("at", "event", "step", "world"):
            table.add_column(column, no_wrap=column != "event")
        for row in plan.history:
            table.add_row(
                row.at.astimezone().strftime("%H:%M:%S.%f")[:-3],
                safe(row.event),
                safe(row.step_id or ""),
                safe(row.world_id or ""),
            )
        console.print(table)


# -- operator actions ---------------------------------------------------------------------------


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
        help="Seconds to wait for the outcome.",
    )(function)


def _operator_world(url: str, imports: tuple[str, ...]) -> World:
    """A world that only operates: it runs nothing and adopts nothing; what needs an executor
    goes to the executor worlds through the database."""
    _imports(imports)
    _require_existing_file(url)
    return World(url, executor=None)


def _need_executor(world: World, wait: bool) -> None:
    """Do not wait for an execution no executor world is alive to run."""
    if wait and not any(not w.stale for w in world.worlds()):
        _fail(
            f"no live executor world on {world.url} runs plans: the request stays queued "
            "until one starts (`dynaflow worker --url URL --import MODULE`); --no-wait "
            "leaves it queued without this error"
        )


def _need_classes(world: World, plan_id: str, step_id: int | None, what: str) -> None:
    """Refuse up front (exit 1) when operating needs action classes this process lacks."""
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
                f"process cannot import {step.action_class}: pass --import MODULE (the module "
                "that defines it; run from its folder)"
            )


def _finish(world: World, future: Any, wait: bool, timeout: float) -> None:
    """Print the outcome; exit 1 when the plan ended paused or in error."""
    if not wait:
        _console().print(
            safe(f"plan {future.plan_id}: requested; an executor world carries it out"),
            style="dim",
        )
        return
    try:
        plan = future.result(timeout)
    except TimeoutError:
        _fail(
            f"plan {future.plan_id} did not end within {timeout:g}s; it goes on "
            "(`dynaflow plans show` follows it)"
        )
    _console().print(plan_tree(plan))
    _console().print(safe(f"plan {plan.id}: {plan.state} / {plan.result}"))
    if plan.state == PlanState.PAUSED or plan.result == PlanResult.ERROR:
        sys.exit(1)


@plans.command("resume")
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
        future = world.resume(plan_id)
        _need_executor(world, wait)
        _finish(world, future, wait, timeout)


@plans.command("retry")
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
        future = world.retry(plan_id, step_id)
        _need_executor(world, wait)
        _finish(world, future, wait, timeout)


@plans.command("skip")
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
        _need_classes(world, plan_id, step_id, "skipping")
        future = world.skip(plan_id, step_id, resume=resume)
        if resume:
            _need_executor(world, True)
            _finish(world, future, True, timeout)
        else:
            _console().print(plan_tree(world.get_plan(plan_id)))


@plans.command("cancel")
@click.argument("plan_id")
@url_option
@import_option
@click.option("--abort", is_flag=True, help="Call abort() on Cancellable steps, not cancel().")
@timeout_option
def cancel_plan(
    plan_id: str, url: str, imports: tuple[str, ...], abort: bool, timeout: float
) -> None:
    """Cancel a plan: steps not started are cancelled, Cancellable ones are told (by the world
    that runs the plan)."""
    with _operator_world(url, imports) as world:
        _stopped(world.cancel(plan_id, abort=abort), timeout)


@plans.command("halt")
@click.argument("plan_id")
@url_option
@import_option
@timeout_option
def halt_plan(plan_id: str, url: str, imports: tuple[str, ...], timeout: float) -> None:
    """Stop a plan at once: nothing new starts, its events and timers are dropped."""
    with _operator_world(url, imports) as world:
        _stopped(world.halt(plan_id), timeout)


def _stopped(future: Any, timeout: float) -> None:
    try:
        plan = future.result(timeout)
    except TimeoutError:
        _fail(f"plan {future.plan_id} has not stopped within {timeout:g}s; it is still asked to")
    _console().print(plan_tree(plan))
    _console().print(safe(f"plan {plan.id}: {plan.state} / {plan.result}"))


@plans.command("event")
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
        world.event(plan_id, step_id, value).result(timeout=30)
    _console().print(safe(f"event queued for step {step_id} of plan {plan_id}"))


main.add_command(status)
main.add_command(queues)
main.add_command(worlds)
main.add_command(worker)
register_schedules(main, plans)


if __name__ == "__main__":
    main()
