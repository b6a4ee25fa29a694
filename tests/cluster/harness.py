"""Parent-side helpers of the cluster tests: a PostgreSQL schema (or SQLite file) per test,
``dynaflow worker`` and ``dynaflow plans ...`` subprocesses, the runs the steps recorded
(:mod:`.actions`), reading the database with plain SQL, seeds, and bounded waits.

Every wait here is bounded (:data:`WAIT`); a worker that exits before it registers, or a wait
that runs out, fails the test with the worker's log.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from dynaflow.persistence import migrate, tables

from .actions import RUNS_ENV

#: how long a test waits for anything (a worker to start or stop, plans to end)
WAIT = 60.0
#: tests/ (on the workers' PYTHONPATH, so that they import ``cluster.actions``)
TESTS = Path(__file__).resolve().parents[1]

T = TypeVar("T")


# -- seeds and waits ---------------------------------------------------------------------------


def base_seed(name: str) -> int:
    """The seed of a randomized test: ``DYNAFLOW_CLUSTER_SEED`` if set (to replay a run), else
    random. Printed, so that a failure can be replayed."""
    seed = int(os.environ.get("DYNAFLOW_CLUSTER_SEED") or random.SystemRandom().randrange(10**6))
    print(f"{name}: seed {seed} (replay with DYNAFLOW_CLUSTER_SEED={seed})")
    return seed


def rounds(default: int) -> int:
    """How many rounds a looping test runs: ``DYNAFLOW_CLUSTER_ROUNDS`` or ``default``."""
    return int(os.environ.get("DYNAFLOW_CLUSTER_ROUNDS") or default)


def wait_until(
    get: Callable[[], T], ok: Callable[[T], bool], what: str, timeout: float = WAIT
) -> T:
    """Poll ``get()`` until ``ok(value)``; fail (``AssertionError`` with the last value) if that
    takes more than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s; last seen: {value!r}")
        time.sleep(0.05)


# -- databases ---------------------------------------------------------------------------------


def schema_url(admin: sa.Engine, schema: str, application_name: str | None = None) -> str:
    """The admin engine's database, with ``schema`` as the search path (and sessions named
    ``application_name``, if given, so that a test can find and terminate exactly them)."""
    query = {"options": f"-csearch_path={schema}"}
    if application_name is not None:
        query["application_name"] = application_name
    return admin.url.update_query_dict(query).render_as_string(hide_password=False)


@contextmanager
def postgres_schema(admin: sa.Engine, *, migrated: bool = True) -> Iterator[tuple[str, str]]:
    """``(schema, url)`` of a PostgreSQL schema of its own, migrated to head; dropped at the end
    (after the test's processes are gone)."""
    schema = f"dynaflow_cluster_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = schema_url(admin, schema)
    try:
        if migrated:
            migrate.upgrade(url)
        yield schema, url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


# -- processes ---------------------------------------------------------------------------------


