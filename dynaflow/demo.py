"""``dynaflow demo``: the seed guide's CreateInfrastructure, run for real and shown as it runs.

Machines ``db`` and ``storage`` are created concurrently; ``web`` waits for the db machine through
an output reference; a plugin-style action subscribed to ``CreateMachine`` registers each machine
with monitoring; each machine's finalize records it in the application's own ``demo_machines``
table, in the same transaction that marks the finalize steps done.
"""

from __future__ import annotations

import queue
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dynaflow import (
    Action,
    ConfigurationError,
    ExecutionPlan,
    PlanFuture,
    PlanResult,
    PlanState,
    StepKind,
    StepRecord,
    StepState,
    World,
    signals,
)
from dynaflow.clock import now
from dynaflow.render import STEP_STYLES, format_duration, plan_tree, safe, short_name, state_text
from dynaflow.states import FINISHED_STEP_STATES
from dynaflow.urls import display_url

DEFAULT_URL = "sqlite:///dynaflow-demo.db"

#: how long "provisioning" takes per profile, in seconds: short, but long enough to watch
PROVISION_SECONDS = {"db": 0.6, "storage": 0.4, "web": 0.5}
MONITORING_SECONDS = 0.2

# -- the application's own table, written by finalize ----------------------------------------

metadata = sa.MetaData()
demo_machines = sa.Table(
    "demo_machines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.String(36), nullable=False, index=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("profile", sa.String(50), nullable=False),
    sa.Column("uuid", sa.String(100), nullable=False),
    sa.Column("db_machine", sa.String(100), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

# -- the actions -----------------------------------------------------------------------------


class CreateMachine(Action):
    """Provision one machine (simulated), then record it in ``demo_machines``."""

    class Input(BaseModel):
        name: str
        profile: str
        db_machine: str | None = None

    class Output(BaseModel):
        uuid: str | None = None

    def plan(self, name: str, profile: str, **deps: Any) -> None:
        self.plan_self(name=name, profile=profile, **deps)

    def run(self) -> None:
        time.sleep(PROVISION_SECONDS.get(self.input.profile, 0.3))
        self.output.uuid = f"{self.input.name}-{self.input.profile}-{uuid.uuid4().hex[:8]}"

    def finalize(self) -> None:
        connection = self.connection
        if connection is None:
            raise ConfigurationError(
                "CreateMachine.finalize writes demo_machines through action.connection; run the "
                "demo on an SQL database (sqlite:///... or postgresql+psycopg://...)"
            )
        metadata.create_all(connection, checkfirst=True)
        # finalize runs again in full when a paused plan is resumed: make it idempotent
        connection.execute(
            demo_machines.delete().where(
                demo_machines.c.plan_id == self.plan_id,
                demo_machines.c.name == self.input.name,
            )
        )
        connection.execute(
            demo_machines.insert().values(
                plan_id=self.plan_id,
                name=self.input.name,
                profile=self.input.profile,
                uuid=self.output.uuid,
                db_machine=self.input.db_machine,
                recorded_at=now(),
            )
        )


class RegisterMonitoring(Action):
    """Plugin-style extension: planned whenever ``CreateMachine`` is, with the same arguments.

    In a real application this class lives in another package that registers its module in the
    ``dynaflow.actions`` entry-point group; the core workflow does not know about it.
    """

    subscribe = CreateMachine

    def plan(self, name: str, profile: str, **deps: Any) -> None:
        trigger = self.triggering_action
        assert trigger is not None
        # a reference to the trigger's output: this step runs once the machine exists
        self.plan_self(host=name, machine=trigger.output.uuid)

    def run(self) -> None:
        time.sleep(MONITORING_SECONDS)
        self.output["check"] = f"ping {self.input['host']} ({self.input['machine']})"


class CreateInfrastructure(Action):
    """The seed guide's composition: db and storage at once, then web, wired to the db."""

    def plan(self) -> None:
        with self.sequence():
            with self.concurrence():
                db = self.plan_action(CreateMachine, "host1", "db")
                self.plan_action(CreateMachine, "host2", "storage")
            self.plan_action(CreateMachine, "host3", "web", db_machine=db.output.uuid)


# -- running it ------------------------------------------------------------------------------


def run_demo(
    url: str = DEFAULT_URL,
    *,
    workers: int = 4,
    console: Console | None = None,
    url_arg: str | None = None,
) -> bool:
    """Plan and run CreateInfrastructure on ``url``, showing progress; print the plan tree and
    the rows its finalize wrote, and the command that shows the plan again (with ``url_arg``
    as its ``--url`` option). Returns whether the plan succeeded."""
    console = console or Console()
    if url.startswith("memory"):
        raise ConfigurationError(
            "the demo's finalize writes its own table in the plan's database; give it an SQL "
            f"URL such as {DEFAULT_URL}"
        )
    with World(url, workers=workers) as world:
        console.print(Text.assemble(("dynaflow demo", "bold"), f" on {world.url}"))
        plan = world.plan(CreateInfrastructure)
        if plan.state == PlanState.STOPPED:  # planning failed: nothing ran
            console.print(plan_tree(plan))
            return False
        watcher = _Watcher(plan)
        signals.step_state_changed.connect(watcher.on_step)
        signals.plan_state_changed.connect(watcher.on_plan)
        try:
            future = world.execute(plan.id)
            if console.is_terminal:
                with Live(
                    console=console,
                    get_renderable=watcher.render,
                    transient=True,
                    refresh_per_second=10,
                ):
                    done = _wait(future, lambda: None)
            else:  # piped: one line per step state change
                done = _wait(future, lambda: watcher.print_changes(console))
        finally:
            signals.step_state_changed.disconnect(watcher.on_step)
            signals.plan_state_changed.disconnect(watcher.on_plan)
        console.print()
        console.print(plan_tree(done))
        console.print()
        console.print(_machines_table(world, done.id))
        ok = done.state == PlanState.STOPPED and done.result == PlanResult.SUCCESS
        console.print(
            Text.assemble(
                "plan ",
                (done.id, "bold"),
                " ",
                state_text(done.state, done.result),
                "; inspect it with: dynaflow plans show "
                f"{done.id} {url_arg or '--url ' + shlex.quote(display_url(url))}",
            ),
            soft_wrap=True,
        )
        return ok


def _wait(future: PlanFuture, tick: Callable[[], None]) -> ExecutionPlan:
    """Wait for the plan, calling ``tick`` in this thread meanwhile: output is written here, never
    from a signal receiver (those run inside the executor, which must not be disturbed)."""
    while True:
        try:
            done = future.result(timeout=0.1)
        except TimeoutError:
            tick()
            continue
        tick()
        return done


class _Watcher:
    """Collects step state changes from the signals (executor threads) for display."""

    def __init__(self, plan: ExecutionPlan) -> None:
        self.plan = plan
        self.lock = threading.Lock()
        self.steps: dict[int, StepRecord] = {}
        self.changes: queue.SimpleQueue[StepRecord] = queue.SimpleQueue()
        self.record = replace(plan.record, state=PlanState.RUNNING, started_at=now())
        self.total = sum(1 for s in plan.steps if s.kind != StepKind.PLAN)

    def on_step(
        self, sender: Any, *, plan_id: str, step_id: int, state: StepState, **_: Any
    ) -> None:
        if plan_id != self.plan.id:
            return
        at = now()
        with self.lock:
            step = self.steps.get(step_id) or self.plan.step(step_id)
            if state == StepState.RUNNING:
                step = replace(step, state=state, started_at=at, ended_at=None, duration=None)
            else:
                step = replace(step, state=state, ended_at=at, duration=None)
            self.steps[step_id] = step
        self.changes.put(step)

    def print_changes(self, console: Console) -> None:
        while True:
            try:
                step = self.changes.get_nowait()
            except queue.Empty:
                return
            console.print(self._line(step), highlight=False)

    def on_plan(self, sender: Any, *, plan_id: str, state: PlanState, **_: Any) -> None:
        if plan_id == self.plan.id:
            with self.lock:
                self.record = replace(self.record, state=state)

    def _line(self, step: StepRecord) -> Text:
        icon, style = STEP_STYLES.get(step.state, ("?", ""))
        line = Text.assemble(
            (f"  {icon} ", style),
            safe(f"{step.kind:<8} {step.id:>2} {short_name(step.action_class)} "),
            (str(step.state), style),
        )
        if step.state != StepState.RUNNING and step.started_at and step.ended_at:
            line.append(f" {format_duration((step.ended_at - step.started_at).total_seconds())}")
        return line

    def render(self) -> RenderableType:
        with self.lock:
            steps = dict(self.steps)
            record = self.record
        done = sum(1 for s in steps.values() if s.state in FINISHED_STEP_STATES)
        running = sum(1 for s in steps.values() if s.state == StepState.RUNNING)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=self.total, completed=done, width=40),
            Text(f"{done}/{self.total} steps done, {running} running", style="dim"),
        )
        return Group(plan_tree(self.plan, record=record, steps=steps), bar)


def _machines_table(world: World, plan_id: str) -> Table:
    """The rows the plan's finalize wrote to demo_machines."""
    table = Table(title="demo_machines (written by finalize)", title_justify="left")
    for column in ("name", "profile", "uuid", "db_machine"):
        table.add_column(column)
    with world.transaction() as connection:
        if not sa.inspect(connection).has_table(demo_machines.name):
            return table
        rows = connection.execute(
            sa.select(
                demo_machines.c.name,
                demo_machines.c.profile,
                demo_machines.c.uuid,
                demo_machines.c.db_machine,
            )
            .where(demo_machines.c.plan_id == plan_id)
            .order_by(demo_machines.c.name)
        ).all()
    for row in rows:
        table.add_row(*(safe(value or "") for value in row))
    return table
