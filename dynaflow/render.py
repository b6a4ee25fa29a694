"""Draw an execution plan as a rich tree: the run flow (sequences and concurrences of run steps)
with each step's action, state, duration and error, then the finalize steps in order.

Used by ``dynaflow plans show``, ``plans watch`` and ``dynaflow demo`` (live, with step states
overlaid). Durations are those of :mod:`dynaflow.timings`.

Everything read from the database (labels, class names, inputs, errors, tracebacks, world ids)
reaches the terminal through :func:`safe`: its control characters are shown escaped and rich
markup in it is never interpreted, so a stored value cannot clear the screen, move the cursor,
plant a hyperlink or restyle the output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from dynaflow import flows
from dynaflow.clock import now
from dynaflow.execution_plan import ActionRecord, ExecutionPlan, PlanRecord, StepRecord
from dynaflow.states import PlanResult, PlanState, StepKind, StepState
from dynaflow.timings import plan_duration, plan_end, step_timings
from dynaflow.values import decode_ref, is_ref

STEP_STYLES: dict[str, tuple[str, str]] = {
    StepState.PENDING: ("·", "dim"),
    StepState.RUNNING: ("▶", "bold yellow"),
    StepState.SUSPENDED: ("⏸", "yellow"),
    StepState.SUCCESS: ("✔", "green"),
    StepState.ERROR: ("✘", "bold red"),
    StepState.SKIPPED: ("↷", "magenta"),
    StepState.CANCELLED: ("⊘", "red"),
}

PLAN_STYLES: dict[str, str] = {
    PlanState.RUNNING: "bold yellow",
    PlanState.PAUSED: "bold red",
    PlanState.STOPPED: "bold",
    PlanResult.SUCCESS: "bold green",
    PlanResult.WARNING: "bold magenta",
    PlanResult.ERROR: "bold red",
    PlanResult.CANCELLED: "red",
}

#: longest input summary shown beside a step
SUMMARY_WIDTH = 60

# C0 and C1 control characters and DEL (escape sequences, carriage return, backspace, bell...),
# the Unicode bidirectional controls (they reorder what is shown) and the line/paragraph separators
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(value: object, *, multiline: bool = False) -> str:
    """``str(value)`` with its control characters shown escaped (``\\x1b``, ``\\r``);
    ``multiline`` keeps newlines (tracebacks)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char == "\n" and multiline:
            return char
        code = ord(char)
        return _SHORT.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")

    return _UNSAFE.sub(escape, str(value))


def safe(value: object, style: str = "", *, multiline: bool = False) -> Text:
    """Stored text as a rich ``Text``: control characters escaped (:func:`printable`) and
    markup such as ``[bold]`` shown as written, never interpreted."""
    return Text(printable(value, multiline=multiline), style=style)


def short_name(action_class: str) -> str:
    """``pkg.module.CreateMachine`` -> ``CreateMachine``."""
    return action_class.rsplit(".", 1)[-1]


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds < 0.01 else f"{seconds:.2f}s"
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def state_text(state: str, result: str | None = None) -> Text:
    """``stopped / success`` in the colours of a plan state and result."""
    text = Text(str(state), style=PLAN_STYLES.get(state, ""))
    if result is not None:
        text.append(" / ", style="dim")
        text.append(str(result), style=PLAN_STYLES.get(result, ""))
    return text


def plan_tree(
    plan: ExecutionPlan,
    *,
    record: PlanRecord | None = None,
    steps: Mapping[int, StepRecord] | None = None,
    tracebacks: bool = False,
    timing: bool = True,
) -> Tree:
    """The plan as a tree: a header line, the plan phase if it failed, the run flow, the
    finalize steps. ``record`` and ``steps`` (by id) override the plan's own (live views);
    ``timing=False`` leaves durations and ids out (output that must not change between runs)."""
    view = _View(plan, record or plan.record, steps or {}, tracebacks, timing)
    return view.tree()


