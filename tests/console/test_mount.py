"""The console mounted under a prefix of another application (or served behind a proxy's
root path): every link, redirect and cookie stays under the prefix."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from dynaflow import World
from dynaflow.console import app

from . import actions
from .conftest import paused_release, wait_for

TOKEN = "mount-token-123"
#: every link, script, form target and live address of a page (the empty icon aside)
LINK = r'(?:href|src|action|data-live-api|data-live-partial)="(?!data:)([^"#]+)'


def host_app(world: World, **options: object) -> Starlette:
    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the application")

    return Starlette(
        routes=[Route("/", home), Mount("/ops/dynaflow", app=app(world, **options))]  # type: ignore[arg-type]
    )


def test_mounted_links_stay_under_the_prefix(executor: World, console_world: World) -> None:
    plan = paused_release(executor)
    client = TestClient(host_app(console_world), follow_redirects=False)
    assert client.get("/").text == "the application"
    assert client.get("/ops/dynaflow/").headers["location"] == "/ops/dynaflow/plans"
    page = client.get("/ops/dynaflow/plans").text
    links = re.findall(LINK, page)
    assert links and all(link.startswith("/ops/dynaflow/") for link in links), links
    assert f'href="/ops/dynaflow/plans/{plan.id}"' in page
    plan_page = client.get(f"/ops/dynaflow/plans/{plan.id}").text
    links = re.findall(LINK, plan_page)
    assert all(link.startswith("/ops/dynaflow/") for link in links), links
    assert client.get(f"/ops/dynaflow/api/plans/{plan.id}").json()["page"] == (
        f"/ops/dynaflow/plans/{plan.id}"
    )


def test_mounted_actions_and_sign_in(executor: World, console_world: World) -> None:
    plan = paused_release(executor)
    client = TestClient(host_app(console_world, token=TOKEN), follow_redirects=False)
    answer = client.get(f"/ops/dynaflow/plans/{plan.id}")
    assert answer.headers["location"] == (
        f"/ops/dynaflow/signin?next=%2Fops%2Fdynaflow%2Fplans%2F{plan.id}"
    )
    form = client.get(answer.headers["location"])
    cookie = form.headers["set-cookie"]
    assert "Path=/ops/dynaflow" in cookie
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    signed = client.post(
        "/ops/dynaflow/signin",
        data={"csrf": csrf.group(1), "token": TOKEN, "next": f"/ops/dynaflow/plans/{plan.id}"},
    )
    assert signed.headers["location"] == f"/ops/dynaflow/plans/{plan.id}"
    confirm = client.get(f"/ops/dynaflow/plans/{plan.id}/confirm/halt").text
    assert f'action="/ops/dynaflow/plans/{plan.id}/actions/halt"' in confirm
    token = re.search(r'name="csrf" value="([^"]+)"', confirm)
    assert token
    done = client.post(f"/ops/dynaflow/plans/{plan.id}/actions/halt", data={"csrf": token.group(1)})
    assert done.headers["location"] == f"/ops/dynaflow/plans/{plan.id}"
    assert wait_for(console_world, plan.id, lambda p: p.state == "stopped").result == "cancelled"


def test_behind_a_proxy_root_path(console_world: World) -> None:
    client = TestClient(app(console_world), root_path="/console", follow_redirects=False)
    page = client.get("/console/plans").text
    assert '<link rel="stylesheet" href="/console/static/console.css">' in page
    assert client.get("/console/").headers["location"] == "/console/plans"


def test_an_executor_world_can_serve_the_console_itself(url: str) -> None:
    """An application may hand the console the same world that runs its plans."""
    actions.BROKEN.add("api")
    with World(url, executor="inline") as world:
        plan = world.trigger(actions.Release, ["api"]).wait(actions.WAIT)
        client = TestClient(app(world))
        actions.BROKEN.clear()
        answer = client.post(f"/api/plans/{plan.id}/resume", json={})
        assert answer.status_code == 200
        world.run_pending()
        assert world.get_plan(plan.id).result == "success"
