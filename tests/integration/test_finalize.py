"""The finalize phase: after every run step, sequential in planning order, one transaction."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from dynaflow import Action, Middleware, StepState, World
from dynaflow.phases import PhaseContext

from .actions import PROBE, WAIT, Probe, Shape, Tracked, events_of, states, step_of, trigger


class FinalizeOrder(Action):
    """Planned first, second, third; with ``out_of_order`` the first run step waits until the
    third has run, so runs end in another order than the planning order."""

    def plan(self, out_of_order: bool) -> None:
        self.plan_action(Tracked, name="first", wait_for="ran:third" if out_of_order else None)
        self.plan_action(Tracked, name="second")
        self.plan_action(Tracked, name="third")


def test_finalize_runs_after_every_run_step_sequentially_in_planning_order(
    world: World, backend: Any, probe: Probe
) -> None:
    out_of_order = backend.executor == "threads"
    plan = trigger(world, FinalizeOrder, out_of_order)

    assert (plan.state, plan.result) == ("stopped", "success")
    kinds = [call[0] for call in probe.calls]
    assert kinds == ["run"] * 3 + ["finalize"] * 3
    if out_of_order:
        assert probe.names("run")[-1] == "first"
    assert probe.names("finalize") == ["first", "second", "third"]
    assert len({call[2] for call in probe.calls if call[0] == "finalize"}) == 1  # one thread
    finalizes = [step_of(plan, name, "finalize") for name in ("first", "second", "third")]
    runs = [step_of(plan, name) for name in ("first", "second", "third")]
    assert max(r.ended_at for r in runs) <= finalizes[0].started_at
    for before, after in itertools.pairwise(finalizes):
        assert before.ended_at <= after.started_at
    assert all(s.state == StepState.SUCCESS for s in finalizes)


def test_no_finalizer_runs_when_a_run_step_failed(world: World, probe: Probe) -> None:
    plan = trigger(world, Shape, ["con", "tracked:a", "fail:f"])
    assert (plan.state, plan.result) == ("paused", "error")
    assert probe.names("finalize") == []
    assert step_of(plan, "a", "finalize").state == StepState.PENDING
    assert step_of(plan, "a").state == StepState.SUCCESS


class PhaseRecorder(Middleware):
    def finalize_phase(self, plan: PhaseContext, call_next: Any) -> Any:
        PROBE.record("phase", "enter", plan.phase, plan.plan_id)
        try:
            return call_next()
        finally:
            PROBE.record("phase", "exit")

    def finalize(self, action: Action, call_next: Any) -> Any:
        PROBE.record("finalizer", action.input["name"], id(action.connection))
        return call_next()


def test_all_finalizers_run_inside_one_finalize_phase(world_factory: Any, probe: Probe) -> None:
    world = world_factory(middleware=[PhaseRecorder])
    plan = trigger(world, Shape, ["seq", "a", "b", "c"], leaf="tracked")

    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls[3] == ("phase", "enter", "finalize", plan.id)
    assert [c[:2] for c in probe.calls[4:-1] if c[0] == "finalizer"] == [
        ("finalizer", "a"),
        ("finalizer", "b"),
        ("finalizer", "c"),
    ]
    assert probe.calls[-1] == ("phase", "exit")
    # one transaction: every finalizer got the same connection
    assert len({c[2] for c in probe.calls if c[0] == "finalizer"}) == 1


# -- the finalize transaction on SQL storages ------------------------------------------------

machines = sa.Table(
    "app_machines",
    sa.MetaData(),
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("seen_before", sa.Integer, nullable=False),
)


@pytest.fixture
def app_db(backend: Any, db_url: str) -> Iterator[sa.Engine | None]:
    """The application's own table in the same database as dynaflow's (``None`` on memory)."""
    if backend.storage == "memory":
        yield None
        return
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    machines.create(engine)
    yield engine
    machines.drop(engine)
    engine.dispose()


def app_rows(engine: sa.Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(machines).order_by("name"))]


#: names whose finalizer raises (the tests change it to let a resumed plan pass)
FAILING: set[str] = set()
_failing_lock = threading.Lock()


class RecordMachine(Action):
    """Finalize writes the machine to the app table through the phase's connection."""

    def run(self) -> None:
        self.output["uuid"] = f"uuid-{self.input['name']}"

    def finalize(self) -> None:
        name = self.input["name"]
        conn = self.connection
        if conn is not None:
            seen = conn.execute(sa.select(sa.func.count()).select_from(machines)).scalar_one()
            conn.execute(sa.insert(machines).values(name=name, seen_before=seen))
        PROBE.record("finalize", name)
        with _failing_lock:
            if name in FAILING:
                raise RuntimeError(f"cannot record {name}")


