"""The actions of the fault tests, imported both by the tests and by the child processes
(:mod:`.child`) that run them.

A step that ``marks`` records its start and its end in ``fault_marks``, a table next to
dynaflow's, through a connection of its own (committed at once): the tests see from another
process which world ran which step, and when.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dynaflow import Action

MARKS_DDL = (
    "CREATE TABLE fault_marks (id INTEGER PRIMARY KEY, plan_id VARCHAR(64) NOT NULL, "
    "step_id INTEGER NOT NULL, name VARCHAR(32) NOT NULL, what VARCHAR(16) NOT NULL, "
    "world_id VARCHAR(128) NOT NULL, pid INTEGER NOT NULL)"
)
MARKS_DDL_PG = MARKS_DDL.replace("id INTEGER PRIMARY KEY", "id SERIAL PRIMARY KEY")

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()
#: (plan id, step name) -> set when a run of that step in this process ended
_finished: dict[tuple[str, str], threading.Event] = {}


def marks_engine(url: str) -> sa.Engine:
    """One engine per database and process for the marks (SQLite waits up to 30 s for the lock)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            args = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
            engine = _engines[url] = sa.create_engine(url, **args)
        return engine


def create_marks(url: str) -> None:
    with marks_engine(url).begin() as conn:
        conn.exec_driver_sql(MARKS_DDL if url.startswith("sqlite") else MARKS_DDL_PG)


def marks(url: str, plan_id: str) -> list[tuple[int, str, str, str]]:
    """``(step_id, name, what, world_id)`` of the plan's marks, in the order they were made."""
    with marks_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT step_id, name, what, world_id FROM fault_marks WHERE plan_id = :p "
                "ORDER BY id"
            ),
            {"p": plan_id},
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def finished(plan_id: str, name: str) -> threading.Event:
    """Set when a run of step ``name`` of ``plan_id`` ended in this process."""
    with _lock:
        return _finished.setdefault((plan_id, name), threading.Event())


class Nap(Action):
    """Sleeps ``seconds``; with ``mark`` (the database URL), marks its start and end."""

    idempotent = True

    def run(self) -> None:
        self._mark("start")
        try:
            time.sleep(self.input.get("seconds", 0))
            self._mark("end")
            self.output["slept"] = self.input.get("seconds", 0)
        finally:
            finished(self.plan_id, self.input["name"]).set()

    def _mark(self, what: str) -> None:
        url = self.input.get("mark")
        if not url:
            return
        with marks_engine(url).begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO fault_marks (plan_id, step_id, name, what, world_id, pid) "
                    "VALUES (:p, :s, :n, :w, :world, :pid)"
                ),
                {"p": self.plan_id, "s": self.step_id, "n": self.input["name"], "w": what,
                 "world": self.world.id, "pid": os.getpid()},
            )  # fmt: skip


class StrictNap(Nap):
    """A Nap that is not idempotent: interrupted by a lost world, it errors "abnormal
    termination" and the plan waits for an operator."""

    idempotent = False


class Fails(Action):
    """Always fails (the plan pauses with this step in error)."""

    def run(self) -> None:
        raise RuntimeError(f"{self.input['name']} fails on purpose")


KINDS: dict[str, type[Action]] = {"nap": Nap, "strict": StrictNap, "fails": Fails}


class Chain(Action):
    """A sequence of steps ``s1``, ``s2``, ...: ``steps`` lists their kinds (``nap``,
    ``strict``, ``fails``); naps sleep ``seconds`` (one number, or one per step)."""

    def plan(
        self, steps: list[str], seconds: float | list[float] = 0.0, mark: str | None = None
    ) -> None:
        with self.sequence():
            for i, kind in enumerate(steps):
                nap = seconds[i] if isinstance(seconds, list) else seconds
                args: dict[str, Any] = {"name": f"s{i + 1}"}
                if kind != "fails":
                    args.update(seconds=nap, mark=mark)
                self.plan_action(KINDS[kind], **args)


class Quick(Action):
    """One step that does nothing: a plan that needs only a few writes."""

    def run(self) -> None:
        self.output["done"] = True


class SlowFinalize(Action):
    """A quick run step, then a finalize of ``seconds`` (it runs inside a database
    transaction: TransactionMiddleware). The finalize creates the file ``started`` first."""

    def run(self) -> None:
        self.output["ran"] = True

    def finalize(self) -> None:
        Path(self.input["started"]).touch()
        time.sleep(self.input["seconds"])
        Path(self.input["ended"]).touch()
