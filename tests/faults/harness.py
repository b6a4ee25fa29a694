"""Parent-side helpers of the fault tests: databases of their own, child worlds driven through
a pipe (:mod:`.child`), seeds, bounded waits, and reading a plan straight from the database.

Children are started like the crash tests' (:func:`tests.crash.harness.start_method`: from a
fork server that imported dynaflow once, or ``spawn``).
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crash.harness import start_method  # tests/ is on sys.path (no __init__.py there)

from dynaflow.persistence import migrate, tables

from . import actions
from .child import process_main

#: how long the test waits for a child to answer a request that should be quick
ANSWER = 30.0

#: the ``storage`` parameter of the tests that run on both SQL backends
STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# -- seeds -------------------------------------------------------------------------------------


def base_seed(name: str) -> int:
    """The base seed of a test: ``DYNAFLOW_FAULT_SEED`` if set (to replay a run), else random.
    Printed, so a failure can be replayed."""
    seed = int(os.environ.get("DYNAFLOW_FAULT_SEED") or random.SystemRandom().randrange(10**6))
    print(f"{name}: base seed {seed} (replay with DYNAFLOW_FAULT_SEED={seed})")
    return seed


def rounds(default: int) -> int:
    """How many rounds a looping test runs: ``DYNAFLOW_FAULT_ROUNDS`` or ``default``."""
    return int(os.environ.get("DYNAFLOW_FAULT_ROUNDS") or default)


# -- databases ---------------------------------------------------------------------------------


@contextmanager
def sqlite_database(template: Path, directory: Path, name: str) -> Iterator[str]:
    """A migrated SQLite file of its own (a copy of ``template``) with the marks table."""
    path = directory / f"{name}.db"
    shutil.copyfile(template, path)
    url = f"sqlite:///{path}"
    actions.create_marks(url)
    yield url


@contextmanager
def postgres_database(admin: sa.Engine) -> Iterator[str]:
    """A PostgreSQL schema of its own (connection option ``search_path``), migrated, with the
    marks table; dropped at the end."""
    schema = f"dynaflow_fault_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    try:
        migrate.upgrade(url)
        actions.create_marks(url)
        yield url
    finally:
        engine = actions._engines.pop(url, None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def with_application_name(url: str, name: str) -> str:
    """``url`` whose PostgreSQL sessions are named ``name`` (``application_name``), so that a
    test can find (and terminate) exactly them. SQLite URLs are returned as they are."""
    if url.startswith("sqlite"):
        return url
    return (
        sa.make_url(url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )


# -- reading a plan from the database ----------------------------------------------------------


@dataclass
class Row:
    """What the tests look at of a plan, read with a plain SQL connection."""

    state: str
    result: str
    world_id: str | None
    #: step id -> (kind, state)
    steps: dict[int, tuple[str, str]]
    #: (id, event, step_id, world_id, detail) in order
    history: list[tuple[int, str, int | None, str | None, Any]]

    def run_states(self) -> list[str]:
        return [state for kind, state in self.steps.values() if kind == "run"]

    def __str__(self) -> str:
        steps = {sid: state for sid, (kind, state) in self.steps.items() if kind != "plan"}
        return f"{self.state}/{self.result} owned by {self.world_id}, steps {steps}"


class Reader:
    """Reads plans straight from a database (no World: nothing of dynaflow's in between)."""

    def __init__(self, url: str) -> None:
        args = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, **args)

    def plan(self, plan_id: str) -> Row:
        P, S, H = tables.plans, tables.steps, tables.history
        with self.engine.connect() as conn:
            plan = conn.execute(
                sa.select(P.c.state, P.c.result, P.c.world_id).where(P.c.id == plan_id)
            ).one()
            steps = conn.execute(
                sa.select(S.c.id, S.c.kind, S.c.state)
                .where(S.c.plan_id == plan_id)
                .order_by(S.c.id)
            ).all()
            history = conn.execute(
                sa.select(H.c.id, H.c.event, H.c.step_id, H.c.world_id, H.c.detail)
                .where(H.c.plan_id == plan_id)
                .order_by(H.c.id)
            ).all()
        return Row(
            plan.state,
            plan.result,
            plan.world_id,
            {s.id: (s.kind, s.state) for s in steps},
            [(h.id, h.event, h.step_id, h.world_id, _json(h.detail)) for h in history],
        )

    def run_steps(self, plan_id: str) -> list[int]:
        """The ids of the plan's run steps, in plan order (``s1``, ``s2``, ... of a Chain)."""
        return [sid for sid, (kind, _) in self.plan(plan_id).steps.items() if kind == "run"]

    def plan_ids(self) -> list[str]:
        """The ids of every plan in the database, oldest first."""
        P = tables.plans
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(P.c.id).order_by(P.c.created_at)).scalars())

    def plans_with_key(self, key: str) -> list[str]:
        P = tables.plans
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(P.c.id).where(P.c.key == key)).scalars())

    def close(self) -> None:
        self.engine.dispose()


