"""The ``dynaflow`` command: run the demo, migrate the database, list, show and operate plans.

Errors dynaflow raises for things a user can get wrong (an unknown plan id, an unreachable
database, a module given to ``--import`` that cannot be imported) are printed as one red line and
exit with status 1, without a traceback. Passwords in database URLs are shown as ``***``, and
stored text (labels, errors, world ids) is printed with its control characters escaped.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dynaflow.exceptions import DynaflowError, UnknownPlan
from dynaflow.render import plan_tree, plans_table, printable, safe
from dynaflow.states import PlanResult, PlanState
from dynaflow.urls import display_url, hide_passwords
from dynaflow.world import World

DEFAULT_URL = "sqlite:///dynaflow.db"
URL_HELP = "Database URL (default: $DYNAFLOW_URL, else sqlite:///dynaflow.db)."


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, soft_wrap=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120  # piped output: do not squeeze tables and trees into 80 columns
    return console


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one red line (passwords hidden, control characters escaped) and exit
    with status 1."""
    line = printable(hide_passwords(message))
    _console(stderr=True).print(Text.assemble(("error: ", "bold red"), (line, "red")))
    sys.exit(1)


class _Group(click.Group):
    """A group that turns dynaflow's own errors into one red line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynaflowError as exc:
            _fail(str(exc))


def url_option(function: Any) -> Any:
    return click.option(
        "--url",
        envvar="DYNAFLOW_URL",
        default=DEFAULT_URL,
        show_envvar=True,
        metavar="URL",
        help=URL_HELP,
    )(function)


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


def _open(url: str) -> World:
    """A client world for reading."""
    _require_existing_file(url)
    return World(url, executor=None)


def _require_existing_file(url: str) -> None:
    """Reading commands must not create an empty SQLite file where none was."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # World reports a malformed URL itself
    if parsed.get_backend_name() != "sqlite":
        return
    path = parsed.database or ""
    if path and path != ":memory:" and not path.startswith("file:") and not os.path.exists(path):
        _fail(
            f"no database at {url}; `dynaflow demo --db {url}` or `dynaflow db upgrade --url "
            f"{url}` creates one, or pass --url (or set DYNAFLOW_URL)"
        )


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


def import_option(function: Any) -> Any:
    return click.option(
        "--import",
        "imports",
        multiple=True,
        metavar="MODULE",
        help="Import this module first (where your action classes are); repeatable.",
    )(function)


def wait_option(function: Any) -> Any:
    return click.option(
        "--wait/--no-wait",
        default=True,
        show_default=True,
        help="Run the plan here until it stops or pauses; --no-wait leaves it to the next "
        "World that opens with an executor.",
    )(function)


def _operator_world(url: str, imports: tuple[str, ...]) -> World:
    for module in imports:
        _import(module)
    _require_existing_file(url)
    return World(url, executor="threads")


def _import(module: str) -> None:
    """Import a module named by ``--import``; any failure is one line, never a traceback."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:
        name = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if name is not None and (module == name or module.startswith(name + ".")):
            fix = "check the name, and run from its folder or add that folder to PYTHONPATH"
        else:  # the module itself (or something it imports) raised
            fix = f"fix the module; `python -c 'import {module}'` shows the traceback"
        _fail(f"cannot import {module!r} (--import): {type(exc).__name__}: {exc}; {fix}")


def _finish(world: World, future: Any, wait: bool) -> None:
    if wait:
        plan = future.result()
        _console().print(plan_tree(plan))
        _console().print(safe(f"plan {plan.id}: {plan.state} / {plan.result}"))
    else:
        _console().print("left to the next World that opens with an executor", style="dim")


@plans.command("resume")
@click.argument("plan_id")
@url_option
@import_option
@wait_option
def resume_plan(plan_id: str, url: str, imports: tuple[str, ...], wait: bool) -> None:
    """Run a paused plan again: failed steps run again, finished ones are left."""
    with _operator_world(url, imports) as world:
        _finish(world, world.resume(plan_id), wait)


@plans.command("retry")
@click.argument("plan_id")
@click.argument("step_id", type=int)
@url_option
@import_option
@wait_option
def retry_step(plan_id: str, step_id: int, url: str, imports: tuple[str, ...], wait: bool) -> None:
    """Run one failed step again now, leaving the other failed steps as they are."""
    with _operator_world(url, imports) as world:
        _finish(world, world.retry(plan_id, step_id), wait)


@plans.command("skip")
@click.argument("plan_id")
@click.argument("step_id", type=int)
@url_option
@import_option
@click.option("--resume", is_flag=True, help="Resume the plan right after skipping.")
def skip_step(plan_id: str, step_id: int, url: str, imports: tuple[str, ...], resume: bool) -> None:
    """Skip a failed step of a paused plan (with the steps that consume its output)."""
    with _operator_world(url, imports) as world:
        future = world.skip(plan_id, step_id, resume=resume)
        if resume:
            _finish(world, future, True)
        else:
            _console().print(plan_tree(world.get_plan(plan_id)))


@plans.command("cancel")
@click.argument("plan_id")
@url_option
@import_option
def cancel_plan(plan_id: str, url: str, imports: tuple[str, ...]) -> None:
    """Cancel a plan: steps not started are cancelled, Cancellable ones are told."""
    with _operator_world(url, imports) as world:
        _finish(world, world.cancel(plan_id), True)


@plans.command("halt")
@click.argument("plan_id")
@url_option
@import_option
def halt_plan(plan_id: str, url: str, imports: tuple[str, ...]) -> None:
    """Stop a plan at once: nothing new starts, its events and timers are dropped."""
    with _operator_world(url, imports) as world:
        _finish(world, world.halt(plan_id), True)


@main.command()
@url_option
def status(url: str) -> None:
    """Executor worlds: heartbeats, and how many plans each runs."""
    with _open(url) as world:
        worlds = world.worlds()
        running = world.find_plans(state="running", per_page=10_000)
    owners: dict[str | None, int] = {}
    for record in running:
        owners[record.world_id] = owners.get(record.world_id, 0) + 1
    table = Table(title="worlds", title_justify="left", header_style="bold")
    for column in ("world", "host", "pid", "executor", "started", "last heartbeat", "plans"):
        table.add_column(column)
    for row in worlds:
        table.add_row(
            safe(row.id),
            safe(row.hostname or ""),
            safe(row.pid or ""),
            safe(row.executor or ""),
            row.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            row.heartbeat_at.astimezone().strftime("%H:%M:%S"),
            str(owners.get(row.id, 0)),
        )
    console = _console()
    console.print(table)
    if owners.get(None):
        console.print(f"{owners[None]} running plans are released, waiting for an executor")


if __name__ == "__main__":
    main()
