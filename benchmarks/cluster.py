"""Cluster benchmark: plans handed from a client world to ``dynaflow worker`` processes.

    python benchmarks/cluster.py                # every scenario (PostgreSQL; SQLite for reference)
    python benchmarks/cluster.py --quick        # smaller sizes: a smoke run
    python benchmarks/cluster.py --only events  # some scenarios (repeatable, or comma-separated)

Scenarios (each on freshly reset tables, with its own worker processes, started as a user
would: ``python -m dynaflow.cli worker --import cluster_actions``):

* ``wide``: one plan of 2,000 concurrent no-op steps, executed by 1, 2 and 3 workers (steps/s
  from ``execute`` to the plan's end as the client sees it, and the workers' CPU per step),
  against the in-process figure of ``benchmarks/core.py`` (``bench_one_plan``) in this run.
* ``many``: 1,000 plans of a 5-step sequence triggered one after the other from a client world
  in this process, 2 workers: steps/s from the first ``trigger`` to the last plan's end (the
  plans' ``ended_at``), against ``core.bench_many_plans`` (200 plans x 5 steps in process).
* ``events``: a client world sends events, one at a time, to a suspended step that a worker
  runs: latency from just before ``world.event(...)`` to the first line of ``run(event)``.
* ``handoff``: a client triggers a one-step plan, one at a time: latency from just before
  ``world.trigger(...)`` to the first line of the step's ``run()`` in a worker.
* ``sqlite``: ``many`` on a SQLite file (the workers poll for requests), for reference.
* ``children``: a SubPlans parent spawns 10,000 one-step sub-plans, at most 50 running at
  once, over 2 workers: children/s, and what the parent's step costs per child.

Times taken in a worker are ``time.time()`` recorded by the step in its output (same machine,
same clock). Figures from one run are comparable with each other; absolute numbers depend on the
machine (its number of cores above all: the database, the workers and this process share them).
PostgreSQL is at ``--url`` or ``DYNAFLOW_BENCH_PG_URL``; the benchmark drops and recreates one
schema there (the URL's ``options=-csearch_path=NAME``, else ``dynaflow_cluster_bench``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import core  # the benchmarks folder is on sys.path when run as a script
import sqlalchemy as sa
from cluster_actions import Chain, Children, Listener, Stamp, Wide, WideSleep
from core import print_table

from dynaflow import World
from dynaflow.persistence import migrate

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
PG_URL = os.environ.get(
    "DYNAFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench_cluster"
)
DEFAULT_SCHEMA = "dynaflow_cluster_bench"
SCENARIOS = ("wide", "slow", "many", "events", "handoff", "sqlite", "children")
#: the slow scenario's steps: long enough to be offered to other workers (50 ms or more)
SLOW_STEP = 0.06
#: worker threads per worker process (and per in-process world): core.py's default
THREADS = 4
#: client threads triggering at once in the ``many`` scenario's threaded row
CLIENT_THREADS = 4
#: seconds a worker gets after SIGTERM before SIGKILL
GRACE = 5.0


@dataclass(frozen=True)
class Sizes:
    wide: int
    wide_workers: tuple[int, ...]
    plans: int
    core_plans: int
    events: int
    handoffs: int
    children: int


FULL = Sizes(
    wide=2000,
    wide_workers=(1, 2, 3),
    plans=1000,
    core_plans=200,
    events=200,
    handoffs=200,
    children=10_000,
)
QUICK = Sizes(
    wide=200, wide_workers=(1, 2), plans=60, core_plans=30, events=20, handoffs=20, children=200
)


@dataclass
class Row:
    scenario: str
    figure: str
    target: str = ""
    met: bool | None = None

    def cells(self) -> tuple[str, str, str, str]:
        met = "" if self.met is None else ("met" if self.met else "NOT MET")
        return (self.scenario, self.figure, self.target, met)


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(*args, **kwargs))


# -- databases ----------------------------------------------------------------------------------


def schema_of(url: str) -> str | None:
    """The schema named by the URL's ``options=-csearch_path=NAME``, if any."""
    options = sa.make_url(url).query.get("options") or ""
    if isinstance(options, tuple):
        options = " ".join(options)
    match = re.search(r"-c\s*search_path\s*=\s*([A-Za-z_][A-Za-z0-9_]*)", options)
    return match.group(1) if match else None


