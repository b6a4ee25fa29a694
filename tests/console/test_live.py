"""Live pages: the plans and plan pages poll the JSON API (at most once a second, not while
the tab is hidden) and, when its ``version`` changes, fetch their live region drawn again by
the server. Here: the protocol those pages follow; the browser tests watch it happen."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from dynaflow import World

from . import actions
from .conftest import wait_for


def live_region(page: str) -> dict[str, str]:
    found = re.search(
        r'<div id="live" data-live-api="([^"]+)"\s+data-live-partial="([^"]+)"\s+'
        r'data-version="([^"]+)" data-final="(\w+)">',
        page,
    )
    assert found, "no live region"
    api, partial, version, final = found.groups()
    return {
        "api": api,
        "partial": partial.replace("&amp;", "&"),
        "version": version,
        "final": final,
    }


def test_a_plan_page_follows_its_plan_until_it_stops(
    executor: World, console_world: World, client: TestClient
) -> None:
    triggered = executor.trigger(actions.Release, ["api"], hold="api")
    actions.arrived("api").wait(actions.WAIT)
    page = client.get(f"/plans/{triggered.plan_id}?step=3").text
    live = live_region(page)
    assert live["api"] == f"/api/plans/{triggered.plan_id}/status"
    assert live["partial"] == f"/plans/{triggered.plan_id}?step=3&partial=1"
    assert live["final"] == "false"

    status = client.get(live["api"]).json()
    assert status["version"] == live["version"]
    assert (status["state"], status["final"]) == ("running", False)
    assert client.get(live["api"]).json()["version"] == live["version"]  # nothing changed

    actions.gate("api").set()
    wait_for(console_world, triggered.plan_id, lambda p: p.state == "stopped")
    status = client.get(live["api"]).json()
    assert status["version"] != live["version"]
    assert (status["state"], status["result"], status["final"]) == ("stopped", "success", True)
    assert status["progress"]["done"] == 1

    region = client.get(live["partial"])
    assert region.status_code == 200
    assert "<html" not in region.text
    assert 'data-testid="plan-state">stopped<' in region.text
    assert 'data-testid="step-panel" data-step-id="3"' in region.text
    assert live_region(client.get(f"/plans/{triggered.plan_id}").text)["final"] == "true"


def test_the_plans_page_follows_the_list(
    executor: World, console_world: World, client: TestClient
) -> None:
    page = client.get("/plans?state=running").text
    live = live_region(page)
    assert live["api"] == "/api/plans?state=running"
    assert live["partial"] == "/plans?state=running&partial=1"
    assert client.get(live["api"]).json()["version"] == live["version"]

    triggered = executor.trigger(actions.Release, ["api"], hold="api")
    actions.arrived("api").wait(actions.WAIT)
    changed = client.get(live["api"]).json()
    assert changed["version"] != live["version"]
    region = client.get(live["partial"]).text
    assert "<html" not in region
    assert f'data-plan-id="{triggered.plan_id}"' in region
    actions.gate("api").set()
    wait_for(console_world, triggered.plan_id, lambda p: p.state == "stopped")
    assert client.get(live["api"]).json()["version"] != changed["version"]


def test_the_script_polls_once_a_second_and_not_while_hidden(client: TestClient) -> None:
    script = client.get("/static/console.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "var INTERVAL = 1000;" in script.text
    assert "if (document.hidden)" in script.text
    assert '"visibilitychange"' in script.text
    assert "http" not in script.text.replace("HTTP ", "")  # nothing fetched from elsewhere
    page = client.get("/plans").text
    assert '<script src="/static/console.js" defer></script>' in page
    assert client.get("/static/console.css").status_code == 200
