"""One crash run: plan, start a child process executing the plan, SIGKILL it after a delay,
finish the plan in a new World (as an operator would), and check what happened.

The checks (:func:`check`), for one plan against the same plan run without a crash:

* the plan ends ``stopped``/``success`` with every run step ``success``: no step is lost;
* outputs and step states equal those of the uncrashed run;
* every step succeeded exactly once (one ``step success`` history row each);
* side effects: exactly one per step, done by the world that finished the step, except an
  idempotent step that was interrupted (running at the kill), which may have two — at most one
  by the killed world and exactly one by the world that ran it again — and a non-idempotent one
  whose work the operator acknowledged (done once, by the killed world);
* steps suspended at the kill did their work once, in the new world, when their timer fired;
* the steps running at the kill were recovered as the issue says: idempotent ones went back to
  ``pending`` ("interrupted ... idempotent, so it runs again"), the others became ``error``
  "abnormal termination" and were left to the operator (plan ``paused``), and nothing else was.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dynaflow import ExecutionPlan, World
from dynaflow.clock import now
from dynaflow.persistence import migrate

from . import workload
from .child import process_main as child_main
from .workload import CrashPlan, Effects

#: the lease of every world in these tests (heartbeats every lease / 3)
LEASE = 0.5
WORKERS = 4
#: how long a test waits for anything (a child to start, a plan to end)
WAIT = 60.0


# -- databases -------------------------------------------------------------------------------


@contextmanager
def sqlite_database(template: Path, directory: Path, name: str) -> Iterator[str]:
    """A migrated SQLite file of its own (a copy of ``template``) with the effects tables."""
    path = directory / f"{name}.db"
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    _create_effects(url)
    yield url


@contextmanager
def postgres_database(admin: sa.Engine, base_url: str) -> Iterator[str]:
    """A PostgreSQL schema of its own (connection option ``search_path``), migrated, with the
    effects tables; dropped at the end."""
    schema = f"dynaflow_crash_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = (
        sa.make_url(base_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        migrate.upgrade(url)
        _create_effects(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def _create_effects(url: str) -> None:
    effects = Effects(url)
    try:
        effects.create_tables()
    finally:
        effects.close()


# -- the child process -----------------------------------------------------------------------


@dataclass
class Child:
    world_id: str = ""
    #: seconds from "executing" to "done" (uncrashed runs only)
    duration: float | None = None
    killed: bool = False
    #: when the SIGKILL was sent
    killed_at: datetime | None = None
    #: seconds after "executing" that it was killed
    kill_delay: float | None = None


#: how the child process is started: "forkserver" (default: forked from a server process that
#: imported dynaflow once; it runs no threads and holds no connections) or "spawn" (a fresh
#: interpreter each time, ~0.7 s of CPU more per run)
START_METHOD = os.environ.get("DYNAFLOW_CRASH_START_METHOD", "forkserver")
_context_lock = threading.Lock()
_context: Any = None


#: what the fork server imports once (it does not see the tests' sys.path, only installed
#: packages; the children import this package themselves)
_PRELOAD = [
    "dynaflow",
    "dynaflow.persistence.sql",
    "dynaflow.persistence.migrate",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
]


def _plugins() -> list[str]:
    """Modules of the installed dynaflow plugins (every World loads them)."""
    from importlib.metadata import entry_points

    from dynaflow.registry import ENTRY_POINT_GROUP

    return sorted({ep.module for ep in entry_points(group=ENTRY_POINT_GROUP)})


def start_method() -> Any:
    """The multiprocessing context the children are started with."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context(START_METHOD)
            if START_METHOD == "forkserver":
                context.set_forkserver_preload(_PRELOAD + _plugins())
            _context = context
        return _context


