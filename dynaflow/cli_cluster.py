"""The ``dynaflow`` commands for many worlds on one database: ``status``, ``queues list|set``,
``worlds list|forget`` and ``worker``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from dynaflow.cli_prune import retention_option
from dynaflow.cli_support import (
    _console,
    _fail,
    _imports,
    _open,
    emit_json,
    hint,
    import_option,
    json_option,
    url_option,
)
from dynaflow.execution_plan import WorldRecord
from dynaflow.render import safe
from dynaflow.render_json import iso, queues_json, requests_json, world_json
from dynaflow.render_tables import print_queues, print_requests, print_worlds
from dynaflow.retention import Retention
from dynaflow.world import World

# -- worlds and queues --------------------------------------------------------------------------


def _plans_per_world(world: World) -> tuple[dict[str, int], int]:
    """How many running plans each world runs, and how many no world runs (released)."""
    owners: dict[str, int] = {}
    released = 0
    for record in world.find_plans(state="running", per_page=1_000_000):
        if record.world_id is None:
            released += 1
        else:
            owners[record.world_id] = owners.get(record.world_id, 0) + 1
    return owners, released


@click.command()
@url_option
@json_option
def status(url: str, as_json: bool) -> None:
    """Executor worlds (heartbeat age, stale ones marked, queues, plans each runs), the
    queues, and the requests no world has taken (with why each world declined)."""
    with _open(url) as world:
        worlds = world.worlds()
        owners, released = _plans_per_world(world)
        waiting = world.waiting_requests()
        at = world.now()
        overview = world.queues()
    if as_json:
        emit_json(
            {
                "at": iso(at),
                "worlds": [world_json(row, owners.get(row.id, 0)) for row in worlds],
                "released_plans": released,
                "queues": queues_json(overview),
                "waiting_requests": requests_json(waiting, at),
            }
        )
        return
    console = _console()
    print_worlds(console, worlds, owners)
    for row in worlds:
        if row.stale:
            console.print(
                f"world {row.id} is stale: the next live world's heartbeat takes its plans "
                f"over; {hint(f'worlds forget {row.id}')} declares it dead at once",
                style="dim",
                soft_wrap=True,
            )
    if released:
        console.print(f"{released} running plans are released, waiting for an executor")
    if overview:
        print_queues(console, overview)
    if waiting:
        print_requests(console, waiting, at)


@click.group()
def queues() -> None:
    """Queues: their limits, the worlds serving them, their steps."""


@queues.command("list")
@url_option
@json_option
def list_queues(url: str, as_json: bool) -> None:
    """Each queue: limit, the live worlds serving it (with pool sizes), run steps by state."""
    with _open(url) as world:
        overview = world.queues()
    if as_json:
        emit_json({"queues": queues_json(overview)})
        return
    print_queues(_console(), overview)


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


@worlds.command("list")
@url_option
@json_option
def list_worlds(url: str, as_json: bool) -> None:
    """Each executor world: host, pid, queues, heartbeat age (stale ones marked), plans."""
    with _open(url) as world:
        rows = world.worlds()
        owners, _ = _plans_per_world(world)
    if as_json:
        emit_json({"worlds": [world_json(row, owners.get(row.id, 0)) for row in rows]})
        return
    if not rows:
        _console().print("no executor world is registered")
        return
    print_worlds(_console(), rows, owners)


@worlds.command("forget")
@click.argument("world_id")
@url_option
@click.option("--force", is_flag=True, help="Also when its heartbeat is fresh.")
def forget_world(world_id: str, url: str, force: bool) -> None:
    """Declare a world (WORLD_ID whole, or a prefix only its id starts with) dead now: live
    worlds take its plans over on their next heartbeat (a world whose heartbeat is fresh is
    refused unless --force: it may still be running)."""
    with _open(url) as world:
        world_id = _world_id(world.worlds(), world_id)
        world.forget_world(world_id, force=force)
    _console().print(
        safe(f"world {world_id} forgotten; live worlds take its plans over"), soft_wrap=True
    )


def _world_id(rows: list[WorldRecord], given: str) -> str:
    """The whole id of the registered world ``given`` names, whole or by a unique prefix."""
    ids = [row.id for row in rows]
    if given in ids:
        return given
    found = [i for i in ids if i.startswith(given)]
    if len(found) > 1:
        _fail(
            f"world id {given!r} is ambiguous: the ids of {len(found)} worlds start with it "
            f"({', '.join(found)}); give more of the id"
        )
    return found[0] if found else given  # an unknown one: forget_world says so


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
@retention_option
def worker(
    url: str,
    imports: tuple[str, ...],
    queues: tuple[str, ...],
    lease: float,
    grace: float,
    log_level: str,
    metrics_port: int | None,
    retention: Retention | None,
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
    world = World(
        url,
        executor="threads",
        queues=pools,
        lease=lease,
        shutdown_timeout=grace,
        retention=retention,
    )
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