def _json(value: Any) -> Any:
    import json

    return json.loads(value) if isinstance(value, str) else value


def wait_for(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float) -> Any:
    """Poll ``get()`` until ``ok(value)`` or ``timeout`` seconds passed; the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


# -- child worlds ------------------------------------------------------------------------------


class ChildFailed(Exception):
    def __init__(self, message: str, log: Path) -> None:
        try:
            tail = log.read_text(errors="replace")[-3000:]
        except OSError:
            tail = "(no log)"
        super().__init__(f"{message}\n--- child log {log} ---\n{tail}")


_tags = itertools.count()


class ChildWorld:
    """A threaded World in a process of its own (see :mod:`.child`)."""

    def __init__(self, url: str, log: Path, **options: Any) -> None:
        self.log = log
        context = start_method()
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=process_main, args=(url, options, child_conn, str(log)), daemon=True
        )
        self.process.start()
        child_conn.close()
        self.replies: dict[str, tuple[Any, ...]] = {}
        message = self._receive(ANSWER)
        if message is None or message[0] != "world":
            self.kill()
            raise ChildFailed(f"the child world did not start: {message}", log)
        _, self.world_id, self.pid = message

    def _receive(self, timeout: float) -> tuple[Any, ...] | None:
        if not self.conn.poll(timeout):
            return None
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            return None
        return message

    def send(self, operation: str, at: float | None = None, **arguments: Any) -> str:
        """Ask for ``operation``; returns the tag to wait for its answer with."""
        tag = f"t{next(_tags)}"
        self.conn.send((tag, operation, arguments, at))
        return tag

    def answer(self, tag: str, timeout: float = ANSWER) -> tuple[str, Any, float]:
        """``("ok", value, seconds)`` or ``("error", details, seconds)``."""
        deadline = time.monotonic() + timeout
        while tag not in self.replies:
            message = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise ChildFailed(
                    f"child {self.pid} did not answer {tag} within {timeout}s "
                    f"(alive: {self.process.is_alive()})",
                    self.log,
                )
            self.replies[message[0]] = message[1:]
        (status, value), seconds = self.replies.pop(tag)
        return status, value, seconds

    def call(self, operation: str, within: float = ANSWER, **arguments: Any) -> Any:
        """Ask for ``operation`` and return its value (within ``within`` seconds); its error
        raises :class:`ChildFailed`."""
        status, value, _ = self.answer(self.send(operation, **arguments), within)
        if status != "ok":
            raise ChildFailed(f"{operation} failed in the child: {value['traceback']}", self.log)
        return value

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def close(self, timeout: float = 10.0) -> None:
        """Close the world and end the process (SIGKILL if it does not end in time)."""
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGCONT)
                self.conn.send(("close",))
            except OSError:
                pass
            self.process.join(timeout)
        self.kill()
        self.conn.close()


@contextmanager
def child_worlds(
    url: str, directory: Path, worlds: dict[str, dict[str, Any]]
) -> Iterator[list[ChildWorld]]:
    """A child world per entry of ``worlds`` (name -> World options; its log is
    ``<name>.log`` in ``directory``), all closed at the end."""
    started: list[ChildWorld] = []
    try:
        for name, options in worlds.items():
            started.append(ChildWorld(url, directory / f"{name}.log", **options))
        yield started
    finally:
        for child in started:
            child.close()


def is_raw_database_error(error: dict[str, Any]) -> bool:
    """Whether a caller's error is a database driver's or SQLAlchemy's, not dynaflow's."""
    return not error["dynaflow"] and error["type"].split(".")[0] in (
        "sqlalchemy",
        "sqlite3",
        "psycopg",
    )
