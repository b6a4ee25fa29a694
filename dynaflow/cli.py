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


def _imports(imports: tuple[str, ...]) -> None:
    # modules beside the command, as `python -m` would find them
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in imports:
        _import(module)


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


# -- worlds ----------------------------------------------------------------------------------


@main.command()
@url_option
def status(url: str) -> None:
    """Executor worlds (heartbeat age, stale ones marked, queues, plans each runs) and the
    requests no world has taken (with why each world declined)."""
    with _open(url) as world:
        worlds = world.worlds()
        running = world.find_plans(state="running", per_page=10_000)
        waiting = world.waiting_requests()
        at = world.now()
        overview = world.queues()
    owners: dict[str | None, int] = {}
    for record in running:
        owners[record.world_id] = owners.get(record.world_id, 0) + 1
    table = Table(title="worlds", title_justify="left", header_style="bold")
    columns = ("world", "host", "pid", "queues", "started", "heartbeat age", "plans", "")
    for column in columns:
        table.add_column(column)
    for row in worlds:
        table.add_row(
            safe(row.id),
            safe(row.hostname or ""),
            safe(row.pid or ""),
            safe(", ".join(f"{q}={n}" for q, n in (row.queues or {}).items())),
            row.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            f"{row.heartbeat_age:.1f}s",
            str(owners.get(row.id, 0)),
            Text("STALE", style="bold red") if row.stale else Text("alive", style="green"),
        )
    console = _console()
    console.print(table)
    if any(row.stale for row in worlds):
        console.print(
            "a stale world's plans are taken over by the next live world's heartbeat; "
            "`dynaflow worlds forget ID` declares it dead at once",
            style="dim",
        )
    if owners.get(None):
        console.print(f"{owners[None]} running plans are released, waiting for an executor")
    if overview:
        console.print(_queues_table(overview))
    if waiting:
        requests = Table(title="waiting requests", title_justify="left", header_style="bold")
        for column in ("id", "plan", "kind", "for", "taken by", "age", "declined because"):
            requests.add_column(column)
        for r in waiting:
            declined = "; ".join(f"{w}: {why}" for w, why in (r.declined or {}).items())
            requests.add_row(
                str(r.id),
                safe(r.plan_id),
                safe(r.kind),
                safe(r.world_id or "any world"),
                safe(r.taken_by or ""),
                f"{max(0.0, (at - r.created_at).total_seconds()):.0f}s",
                safe(declined or ""),
            )
        console.print(requests)


def _queues_table(overview: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="queues", title_justify="left", header_style="bold")
    for column in (
        "queue",
        "limit",
        "served by",
        "pending",
        "running",
        "suspended",
        "error",
        "done",
    ):
        table.add_column(column)
    for name, row in overview.items():
        served = ", ".join(f"{w}={n}" for w, n in row["worlds"].items()) or "nobody"
        done = sum(row.get(state, 0) for state in ("success", "skipped", "cancelled"))
        table.add_row(
            safe(name),
            str(row["limit"]) if row["limit"] else "-",
            Text(served, style="red") if not row["worlds"] else safe(served),
            str(row.get("pending", 0)),
            str(row.get("running", 0)),
            str(row.get("suspended", 0)),
            str(row.get("error", 0)),
            str(done),
        )
    return table


@main.group()
def queues() -> None:
    """Queues: their limits, the worlds serving them, their steps."""


@queues.command("list")
@url_option
def list_queues(url: str) -> None:
    """Each queue: limit, the live worlds serving it (with pool sizes), run steps by state."""
    with _open(url) as world:
        _console().print(_queues_table(world.queues()))


@queues.command("set")
@click.argument("name")
@url_option
@click.option("--limit", type=click.IntRange(min=1), help="Most steps running at once.")
@click.option("--unlimited", is_flag=True, help="Remove the limit.")
def set_queue(name: str, url: str, limit: int | None, unlimited: bool) -> None:
    """Store a queue's cluster-wide limit; executor worlds apply it from their next beat."""
    from dynaflow.queues import Queue

    if (limit is None) == (not unlimited):
        _fail("give either --limit N or --unlimited")
    with _open(url) as world:
        world.declare_queue(Queue(name, limit=limit))
    _console().print(safe(f"queue {name}: limit {limit or 'none'}"))


@main.group()
def worlds() -> None:
    """Executor worlds registered on the database."""


@worlds.command("forget")
@click.argument("world_id")
@url_option
@click.option("--force", is_flag=True, help="Also when its heartbeat is fresh.")
def forget_world(world_id: str, url: str, force: bool) -> None:
    """Declare a world dead now: live worlds take its plans over on their next heartbeat (a
    world whose heartbeat is fresh is refused unless --force: it may still be running)."""
    with _open(url) as world:
        world.forget_world(world_id, force=force)
    _console().print(safe(f"world {world_id} forgotten; live worlds take its plans over"))


@main.command()
@url_option
@import_option
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME=SIZE",
    help="Serve this queue with SIZE worker threads; repeatable (default: default=4).",
)
@click.option("--lease", default=30.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds running steps get to finish after SIGTERM/SIGINT.",
)
@click.option("--log-level", default="INFO", show_default=True)
def worker(
    url: str,
    imports: tuple[str, ...],
    queues: tuple[str, ...],
    lease: float,
    grace: float,
    log_level: str,
) -> None:
    """Run plans until SIGTERM or SIGINT: take the plans client worlds hand over, serve the
    given queues; on the signal stop taking work, let running steps finish within --grace,
    release the rest to the other worlds, and exit 0."""
    import logging
    import signal
    import threading

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _imports(imports)
    pools = _parse_queues(queues)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        logging.getLogger("dynaflow.worker").info(
            "%s: stopping (running steps get %.0fs)", signal.Signals(signum).name, grace
        )
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    world = World(url, executor="threads", queues=pools, lease=lease, shutdown_timeout=grace)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        world.close()
    if world.executor is not None and world.executor.engine.busy:
        # steps that outlived --grace stay 'running' for the other worlds to take over: do not
        # wait for their threads (the interpreter would join them at exit)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def _parse_queues(values: tuple[str, ...]) -> dict[str, int] | None:
    if not values:
        return None
    pools: dict[str, int] = {}
    for value in values:
        name, sep, size = value.partition("=")
        if not sep:
            size = "4"
        try:
            pools[name] = int(size)
        except ValueError:
            _fail(f"--queue {value!r}: write NAME=SIZE, SIZE a whole number >= 1 (like default=4)")
    return pools


if __name__ == "__main__":
    main()
