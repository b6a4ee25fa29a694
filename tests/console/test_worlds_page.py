"""The worlds and queues page and ``GET /api/cluster``: each executor world with its host,
pid, queues, heartbeat age (stale ones marked) and running steps; each queue's counts; the
requests no world has taken."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from dynaflow import World
from dynaflow.console import app
from dynaflow.persistence.base import WorldRow

from . import actions
from .conftest import paused_release, wait_for


@pytest.fixture
def alone(url: str) -> Iterator[World]:
    """A client world on a database no executor world serves."""
    world = World(url, executor=None)
    yield world
    world.close()


def test_each_world_with_its_host_pid_queues_heartbeat_and_running_steps(
    executor: World, console_world: World, client: TestClient
) -> None:
    triggered = executor.trigger(actions.Release, ["api"], hold="api")
    actions.arrived("api").wait(actions.WAIT)
    page = client.get("/worlds").text
    row = re.search(
        rf'data-world-id="{re.escape(executor.id)}" data-stale="false">(.*?)</tr>', page, re.S
    )
    assert row, page
    cells = row.group(1)
    world = next(w for w in console_world.worlds() if w.id == executor.id)
    assert f"<td>{world.hostname}</td><td>{world.pid}</td>" in cells
    assert "default (4)" in cells
    assert re.search(r'data-testid="heartbeat-age">\d+\.\d s<', cells)
    assert 'data-testid="running-steps">1<' in cells
    assert 'class="result success">alive<' in cells
    api = client.get("/api/cluster").json()
    (view,) = [w for w in api["worlds"] if w["id"] == executor.id]
    assert (view["running_steps"], view["plans"], view["stale"]) == (1, 1, False)
    assert view["queues"] == {"default": 4}
    actions.gate("api").set()
    wait_for(console_world, triggered.plan_id, lambda p: p.state == "stopped")
    after = client.get("/api/cluster").json()
    assert [w["running_steps"] for w in after["worlds"] if w["id"] == executor.id] == [0]


def test_queue_counts(executor: World, client: TestClient) -> None:
    paused_release(executor)  # api failed, web waits
    executor.trigger(actions.Release, ["db"]).wait(actions.WAIT)
    page = client.get("/worlds").text
    row = re.search(r'data-testid="queue-row" data-queue="default">(.*?)</tr>', page, re.S)
    assert row
    cells = row.group(1)
    for name, value in (("pending", 1), ("running", 0), ("failed", 1), ("done", 1)):
        assert f'data-testid="queue-{name}">{value}<' in cells, name
    assert 'data-testid="queue-limit">none<' in cells
    queues = client.get("/api/cluster").json()["queues"]
    (queue,) = [q for q in queues if q["name"] == "default"]  # queues declared elsewhere too
    assert queue["threads"] == 4
    assert queue["worlds"] == {executor.id: 4}


def test_a_stale_world_is_marked(alone: World) -> None:
    at = alone.now()
    alone.storage.register_world(
        WorldRow(
            "gone-1",
            at - timedelta(seconds=90),
            at - timedelta(seconds=60),
            "h",
            4242,
            "threads",
            lease=30.0,
        )
    )
    alone.storage.register_world(
        WorldRow("fresh-1", at, at, "h2", 77, "threads", lease=30.0, queues={"slow": 2})
    )
    client = TestClient(app(alone))
    page = client.get("/worlds").text
    assert 'data-world-id="gone-1" data-stale="true" class="stale"' in page
    assert 'data-world-id="fresh-1" data-stale="false"' in page
    assert 'data-testid="stale">stale<' in page
    assert "taken over by the next heartbeat" in page
    ages = {w["id"]: w["heartbeat_age"] for w in client.get("/api/cluster").json()["worlds"]}
    assert ages["gone-1"] >= 60 and ages["fresh-1"] < 30


def test_no_world_and_a_waiting_request(alone: World) -> None:
    triggered = alone.trigger(actions.Release, ["api"])
    client = TestClient(app(alone))
    page = client.get("/worlds").text
    assert 'data-testid="no-worlds"' in page
    waiting = re.search(r'data-testid="waiting-requests">(.*?)</table>', page, re.S)
    assert waiting and triggered.plan_id in waiting.group(1)
    assert re.search(r"<td>execute</td>\s*<td>any world</td>", waiting.group(1))
    (request,) = client.get("/api/cluster").json()["waiting"]
    assert (request["plan_id"], request["kind"], request["for_world"]) == (
        triggered.plan_id, "execute", None
    )  # fmt: skip


def test_an_action_with_no_executor_world_says_the_request_waits(alone: World, url: str) -> None:
    actions.BROKEN.add("api")
    with World(url, executor="inline") as runner:
        plan = runner.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    client = TestClient(app(alone))
    answer = client.post(f"/api/plans/{plan.id}/resume", json={})
    assert answer.status_code == 200
    assert "no live executor world runs plans now" in answer.json()["message"]
