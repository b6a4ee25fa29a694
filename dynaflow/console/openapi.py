"""The JSON API's OpenAPI 3.1 description, assembled from the pydantic models of
:mod:`.views` (served at ``/api/openapi.json``)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dynaflow.console.views import (
    ActionDone,
    ActionOptions,
    BulkRequest,
    BulkResult,
    Cluster,
    ErrorBody,
    PlanDetail,
    PlanList,
    PlanStatus,
    StepDetail,
)

REF = "#/components/schemas/{model}"

FILTERS = [
    ("state", "planned, running, paused or stopped"),
    ("result", "pending, success, warning, error or cancelled"),
    ("action", "the root action class, by its qualified name"),
    ("label", "the label, exactly"),
    ("q", "a part of the label or the id, in any case"),
    ("since", "created at or after this time (ISO 8601; UTC unless it has an offset)"),
    ("until", "created before this time"),
    ("page", "the page, from 1"),
    ("per_page", "plans per page, 1 to 500 (default 50)"),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer" if name == "step_id" else "string"},
    }


def _responses(model: type[BaseModel], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": _ref(model)}}}
    }
    reasons = {
        400: "a bad parameter or body",
        401: "no token (when the console has one)",
        403: "read-only console, or a missing CSRF token",
        404: "no such plan or step",
        409: "the action is not allowed in the plan's state; nothing was changed",
        415: "the body is not JSON",
    }
    for code in (400, 401, *errors):
        out[str(code)] = {
            "description": reasons[code],
            "content": {"application/json": {"schema": _ref(ErrorBody)}},
        }
    return out


def _get(summary: str, model: type[BaseModel], params: list[Any], *errors: int) -> dict[str, Any]:
    return {
        "get": {"summary": summary, "parameters": params, "responses": _responses(model, *errors)}
    }


def _post(
    summary: str, body: type[BaseModel], model: type[BaseModel], params: list[Any]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": params,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            },
            "responses": _responses(model, 403, 404, 409, 415),
        }
    }


@cache
def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        ActionDone, ActionOptions, BulkRequest, BulkResult, Cluster, ErrorBody,
        PlanDetail, PlanList, PlanStatus, StepDetail,
    ]  # fmt: skip
    wanted = [(m, "serialization") for m in models]
    _, schema = models_json_schema(wanted, ref_template=REF)  # type: ignore[arg-type]
    return dict(schema.get("$defs", {}))


def document(root: str = "") -> dict[str, Any]:
    plan_id = _path("plan_id", "the plan's whole id")
    step_id = _path("step_id", "the step's id")
    filters = [
        {"name": n, "in": "query", "required": False, "description": d,
         "schema": {"type": "integer" if n in ("page", "per_page") else "string"}}
        for n, d in FILTERS
    ]  # fmt: skip
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["resume", "cancel", "halt"]},
    }
    step_action = {**action, "schema": {"type": "string", "enum": ["skip", "retry"]}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dynaflow console API",
            "version": "1",
            "description": "Plans, steps, worlds and queues, and the operator actions on them. "
            "With a token, send Authorization: Bearer TOKEN.",
        },
        "servers": [{"url": root or "/"}],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}, {}],
        "paths": {
            "/api/plans": _get("Plans matching the filters, newest first", PlanList, filters),
            "/api/plans/{plan_id}": _get("One plan", PlanDetail, [plan_id], 404),
            "/api/plans/{plan_id}/status": _get("What live pages poll", PlanStatus, [plan_id], 404),
            "/api/plans/{plan_id}/steps/{step_id}": _get(
                "One step, with its action's input and output", StepDetail, [plan_id, step_id], 404
            ),
            "/api/plans/{plan_id}/{action}": _post(
                "Resume, cancel or halt a plan", ActionOptions, ActionDone, [plan_id, action]
            ),
            "/api/plans/{plan_id}/steps/{step_id}/{action}": _post(
                "Skip or retry a failed step",
                ActionOptions,
                ActionDone,
                [plan_id, step_id, step_action],
            ),
            "/api/bulk": _post(
                "An action on every plan the filters match (dry_run first)",
                BulkRequest,
                BulkResult,
                [],
            ),
            "/api/cluster": _get("Executor worlds, queues, waiting requests", Cluster, []),
        },
    }
