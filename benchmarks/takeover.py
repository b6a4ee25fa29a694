"""Crash takeover benchmark: how long after a SIGKILL the plan runs again in another world.

    python benchmarks/takeover.py                              # SQLite and PostgreSQL
    python benchmarks/takeover.py --lease 30 --repeats 3       # the default lease
    python benchmarks/takeover.py --backends sqlite --lease 0.5 1 --modes fresh

A child process (this script with ``--child``) opens a threaded World with the given lease and
executes a plan of slow steps; after a random delay it is killed with SIGKILL. Then either a
World opened right after the kill (``fresh``) or one that was already running on the same
database (``standby``) takes the plan over once the dead world's lease has expired. Two
figures per repeat, both from the plan's history:

* kill -> ``plan running`` written by the new world (the takeover itself),
* kill -> the first ``step running`` written by the new world (work resumed).

Expect roughly ``lease - (time since the last heartbeat) + (up to one tick of lease / 3)``:
between 2/3 and 4/3 of the lease. Prints one table (median and max per backend, lease, mode).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from typing import Any

from core import BACKENDS  # the benchmarks folder is on sys.path when run as a script

from dynaflow import Action, World
from dynaflow.clock import now


class Slow(Action):
    """A step that takes a while (the child is always in the middle of something)."""

    idempotent = True

    def run(self) -> None:
        time.sleep(self.input["seconds"])


class Slowly(Action):
    """``n`` slow steps, two at a time."""

    def plan(self, n: int, seconds: float) -> None:
        with self.sequence():
            for _ in range(n // 2):
                with self.concurrence():
                    self.plan_action(Slow, seconds=seconds)
                    self.plan_action(Slow, seconds=seconds)


# -- the child --------------------------------------------------------------------------------


def child(url: str, plan_id: str, lease: float) -> int:
    world = World(url, workers=2, lease=lease)
    print(f"world {world.id}", flush=True)
    world.execute(plan_id)
    print("executing", flush=True)
    time.sleep(3600)  # until killed
    return 0


# -- one measurement --------------------------------------------------------------------------


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.005)


def measure(url: str, lease: float, mode: str, rng: random.Random) -> tuple[float, float]:
    """(kill -> plan running again, kill -> first step run) in seconds, for one kill."""
    # run a while (steps running, heartbeats going), then die at a random heartbeat phase;
    # the plan lasts well beyond that (its steps take 20 ms, two at a time)
    delay = 0.2 + rng.uniform(0, max(lease / 3, 0.2))
    steps = 2 * math.ceil((delay + 5) / 0.02)
    client = World(url, executor=None, migrate=True)
    plan_id = client.plan(Slowly, steps, 0.02).id
    standby = World(url, workers=2, lease=lease) if mode == "standby" else None
    process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", url, plan_id, str(lease)],
        stdout=subprocess.PIPE,
        text=True,
    )
    world = standby
    try:
        assert process.stdout is not None
        dead_world = process.stdout.readline().split()[1]
        if process.stdout.readline().strip() != "executing":
            raise RuntimeError("the child did not start the plan")
        time.sleep(delay)
        killed_at = now()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        state = client.get_plan(plan_id).state
        if state != "running":
            raise RuntimeError(f"the plan was {state} at the kill, not running")
        if world is None:
            world = World(url, workers=2, lease=lease)
        new_world = world.id

        def taken_over() -> tuple[datetime, datetime] | None:
            history = world.get_plan(plan_id).history  # type: ignore[union-attr]
            running = [
                h.at
                for h in history
                if h.event == "plan running" and (h.detail or {}).get("from") == dead_world
            ]
            steps = [h.at for h in history if h.event == "step running" and h.world_id == new_world]
            return (running[0], min(steps)) if running and steps else None

        plan_running, first_step = wait_for(taken_over, lease * 3 + 30, "the takeover")
        return (
            (plan_running - killed_at).total_seconds(),
            (first_step - killed_at).total_seconds(),
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if world is not None:
            if world.get_plan(plan_id).state == "running":
                world.halt(plan_id).result(30)  # the rest of the plan is not measured
            world.close(timeout=5)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--lease", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--modes", default="fresh,standby", help="fresh, standby or both")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--child", nargs=3, metavar=("URL", "PLAN_ID", "LEASE"))
    args = parser.parse_args(argv)
    if args.child:
        url, plan_id, lease = args.child
        return child(url, plan_id, float(lease))

    logging.getLogger("dynaflow").setLevel(logging.ERROR)  # "taking over plan ..." warnings
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    rows = []
    tmp = tempfile.mkdtemp(prefix="dynaflow-bench-")
    try:
        for backend in args.backends.split(","):
            make = BACKENDS[backend]
            for lease in args.lease:
                for mode in args.modes.split(","):
                    takeovers, firsts = [], []
                    for i in range(args.repeats):
                        url = make(tmp, f"takeover-{lease}-{mode}-{i}")
                        takeover, first = measure(url, lease, mode, rng)
                        takeovers.append(takeover)
                        firsts.append(first)
                    rows.append(
                        (
                            backend,
                            f"{lease:g} s",
                            mode,
                            str(args.repeats),
                            f"{statistics.median(takeovers):.2f} s",
                            f"{max(takeovers):.2f} s",
                            f"{statistics.median(firsts):.2f} s",
                            f"{max(firsts):.2f} s",
                        )
                    )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    header = (
        "backend",
        "lease",
        "world",
        "n",
        "kill->plan running (median)",
        "(max)",
        "kill->first step (median)",
        "(max)",
    )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"seed {seed}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
