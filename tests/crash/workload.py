"""The workload of the crash tests, imported both by the tests and by the child process
(``child.py``) that runs it until it is killed.

Every run step records a side effect in a table of its own, ``crash_effects`` (one committed
row per call that did the work), so the tests can tell a step that ran twice from one that ran
once. ``crash_acks`` is the operator's note "the work of this interrupted step is done": a
non-idempotent step that was interrupted after its side effect was committed is acknowledged
by the operator before the plan is resumed, and then does not repeat the side effect.

Action outputs are a pure function of the input (which holds references to earlier outputs),
so a plan that was interrupted and finished by another world must end with exactly the outputs
of the same plan run without a crash.
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

import sqlalchemy as sa

from dynaflow import Action, World

#: the side-effect tables, created next to dynaflow's in each test database
EFFECTS_DDL = (
    "CREATE TABLE crash_effects (plan_id VARCHAR(64) NOT NULL, step_id INTEGER NOT NULL, "
    "name VARCHAR(32) NOT NULL, world_id VARCHAR(128) NOT NULL)",
    "CREATE TABLE crash_acks (plan_id VARCHAR(64) NOT NULL, step_id INTEGER NOT NULL, "
    "PRIMARY KEY (plan_id, step_id))",
)


class Effects:
    """Writes and reads the side-effect tables of one database (own connections, each write
    committed at once)."""

    def __init__(self, url: str) -> None:
        options: dict[str, Any] = {}
        sqlite = url.startswith("sqlite")
        if sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            options["pool_size"] = 8
        self.engine = sa.create_engine(url, **options)
        if sqlite:  # as dynaflow's own connections: a commit survives a killed process
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)

    def create_tables(self) -> None:
        with self.engine.begin() as conn:
            for ddl in EFFECTS_DDL:
                conn.exec_driver_sql(ddl)

    def record(self, action: Action) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO crash_effects (plan_id, step_id, name, world_id) "
                    "VALUES (:p, :s, :n, :w)"
                ),
                {"p": action.plan_id, "s": action.step_id, "n": action.input["name"],
                 "w": action.world.id},
            )  # fmt: skip

    def acknowledged(self, plan_id: str, step_id: int | None) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM crash_acks WHERE plan_id = :p AND step_id = :s"),
                {"p": plan_id, "s": step_id},
            ).first()
        return found is not None

    def acknowledge(self, plan_id: str, step_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO crash_acks (plan_id, step_id) VALUES (:p, :s)"),
                {"p": plan_id, "s": step_id},
            )

    def rows(self, plan_id: str) -> dict[int, list[str]]:
        """step id -> the worlds that did its work, one entry per side effect."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT step_id, world_id FROM crash_effects WHERE plan_id = :p"),
                {"p": plan_id},
            ).all()
        found: dict[int, list[str]] = {}
        for step_id, world_id in rows:
            found.setdefault(step_id, []).append(world_id)
        return found

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


_effects: dict[str, Effects] = {}
_lock = threading.Lock()


def bind(world: World, effects: Effects) -> None:
    """Steps run by ``world`` record their side effects through ``effects``."""
    with _lock:
        _effects[world.id] = effects


def unbind(world: World) -> None:
    with _lock:
        _effects.pop(world.id, None)


def effects_of(action: Action) -> Effects:
    return _effects[action.world.id]


def value_of(name: str, refs: list[int]) -> int:
    return (zlib.crc32(name.encode()) + 7 * sum(refs)) % 1_000_003


# -- actions ---------------------------------------------------------------------------------


class Work(Action):
    """Does its work (one side effect) and outputs a value computed from its input."""

    idempotent = True

    def run(self) -> None:
        self.work()

    def work(self) -> None:
        effects = effects_of(self)
        # only the operator acknowledges work, and only of steps that are not idempotent
        if type(self).idempotent or not effects.acknowledged(self.plan_id, self.step_id):
            effects.record(self)
        self.output["value"] = value_of(self.input["name"], self.input["refs"])


class Charge(Work):
    """Like Work, but not idempotent: if a crash interrupts it, it errors with "abnormal
    termination" and waits for an operator."""

    idempotent = False


class Waiter(Work):
    """Plans a timer (``delay`` seconds) and suspends; does its work when the timer fires."""

    def run(self, event: Any = None) -> None:
        if event is None:
            self.plan_event("tick", delay=self.input["delay"])
            self.suspend()
        self.work()


class StrictWaiter(Waiter):
    """A Waiter that is not idempotent."""

    idempotent = False


STEPS = 200
GROUPS = 20


def kind_of(index: int, timers: bool) -> type[Work]:
    """The action class of the ``index``-th step (the same in every run of the plan): with
    ``timers``, every other step of the concurrent groups waits on a timer (35 of them)."""
    if timers and (index // 10) % 3 == 0 and index % 2 == 1:
        return StrictWaiter if index % 4 == 3 else Waiter
    return Charge if index % 5 == 2 else Work


#: steps whose timer is longer than the tests' lease (0.5 s): it may fall due while no world
#: owns the plan
LONG_TIMERS = (65,)


def delay_of(index: int) -> float:
    """Timer delays: 10 to 50 ms, one of 0.6 s."""
    return 0.6 if index in LONG_TIMERS else 0.01 + (index % 5) * 0.01


class CrashPlan(Action):
    """200 run steps: a sequence of 20 groups of 10, each group concurrent, a sequence, or
    two concurrent sequences of 5; every step refers to the output of earlier ones. With
    ``timers``, 35 steps of the concurrent groups suspend on a timer before doing their work."""

    def plan(self, timers: bool = False) -> None:
        index = 0
        previous: list[Any] = []

        def item(refs: list[Any]) -> Any:
            nonlocal index
            cls = kind_of(index, timers)
            name = f"s{index:03d}"
            args: dict[str, Any] = {"name": name, "refs": refs}
            if issubclass(cls, Waiter):
                args["delay"] = delay_of(index)
            index += 1
            return self.plan_action(cls, **args).output.value

        with self.sequence():
            for group in range(GROUPS):
                shape = group % 3
                if shape == 0:  # ten concurrent steps, each referring to two of the last group
                    with self.concurrence():
                        current = [
                            item(previous[i % len(previous) :][:2] if previous else [])
                            for i in range(10)
                        ]
                elif shape == 1:  # a chain of ten
                    current = []
                    with self.sequence():
                        ref = previous[-1:]
                        for _ in range(10):
                            ref = [item(ref)]
                            current.extend(ref)
                else:  # two concurrent chains of five
                    current = []
                    with self.concurrence():
                        for chain in range(2):
                            with self.sequence():
                                ref = previous[chain : chain + 1]
                                for _ in range(5):
                                    ref = [item(ref)]
                                    current.extend(ref)
                previous = current
        assert index == STEPS, index
