"""Core engine benchmark: planning time, no-op step throughput, and the raw storage limit.

    python benchmarks/core.py                 # SQLite and PostgreSQL
    python benchmarks/core.py --backends sqlite --steps 500
    python benchmarks/core.py --observability # step figures also with metrics and tracing on

Prints one table. Figures from one run are comparable with each other (the raw SQLAlchemy
limit is measured in the same run); absolute numbers depend on the machine. Each step figure
also gives the CPU this process spent per step (every thread; the database server's own work
is not in it): on a shared machine it moves much less between runs than the rate, so it is the
figure to compare two versions by.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from dynaflow import Action, World

PG_URL = os.environ.get(
    "DYNAFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PG_SCHEMA = "dynaflow_bench"


class Noop(Action):
    def run(self) -> None:
        pass


class Wide(Action):
    """``n`` no-op actions, all concurrent."""

    def plan(self, n: int) -> None:
        for _ in range(n):
            self.plan_action(Noop)


class Chain(Action):
    """``n`` no-op actions in one sequence."""

    def plan(self, n: int) -> None:
        with self.sequence():
            for _ in range(n):
                self.plan_action(Noop)


class Tree(Action):
    """``n`` actions: a sequence of concurrences with inputs, and a reference per group."""

    def plan(self, n: int) -> None:
        with self.sequence():
            previous = None
            for group in range(n // 10):
                with self.concurrence():
                    for i in range(10):
                        child = self.plan_action(Item, group=group, i=i, after=previous)
                previous = child.output.value


class Item(Action):
    def plan(self, group: int, i: int, after: Any = None) -> None:
        self.plan_self(group=group, i=i, after=after)

    def run(self) -> None:
        self.output["value"] = self.input["i"]


# -- backends ---------------------------------------------------------------------------------


def sqlite_url(tmp: str, name: str) -> str:
    return f"sqlite:///{os.path.join(tmp, name)}.db"


def pg_url(_tmp: str, _name: str) -> str:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {PG_SCHEMA}"))
    engine.dispose()
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{PG_SCHEMA}"


BACKENDS: dict[str, Callable[[str, str], str]] = {"sqlite": sqlite_url, "postgres": pg_url}


# -- measurements -----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


class Rate(float):
    """Steps per second, and ``cpu``: the seconds of CPU this process spent per step meanwhile
    (every thread: the engine's own work, not the database server's). On a shared, noisy
    machine the CPU per step moves much less from run to run than the rate does."""

    cpu: float


def rate(steps: int, fn: Callable[[], Any]) -> Rate:
    """Time ``fn`` running ``steps`` steps."""
    cpu = time.process_time()
    seconds, _ = timed(fn)
    figure = Rate(steps / seconds)
    figure.cpu = (time.process_time() - cpu) / steps
    return figure


def bench_planning(url: str, actions: int) -> float:
    with World(url, executor=None, migrate=True) as world:
        world.plan(Tree, 100)  # warm up
        seconds, plan = timed(lambda: world.plan(Tree, actions))
        assert plan.state == "planned", plan.error
        return seconds


#: what a measured world is given: metrics, tracing (see :data:`SETUPS`)
Setup = Callable[[World], Any]


def plain(world: World) -> None:
    pass


def with_metrics(world: World) -> None:
    from prometheus_client import CollectorRegistry

    from dynaflow import metrics

    metrics.install(world, registry=CollectorRegistry())


def with_metrics_and_tracing(world: World) -> None:
    """Metrics, and spans made by the OpenTelemetry SDK (sampled, then dropped: no exporter)."""
    from opentelemetry.sdk.trace import TracerProvider

    from dynaflow.middleware import TracingMiddleware

    with_metrics(world)
    world.middleware.use(TracingMiddleware(TracerProvider()))


SETUPS: dict[str, Setup] = {
    "": plain,
    "with metrics": with_metrics,
    "with metrics and tracing": with_metrics_and_tracing,
}


def bench_one_plan(url: str, cls: type[Action], n: int, workers: int, setup: Setup = plain) -> Rate:
    with World(url, workers=workers, migrate=True) as world:
        setup(world)
        world.trigger(cls, 20).wait(120)  # warm up
        plan = world.plan(cls, n)

        def run() -> None:
            done = world.execute(plan.id).result(600)
            assert (done.state, done.result) == ("stopped", "success"), (done.state, done.result)

        return rate(n, run)


def bench_many_plans(url: str, plans: int, size: int, workers: int, setup: Setup = plain) -> Rate:
    with World(url, workers=workers, migrate=True) as world:
        setup(world)
        world.trigger(Wide, size).wait(60)
        ids = [world.plan(Wide, size).id for _ in range(plans)]

        def run() -> None:
            futures = [world.execute(plan_id) for plan_id in ids]
            for future in futures:
                assert future.result(600).result == "success"

        return rate(plans * size, run)


def bench_raw(url: str, n: int, batch: int = 100) -> float:
    """The storage limit: n steps each written running then success, in transactions of
    ``batch`` steps, with plain SQLAlchemy Core executemany (no engine, no history)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: Any) -> None:
            dbapi.execute("PRAGMA journal_mode=WAL")
            dbapi.execute("PRAGMA synchronous=NORMAL")

    meta = sa.MetaData()
    table = sa.Table(
        "raw_steps",
        meta,
        sa.Column("plan_id", sa.String(36), primary_key=True),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(16)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    meta.drop_all(engine)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert(), [{"plan_id": "p", "id": i, "state": "pending"} for i in range(n)]
        )
    update = (
        table.update()
        .where(table.c.plan_id == sa.bindparam("p"), table.c.id == sa.bindparam("i"))
        .values(state=sa.bindparam("s"), started_at=sa.func.now())
    )
    start = time.perf_counter()
    for first in range(0, n, batch):
        ids = range(first, min(first + batch, n))
        with engine.begin() as conn:
            conn.execute(update, [{"p": "p", "i": i, "s": "running"} for i in ids])
        with engine.begin() as conn:
            conn.execute(update, [{"p": "p", "i": i, "s": "success"} for i in ids])
    seconds = time.perf_counter() - start
    meta.drop_all(engine)
    engine.dispose()
    return n / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--steps", type=int, default=1000, help="steps per single-plan run")
    parser.add_argument("--plan-actions", type=int, default=10_000)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median kept)")
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure the step figures also with dynaflow.metrics installed, and with metrics "
        "and the TracingMiddleware (needs opentelemetry-sdk)",
    )
    args = parser.parse_args(argv)

    rows: list[tuple[str, str, str, str, str]] = []
    tmp = tempfile.mkdtemp(prefix="dynaflow-bench-")
    try:
        for backend in args.backends.split(","):
            make = BACKENDS[backend]

            def median(fn: Callable[[Callable[[str, str], str]], float]) -> float:
                return statistics.median(fn(make) for _ in range(args.repeat))  # noqa: B023

            raw = median(lambda make: bench_raw(make(tmp, "raw"), args.steps * 5))
            raw_single = median(lambda make: bench_raw(make(tmp, "raw1"), args.steps, batch=1))
            planning = median(lambda make: bench_planning(make(tmp, "plan"), args.plan_actions))
            rows.append(
                (backend, f"planning {args.plan_actions:,} actions", f"{planning:.2f} s", "", "")
            )
            setups = SETUPS if args.observability else {"": plain}
            measures: list[tuple[str, Callable[[Setup], Rate]]] = [
                (
                    f"1 plan, {args.steps:,} concurrent steps",
                    lambda setup: bench_one_plan(
                        make(tmp, "wide"),  # noqa: B023
                        Wide,
                        args.steps,
                        args.workers,
                        setup,
                    ),
                ),
                (
                    f"1 plan, sequence of {args.steps:,}",
                    lambda setup: bench_one_plan(
                        make(tmp, "chain"),  # noqa: B023
                        Chain,
                        args.steps,
                        args.workers,
                        setup,
                    ),
                ),
                (
                    f"{args.plans} plans x 5 steps",
                    lambda setup: bench_many_plans(
                        make(tmp, "many"),  # noqa: B023
                        args.plans,
                        5,
                        args.workers,
                        setup,
                    ),
                ),
            ]
            for label, measure in measures:
                # the variants take turns, so that a slow moment of the machine hits them alike
                figures: dict[str, list[Rate]] = {suffix: [] for suffix in setups}
                for _ in range(args.repeat):
                    for suffix, setup in setups.items():
                        figures[suffix].append(measure(setup))
                for suffix in setups:
                    figure = statistics.median(figures[suffix])
                    cpu = statistics.median(f.cpu for f in figures[suffix])
                    rows.append(
                        (
                            backend,
                            f"{label}, {suffix}" if suffix else label,
                            f"{figure:,.0f} steps/s",
                            f"{figure / raw:.2f}",
                            f"{cpu * 1e6:,.0f} us",
                        )
                    )
            rows += [
                (
                    backend,
                    "raw SQLAlchemy Core (2 batched updates/step)",
                    f"{raw:,.0f} steps/s",
                    "1.00",
                    "",
                ),
                (
                    backend,
                    "raw SQLAlchemy Core, unbatched (1 transaction per state change)",
                    f"{raw_single:,.0f} steps/s",
                    f"{raw_single / raw:.2f}",
                    "",
                ),
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print_table(("backend", "measure", "figure", "x raw", "CPU/step (this process)"), rows)
    return 0


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell, a dashed rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


if __name__ == "__main__":
    sys.exit(main())
