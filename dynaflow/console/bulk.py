"""An operator action over every plan the list's filters match (not only the page shown):
first a dry run that says how many plans match and which of them the action applies to, then
the action on each, with a result per plan."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from dynaflow.console.errors import bad_request
from dynaflow.console.operations import perform, plan_actions, step_actions
from dynaflow.console.query import PlanQuery
from dynaflow.console.views import BulkItem, BulkResult
from dynaflow.exceptions import DynaflowError
from dynaflow.execution_plan import ExecutionPlan, PlanRecord
from dynaflow.states import StepKind, StepState
from dynaflow.world import World

#: a bulk action acts on at most this many plans; narrower filters for more
BULK_LIMIT = 5000
_PAGE = 500


def matching(world: World, query: PlanQuery) -> list[PlanRecord]:
    """Every plan ``query``'s filters match, newest first (collected before acting, so an
    action that moves a plan out of the filter does not shift the pages)."""
    total = world.count_plans(**query.filters())
    if total > BULK_LIMIT:
        raise bad_request(
            f"{total} plans match; a bulk action takes at most {BULK_LIMIT}: narrow the "
            "filters (a time range, an action class)"
        )
    records: list[PlanRecord] = []
    page = 1
    while True:
        rows = world.find_plans(**query.filters(), page=page, per_page=_PAGE)
        records.extend(rows)
        if len(rows) < _PAGE:
            return records
        page += 1


def failed_steps(plan: ExecutionPlan) -> list[int]:
    return [
        s.id
        for s in sorted(plan.steps, key=lambda s: s.id)
        if s.kind == StepKind.RUN and s.state == StepState.ERROR
    ]


def check(world: World, action: str, record: PlanRecord) -> tuple[bool, str]:
    """Whether ``action`` applies to the plan now, and what it would do (or why not)."""
    if action in ("resume", "cancel", "halt"):
        if action in plan_actions(record):
            return True, f"would {action}"
        return False, f"cannot {action} it: the plan is {record.state}" + (
            f" ({record.result})" if record.state == "stopped" else ""
        )
    plan = world.get_plan(record.id)
    failed = failed_steps(plan)
    if not failed:
        return False, f"no failed step (the plan is {record.state})"
    wanted = "skip" if action in ("skip", "skip_and_resume") else "retry"
    allowed = [sid for sid in failed if wanted in step_actions(record, plan.step(sid))]
    if not allowed:
        done = "skipped" if wanted == "skip" else "retried"
        return False, f"the plan is {record.state}; its failed steps cannot be {done} now"
    if wanted == "retry" and len(failed) > 1:
        return False, (
            f"{len(failed)} failed steps ({', '.join(map(str, failed))}); retry them one by "
            "one on the plan's page, or resume the plan"
        )
    steps = ", ".join(map(str, allowed))
    verb = {"skip": "skip", "skip_and_resume": "skip and resume", "retry": "retry"}[action]
    return True, f"would {verb} step{'s' if len(allowed) > 1 else ''} {steps}"


def run(
    world: World,
    action: str,
    query: PlanQuery,
    *,
    dry_run: bool,
    by: str,
    abort: bool = False,
) -> BulkResult:
    records = matching(world, query)
    results: list[BulkItem] = []
    for record in records:
        try:
            ok, message = check(world, action, record)
            if ok and not dry_run:
                message = _apply(world, action, record, by, abort)
        except HTTPException as exc:
            ok, message = False, exc.detail
        except DynaflowError as exc:
            ok, message = False, str(exc)
        results.append(BulkItem(plan_id=record.id, label=record.label, ok=ok, message=message))
    return BulkResult(
        action=action,  # type: ignore[arg-type]
        dry_run=dry_run,
        filters=query.as_json(),
        matched=len(records),
        applicable=sum(item.ok for item in results),
        results=results,
    )


def _apply(world: World, action: str, record: PlanRecord, by: str, abort: bool) -> str:
    if action in ("resume", "cancel", "halt"):
        return perform(world, record.id, action, by=by, abort=abort).message
    plan = world.get_plan(record.id)
    if action == "retry":
        (step_id,) = failed_steps(plan)
        return perform(world, record.id, "retry", by=by, step_id=step_id).message
    skipped = []
    for step_id in failed_steps(plan):
        # a skip takes the steps consuming its output along: look again before each
        if world.get_plan(record.id).step(step_id).state == StepState.ERROR:
            perform(world, record.id, "skip", by=by, step_id=step_id)
            skipped.append(step_id)
    message = f"skipped step{'s' if len(skipped) > 1 else ''} {', '.join(map(str, skipped))}"
    if action == "skip_and_resume":
        message += "; " + perform(world, record.id, "resume", by=by).message
    return message
