"""The ``dynaflow`` commands for many worlds on one database: ``status``, ``queues``,
``worlds`` and ``worker``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from dynaflow.cli_support import _console, _fail, _imports, _open, import_option, url_option
from dynaflow.render import safe
from dynaflow.world import World

# -- worlds ----------------------------------------------------------------------------------


@click.command()
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


@click.group()
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


@click.group()
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


@click.command()
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
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics at http://0.0.0.0:PORT/metrics.",
)
def worker(
    url: str,
    imports: tuple[str, ...],
    queues: tuple[str, ...],
    lease: float,
    grace: float,
    log_level: str,
    metrics_port: int | None,
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
    if metrics_port is not None:  # a port in use fails here, before the world starts
        from dynaflow import metrics

        metrics.serve(metrics_port)
    world = World(url, executor="threads", queues=pools, lease=lease, shutdown_timeout=grace)
    if metrics_port is not None:
        metrics.install(world)
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
