"""Fixtures of the console tests: a database (an SQLite file, or the PostgreSQL test schema),
an executor world that runs plans in the test process, and the console on a client world
(no executor, as `dynaflow console` runs it) on the same database, behind Starlette's test
client."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dynaflow import ExecutionPlan, World
from dynaflow.console import app

from . import actions
from .actions import WAIT


@pytest.fixture(autouse=True)
def _reset_actions() -> Iterator[None]:
    actions.reset()
    yield
    actions.reset()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: an SQLite file or the session's PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path / "console.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def executor(url: str) -> Iterator[World]:
    """A world that runs plans (a worker, in the test process)."""
    world = World(url, executor="threads", workers=4)
    yield world
    world.close(timeout=WAIT)


@pytest.fixture
def console_world(url: str, executor: World) -> Iterator[World]:
    """The console's world: a client, running nothing."""
    world = World(url, executor=None)
    yield world
    world.close(timeout=WAIT)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(console_world: World) -> Iterator[ClientFactory]:
    """``make_client(**app_options)``: a test client of the console on ``console_world``."""
    clients: list[TestClient] = []

    def make(**options: Any) -> TestClient:
        client = TestClient(app(console_world, **options), follow_redirects=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    """The console as `dynaflow console` serves it by default: open, operators may act."""
    return make_client()


def csrf_of(client: TestClient, page: str = "/plans") -> str:
    """The CSRF token of the client's session (read from a page's form)."""
    import re

    html = client.get(page).text
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF field on " + page
    return found.group(1)


def wait_for(world: World, plan_id: str, check: Callable[[ExecutionPlan], bool]) -> ExecutionPlan:
    """Read the plan until ``check`` holds (within :data:`WAIT` seconds)."""
    deadline = time.monotonic() + WAIT
    while True:
        plan = world.get_plan(plan_id)
        if check(plan):
            return plan
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"plan {plan_id} is {plan.state}/{plan.result}: not as awaited in {WAIT}s"
            )
        time.sleep(0.02)


def paused_release(world: World, *names: str, broken: str = "api") -> ExecutionPlan:
    """A Release of ``names`` (default api, web) paused on the failed deploy of ``broken``."""
    actions.BROKEN.add(broken)
    plan = world.trigger(actions.Release, list(names or ("api", "web"))).wait(WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    return plan


def failed_step(plan: ExecutionPlan) -> int:
    (step,) = [s for s in plan.steps if s.state == "error"]
    return int(step.id)
