"""``dynaflow plans list`` and ``dynaflow plans show``: reading plans, as text or JSON."""

from __future__ import annotations

import click

from dynaflow.cli_support import _console, _open, emit_json, hint, json_option, url_option
from dynaflow.clock import now
from dynaflow.execution_plan import ExecutionPlan
from dynaflow.render import plan_tree
from dynaflow.render_json import iso, plan_document, plan_row
from dynaflow.render_tables import print_history, print_logs, print_plans
from dynaflow.states import PlanResult, PlanState
from dynaflow.timings import paused_at, plan_duration


@click.group()
def plans() -> None:
    """List, inspect, follow and operate execution plans."""


@plans.command("list")
@url_option
@click.option("--state", type=click.Choice([s.value for s in PlanState]), help="Only this state.")
@click.option(
    "--result", type=click.Choice([r.value for r in PlanResult]), help="Only this result."
)
@click.option("--label", help="Only plans with exactly this label.")
@click.option("--action", metavar="CLASS", help="Only plans of this root action (module.Class).")
@click.option("--parent", metavar="PLAN_ID", help="Only the sub-plans of this plan.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--per-page", default=20, show_default=True, type=click.IntRange(min=1))
@json_option
def list_plans(
    url: str,
    state: str | None,
    result: str | None,
    label: str | None,
    action: str | None,
    parent: str | None,
    page: int,
    per_page: int,
    as_json: bool,
) -> None:
    """Plans, newest first, with their whole ids."""
    with _open(url) as world:
        parent_id = None if parent is None else world.resolve_plan_id(parent)
        rows = world.find_plans(
            state=state,
            result=result,
            label=label,
            action=action,
            parent=parent_id,
            page=page,
            per_page=per_page,
        )
        total = world.count_plans(
            state=state, result=result, label=label, action=action, parent=parent_id
        )
        # a paused plan's row does not say when it paused: its history does
        paused: dict[str, ExecutionPlan] = {
            r.id: world.get_plan(r.id) for r in rows if r.state == PlanState.PAUSED
        }
    at = now()
    durations = {r.id: plan_duration(paused.get(r.id) or r, at) for r in rows}
    pages = max(1, -(-total // per_page))
    if as_json:
        emit_json(
            {
                "plans": [
                    plan_row(
                        r,
                        durations[r.id],
                        paused_at(paused[r.id].history) if r.id in paused else None,
                    )
                    for r in rows
                ],
                "page": page,
                "per_page": per_page,
                "pages": pages,
                "total": total,
            }
        )
        return
    console = _console()
    if not rows:
        console.print(f"no plans match (page {page} of {pages}, {total} plans in all)")
        return
    print_plans(console, rows, durations)
    console.print(f"page {page} of {pages}, {total} plans", style="dim")


#: log lines ``plans show --logs`` shows at most
MAX_LOG_LINES = 10_000


@plans.command("show")
@click.argument("plan_id")
@url_option
@click.option("--traceback", "tracebacks", is_flag=True, help="Show each error's traceback.")
@click.option(
    "--history", is_flag=True, help="Show the plan's history too (times, events, errors)."
)
@click.option("--logs", is_flag=True, help="Show what its steps logged (self.log) too.")
@json_option
def show_plan(
    plan_id: str, url: str, tracebacks: bool, history: bool, logs: bool, as_json: bool
) -> None:
    """One plan (PLAN_ID whole, or a prefix only its id starts with) as a tree: its run flow
    and finalize steps with states, durations, progress and errors, and its sub-plans."""
    with _open(url) as world:
        plan = world.get_plan(world.resolve_plan_id(plan_id))
        children = world.plan_counts(parent=plan.id)
        lines = world.step_logs(plan.id, limit=MAX_LOG_LINES) if logs else []
    if as_json:
        document = plan_document(plan)
        document["sub_plans"] = [
            {"state": str(state), "result": str(result), "count": n}
            for (state, result), n in sorted(children.items())
        ]
        if logs:
            document["logs"] = [
                {"step_id": x.step_id, "seq": x.seq, "at": iso(x.at), "message": x.message}
                for x in lines
            ]
        emit_json(document)
        return
    console = _console()
    console.print(plan_tree(plan, tracebacks=tracebacks))
    if children:
        summary = ", ".join(
            f"{n} {state}" + (f"/{result}" if state in ("stopped", "paused") else "")
            for (state, result), n in sorted(children.items())
        )
        console.print(f"sub-plans: {sum(children.values())} ({summary})")
        console.print(f"  {hint(f'plans list --parent {plan.id}')} lists them", style="dim")
    if logs:
        print_logs(console, lines, {s.id: s.action_class for s in plan.steps})
    if history:
        print_history(console, plan.history, {s.id: s.action_class for s in plan.steps})
    if plan.state == PlanState.RUNNING:
        console.print(f"it runs: {hint(f'plans watch {plan.id}')} follows it", style="dim")
