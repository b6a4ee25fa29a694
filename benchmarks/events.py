"""Suspend/event benchmark: wake-up latency of a suspended step, and what 10,000 suspended
steps cost while they wait.

    python benchmarks/events.py                      # SQLite and PostgreSQL
    python benchmarks/events.py --backends sqlite --events 200

Latency is measured from just before ``world.event(...)`` to the first line of ``run(event)``,
one event at a time. Prints one table.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from typing import Any

from core import BACKENDS, print_table  # the benchmarks folder is on sys.path when run as a script

from dynaflow import Action, World

BACKENDS = {**BACKENDS, "memory": lambda _tmp, _name: "memory://"}
ENTERED: dict[int, float] = {}
ARRIVED = threading.Event()


class Listener(Action):
    """Suspends, and records when each event reaches run()."""

    def run(self, event: Any = None) -> None:
        if event is not None:
            ENTERED[event] = time.perf_counter()
            ARRIVED.set()
            if event == -1:
                return
        self.suspend()


class Sleeper(Action):
    def run(self, event: Any = None) -> None:
        if event is None:
            self.suspend()


class Crowd(Action):
    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(Sleeper)


def run_step_id(world: World, plan_id: str) -> int:
    return next(s.id for s in world.get_plan(plan_id).steps if s.kind == "run")


def wait_for(predicate: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(0.01)


def bench_latency(url: str, events: int) -> tuple[float, float]:
    with World(url, workers=4, migrate=True) as world:
        triggered = world.trigger(Listener)
        step_id = run_step_id(world, triggered.plan_id)
        wait_for(lambda: world.get_plan(triggered.plan_id).step(step_id).state == "suspended")
        latencies = []
        for i in range(events):
            ARRIVED.clear()
            sent = time.perf_counter()
            future = world.event(triggered.plan_id, step_id, i)
            if not ARRIVED.wait(30):
                raise TimeoutError(f"event {i} never arrived")
            latencies.append(ENTERED[i] - sent)
            future.result(30)
        world.event(triggered.plan_id, step_id, -1)
        triggered.wait(60)
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def bench_crowd(url: str, n: int) -> tuple[float, float, int, int, float]:
    """(seconds to suspend n steps, MiB held while they wait, workers held by waiting steps,
    threads of the whole executor, seconds to wake them all)"""
    gc.collect()
    threads_before = threading.active_count()
    with World(url, workers=4, migrate=True) as world:
        plan = world.plan(Crowd, n)
        tracemalloc.start()
        start = time.perf_counter()
        world.execute(plan.id)
        wait_for(
            lambda: (
                world.count_plans(state="running") == 1
                and all(
                    s.state == "suspended" for s in world.get_plan(plan.id).steps if s.kind == "run"
                )
            ),
            timeout=600,
        )
        suspended = time.perf_counter() - start
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # the executor's own threads (scheduler + pool) exist anyway; a waiting step holds none
        assert world.executor is not None
        held_by_steps = world.executor.engine.busy
        threads = threading.active_count() - threads_before
        steps = [s.id for s in world.get_plan(plan.id).steps if s.kind == "run"]
        start = time.perf_counter()
        futures = [world.event(plan.id, step_id, "wake") for step_id in steps]
        done = world.follow(plan.id).result(600)
        woken = time.perf_counter() - start
        assert done.result == "success", done.result
        for future in futures:
            future.result(60)
    return suspended, held / 2**20, held_by_steps, threads, woken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--crowd", type=int, default=10_000)
    args = parser.parse_args(argv)
    rows = []
    tmp = tempfile.mkdtemp(prefix="dynaflow-bench-")
    for backend in args.backends.split(","):
        make = BACKENDS[backend]
        median, p99 = bench_latency(make(tmp, "latency"), args.events)
        suspended, mib, held, threads, woken = bench_crowd(make(tmp, "crowd"), args.crowd)
        rows += [
            (backend, f"wake-up latency, median of {args.events}", f"{median * 1000:.2f} ms"),
            (backend, f"wake-up latency, p99 of {args.events}", f"{p99 * 1000:.2f} ms"),
            (backend, f"{args.crowd:,} steps: run until all suspended", f"{suspended:.2f} s"),
            (backend, f"{args.crowd:,} suspended steps: memory held", f"{mib:.1f} MiB"),
            (backend, f"{args.crowd:,} suspended steps: worker threads held", f"{held}"),
            (backend, "  (threads of the executor itself, fixed)", f"{threads}"),
            (backend, f"{args.crowd:,} events sent, all steps woken", f"{woken:.2f} s"),
        ]
    print_table(("backend", "measure", "figure"), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