class ThreeMachines(Action):
    def plan(self) -> None:
        for name in ("a", "b", "c"):
            self.plan_action(RecordMachine, name=name)


@pytest.fixture
def failing() -> Iterator[set[str]]:
    FAILING.clear()
    yield FAILING
    FAILING.clear()


@pytest.mark.sql
def test_finalizers_write_the_apps_tables_in_the_same_transaction(
    world: World, app_db: sa.Engine
) -> None:
    plan = trigger(world, ThreeMachines)
    assert (plan.state, plan.result) == ("stopped", "success")
    # each finalizer saw what the previous ones wrote: one transaction, in planning order
    assert app_rows(app_db) == [("a", 0), ("b", 1), ("c", 2)]


def test_a_finalize_error_rolls_the_phase_back_and_pauses_the_plan(
    world: World, app_db: sa.Engine | None, failing: set[str], probe: Probe
) -> None:
    failing.add("c")

    plan = trigger(world, ThreeMachines)

    assert probe.names("finalize") == ["a", "b", "c"]
    assert (plan.state, plan.result) == ("paused", "error")
    assert plan.ended_at is None
    assert states(plan) == {"a": "success", "b": "success", "c": "success"}
    assert states(plan, "finalize") == {"a": "pending", "b": "pending", "c": "error"}
    error = step_of(plan, "c", "finalize").error
    assert (error.class_name, error.message) == ("RuntimeError", "cannot record c")
    assert "raise RuntimeError" in error.traceback
    assert events_of(plan, step_of(plan, "a", "finalize").id) == []
    assert "plan stopped" not in events_of(plan, None)
    assert events_of(plan, None)[-1] == "plan paused"
    if app_db is not None:
        assert app_rows(app_db) == []  # what a and b wrote is gone with the transaction

    # fixed: executing the paused plan again runs the whole finalize phase again
    failing.clear()
    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert probe.names("finalize") == ["a", "b", "c", "a", "b", "c"]
    assert set(states(done, "finalize").values()) == {"success"}
    if app_db is not None:
        assert app_rows(app_db) == [("a", 0), ("b", 1), ("c", 2)]


class RecordsReference(Action):
    """Only a finalize step; its input references another action's output."""

    def finalize(self) -> None:
        PROBE.record("finalize", self.input["uuid"])


class FinalizeReadsOutput(Action):
    def plan(self) -> None:
        machine = self.plan_action(RecordMachine, name="m")
        self.plan_action(RecordsReference, uuid=machine.output["uuid"])


def test_references_are_resolved_for_finalize(
    world: World, app_db: sa.Engine | None, probe: Probe
) -> None:
    plan = trigger(world, FinalizeReadsOutput)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert probe.calls == [("finalize", "m"), ("finalize", "uuid-m")]


# -- the plan phase is one transaction too ---------------------------------------------------


class ReserveName(Action):
    """Writes its name to the app table while planning (through the plan phase's connection)."""

    def plan(self, name: str) -> None:
        conn = self.connection
        if conn is not None:
            conn.execute(sa.insert(machines).values(name=name, seen_before=-1))
        if name in FAILING:
            raise RuntimeError(f"{name} is taken")
        self.plan_self(name=name)

    def run(self) -> None:
        pass


class ReserveTwo(Action):
    def plan(self) -> None:
        self.plan_action(ReserveName, "x")
        self.plan_action(ReserveName, "y")


@pytest.mark.sql
@pytest.mark.executors("inline")
def test_what_planning_writes_commits_with_the_plan_or_not_at_all(
    world: World, app_db: sa.Engine, failing: set[str]
) -> None:
    plan = world.plan(ReserveTwo)
    assert plan.state == "planned"
    assert app_rows(app_db) == [("x", -1), ("y", -1)]

    with app_db.begin() as conn:
        conn.execute(sa.delete(machines))
    failing.add("y")
    failed = world.plan(ReserveTwo)
    assert (failed.state, failed.result) == ("stopped", "error")
    assert app_rows(app_db) == []  # x's row went with the failed planning
    assert world.count_plans() == 2
