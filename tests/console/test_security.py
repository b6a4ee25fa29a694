"""The console's security: a token (sign-in form and cookie, or a bearer header) guards every
page and API call when set; every POST carries a CSRF token; cross-site POSTs are refused;
read-only refuses every action; stored text is escaped; secret inputs are masked."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from dynaflow import Middleware, World

from . import actions
from .conftest import ClientFactory, csrf_of, failed_step, paused_release

TOKEN = "s3cret-token-for-tests"


def sign_in(client: TestClient, name: str = "alice", token: str = TOKEN) -> int:
    form = client.get("/signin")
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found
    answer = client.post(
        "/signin", data={"csrf": found.group(1), "token": token, "name": name, "next": "/plans"}
    )
    return answer.status_code


# -- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/plans", "/plans/x", "/worlds", "/bulk?op=resume", "/plans/x/confirm/resume"]
)
def test_with_a_token_no_page_without_it(make_client: ClientFactory, path: str) -> None:
    client = make_client(token=TOKEN)
    answer = client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/signin?next=")


@pytest.mark.parametrize(
    "path", ["/api/plans", "/api/cluster", "/api/openapi.json", "/api/plans/x"]
)
def test_with_a_token_no_api_without_it(make_client: ClientFactory, path: str) -> None:
    client = make_client(token=TOKEN)
    answer = client.get(path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in answer.json()["error"]
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code in (200, 404)


def test_an_action_without_the_token_changes_nothing(
    executor: World, console_world: World, make_client: ClientFactory
) -> None:
    plan = paused_release(executor)
    client = make_client(token=TOKEN)
    before = console_world.get_plan(plan.id)
    assert client.post(f"/api/plans/{plan.id}/halt", json={}).status_code == 401
    assert client.post(f"/plans/{plan.id}/actions/halt", data={}).status_code == 303
    assert console_world.get_plan(plan.id) == before


def test_sign_in_then_pages_and_actions(
    executor: World, console_world: World, make_client: ClientFactory
) -> None:
    plan = paused_release(executor)
    client = make_client(token=TOKEN)
    assert sign_in(client, token="not it") == 403
    assert client.get("/plans").status_code == 303
    assert sign_in(client) == 303
    cookie = client.cookies.get("dynaflow_console")
    assert cookie and TOKEN not in cookie
    assert client.get("/plans").status_code == 200
    page = client.get(f"/plans/{plan.id}").text
    assert 'data-testid="signout"' in page
    answer = client.post(f"/plans/{plan.id}/actions/halt", data={"csrf": csrf_of(client)})
    assert answer.status_code == 303
    rows = [h for h in console_world.get_plan(plan.id).history if h.event == "operator halt"]
    assert [h.detail for h in rows] == [{"by": "alice (testclient)"}]


def test_a_signed_in_api_call_needs_the_csrf_header(
    executor: World, console_world: World, make_client: ClientFactory
) -> None:
    plan = paused_release(executor)
    client = make_client(token=TOKEN)
    sign_in(client)
    before = console_world.get_plan(plan.id)
    assert client.post(f"/api/plans/{plan.id}/halt", json={}).status_code == 403
    assert console_world.get_plan(plan.id) == before
    answer = client.post(
        f"/api/plans/{plan.id}/halt", json={}, headers={"X-CSRF-Token": csrf_of(client)}
    )
    assert answer.status_code == 200


def test_the_bearer_token_needs_no_csrf(
    executor: World, console_world: World, make_client: ClientFactory
) -> None:
    plan = paused_release(executor)
    client = make_client(token=TOKEN)
    answer = client.post(
        f"/api/plans/{plan.id}/halt", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == f"plan {plan.id}: halt requested"


def test_sign_out(make_client: ClientFactory) -> None:
    client = make_client(token=TOKEN)
    sign_in(client)
    answer = client.post("/signout", data={"csrf": csrf_of(client)})
    assert (answer.status_code, answer.headers["location"]) == (303, "/signin")
    assert client.get("/plans").status_code == 303


def test_a_session_signed_with_another_key_is_not_accepted(
    console_world: World, make_client: ClientFactory
) -> None:
    first = make_client(token=TOKEN, secret_key="k" * 32)
    sign_in(first)
    second = make_client(token=TOKEN, secret_key="j" * 32)
    second.cookies.update(first.cookies)
    assert second.get("/plans").status_code == 303
    third = make_client(token=TOKEN, secret_key="k" * 32)  # the same key: another process
    third.cookies.update(first.cookies)
    assert third.get("/plans").status_code == 200


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/plans?state=paused", "/plans?state=paused"),
        ("https://evil.example/", "/plans"),
        ("//evil.example/", "/plans"),
        ("/\\evil.example", "/plans"),
    ],
)
def test_sign_in_goes_back_only_to_the_console(
    make_client: ClientFactory, target: str, lands: str
) -> None:
    client = make_client(token=TOKEN)
    form = client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    answer = client.post("/signin", data={"csrf": csrf.group(1), "token": TOKEN, "next": target})
    assert answer.headers["location"] == lands


def test_without_a_token_the_console_is_open(client: TestClient) -> None:
    assert client.get("/plans").status_code == 200
    assert client.get("/api/plans").status_code == 200
    assert client.get("/signin").status_code == 303  # nothing to sign in to


# -- CSRF and cross-site requests ----------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    executor: World, console_world: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    before = console_world.get_plan(plan.id)
    for form in ({}, {"csrf": "forged"}):
        answer = client.post(f"/plans/{plan.id}/actions/halt", data=form)
        assert answer.status_code == 403
        assert "CSRF token" in answer.text
    fresh = TestClient(client.app)  # another browser: no session at all
    assert (
        fresh.post(f"/plans/{plan.id}/actions/halt", data={"csrf": csrf_of(client)}).status_code
        == 403
    )
    answer = client.post("/bulk", data={"op": "halt"})
    assert answer.status_code == 403
    assert console_world.get_plan(plan.id) == before


def test_a_cross_site_post_is_refused_even_with_the_token(
    executor: World, console_world: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    before = console_world.get_plan(plan.id)
    answer = client.post(
        f"/plans/{plan.id}/actions/halt",
        data={"csrf": csrf_of(client)},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    answer = client.post(
        f"/api/plans/{plan.id}/halt", json={}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert console_world.get_plan(plan.id) == before
    same = client.post(
        f"/plans/{plan.id}/actions/halt",
        data={"csrf": csrf_of(client)},
        headers={"Origin": "http://testserver"},
    )
    assert same.status_code == 303


def test_an_api_action_must_be_json(
    executor: World, console_world: World, client: TestClient
) -> None:
    """A form on another site can send form or text bodies without asking; JSON it cannot."""
    plan = paused_release(executor)
    before = console_world.get_plan(plan.id)
    answer = client.post(
        f"/api/plans/{plan.id}/halt", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 415
    assert "Content-Type: application/json" in answer.json()["error"]
    answer = client.post(f"/api/plans/{plan.id}/halt", data={"abort": "1"})
    assert answer.status_code == 415
    assert (
        client.post(
            f"/api/plans/{plan.id}/halt", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    answer = client.post(f"/api/plans/{plan.id}/cancel", json={"abort": "perhaps"})
    assert answer.status_code == 400
    assert "abort" in answer.json()["error"]
    assert console_world.get_plan(plan.id) == before


# -- read-only -------------------------------------------------------------------------------


def test_read_only_hides_and_refuses_every_action(
    executor: World, console_world: World, make_client: ClientFactory
) -> None:
    plan = paused_release(executor)
    step = failed_step(plan)
    client = make_client(read_only=True)
    before = console_world.get_plan(plan.id)
    page = client.get(f"/plans/{plan.id}?step={step}").text
    assert 'data-testid="read-only"' in page
    assert "action-" not in page and "step-action-" not in page
    assert 'data-testid="bulk-form"' not in client.get("/plans").text
    assert client.get(f"/plans/{plan.id}/confirm/resume").status_code == 403
    assert client.get("/bulk?op=resume").status_code == 403
    csrf = csrf_of(client)
    for path in (f"/plans/{plan.id}/actions/resume", f"/plans/{plan.id}/actions/halt"):
        answer = client.post(path, data={"csrf": csrf})
        assert answer.status_code == 403
        assert "read-only" in answer.text
    assert client.post("/bulk", data={"csrf": csrf, "op": "halt"}).status_code == 403
    for path, body in [
        (f"/api/plans/{plan.id}/resume", {}),
        (f"/api/plans/{plan.id}/cancel", {"abort": True}),
        (f"/api/plans/{plan.id}/steps/{step}/skip", {}),
        ("/api/bulk", {"action": "halt", "dry_run": False}),
    ]:
        answer = client.post(path, json=body)
        assert answer.status_code == 403
        assert "read-only" in answer.json()["error"]
    assert console_world.get_plan(plan.id) == before


# -- escaping and secrets ------------------------------------------------------------------------


def test_stored_markup_shows_as_text(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Hostile).wait(actions.WAIT)
    assert (plan.state, plan.result) == ("paused", "error")
    step = failed_step(plan)
    marked = next(s.id for s in plan.steps if s.kind == "run" and s.state == "success")
    pages = [
        client.get("/plans").text,
        client.get(f"/plans/{plan.id}?step={step}").text,
        client.get(f"/plans/{plan.id}?step={marked}").text,
        client.get(f"/plans/{plan.id}?partial=1&step={step}").text,
        client.get("/plans?partial=1").text,
        client.get(f"/plans/{plan.id}/confirm/halt").text,
        client.get("/bulk?op=halt").text,
    ]
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#34;label&#34;)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=alert(&#39;error&#39;)&gt;" in pages[1]
    assert "&lt;script&gt;alert(&#39;output&#39;)&lt;/script&gt;" in pages[2]
    assert "&lt;b&gt;bold&lt;/b&gt;" in pages[2]
    detail = client.get(f"/api/plans/{plan.id}").json()
    assert detail["label"] == '<script>alert("label")</script>'  # JSON carries the text as is


def test_secret_inputs_and_outputs_never_reach_a_page(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Secretive, "bob", "hunter2", "tok-42").wait(actions.WAIT)
    step = next(s.id for s in plan.steps if s.kind == "run")
    page = client.get(f"/plans/{plan.id}?step={step}").text
    api = client.get(f"/api/plans/{plan.id}/steps/{step}").json()
    for shown in (page, str(api)):
        assert "hunter2" not in shown and "tok-42" not in shown and "2retnuh" not in shown
    assert api["input"] == {
        "user": "bob",
        "password": "••••",
        "db": {"host": "db1", "token": "••••"},
    }
    assert api["output"] == {"api_key": "••••", "user": "bob"}
    assert executor.get_plan(plan.id).actions[0].input["password"] == "hunter2"  # stored as is


class HideUsers(Middleware):
    """A world middleware masking one more key, through the present hook."""

    def present(self, action, call_next, view):  # type: ignore[no-untyped-def]
        view = call_next(view)
        if isinstance(view["input"], dict) and "user" in view["input"]:
            view["input"]["user"] = "(hidden)"
        return view


def test_a_middleware_can_mask_more(executor: World, url: str) -> None:
    plan = executor.trigger(actions.Secretive, "bob", "hunter2", "tok-42").wait(actions.WAIT)
    step = next(s.id for s in plan.steps if s.kind == "run")
    from dynaflow.console import app

    with World(url, executor=None, middleware=[HideUsers()]) as world:
        client = TestClient(app(world))
        api = client.get(f"/api/plans/{plan.id}/steps/{step}").json()
    assert api["input"]["user"] == "(hidden)"
    assert api["input"]["password"] == "••••"


def test_security_headers(client: TestClient) -> None:
    answer = client.get("/plans")
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
