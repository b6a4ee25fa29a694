"""The JSON API under ``/api``: what every page shows, and every action, for scripts.

Reads are GETs. Actions are POSTs with a JSON body (``{}`` will do); with a token set they
need ``Authorization: Bearer TOKEN`` (or the console's session cookie and its CSRF token in
``X-CSRF-Token``). Errors are ``{"error": message, "status": code}`` with a 4xx status.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dynaflow.console import bulk, serialize
from dynaflow.console.auth import CSRF_HEADER, check_csrf
from dynaflow.console.errors import bad_request, forbidden, not_found, problem
from dynaflow.console.openapi import document
from dynaflow.console.operations import PLAN_ACTIONS, STEP_ACTIONS, perform
from dynaflow.console.pages import list_plans, load_plan
from dynaflow.console.query import parse_query
from dynaflow.console.state import actor, console_of, links_of
from dynaflow.console.views import ActionOptions, BulkRequest


def routes() -> list[Route]:
    return [
        Route("/api/openapi.json", openapi),
        Route("/api/plans", plans),
        Route("/api/plans/{plan_id}", plan),
        Route("/api/plans/{plan_id}/status", status),
        Route("/api/plans/{plan_id}/steps/{step_id}", step),
        Route("/api/plans/{plan_id}/steps/{step_id}/{action}", step_action, methods=["POST"]),
        Route("/api/plans/{plan_id}/{action}", plan_action, methods=["POST"]),
        Route("/api/bulk", bulk_action, methods=["POST"]),
        Route("/api/cluster", cluster),
    ]


def answer(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


def openapi(request: Request) -> Response:
    return JSONResponse(document(request.scope.get("root_path", "")))


def plans(request: Request) -> Response:
    return answer(list_plans(request, parse_query(request.query_params)))


def plan(request: Request) -> Response:
    loaded = load_plan(request)
    children = console_of(request).world.plan_counts(parent=loaded.id)
    return answer(serialize.plan_detail(loaded, links_of(request), sub_plans=children))


def status(request: Request) -> Response:
    return answer(serialize.plan_status(load_plan(request)))


def _step_id(request: Request) -> int:
    value = request.path_params["step_id"]
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"a step id is a whole number, got {value!r}") from None


def step(request: Request) -> Response:
    found = load_plan(request)
    step_id = _step_id(request)
    if step_id not in {s.id for s in found.steps}:
        raise not_found(f"plan {found.id} has no step {step_id}")
    console = console_of(request)
    return answer(serialize.step_detail(found, step_id, console.presenter, console.world))


def cluster(request: Request) -> Response:
    return answer(serialize.cluster(console_of(request).world))


async def _body(request: Request, model: type[BaseModel]) -> Any:
    """The checked JSON body of an action; refuses what a form on another site could send."""
    console = console_of(request)
    if console.read_only:
        raise forbidden("this console is read-only: it takes no operator actions")
    if not console.security.bearer(request) and console.security.token is not None:
        check_csrf(request, request.headers.get(CSRF_HEADER))
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise problem(
            415,
            f"send the body as JSON (Content-Type: application/json), not {kind or 'nothing'}; "
            "an empty object {} will do",
        )
    raw = await request.body()
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise bad_request(f"the body is not JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise bad_request(f"bad request body: {problems}") from None


async def plan_action(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in PLAN_ACTIONS:
        raise not_found(
            f"no plan action {action!r}; POST to resume, cancel or halt (skip and retry "
            "are under /steps/ID/)"
        )
    options = await _body(request, ActionOptions)

    def act() -> Any:
        found = load_plan(request)
        return perform(
            console_of(request).world,
            found.id,
            action,
            by=actor(request, "api"),
            abort=options.abort,
        )

    return answer(await run_in_threadpool(act))


async def step_action(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in STEP_ACTIONS:
        raise not_found(f"no step action {action!r}; POST to skip or retry")
    options = await _body(request, ActionOptions)
    step_id = _step_id(request)

    def act() -> Any:
        found = load_plan(request)
        return perform(
            console_of(request).world,
            found.id,
            action,
            by=actor(request, "api"),
            step_id=step_id,
            resume=options.resume,
        )

    return answer(await run_in_threadpool(act))


async def bulk_action(request: Request) -> Response:
    body: BulkRequest = await _body(request, BulkRequest)
    query = parse_query(body.filters, paging=False)
    console = console_of(request)
    result = await run_in_threadpool(
        bulk.run,
        console.world,
        body.action,
        query,
        dry_run=body.dry_run,
        by=actor(request, "api"),
        abort=body.abort,
    )
    return answer(result)
