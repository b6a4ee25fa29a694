"""The API's OpenAPI description: every route of the API is in it, every schema it refers to
is defined, and the answers the API gives match their schemas."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route
from starlette.testclient import TestClient

from dynaflow import World
from dynaflow.console import api, views

from .conftest import paused_release


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(item) for item in node)) if node else set()
    return set()


def test_every_api_route_is_described(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    for route in api.routes():
        assert isinstance(route, Route)
        if route.path == "/api/openapi.json":
            continue
        for method in route.methods or ():
            if method != "HEAD":
                assert (route.path, method) in described, (route.path, method)


def test_every_reference_resolves(client: TestClient) -> None:
    document = client.get("/api/openapi.json").json()
    schemas = document["components"]["schemas"]
    for ref in refs(document):
        name = re.fullmatch(r"#/components/schemas/(\w+)", ref)
        assert name and name.group(1) in schemas, ref


def test_answers_match_their_schemas(executor: World, client: TestClient) -> None:
    plan = paused_release(executor)
    step = next(s.id for s in plan.steps if s.state == "error")
    views.PlanList.model_validate(client.get("/api/plans").json())
    views.PlanDetail.model_validate(client.get(f"/api/plans/{plan.id}").json())
    views.PlanStatus.model_validate(client.get(f"/api/plans/{plan.id}/status").json())
    views.StepDetail.model_validate(client.get(f"/api/plans/{plan.id}/steps/{step}").json())
    views.Cluster.model_validate(client.get("/api/cluster").json())
    views.BulkResult.model_validate(client.post("/api/bulk", json={"action": "halt"}).json())
    views.ActionDone.model_validate(client.post(f"/api/plans/{plan.id}/halt", json={}).json())
    views.ErrorBody.model_validate(client.get("/api/plans/nope").json())


def test_served_under_a_prefix_the_server_url_says_so(console_world: World) -> None:
    from dynaflow.console import app

    client = TestClient(app(console_world), root_path="/ops")
    assert client.get("/ops/api/openapi.json").json()["servers"] == [{"url": "/ops"}]