class _View:
    def __init__(
        self,
        plan: ExecutionPlan,
        record: PlanRecord,
        overrides: Mapping[int, StepRecord],
        tracebacks: bool,
        timing: bool,
    ) -> None:
        self.plan = plan
        self.record = record
        self.steps = {step.id: overrides.get(step.id, step) for step in plan.steps}
        self.actions = {action.id: action for action in plan.actions}
        self.tracebacks = tracebacks
        self.timing = timing
        self.at = now()
        self.run_step_of = {
            s.action_id: s.id for s in self.steps.values() if s.kind == StepKind.RUN
        }
        self.whole = record is plan.record
        self.timings = step_timings(
            plan,
            self.at,
            steps=[self.steps[i] for i in overrides if i in self.steps],
            running=record.state == PlanState.RUNNING,
        )

    def tree(self) -> Tree:
        plan = self.record
        header = Text()
        header.append_text(safe(plan.label or short_name(plan.root_action_class or "?"), "bold"))
        header.append("  ")
        header.append_text(state_text(plan.state, plan.result))
        if self.timing:
            duration = plan_duration(self.plan if self.whole else plan, self.at)
            if duration is not None:
                header.append(f"  {format_duration(duration)}", style="cyan")
            header.append(f"\nplan {plan.id}", style="dim")
            when = self._when()
            if when:
                header.append(f"\n{when}", style="dim")
            if self.whole and plan.state in (PlanState.RUNNING, PlanState.PAUSED):
                header.append(f"\nprogress {self.plan.progress:.0%}", style="cyan")
            if plan.parent_id is not None:
                header.append(
                    f"\nsub-plan of plan {plan.parent_id} (step {plan.parent_step_id})",
                    style="dim",
                )
        tree = Tree(header, guide_style="dim")

        plan_steps = [s for s in self.steps.values() if s.kind == StepKind.PLAN]
        failed = [s for s in plan_steps if s.state == StepState.ERROR]
        if plan.error is not None and not failed:
            tree.add(self._error(plan.error.class_name, plan.error.message, plan.error.traceback))
        if failed:
            branch = tree.add(Text("plan", style="bold"))
            for step in failed:
                self._add_step(branch, step)

        run_steps = [s for s in self.steps.values() if s.kind == StepKind.RUN]
        if run_steps:
            branch = tree.add(Text("run", style="bold"))
            self._add_flow(branch, self.plan.flow())

        finalize_steps = sorted(
            (s for s in self.steps.values() if s.kind == StepKind.FINALIZE),
            key=lambda s: s.position,
        )
        if finalize_steps:
            branch = tree.add(Text("finalize", style="bold"))
            for step in finalize_steps:
                self._add_step(branch, step)
        if not (run_steps or finalize_steps or failed):
            tree.add(Text("(nothing to run)", style="dim"))
        return tree

    def _when(self) -> str:
        """``started 2026-12-01 18:24:44, paused 18:24:46``: the plan's times, local."""
        plan = self.record
        if plan.started_at is None:
            return f"created {_local(plan.created_at)}" if plan.created_at else ""
        parts = [f"started {_local(plan.started_at)}"]
        end = plan_end(self.plan, self.at) if self.whole else plan.ended_at
        if plan.state == PlanState.STOPPED and end is not None:
            parts.append(f"ended {_local(end)}")
        elif plan.state == PlanState.PAUSED and end is not None:
            parts.append(f"paused {_local(end)}")
        return ", ".join(parts)

    def _add_flow(self, parent: Tree, flow: flows.Flow) -> None:
        if isinstance(flow, flows.Atom):
            step = self.steps.get(flow.step_id)
            if step is None:
                parent.add(Text(f"step {flow.step_id} (missing)", style="red"))
            else:
                self._add_step(parent, step)
            return
        name = "sequence" if isinstance(flow, flows.Sequence) else "concurrence"
        branch = parent.add(Text(name, style="blue"))
        for child in flow.children:
            self._add_flow(branch, child)

    def _add_step(self, parent: Tree, step: StepRecord) -> None:
        icon, style = STEP_STYLES.get(step.state, ("?", ""))
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{icon} ", style=style)
        if self.timing:
            line.append(f"{step.id:>2} ", style="dim")
        line.append_text(safe(short_name(step.action_class), "bold"))
        line.append("  ")
        line.append(str(step.state), style=style)
        if self.timing:
            timing = self.timings[step.id]
            if timing.duration is not None:
                line.append(f" {format_duration(timing.duration)}", style="cyan")
            if timing.runs > 1 and timing.run_time is not None:
                ran = f" (ran {format_duration(timing.run_time)} in {timing.runs} runs)"
                line.append(ran, style="dim cyan")
        reported = _reported(step)
        if reported:
            line.append(f" {reported}", style="cyan")
        action = self.actions.get(step.action_id)
        if action is not None:
            summary = self._summary(action)
            if summary:
                line.append(f"  {summary}", style="" if step.kind == StepKind.RUN else "dim")
            trigger = self.actions.get(action.trigger_id) if action.trigger_id else None
            if trigger is not None and step.kind == StepKind.RUN:
                line.append_text(
                    safe(f"  (subscribed to {short_name(trigger.action_class)})", "italic dim")
                )
        node = parent.add(line)
        if step.error is not None:
            node.add(self._error(step.error.class_name, step.error.message, step.error.traceback))

    def _summary(self, action: ActionRecord) -> str:
        """``name=host3 db_machine=<host1's uuid>``: the action's input, short."""
        parts = []
        for key, value in action.input.items():
            if key.startswith("__") or value is None:
                continue
            parts.append(f"{key}={self._value(value)}")
        text = printable(" ".join(parts))
        return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"

    def _value(self, value: Any) -> str:
        if is_ref(value):
            ref = decode_ref(value)
            path = "".join(f".{key}" if isinstance(key, str) else f"[{key}]" for key in ref.path)
            producer = self.run_step_of.get(ref.action_id)
            where = f"step {producer}" if producer is not None and self.timing else None
            name = short_name(ref.action_class)
            return f"<{where or name}{path}>"
        if isinstance(value, str):
            return value if value and " " not in value else repr(value)
        if isinstance(value, dict | list):
            inner = "…" if value else ""
            return "{" + inner + "}" if isinstance(value, dict) else "[" + inner + "]"
        return repr(value) if not isinstance(value, bool | int | float) else str(value)

    def _error(self, class_name: str, message: str, traceback: str | None) -> RenderableType:
        text = safe(f"{class_name}: {message}", "red")
        if self.tracebacks and traceback:
            return Group(text, safe(traceback.rstrip(), "dim red", multiline=True))
        return text


def _local(at: datetime | None) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""


def _reported(step: StepRecord) -> str:
    """``[3/10]`` or ``[3]``: the progress a step not yet done last reported."""
    progress = step.progress or {}
    done, total = progress.get("done"), progress.get("total")
    if done is None or step.state in (StepState.SUCCESS, StepState.SKIPPED):
        return ""
    return f"[{done:g}/{total:g}]" if total else f"[{done:g}]"