def environment(runs: Path) -> dict[str, str]:
    """A subprocess's environment: tests/ on PYTHONPATH, the runs directory for the steps."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, RUNS_ENV: str(runs), "COLUMNS": "250"}


class Worker:
    """A ``dynaflow worker`` process; its output goes to ``<directory>/<name>.log``."""

    def __init__(
        self,
        url: str,
        directory: Path,
        name: str,
        *,
        imports: Sequence[str] = ("cluster.actions",),
        queues: Sequence[str] = (),
        lease: float = 2.0,
        grace: float = 30.0,
    ) -> None:
        self.url = url
        self.name = name
        self.log = directory / f"{name}.log"
        self.runs = directory / "runs"
        self.runs.mkdir(exist_ok=True)
        args = [sys.executable, "-m", "dynaflow.cli", "worker", "--url", url]
        for module in imports:
            args += ["--import", module]
        for queue in queues:
            args += ["--queue", queue]
        args += ["--lease", str(lease), "--grace", str(grace)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args,
                cwd=directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment(self.runs),
            )
        self.pid = self.process.pid
        #: its id in the worlds table, once it registered (see :meth:`registered`)
        self.world_id = ""

    def __repr__(self) -> str:
        return f"<Worker {self.name} pid {self.pid} world {self.world_id or '?'}>"

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def registered(self, db: Database, timeout: float = WAIT) -> str:
        """Wait until the worker's world is in the worlds table; its world id."""
        deadline = time.monotonic() + timeout
        while True:
            for world_id, pid in db.worlds().items():
                if pid == self.pid:
                    self.world_id = world_id
                    return world_id
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) before it registered:\n"
                    + self.output()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not register within {timeout}s:\n" + self.output()[-3000:]
                )
            time.sleep(0.05)

    def runs_world(self, world_id: str | None) -> bool:
        """Whether ``world_id`` is this worker's world (under any incarnation: a world declared
        dead goes on as ``<id>~1``)."""
        return bool(world_id) and str(world_id).split("~")[0] == self.world_id

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)

    def wait(self, timeout: float = WAIT) -> int:
        """Its exit status (failing if it does not exit within ``timeout``)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s:\n" + self.output()[-3000:]
            ) from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        stop(self.process)


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM ``process``, then SIGKILL if it does not exit within :data:`WAIT`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)


@contextmanager
def workers(url: str, directory: Path) -> Iterator[Callable[..., Worker]]:
    """``start(name, **options)`` starts a :class:`Worker`; all are stopped at the end."""
    started: list[Worker] = []

    def start(name: str, **options: Any) -> Worker:
        worker = Worker(url, directory, name, **options)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.signal(signal.SIGTERM)
        for worker in started:
            worker.stop()


def dynaflow(
    *args: str, directory: Path, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    """Run a ``dynaflow`` command (an operator's) to its end."""
    return subprocess.run(
        [sys.executable, "-m", "dynaflow.cli", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(directory / "runs"),
    )


def dynaflow_started(*args: str, directory: Path) -> subprocess.Popen[str]:
    """Start a ``dynaflow`` command that waits for something the test does next."""
    return subprocess.Popen(
        [sys.executable, "-m", "dynaflow.cli", *args],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(directory / "runs"),
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The error line of a command that failed as it should: exit code ``code`` (2 bad input,
    3 the database could not do it: docs/cli.md), one line on stderr starting ``error:``, no
    traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# -- what the steps recorded -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    what: str
    plan: str
    step: int
    name: str | None
    world: str
    pid: int
    #: the wall clock (``time.time()``) when it was recorded
    at: float
    event: Any = None


def read_runs(directory: Path) -> list[Run]:
    """Every record the steps of every worker process made (``runs-<pid>.jsonl`` files),
    oldest first."""
    found = []
    for path in sorted((directory / "runs").glob("runs-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():  # a SIGKILL can leave no partial line: one write() per record
                found.append(Run(**json.loads(line)))
    return sorted(found, key=lambda run: run.at)


def starts(runs: list[Run]) -> dict[tuple[str, int], list[Run]]:
    """The ``start`` records of each ``(plan, step)``."""
    by_step: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for run in runs:
        if run.what == "start":
            by_step[(run.plan, run.step)].append(run)
    return by_step


# -- reading the database ----------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    plan_id: str
    id: int
    kind: str
    action_class: str
    state: str
    world_id: str | None
    error: Any


class Database:
    """Reads dynaflow's tables with plain SQL (no World in between)."""

    def __init__(self, url: str) -> None:
        args = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, poolclass=sa.NullPool, **args)

    def close(self) -> None:
        self.engine.dispose()

    def _rows(self, statement: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement).all())

    def worlds(self) -> dict[str, int]:
        """``world id -> pid`` of the registered worlds."""
        W = tables.worlds
        return {r.id: r.pid for r in self._rows(sa.select(W.c.id, W.c.pid))}

    def stale_worlds(self) -> set[str]:
        """The registered worlds whose lease ran out, on the database's clock (PostgreSQL)."""
        W = tables.worlds
        stale = W.c.expires_at < sa.func.clock_timestamp()
        return {r.id for r in self._rows(sa.select(W.c.id).where(stale))}

    def plans(self) -> dict[str, tuple[str, str, str | None]]:
        """``plan id -> (state, result, world_id)`` of every plan."""
        P = tables.plans
        rows = self._rows(sa.select(P.c.id, P.c.state, P.c.result, P.c.world_id))
        return {r.id: (r.state, r.result, r.world_id) for r in rows}

    def plan_states(self, plan_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        plans = self.plans()
        return {p: plans[p][:2] for p in plan_ids}

    def steps(self, plan_id: str | None = None) -> list[StepRow]:
        S = tables.steps
        query = sa.select(
            S.c.plan_id, S.c.id, S.c.kind, S.c.action_class, S.c.state, S.c.world_id, S.c.error
        ).order_by(S.c.plan_id, S.c.id)
        if plan_id is not None:
            query = query.where(S.c.plan_id == plan_id)
        return [
            StepRow(r.plan_id, r.id, r.kind, r.action_class, r.state, r.world_id, _json(r.error))
            for r in self._rows(query)
        ]

    def run_steps(self, plan_id: str) -> dict[str, StepRow]:
        """The plan's run steps by the ``name`` of their action's input."""
        A = tables.actions
        names = {
            r.id: _json(r.input).get("name")
            for r in self._rows(sa.select(A.c.id, A.c.input).where(A.c.plan_id == plan_id))
        }
        S = tables.steps
        action_of = {
            r.id: r.action_id
            for r in self._rows(sa.select(S.c.id, S.c.action_id).where(S.c.plan_id == plan_id))
        }
        return {names[action_of[s.id]]: s for s in self.steps(plan_id) if s.kind == "run"}

    def history(self, event: str | None = None) -> list[tuple[str, str, int | None, str | None]]:
        """``(plan_id, event, step_id, world_id)`` of the history rows (of ``event``), in
        order."""
        H = tables.history
        query = sa.select(H.c.plan_id, H.c.event, H.c.step_id, H.c.world_id).order_by(H.c.id)
        if event is not None:
            query = query.where(H.c.event == event)
        return [(r.plan_id, r.event, r.step_id, r.world_id) for r in self._rows(query)]

    def step_running(self) -> dict[tuple[str, int], list[str | None]]:
        """The worlds of each ``(plan, step)``'s "step running" history rows, in order."""
        by_step: dict[tuple[str, int], list[str | None]] = defaultdict(list)
        for plan_id, _, step_id, world_id in self.history("step running"):
            assert step_id is not None
            by_step[(plan_id, step_id)].append(world_id)
        return by_step

    def open_requests(self) -> list[dict[str, Any]]:
        R = tables.requests
        rows = self._rows(
            sa.select(R.c.id, R.c.plan_id, R.c.kind, R.c.world_id, R.c.taken_by, R.c.declined)
            .where(R.c.answered_at.is_(None))
            .order_by(R.c.id)
        )
        return [
            {
                "id": r.id,
                "plan_id": r.plan_id,
                "kind": r.kind,
                "world_id": r.world_id,
                "taken_by": r.taken_by,
                "declined": _json(r.declined) or {},
            }
            for r in rows
        ]

    def wait_ended(
        self, plan_ids: Sequence[str], timeout: float = WAIT
    ) -> dict[str, tuple[str, str]]:
        """Wait until every plan is stopped or paused; their ``(state, result)``."""
        return wait_until(
            lambda: self.plan_states(plan_ids),
            lambda states: all(s in ("stopped", "paused") for s, _ in states.values()),
            f"{len(plan_ids)} plans end",
            timeout,
        )


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
