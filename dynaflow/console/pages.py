"""The console's HTML pages: the plans list, a plan, confirmations, bulk actions, worlds and
queues, sign-in. Each action is a POST from a confirmation page, checked for its CSRF token."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from dynaflow.console import bulk, graphing, serialize
from dynaflow.console.auth import check_csrf, safe_next, session
from dynaflow.console.errors import bad_request, conflict, forbidden, not_found
from dynaflow.console.operations import (
    PLAN_ACTIONS,
    STEP_ACTIONS,
    TITLES,
    describe,
    perform,
    why_not,
)
from dynaflow.console.query import parse_query
from dynaflow.console.rendering import render
from dynaflow.console.state import actor, console_of, links_of
from dynaflow.exceptions import UnknownPlan
from dynaflow.execution_plan import ExecutionPlan

#: the history rows a plan's page shows unless asked for all
HISTORY_ROWS = 500
#: the longest plan id there can be (the column's width)
MAX_PLAN_ID = 36


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/plans", plans_page, name="plans"),
        Route("/plans/{plan_id}", plan_page, name="plan"),
        Route("/plans/{plan_id}/confirm/{action}", confirm_page, name="confirm"),
        Route("/plans/{plan_id}/actions/{action}", action_post, methods=["POST"], name="act"),
        Route("/bulk", bulk_page, name="bulk"),
        Route("/bulk", bulk_post, methods=["POST"]),
        Route("/worlds", worlds_page, name="worlds"),
        Route("/signin", signin_page, name="signin"),
        Route("/signin", signin_post, methods=["POST"]),
        Route("/signout", signout_post, methods=["POST"], name="signout"),
    ]


def home(request: Request) -> Response:
    return RedirectResponse(links_of(request).path("/plans"), status_code=303)


# -- plans -------------------------------------------------------------------------------------


def plans_page(request: Request) -> Response:
    query = parse_query(request.query_params)
    listing = list_plans(request, query)
    context = {"query": query, "listing": listing}
    if request.query_params.get("partial"):
        return render(request, "_plans_live.html", **context)
    return render(request, "plans.html", **context)


def list_plans(request: Request, query: Any) -> Any:
    from dynaflow.console.views import PlanList

    world = console_of(request).world
    links = links_of(request)
    total = world.count_plans(**query.filters())
    records = world.find_plans(**query.filters(), page=query.page, per_page=query.per_page)
    counts = serialize.counts(world)
    rows = [serialize.plan_summary(r, links) for r in records]
    return PlanList(
        total=total,
        page=query.page,
        per_page=query.per_page,
        pages=max(1, -(-total // query.per_page)),
        filters=query.as_json(),
        counts=counts,
        plans=rows,
        version=serialize.fingerprint(
            total, counts, [(r.id, r.state, r.result, r.duration is None) for r in rows]
        ),
    )


# -- one plan ----------------------------------------------------------------------------------


def load_plan(request: Request) -> ExecutionPlan:
    plan_id = request.path_params["plan_id"]
    if len(plan_id) > MAX_PLAN_ID or not plan_id.isprintable():
        raise not_found(f"no execution plan with id {plan_id[:80]!r}; the plans list has them all")
    try:
        return console_of(request).world.get_plan(plan_id)
    except UnknownPlan:
        raise not_found(
            f"no execution plan with id {plan_id!r}; the plans list has them all"
        ) from None


def step_param(request: Request, plan: ExecutionPlan, value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        step_id = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"step must be a step id (a whole number), got {value!r}") from None
    if step_id not in {s.id for s in plan.steps}:
        raise not_found(f"plan {plan.id} has no step {step_id}; its steps are listed on its page")
    return step_id


def plan_page(request: Request) -> Response:
    console = console_of(request)
    links = links_of(request)
    plan = load_plan(request)
    step_id = step_param(request, plan, request.query_params.get("step"))
    all_history = bool(request.query_params.get("history"))
    children = console.world.plan_counts(parent=plan.id)
    detail = serialize.plan_detail(
        plan, links, None if all_history else HISTORY_ROWS, sub_plans=children
    )
    runs = sum(1 for _ in plan.run_steps())
    big = runs > graphing.step_limit()
    svg = why = None
    if not big or request.query_params.get("graph"):
        svg, why = graphing.draw(plan, lambda sid: links.step(plan.id, sid))
    context: dict[str, Any] = {
        "plan": detail,
        "step": (
            serialize.step_detail(plan, step_id, console.presenter, console.world)
            if step_id
            else None
        ),
        "svg": svg,
        "graph_note": why,
        "big": big,
        "run_steps": runs,
        "graph_shown": not big or bool(request.query_params.get("graph")),
        "order": serialize.run_steps_first(plan),
        "steps": {s.id: s for s in detail.steps},
        "history": detail.history,
        "history_cut": len(plan.history) - len(detail.history),
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    if request.query_params.get("partial"):
        return render(request, "_plan_live.html", **context)
    return render(request, "plan.html", **context)


def confirm_page(request: Request) -> Response:
    console = console_of(request)
    if console.read_only:
        raise forbidden("this console is read-only: it takes no operator actions")
    plan = load_plan(request)
    action, step_id, options = _action_of(request, plan, request.query_params)
    refused = why_not(action, plan.record, plan.step(step_id) if step_id is not None else None)
    if refused is not None:  # offered only where it is legal, its confirmation too
        raise conflict(refused)
    return render(
        request,
        "confirm.html",
        plan=serialize.plan_summary(plan.record, links_of(request)),
        action=action,
        step_id=step_id,
        options=options,
        sentence=describe(action, step_id, **options),
    )


def _action_of(
    request: Request, plan: ExecutionPlan, params: Any
) -> tuple[str, int | None, dict[str, bool]]:
    action = request.path_params["action"]
    if action == "skip_and_resume":
        action, options = "skip", {"resume": True}
    else:
        options = {"resume": params.get("resume") in ("1", "on", "true")}
    if action not in PLAN_ACTIONS + STEP_ACTIONS:
        raise not_found(f"unknown action {action!r}; the actions are {', '.join(TITLES)}")
    options["abort"] = params.get("abort") in ("1", "on", "true")
    step_id = step_param(request, plan, params.get("step"))
    if action in STEP_ACTIONS and step_id is None:
        raise bad_request(f"{action} needs a step: ?step=ID")
    return action, step_id, options


async def action_post(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    if console.read_only:
        raise forbidden("this console is read-only: it takes no operator actions")

    def act() -> Any:
        plan = load_plan(request)
        action, step_id, options = _action_of(request, plan, form)
        return perform(
            console.world,
            plan.id,
            action,
            by=actor(request, "console"),
            step_id=step_id,
            abort=options["abort"],
            resume=options["resume"],
        )

    done = await run_in_threadpool(act)
    session(request)["flash"] = done.message
    return RedirectResponse(links_of(request).plan(done.plan_id), status_code=303)


# -- bulk --------------------------------------------------------------------------------------


def _bulk_action(value: Any) -> str:
    allowed = ("resume", "skip", "skip_and_resume", "retry", "cancel", "halt")
    if value not in allowed:
        raise bad_request(f"unknown bulk action {value!r}; use one of {', '.join(allowed)}")
    return str(value)


def bulk_page(request: Request) -> Response:
    """The dry run: how many plans match, and what the action would do to each."""
    console = console_of(request)
    if console.read_only:
        raise forbidden("this console is read-only: it takes no operator actions")
    action = _bulk_action(request.query_params.get("op"))
    query = parse_query(request.query_params, paging=False)
    abort = request.query_params.get("abort") in ("1", "on", "true")
    result = bulk.run(console.world, action, query, dry_run=True, by="", abort=abort)
    return render(request, "bulk.html", result=result, query=query, abort=abort)


async def bulk_post(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    if console.read_only:
        raise forbidden("this console is read-only: it takes no operator actions")
    action = _bulk_action(form.get("op"))
    query = parse_query(form, paging=False)
    abort = form.get("abort") in ("1", "on", "true")
    by = actor(request, "console")
    result = await run_in_threadpool(
        bulk.run, console.world, action, query, dry_run=False, by=by, abort=abort
    )
    return render(request, "bulk.html", result=result, query=query, abort=abort)


# -- worlds and queues -------------------------------------------------------------------------


def worlds_page(request: Request) -> Response:
    cluster = serialize.cluster(console_of(request).world)
    return render(request, "worlds.html", cluster=cluster)


# -- signing in --------------------------------------------------------------------------------


def signin_page(request: Request) -> Response:
    console = console_of(request)
    root = request.scope.get("root_path", "")
    target = safe_next(request.query_params.get("next"), root)
    if console.security.token is None or console.security.signed_in(request):
        return RedirectResponse(target, status_code=303)
    return render(request, "signin.html", next=target, error=None)


async def signin_post(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    root = request.scope.get("root_path", "")
    target = safe_next(str(form.get("next") or ""), root)
    if console.security.token is None:
        return RedirectResponse(target, status_code=303)
    given = form.get("token")
    if not console.security.token_matches(given if isinstance(given, str) else None):
        return render(
            request, "signin.html", 403, next=target, error="that is not this console's token"
        )
    data = session(request)
    data.clear()
    data["auth"] = console.security.proof
    name = form.get("name")
    if isinstance(name, str) and name.strip():
        data["who"] = name.strip()[:64]
    return RedirectResponse(target, status_code=303)


async def signout_post(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form.get("csrf"))
    session(request).clear()
    response: Response = RedirectResponse(links_of(request).path("/signin"), status_code=303)
    return response


__all__ = ["HTMLResponse", "routes"]