def run_child(
    url: str,
    plan_id: str,
    log: Path,
    kill_after: float | None = None,
    lease: float = LEASE,
    tag: str = "dynaflow-crash-child",
) -> Child:
    """Run ``child.py`` on the plan in a process of its own; SIGKILL it ``kill_after`` seconds
    after it asked for the plan to be executed (``None``: let it finish). On PostgreSQL its
    sessions are named ``tag`` (``application_name``)."""
    if not url.startswith("sqlite"):  # see settle()
        url = (
            sa.make_url(url)
            .update_query_dict({"application_name": tag})
            .render_as_string(hide_password=False)
        )
    context = start_method()
    reports, conn = context.Pipe(duplex=False)
    process = context.Process(
        target=child_main,
        args=(url, plan_id, lease, WORKERS, conn, str(log)),
        name=f"crash-child-{tag}",
        daemon=True,
    )
    child = Child()
    process.start()
    conn.close()

    def report(expect: str) -> tuple[Any, ...]:
        message: tuple[Any, ...] = ()
        if reports.poll(WAIT):
            try:
                message = reports.recv()
            except EOFError:
                pass
        if not message or message[0] != expect:
            process.join(1)
            raise ChildFailed(
                f"child {process.pid} sent {message or 'nothing'}, expected {expect!r} "
                f"(exit code {process.exitcode})",
                log,
            )
        return message

    def gone() -> list[tuple[Any, ...]]:
        """The reports still in the pipe, once it is closed: the child is dead (nothing else
        holds its end). Its exit code is not relied upon: under load, Python < 3.14's fork
        server may report 255 for a killed child (CPython issue #140867)."""
        left: list[tuple[Any, ...]] = []
        while True:
            if not reports.poll(WAIT):
                raise ChildFailed(f"child {process.pid} still alive after {WAIT}s", log)
            try:
                left.append(reports.recv())
            except EOFError:
                return left

    try:
        child.world_id = report("world")[1]
        report("executing")
        if kill_after is None:
            child.duration = report("done")[1]
            gone()
        else:
            start = time.perf_counter()
            time.sleep(kill_after)
            child.killed_at = now()
            if process.exitcode is None:  # else it ended and was reaped: its pid is free
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            child.kill_delay = time.perf_counter() - start
            # a child that reported "done" had finished the plan when the SIGKILL came
            child.killed = not any(message[0] == "done" for message in gone())
        process.join(WAIT)
        if process.exitcode not in (0, -signal.SIGKILL, 255):
            raise ChildFailed(f"child exited with {process.exitcode}", log)
    finally:
        if process.exitcode is None:
            process.kill()
            process.join()
        reports.close()
        process.close()
    return child


class ChildFailed(AssertionError):
    def __init__(self, message: str, log: Path) -> None:
        text = log.read_text()[-4000:] if log.exists() else "(no log)"
        super().__init__(f"{message}\n--- child log {log} ---\n{text}")


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Reference:
    """The plan run without a crash."""

    duration: float
    outputs: dict[int, Any]
    states: dict[int, tuple[str, str]]


@dataclass
class Outcome:
    seed: int
    kill_delay: float = 0.0
    #: False: the child had finished (and exited) before the SIGKILL
    killed: bool = True
    #: the plan's state in the database right after the kill
    state_at_kill: str = ""
    running_at_kill: list[int] = field(default_factory=list)
    suspended_at_kill: list[int] = field(default_factory=list)
    #: timers (planned events) waiting in the database at the kill
    timers_at_kill: int = 0
    interrupted: list[int] = field(default_factory=list)
    abnormal: list[int] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    ran_twice: list[int] = field(default_factory=list)
    #: kill -> the plan's "plan running" history row written by the new world
    takeover: float | None = None
    resumes: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        takeover = f"{self.takeover:.2f}s" if self.takeover is not None else "-"
        text = (
            f"seed={self.seed} kill@{self.kill_delay:.3f}s{'' if self.killed else '(exited)'} "
            f"state={self.state_at_kill} "
            f"running={len(self.running_at_kill)} suspended={len(self.suspended_at_kill)} "
            f"timers={self.timers_at_kill} reran={len(self.interrupted)} "
            f"twice={len(self.ran_twice)} abnormal={len(self.abnormal)} "
            f"acked={len(self.acknowledged)} resumes={self.resumes} takeover={takeover} "
            f"({self.seconds:.1f}s)"
        )
        if self.problems:
            text += " FAILED:\n    " + "\n    ".join(self.problems)
        return text


def reference_run(url: str, timers: bool, log: Path) -> Reference:
    """Run the plan in a child without killing it; its final state is the reference."""
    with World(url, executor=None) as client:
        plan_id = client.plan(CrashPlan, timers=timers).id
        child = run_child(url, plan_id, log)
        plan = client.get_plan(plan_id)
    assert (plan.state, plan.result) == ("stopped", "success"), (plan.state, plan.result)
    effects = Effects(url)
    try:
        rows = effects.rows(plan_id)
    finally:
        effects.close()
    runs = [s.id for s in plan.steps if s.kind == "run"]
    assert len(runs) == workload.STEPS
    assert {step_id: len(worlds) for step_id, worlds in rows.items()} == dict.fromkeys(runs, 1)
    assert child.duration is not None
    return Reference(child.duration, outputs_of(plan), states_of(plan))


def outputs_of(plan: ExecutionPlan) -> dict[int, Any]:
    return {a.id: (a.action_class, a.output) for a in plan.actions}


def states_of(plan: ExecutionPlan) -> dict[int, tuple[str, str]]:
    return {s.id: (str(s.kind), str(s.state)) for s in plan.steps}


