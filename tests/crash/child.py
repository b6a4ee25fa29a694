"""The process the crash tests kill: it opens a threaded World on a database and executes a
plan planned there beforehand, reporting as it goes; the test SIGKILLs it somewhere on the way.

The tests start it with :mod:`multiprocessing` (see ``harness.START_METHOD``): by default from a
fork server that has imported dynaflow once (a clean single-threaded process, not a fork of
the test process: it holds no threads and no database connections), or with ``spawn`` (a
fresh interpreter each time). By hand::

    python -m <package>.child URL PLAN_ID LEASE [WORKERS]
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from dynaflow import World

from . import workload

Report = Callable[..., None]


def run(url: str, plan_id: str, lease: float, workers: int, report: Report) -> None:
    """Reports ``("world", id)`` once the world is open, ``("executing",)`` right after it
    asked for the plan to be executed, and ``("done", seconds, state, result)`` when the
    execution ended (seconds from "executing")."""
    effects = workload.Effects(url)
    world = World(url, workers=workers, lease=lease)
    workload.bind(world, effects)
    report("world", world.id)
    start = time.perf_counter()
    future = world.execute(plan_id)
    report("executing")
    plan = future.result(120)
    report("done", time.perf_counter() - start, str(plan.state), str(plan.result))
    world.close(timeout=10)
    effects.close()


def process_main(url: str, plan_id: str, lease: float, workers: int, conn: Any, log: str) -> None:
    """The target of the child process: stderr (and dynaflow's log) goes to ``log``, reports
    go through the pipe ``conn``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    run(url, plan_id, lease, workers, lambda *message: conn.send(message))


if __name__ == "__main__":
    args = sys.argv[1:]
    run(
        args[0],
        args[1],
        float(args[2]),
        int(args[3]) if len(args) > 3 else 4,
        lambda *message: print(*message, flush=True),
    )