def with_schema(url: str) -> tuple[str, str]:
    """``(url, schema)``: the URL with a search_path (the default schema if it has none)."""
    schema = schema_of(url)
    if schema is not None:
        return url, schema
    parsed = sa.make_url(url).update_query_dict({"options": f"-csearch_path={DEFAULT_SCHEMA}"})
    return parsed.render_as_string(hide_password=False), DEFAULT_SCHEMA


class Postgres:
    """The benchmark's schema: dropped, recreated and migrated by :meth:`reset`."""

    def __init__(self, url: str) -> None:
        self.url, self.schema = with_schema(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", pool_size=1)

    def reset(self) -> str:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        migrate.upgrade(self.url)
        return self.url

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        self.admin.dispose()


def sqlite_reset(tmp: str) -> str:
    path = Path(tmp, "cluster.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return url


@contextmanager
def database(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


# -- worker processes -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), from /proc; psutil elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil  # type: ignore[import-untyped]

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except Exception:
        return None


class Workers:
    """``n`` ``dynaflow worker`` processes on ``url``; a context manager that always stops them
    (SIGTERM, then SIGKILL after the grace period)."""

    def __init__(self, url: str, n: int, logs: str, timeout: float) -> None:
        self.url = url
        self.n = n
        self.logs = logs
        self.timeout = timeout
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_paths: list[Path] = []

    def __enter__(self) -> Workers:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable,
            "-m",
            "dynaflow.cli",
            "worker",
            "--url",
            self.url,
            "--import",
            "cluster_actions",
            "--queue",
            f"default={THREADS}",
            "--grace",
            str(GRACE),
            "--log-level",
            "WARNING",
        ]
        for _ in range(self.n):
            path = Path(self.logs, f"worker-{len(self.log_paths)}.log")
            self.log_paths.append(path)
            with open(path, "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        cwd=HERE,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        # ready once every worker has registered its world
        with World(self.url, executor=None) as client:
            deadline = time.monotonic() + self.timeout
            while len(client.worlds()) < self.n:
                self.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.n} workers did not register in {self.timeout}s")
                time.sleep(0.05)

    def check(self) -> None:
        """Raise if a worker has exited (with the end of its log)."""
        for proc, path in zip(self.procs, self.log_paths, strict=True):
            if proc.poll() is not None:
                tail = path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}:\n{tail}")

    def cpu(self) -> float | None:
        """CPU seconds used so far by all the workers (None if it cannot be read)."""
        values = [cpu_seconds(proc.pid) for proc in self.procs]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[misc]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs = []


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, check: Callable[[], None]
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(0.005)


def percentiles(values: list[float]) -> tuple[float, float]:
    """(median, p99) as benchmarks/events.py computes them."""
    values = sorted(values)
    return statistics.median(values), values[max(0, int(len(values) * 0.99) - 1)]


def first(pair: tuple[float, float]) -> float:
    return pair[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- scenarios ------------------------------------------------------------------------------------


@dataclass
class Context:
    sizes: Sizes
    pg: Postgres
    tmp: str
    timeout: float
    report: Report
    #: runs per throughput figure (the median run is kept)
    repeat: int = 1

    def median(self, measure: Callable[[], T], key: Callable[[T], float]) -> T:
        """The run of ``measure`` with the median ``key`` out of ``repeat`` runs."""
        runs = sorted((measure() for _ in range(self.repeat)), key=key)
        return runs[(len(runs) - 1) // 2]

    core_wide: float | None = None


def warm_up(client: World, workers: Workers, timeout: float, plans: int = 4) -> None:
    """A few small plans through the workers (imports, connections, caches)."""
    triggered = [client.trigger(Chain, 5) for _ in range(plans)]
    for t in triggered:
        plan = t.wait(timeout)
        assert plan.result == "success", (plan.state, plan.result)
    workers.check()


def epoch(value: datetime | None) -> float:
    assert value is not None
    return value.timestamp()


@dataclass
class WideRun:
    rate: float
    #: CPU seconds per step, all workers together (None: not readable here)
    cpu: float | None
    #: workers whose world ran steps of the plan
    ran_in: int
    #: execute() -> plan running, plan running -> plan ended, plan ended -> result() returned
    start: float
    run: float
    result: float


def one_wide_plan(url: str, n_workers: int, steps: int, ctx: Context) -> WideRun:
    with (
        Workers(url, n_workers, ctx.tmp, ctx.timeout) as workers,
        World(url, executor=None) as client,
    ):
        warm_up(client, workers, ctx.timeout, plans=2 * n_workers)
        plan = client.plan(Wide, steps)
        cpu = workers.cpu()
        start = time.time()
        done = client.execute(plan.id).result(ctx.timeout)
        end = time.time()
        after = workers.cpu()
        assert (done.state, done.result) == ("stopped", "success"), (done.state, done.result)
        ran_in = {s.world_id for s in done.steps if s.kind == "run"}
    return WideRun(
        steps / (end - start),
        None if cpu is None or after is None else (after - cpu) / steps,
        len(ran_in),
        epoch(done.started_at) - start,
        epoch(done.ended_at) - epoch(done.started_at),
        end - epoch(done.ended_at),
    )


def one_slow_plan(url: str, n_workers: int, steps: int, ctx: Context) -> tuple[float, int]:
    """A wide plan of steps that sleep SLOW_STEP: (seconds from execute() to the plan's end,
    how many worker processes ran its steps)."""
    with (
        Workers(url, n_workers, ctx.tmp, ctx.timeout) as workers,
        World(url, executor=None) as client,
    ):
        warm_up(client, workers, ctx.timeout, plans=2 * n_workers)
        plan = client.plan(WideSleep, steps, SLOW_STEP)
        start = time.time()
        done = client.execute(plan.id).result(ctx.timeout)
        assert (done.state, done.result) == ("stopped", "success"), (done.state, done.result)
        pids = {a.output["pid"] for a in done.actions if "pid" in a.output}
    return epoch(done.ended_at) - start, len(pids)


def scenario_slow(ctx: Context) -> None:
    n = ctx.sizes.wide // 10
    first: float | None = None
    for n_workers in ctx.sizes.wide_workers:
        took, ran_in = ctx.median(
            lambda: one_slow_plan(ctx.pg.reset(), n_workers, n, ctx),  # noqa: B023
            lambda r: r[0],
        )
        ideal = n * SLOW_STEP / (THREADS * n_workers)
        label = f"slow: 1 plan x {n:,} steps of {SLOW_STEP * 1000:.0f} ms, {n_workers} worker"
        label += "s" if n_workers > 1 else ""
        figure = f"{took:.2f} s (ideal {ideal:.2f} s), ran in {ran_in} of {n_workers}"
        if first is None:
            first = took
            ctx.report.add(label, figure)
        else:
            ctx.report.add(label, figure, f"(x {first / took:.2f} of 1 worker)")
    ctx.report.notes.append(
        f"slow: steps of {SLOW_STEP * 1000:.0f} ms are offered by the world running the plan "
        "to workers with free threads (quick steps are not: see docs/deployment.md); timed "
        "from execute() to the plan's ended_at."
    )


def scenario_wide(ctx: Context) -> None:
    n = ctx.sizes.wide
    core_wide = ctx.median(
        lambda: core.bench_one_plan(ctx.pg.reset(), core.Wide, n, THREADS), float
    )
    ctx.report.add(
        f"wide: in process, 1 plan x {n:,} (core.bench_one_plan)", f"{core_wide:,.0f} steps/s"
    )
    first: float | None = None
    for n_workers in ctx.sizes.wide_workers:
        run = ctx.median(
            lambda: one_wide_plan(ctx.pg.reset(), n_workers, n, ctx),  # noqa: B023
            lambda r: r.rate,
        )
        cpu = "CPU n/a" if run.cpu is None else f"{run.cpu * 1e6:,.0f} us CPU/step"
        label = f"wide: 1 plan x {n:,}, {n_workers} worker{'s' if n_workers > 1 else ''}"
        figure = (
            f"{run.rate:,.0f} steps/s, {cpu}, ran in {run.ran_in} of {n_workers}; "
            f"start {ms(run.start)}, run {ms(run.run)}, result {ms(run.result)}"
        )
        if first is None:
            first = run.rate
            ctx.report.add(
                label, figure, f">= in process ({core_wide:,.0f})", run.rate >= core_wide
            )
        elif n_workers == 2:
            target = f">= 1.6 x 1 worker ({1.6 * first:,.0f})"
            ctx.report.add(label, figure, target, run.rate >= 1.6 * first)
        else:
            ctx.report.add(label, figure, f"(x {run.rate / first:.2f} of 1 worker)")
    ctx.report.notes.append(
        "wide: no-op steps are not offered to other workers (a round trip through the "
        "database costs more than they do), so one worker runs the whole plan and 2 and 3 "
        "workers are not expected to be faster for it. Timed from "
        "execute() to result() returning, as core.bench_one_plan times it; 'start' is execute() "
        "to the plan running in a worker, 'run' the plan's started_at to its ended_at, 'result' "
        "its end to result() returning (which loads the finished plan, history included)."
    )


def many_plans(url: str, plans: int, ctx: Context, how: str = "trigger") -> tuple[float, float]:
    """(steps/s, seconds the client's calls took), ``plans`` plans of a 5-step sequence, 2
    workers. ``how``:

    * ``trigger``: ``trigger()`` them one after the other; timed from the first call to the
      last plan's end;
    * ``execute``: plan them all first, then the same with ``execute()``;
    * ``queued``: plan and ``execute()`` them all before the workers start; timed from the first
      plan's start to the last one's end (the workers alone);
    * ``threads``: ``trigger()`` them from 4 client threads at once (a web application's
      request threads), timed as ``trigger``.
    """
    with World(url, executor=None) as client:
        queued = how == "queued"
        workers = Workers(url, 2, ctx.tmp, ctx.timeout)
        try:
            if not queued:
                workers.start()
                warm_up(client, workers, ctx.timeout)
            before = client.count_plans(state="stopped", result="success")
            ids = (
                [client.plan(Chain, 5).id for _ in range(plans)]
                if how in ("execute", "queued")
                else []
            )
            start = time.time()
            if ids:
                for plan_id in ids:
                    client.execute(plan_id)
            elif how == "threads":
                with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                    list(pool.map(lambda _: client.trigger(Chain, 5), range(plans)))
            else:
                for _ in range(plans):
                    client.trigger(Chain, 5)
            called = time.time() - start
            if queued:
                workers.start()
            wait_for(
                lambda: client.count_plans(state="stopped") >= before + plans,
                ctx.timeout,
                f"{plans} plans",
                workers.check,
            )
        finally:
            workers.stop()
        good = client.count_plans(state="stopped", result="success") - before
        assert good == plans, f"{plans - good} plans did not succeed"
        (last,) = client.find_plans(order_by="-ended_at", per_page=1)
        if queued:
            (earliest,) = client.find_plans(order_by="started_at", per_page=1)
            start = epoch(earliest.started_at)
    return plans * 5 / (epoch(last.ended_at) - start), called


def in_process_triggered(url: str, plans: int, ctx: Context) -> float:
    """The ``many`` scenario's shape and timing in one process (a threaded world)."""
    with World(url, workers=THREADS, migrate=True) as world:
        for t in [world.trigger(Chain, 5) for _ in range(4)]:
            t.wait(ctx.timeout)
        start = time.perf_counter()
        triggered = [world.trigger(Chain, 5) for _ in range(plans)]
        for t in triggered:
            assert t.wait(ctx.timeout).result == "success"
        return plans * 5 / (time.perf_counter() - start)


def scenario_many(ctx: Context) -> None:
    sizes = ctx.sizes
    core_many = ctx.median(
        lambda: core.bench_many_plans(ctx.pg.reset(), sizes.core_plans, 5, THREADS), float
    )
    ctx.report.add(
        f"many: in process, {sizes.core_plans} plans x 5 (core.bench_many_plans)",
        f"{core_many:,.0f} steps/s",
    )
    same = ctx.median(lambda: in_process_triggered(ctx.pg.reset(), sizes.plans, ctx), float)
    ctx.report.add(
        f"many: in process, {sizes.plans:,} plans x 5 in sequence, triggered",
        f"{same:,.0f} steps/s",
    )
    rate, took = ctx.median(lambda: many_plans(ctx.pg.reset(), sizes.plans, ctx), first)
    ctx.report.add(
        f"many: {sizes.plans:,} plans x 5 in sequence, triggered, 2 workers",
        f"{rate:,.0f} steps/s (the triggers took {took:.1f} s)",
        f">= 3 x in process {sizes.core_plans}x5 ({3 * core_many:,.0f})",
        rate >= 3 * core_many,
    )
    rate, took = ctx.median(lambda: many_plans(ctx.pg.reset(), sizes.plans, ctx, "threads"), first)
    ctx.report.add(
        f"many: {sizes.plans:,} plans x 5 in sequence, triggered from {CLIENT_THREADS} client "
        "threads, 2 workers",
        f"{rate:,.0f} steps/s (the triggers took {took:.1f} s)",
    )
    rate, took = ctx.median(lambda: many_plans(ctx.pg.reset(), sizes.plans, ctx, "execute"), first)
    ctx.report.add(
        f"many: {sizes.plans:,} plans x 5 in sequence, planned first, 2 workers",
        f"{rate:,.0f} steps/s (the execute() calls took {took:.1f} s)",
    )
    rate, _ = ctx.median(lambda: many_plans(ctx.pg.reset(), sizes.plans, ctx, "queued"), first)
    ctx.report.add(
        f"many: {sizes.plans:,} plans x 5 in sequence, queued before the workers start",
        f"{rate:,.0f} steps/s (first plan started -> last ended)",
    )
    ctx.report.notes.append(
        f"many: core.bench_many_plans plans its {sizes.core_plans} plans first and times only "
        "their execution, and its 5 steps are concurrent (core.Wide). The target row is timed "
        "from the first trigger() (planning included, one plan after the other from one client "
        "thread) to the last plan's ended_at, with 5 steps in sequence; 'in process ... "
        "triggered' has its shape and timing in one process. 'planned first' times the "
        "execute() calls and the execution; 'queued' times the two workers alone, from the "
        "first plan's started_at to the last one's ended_at, every request waiting when they "
        f"start. '{CLIENT_THREADS} client threads' is the target row's load triggered from that "
        "many threads of the client at once, as a web application's request threads would."
    )


def scenario_sqlite(ctx: Context) -> None:
    sizes = ctx.sizes
    core_many = ctx.median(
        lambda: core.bench_many_plans(sqlite_reset(ctx.tmp), sizes.core_plans, 5, THREADS), float
    )
    ctx.report.add(
        f"sqlite: in process, {sizes.core_plans} plans x 5 (core.bench_many_plans)",
        f"{core_many:,.0f} steps/s",
    )
    rate, took = ctx.median(lambda: many_plans(sqlite_reset(ctx.tmp), sizes.plans, ctx), first)
    ctx.report.add(
        f"sqlite: {sizes.plans:,} plans x 5 in sequence, triggered, 2 workers",
        f"{rate:,.0f} steps/s (the triggers took {took:.1f} s)",
        "(reference)",
    )


def scenario_events(ctx: Context) -> None:
    n = ctx.sizes.events
    url = ctx.pg.reset()
    with (
        Workers(url, 2, ctx.tmp, ctx.timeout) as workers,
        World(url, executor=None) as client,
        database(url) as engine,
    ):
        warm_up(client, workers, ctx.timeout)
        triggered = client.trigger(Listener)
        plan = client.get_plan(triggered.plan_id)
        step = next(s for s in plan.steps if s.kind == "run")
        actions = sa.table(
            "dynaflow_actions", sa.column("plan_id"), sa.column("id"), sa.column("output")
        )
        read = sa.select(actions.c.output).where(
            actions.c.plan_id == plan.id, actions.c.id == step.action_id
        )

        def output() -> dict[str, Any]:
            with engine.connect() as conn:
                value = conn.execute(read).scalar_one()
            return value if isinstance(value, dict) else {}

        wait_for(
            lambda: client.get_plan(plan.id).step(step.id).state == "suspended",
            ctx.timeout,
            "the listener to suspend",
            workers.check,
        )
        warm = 5
        latencies, calls = [], []
        for i in range(warm + n):
            sent = time.time()
            client.event(plan.id, step.id, i)
            returned = time.time()
            # the step records the time in its output, saved when it suspends again
            seen = wait_for(
                lambda key=str(i): output().get(key), ctx.timeout, f"event {i}", workers.check
            )
            if i >= warm:
                latencies.append(seen - sent)
                calls.append(returned - sent)
        client.event(plan.id, step.id, "stop")
        done = triggered.wait(ctx.timeout)
        assert done.result == "success", done.result
    p50, p99 = percentiles(latencies)
    ctx.report.add(f"events: event() -> run(event), p50 of {n}", ms(p50), "< 10 ms", p50 < 0.010)
    ctx.report.add(f"events: event() -> run(event), p99 of {n}", ms(p99), "< 50 ms", p99 < 0.050)
    ctx.report.add("events: of which the event() call, p50", ms(statistics.median(calls)))


def scenario_handoff(ctx: Context) -> None:
    n = ctx.sizes.handoffs
    url = ctx.pg.reset()
    latencies: list[float] = []
    calls: list[float] = []
    claims: list[float] = []
    starts: list[float] = []
    with Workers(url, 2, ctx.tmp, ctx.timeout) as workers, World(url, executor=None) as client:
        warm_up(client, workers, ctx.timeout)
        warm = 5
        for i in range(warm + n):
            start = time.time()
            triggered = client.trigger(Stamp)
            returned = time.time()
            done = triggered.wait(ctx.timeout)
            assert done.result == "success", done.result
            at = next(a.output["at"] for a in done.actions if "at" in a.output)
            if i >= warm:
                latencies.append(at - start)
                calls.append(returned - start)
                claims.append(epoch(done.started_at) - returned)
                starts.append(at - epoch(done.started_at))
            workers.check()
    p50, p99 = percentiles(latencies)
    ctx.report.add(f"handoff: trigger() -> run(), p50 of {n}", ms(p50), "< 20 ms", p50 < 0.020)
    ctx.report.add(f"handoff: trigger() -> run(), p99 of {n}", ms(p99))
    ctx.report.add("handoff: of which the trigger() call, p50", ms(statistics.median(calls)))
    ctx.report.add(
        "handoff: of which trigger() returned -> plan running in a worker, p50",
        ms(statistics.median(claims)),
    )
    ctx.report.add(
        "handoff: of which plan running -> run() in the worker, p50", ms(statistics.median(starts))
    )


def scenario_children(ctx: Context) -> None:
    n = ctx.sizes.children
    url = ctx.pg.reset()
    with Workers(url, 2, ctx.tmp, ctx.timeout) as workers, World(url, executor=None) as client:
        warm_up(client, workers, ctx.timeout)
        cpu = workers.cpu()
        plan = client.trigger(Children, n).wait(ctx.timeout)
        cpu = (workers.cpu() or 0.0) - (cpu or 0.0)
        assert plan.result == "success", plan.result
        good = client.count_plans(parent=plan.id, result="success")
        assert good == n, f"{n - good} children did not succeed"
    output = plan.actions[0].output
    rate = n / (epoch(plan.ended_at) - epoch(plan.started_at))
    ctx.report.add(
        f"children: {n:,} sub-plans, concurrency 50, 2 workers",
        f"{rate:,.0f} children/s",
        ">= 500 children/s",
        rate >= 500,
    )
    ctx.report.add(
        "children: the parent's run step per child",
        f"{1000 * output['busy'] / n:.2f} ms ({output['wakes']:,} wakes)",
    )
    ctx.report.add("children: CPU of both workers per child", f"{1000 * cpu / n:.2f} ms")
    ctx.report.notes.append(
        "children: timed from the parent plan's started_at to its ended_at; each child is a "
        "plan of one no-op step, planned by the parent 100 at a time and started on either "
        "worker; 'per child' divides the parent step's run time (all its wakes) by the children."
    )


RUN: dict[str, Callable[[Context], None]] = {
    "wide": scenario_wide,
    "slow": scenario_slow,
    "many": scenario_many,
    "events": scenario_events,
    "handoff": scenario_handoff,
    "children": scenario_children,
    "sqlite": scenario_sqlite,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=PG_URL, help="PostgreSQL URL (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(SCENARIOS)}); repeatable or comma-separated",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per throughput figure (median kept)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds any one wait may take"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    only = [name for value in args.only or [] for name in value.split(",") if name]
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    chosen = [name for name in SCENARIOS if not only or name in only]

    # SIGTERM unwinds like Ctrl-C, so the workers are stopped and the schema dropped
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    report = Report()
    pg = Postgres(args.url)
    with tempfile.TemporaryDirectory(prefix="dynaflow-cluster-bench-") as tmp:
        sizes = QUICK if args.quick else FULL
        ctx = Context(sizes, pg, tmp, args.timeout, report, args.repeat)
        try:
            for name in chosen:
                try:
                    RUN[name](ctx)
                except Exception as exc:
                    traceback.print_exc()
                    report.failed.append(name)
                    report.add(name, f"FAILED: {type(exc).__name__}: {exc}"[:120])
        finally:
            pg.drop()

    print_table(("scenario", "figure", "target", "met"), [row.cells() for row in report.rows])
    for note in report.notes:
        print(f"\nnote: {note}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