def crash_run(
    url: str, seed: int, reference: Reference, timers: bool, log: Path, lease: float = LEASE
) -> Outcome:
    """Kill a child executing the plan at a random point (seeded), finish the plan in a new
    world, and check it against ``reference``. Problems are collected in the outcome."""
    started = time.perf_counter()
    rng = random.Random(seed)
    outcome = Outcome(seed)
    effects = Effects(url)
    try:
        with World(url, executor=None) as client:
            plan_id = client.plan(CrashPlan, timers=timers).id
            tag = f"dynaflow-crash-{uuid.uuid4().hex[:12]}"
            # within the first 70% of an uncrashed run: a loaded machine runs the reference
            # slower than the crash runs, and a kill after the plan ended tests nothing
            delay = rng.uniform(0, 0.7 * reference.duration)
            child = run_child(url, plan_id, log, kill_after=delay, lease=lease, tag=tag)
            outcome.kill_delay = child.kill_delay or 0.0
            outcome.killed = child.killed
            settle(effects, tag)
            at_kill = client.get_plan(plan_id)
            events_at_kill = client.storage.plan_events(plan_id)
        outcome.state_at_kill = str(at_kill.state)
        outcome.running_at_kill = sorted(s.id for s in at_kill.steps if s.state == "running")
        outcome.suspended_at_kill = sorted(s.id for s in at_kill.steps if s.state == "suspended")
        outcome.timers_at_kill = sum(e.due_at is not None for e in events_at_kill)
        world = World(url, workers=WORKERS, lease=lease)
        workload.bind(world, effects)
        try:
            final = finish(world, effects, plan_id, at_kill, outcome)
            left = world.storage.plan_events(plan_id)
            if left:
                outcome.problems.append(f"events left after the plan ended: {left}")
        finally:
            workload.unbind(world)
            world.close(timeout=10)
        check(final, child, effects.rows(plan_id), reference, world.id, outcome)
    except Exception as exc:
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        effects.close()
    outcome.seconds = time.perf_counter() - started
    if outcome.problems:
        outcome.problems.append(f"child log: {log}")
    return outcome


def settle(effects: Effects, application_name: str) -> None:
    """On PostgreSQL, wait until the server has ended the sessions of the killed child: a
    COMMIT it sent just before it died may still be applied after its death. (The new world
    copes with that: its takeover is a compare-and-set and is tried again on the next tick; but
    the test's picture of "what was running at the kill" must be taken after it.) On SQLite a
    killed process's unfinished transaction is simply gone."""
    if effects.engine.dialect.name != "postgresql":
        return
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")

    def sessions() -> int:
        with effects.engine.connect() as conn:
            return int(conn.execute(query, {"name": application_name}).scalar_one())

    wait_until(sessions, lambda n: n == 0, f"the sessions of the killed {application_name}")


def finish(
    world: World, effects: Effects, plan_id: str, at_kill: ExecutionPlan, outcome: Outcome
) -> ExecutionPlan:
    """What an operator does: wait for the new world to take the plan over and finish it;
    when it pauses on steps that ended in "abnormal termination", look up whether their side
    effect happened (then acknowledge it, so that the step does not repeat it) and resume."""
    if at_kill.state == "planned":  # killed before the execution started: start it again
        world.execute(plan_id)
    handled: set[int] = set()
    while True:
        record = wait_until(
            lambda: _record(world, plan_id),
            lambda r: r.state in ("paused", "stopped"),
            f"plan {plan_id} to pause or stop in the new world",
        )
        plan = world.get_plan(plan_id)
        if record.state == "stopped":
            return plan
        failed = [s for s in plan.steps if s.state == "error"]
        if not failed or outcome.resumes >= 3:
            return plan  # check() reports it
        done = effects.rows(plan_id)
        for step in failed:
            if step.id in handled:
                continue
            handled.add(step.id)
            outcome.abnormal.append(step.id)
            if step.id in done:
                effects.acknowledge(plan_id, step.id)
                outcome.acknowledged.append(step.id)
        outcome.resumes += 1
        world.resume(plan_id).result(WAIT)


def _record(world: World, plan_id: str) -> Any:
    return world.storage.get_plan_record(plan_id)


def wait_until(get: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        value = get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT}s for {what}; last: {value!r}")
        time.sleep(0.02)


