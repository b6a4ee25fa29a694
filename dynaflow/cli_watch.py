"""``dynaflow plans watch``: follow a plan live — whatever process runs it — until its execution
ends, and exit with how it ended."""

from __future__ import annotations

import sys
import threading
import time

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from dynaflow.cli_support import (
    Exit,
    _console,
    _open,
    emit_json,
    hint,
    json_option,
    module_of,
    plan_exit,
    url_option,
)
from dynaflow.clock import now
from dynaflow.execution_plan import ExecutionPlan, StepRecord
from dynaflow.render import STEP_STYLES, format_duration, plan_tree, safe, short_name, state_text
from dynaflow.render_json import plan_document
from dynaflow.states import FINISHED_STEP_STATES, PlanState, StepKind, StepState
from dynaflow.timings import plan_duration, step_timings

#: plans with more steps than this are shown as their progress and active steps, not a tree
TREE_STEPS = 30
#: active steps listed under the progress bar of a big plan
ACTIVE_SHOWN = 10
ENDED = frozenset({PlanState.STOPPED, PlanState.PAUSED})


@click.command("watch")
@click.argument("plan_id")
@url_option
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.05, max=60),
    help="Seconds between two reads of the plan.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Stop watching after this many seconds (exit 4 if the plan goes on). Default: never.",
)
@json_option
def watch_plan(
    plan_id: str, url: str, interval: float, timeout: float | None, as_json: bool
) -> None:
    """Follow a plan (PLAN_ID whole, or a unique prefix) live with a progress bar until its
    execution ends, whatever process runs it; exit 0 if it ended well, 1 if it paused or
    stopped with an error or cancelled, 4 if it goes on after --timeout. With --json, print
    the plan as `plans show --json` does when it ends, and nothing before."""
    console = _console()
    deadline = None if timeout is None else time.monotonic() + timeout
    ticker = threading.Event()
    with _open(url) as world:
        plan = world.get_plan(world.resolve_plan_id(plan_id))

        def follow(changed: object) -> ExecutionPlan:
            current = plan
            while current.state not in ENDED:
                left = interval if deadline is None else min(interval, deadline - time.monotonic())
                if left <= 0:
                    break
                ticker.wait(left)
                current = world.get_plan(current.id)
                if callable(changed):
                    changed(current)
            return current

        if as_json:
            plan = follow(None)
        elif console.is_terminal:
            shown = [plan]
            with Live(
                get_renderable=lambda: live_view(shown[0]),
                console=console,
                refresh_per_second=4,
            ):
                plan = follow(lambda p: shown.__setitem__(0, p))
        else:  # piped: a line per step that changes
            lines = _Lines(console, plan)
            plan = follow(lines.update)
    code = plan_exit(plan)
    if as_json:
        emit_json(plan_document(plan))
    else:
        _summary(console, plan, code, timeout)
    sys.exit(code)


def progress(plan: ExecutionPlan) -> tuple[int, int, dict[str, int]]:
    """``(done, total, {state: count})`` of the plan's run and finalize steps."""
    steps = [s for s in plan.steps if s.kind != StepKind.PLAN]
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.state] = counts.get(step.state, 0) + 1
    done = sum(1 for s in steps if s.state in FINISHED_STEP_STATES)
    return done, len(steps), counts


def live_view(plan: ExecutionPlan) -> RenderableType:
    """What a terminal shows while the plan runs: the plan as a tree (a big plan: its header
    and its active steps), then a progress bar."""
    done, total, counts = progress(plan)
    bar = Table.grid(padding=(0, 1))
    words = [f"{done}/{total} steps done"]
    words += [f"{counts[s]} {s}" for s in ("running", "suspended", "error") if counts.get(s)]
    bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=40), Text(", ".join(words)))
    if total <= TREE_STEPS:
        return Group(plan_tree(plan), bar)
    header = Text.assemble(safe(plan.label, "bold"), "  ", state_text(plan.state, plan.result))
    header.append(f"  {format_duration(plan_duration(plan))}", style="cyan")
    header.append(f"\nplan {plan.id}", style="dim")
    timings = step_timings(plan)
    active = [s for s in plan.steps if s.state in ("running", "suspended", "error")]
    lines = [step_line(s, timings[s.id].duration) for s in active[:ACTIVE_SHOWN]]
    if len(active) > ACTIVE_SHOWN:
        lines.append(Text(f"  ... and {len(active) - ACTIVE_SHOWN} more", style="dim"))
    return Group(header, *lines, bar)


def step_line(step: StepRecord, duration: float | None) -> Text:
    icon, style = STEP_STYLES.get(step.state, ("?", ""))
    line = Text.assemble(
        (f"  {icon} ", style),
        safe(f"{step.kind} {step.id} {short_name(step.action_class)} "),
        (str(step.state), style),
    )
    if duration is not None and step.state != StepState.PENDING:
        line.append(f" {format_duration(duration)}", style="cyan")
    return line


class _Lines:
    """Piped output: the plan once, then a line per step whose state changed."""

    def __init__(self, console: Console, plan: ExecutionPlan) -> None:
        self.console = console
        self.states = {s.id: s.state for s in plan.steps}
        done, total, _ = progress(plan)
        console.print(
            Text.assemble(
                f"watching plan {plan.id} ",
                safe(plan.label, "bold"),
                ": ",
                state_text(plan.state, plan.result),
                f", {done}/{total} steps done",
            ),
            soft_wrap=True,
        )

    def update(self, plan: ExecutionPlan) -> None:
        timings = step_timings(plan, now())
        done, total, _ = progress(plan)
        for step in plan.steps:
            if self.states.get(step.id) != step.state:
                self.states[step.id] = step.state
                line = step_line(step, timings[step.id].duration)
                line.append(f"  [{done}/{total}]", style="dim")
                self.console.print(line, soft_wrap=True)


def _summary(console: Console, plan: ExecutionPlan, code: Exit, timeout: float | None) -> None:
    line = Text.assemble(f"plan {plan.id}: ", state_text(plan.state, plan.result))
    duration = plan_duration(plan)
    if duration is not None:
        line.append(f"  {format_duration(duration)}", style="cyan")
    console.print(line, soft_wrap=True)
    for step in plan.steps:
        if step.state == StepState.ERROR and step.error is not None:
            console.print(
                safe(f"  ✘ step {step.id} {short_name(step.action_class)}: {step.error}", "red"),
                soft_wrap=True,
            )
    if code == Exit.TIMEOUT:
        console.print(f"it goes on after {timeout:g}s of watching", style="dim")
    elif plan.state == PlanState.PAUSED:
        module = module_of(plan.root_action_class or "")
        console.print(
            f"{hint(f'plans show {plan.id}')} shows it; "
            f"{hint(f'plans resume {plan.id}', then=f'--import {module}')} runs its failed "
            "steps again",
            style="dim",
            soft_wrap=True,
        )