def check(
    plan: ExecutionPlan,
    child: Child,
    effects: dict[int, list[str]],
    reference: Reference,
    new_world: str,
    outcome: Outcome,
) -> None:
    problems = outcome.problems
    errors = {s.id: s.error for s in plan.steps if s.error is not None and s.state == "error"}
    if (plan.state, plan.result) != ("stopped", "success"):
        problems.append(f"plan ended {plan.state}/{plan.result}; failed steps: {_some(errors)}")
    # no step lost, and the same end as without a crash
    if states_of(plan) != reference.states:
        diff = {
            sid: (state, reference.states.get(sid))
            for sid, state in states_of(plan).items()
            if state != reference.states.get(sid)
        }
        problems.append(f"step states differ from the uncrashed run: {_some(diff)}")
    outputs = outputs_of(plan)
    if outputs != reference.outputs:
        diff = {
            aid: (out, reference.outputs.get(aid))
            for aid, out in outputs.items()
            if out != reference.outputs.get(aid)
        }
        problems.append(f"outputs differ from the uncrashed run: {_some(diff)}")

    classes = {s.id: s.action_class for s in plan.steps}
    finished_by = {s.id: s.world_id for s in plan.steps}
    idempotent = {sid: _idempotent(cls) for sid, cls in classes.items()}
    runs = [s.id for s in plan.steps if s.kind == "run"]
    history = [h for h in plan.history if h.step_id is not None]

    # each step succeeded once
    successes: dict[int, int] = {}
    for h in history:
        if h.event == "step success":
            successes[h.step_id] = successes.get(h.step_id, 0) + 1  # type: ignore[index]
    twice = {sid: n for sid, n in successes.items() if n != 1}
    if twice or not set(runs) <= set(successes):
        problems.append(
            f"'step success' recorded more than once {twice} or missing for "
            f"{sorted(set(runs) - set(successes))}"
        )

    # recovery of the steps that were running at the kill
    running = set(outcome.running_at_kill)
    interrupted = sorted(
        h.step_id  # type: ignore[misc]
        for h in history
        if h.event == "step pending"
        and "interrupted" in str((h.detail or {}).get("reason", ""))
        and h.world_id == new_world
    )
    outcome.interrupted = interrupted
    abnormal = sorted(
        h.step_id  # type: ignore[misc]
        for h in history
        if h.event == "step error"
        and "abnormal termination" in str(((h.detail or {}).get("error") or {}).get("message"))
    )
    expect_rerun = sorted(s for s in running if idempotent[s])
    expect_abnormal = sorted(s for s in running if not idempotent[s])
    if interrupted != expect_rerun:
        problems.append(
            f"idempotent steps running at the kill {expect_rerun} != steps re-run as "
            f"interrupted {interrupted}"
        )
    if abnormal != expect_abnormal:
        problems.append(
            f"non-idempotent steps running at the kill {expect_abnormal} != steps errored "
            f"with abnormal termination {abnormal}"
        )
    if sorted(outcome.abnormal) != expect_abnormal:
        problems.append(
            f"the operator found failed steps {sorted(outcome.abnormal)}, expected exactly the "
            f"abnormally terminated ones {expect_abnormal}"
        )
    if bool(expect_abnormal) != bool(outcome.resumes):
        problems.append(
            f"{outcome.resumes} resumes for {len(expect_abnormal)} abnormally terminated steps"
        )

    # side effects: once per step; twice only for an interrupted idempotent step
    if set(effects) - set(runs):
        problems.append(f"side effects of unknown steps {sorted(set(effects) - set(runs))}")
    acked = set(outcome.acknowledged)
    for sid in runs:
        worlds = effects.get(sid, [])
        if sid in interrupted:
            ok = worlds.count(new_world) == 1 and len(worlds) - 1 == worlds.count(child.world_id)
            ok = ok and len(worlds) <= 2
        elif sid in acked:  # the killed world did it; the operator said so; not done again
            ok = worlds == [child.world_id]
        else:
            ok = worlds == [finished_by[sid]]
        if len(worlds) > 1:
            outcome.ran_twice.append(sid)
        if not ok:
            problems.append(
                f"step {sid} ({classes[sid].rpartition('.')[2]}, "
                f"{'idempotent' if idempotent[sid] else 'not idempotent'}, "
                f"{'running' if sid in running else 'not running'} at the kill) did its work "
                f"{len(worlds)} times: {worlds}; finished by {finished_by[sid]}"
            )

    # steps suspended at the kill waited for their timers, which the new world fired
    for sid in outcome.suspended_at_kill:
        if effects.get(sid) != [new_world]:
            problems.append(
                f"step {sid}, suspended at the kill, did its work in {effects.get(sid)}, "
                f"expected once in the new world"
            )

    # takeover time: SIGKILL -> "plan running" written by the new world
    for h in plan.history:
        taken_over = (h.detail or {}).get("from") == child.world_id
        if h.event == "plan running" and taken_over and child.killed_at is not None:
            outcome.takeover = (h.at - child.killed_at).total_seconds()
            break


def _some(found: dict[Any, Any], n: int = 6) -> str:
    """The first ``n`` entries of a (possibly long) dict, and how many there are."""
    shown = dict(list(found.items())[:n])
    return f"{shown}" + (f" ... ({len(found)} in all)" if len(found) > n else "")


def _idempotent(action_class: str) -> bool:
    from dynaflow import registry

    return bool(registry.resolve(action_class).idempotent)
