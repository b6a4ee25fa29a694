"""Probing the console as an attacker or a careless user would, in a real browser: stored
markup, forged cross-site requests, no token, a read-only console, bad ids and filters, actions
that are no longer allowed. Each is refused with a clear message, and nothing changes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .actions import IMAGE, SCRIPT, Hostile, Release
from .conftest import TOKEN, Console, ContextFactory, Stack, csrf

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def paused(stack: Stack) -> str:
    """A Release paused on its failed build (the tests leave it paused)."""
    plan_id = stack.client.trigger(Release, needs={"build": stack.file("never")}).plan_id
    stack.wait_for(plan_id, "paused", "error")
    return plan_id


@pytest.fixture(scope="module")
def read_only(stack: Stack) -> Console:
    return stack.console("read-only", token=None, read_only=True)


@pytest.fixture
def unchanged(stack: Stack, paused: str) -> Iterator[None]:
    """The paused plan is as it was after the test: paused, no operator action in its
    history."""
    before = stack.history(paused)
    yield
    assert stack.plan_state(paused) == ("paused", "error")
    assert stack.history(paused) == before
    assert not [event for event in before if event.startswith("operator ")]


def no_markup_ran(page: Any, problems: list[str]) -> None:
    """Nothing stored became an element, no script ran, the page's own CSP never had to step
    in (which it would for markup that got through)."""
    expect(page.locator("main script")).to_have_count(0)
    expect(page.locator("img")).to_have_count(0)
    expect(page.locator("main b")).to_have_count(0)
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert problems == []


def test_stored_markup_is_shown_as_text_and_never_runs(stack: Stack, page: Any) -> None:
    plan_id = stack.client.trigger(Hostile).plan_id
    stack.wait_for(plan_id, "paused", "error")
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: Any) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    marked, broken = sorted(s.id for s in stack.db.steps(plan_id) if s.kind == "run")

    page.goto(f"/plans?q={plan_id}")
    row = page.locator(f'[data-testid=plan-row][data-plan-id="{plan_id}"]')
    expect(row.get_by_test_id("plan-label")).to_have_text(SCRIPT)
    no_markup_ran(page, problems)

    page.goto(f"/plans/{plan_id}?step={marked}")
    expect(page).to_have_title(re.compile(re.escape(SCRIPT)))
    expect(page.get_by_test_id("plan-label")).to_have_text(SCRIPT)
    panel = page.get_by_test_id("step-panel")
    expect(panel.get_by_test_id("step-input")).to_contain_text('"note": "<b>bold</b>"')
    output = panel.get_by_test_id("step-output")
    expect(output).to_contain_text(f'"html": {json.dumps(SCRIPT)}')
    expect(output).to_contain_text(f'"image": {json.dumps(IMAGE)}')
    graph = page.get_by_test_id("run-graph")
    expect(graph.locator("svg > title")).to_have_text(f"Run graph of {SCRIPT}")
    expect(graph.locator("script, foreignObject")).to_have_count(0)
    no_markup_ran(page, problems)

    page.goto(f"/plans/{plan_id}?step={broken}")
    message = f"ValueError: bad {IMAGE} {SCRIPT}"
    panel = page.get_by_test_id("step-panel")
    expect(panel.get_by_test_id("step-error-message")).to_have_text(message)
    expect(panel.get_by_test_id("step-traceback")).to_contain_text(message)
    row = page.locator(f'[data-testid=step-row][data-step-id="{broken}"]')
    expect(row).to_contain_text(message)
    no_markup_ran(page, problems)

    # the page draws itself again from the server as the plan goes on: still text
    panel.get_by_test_id("step-action-skip-resume").click()
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("plan-state")).to_have_text("stopped")
    expect(page.get_by_test_id("plan-result")).to_have_text("warning")
    expect(page.locator('[data-testid=history-row][data-event="step error"]')).to_contain_text(
        message
    )
    expect(page.get_by_test_id("plan-label")).to_have_text(SCRIPT)
    no_markup_ran(page, problems)


def test_a_cross_site_post_is_refused_and_changes_nothing(
    stack: Stack, page: Any, paused: str, unchanged: None
) -> None:
    page.goto(f"/plans/{paused}")
    token = csrf(page)
    evil = {"Origin": "https://evil.example"}

    # a page on another site posts a form to the console
    attack = (
        f'<form method="post" action="{stack.main.base}/plans/{paused}/actions/resume">'
        '<button id="go">win a prize</button></form>'
    )
    page.route(
        "https://evil.example/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=attack),
    )
    page.goto("https://evil.example/prize")
    with page.expect_navigation() as navigation:
        page.locator("#go").click()
    answer = navigation.value
    assert answer is not None and answer.status == 403
    expect(page.locator("body")).to_contain_text("cross-site request refused")

    # the same POSTs, by hand: another Origin (even with the right CSRF token), or no token
    resume = f"/plans/{paused}/actions/resume"
    refused = page.request.post(resume, form={"csrf": token}, headers=evil)
    assert (refused.status, refused.json()["error"]) == (403, "cross-site request refused")
    for form in ({}, {"csrf": "forged-token"}):
        refused = page.request.post(resume, form=form)
        assert refused.status == 403
        assert "CSRF token is missing or stale" in refused.text()
    refused = page.request.post("/bulk", form={"op": "resume", "state": "paused"})
    assert refused.status == 403 and "CSRF token" in refused.text()

    # the API with this browser's session: the CSRF token in X-CSRF-Token, or no action
    api = f"/api/plans/{paused}/resume"
    refused = page.request.post(api, data={})
    assert refused.status == 403 and "CSRF token" in refused.json()["error"]
    refused = page.request.post(api, data={}, headers={**evil, "X-CSRF-Token": token})
    assert refused.status == 403
    refused = page.request.post(
        "/api/bulk", data={"action": "resume", "filters": {}, "dry_run": False}
    )
    assert refused.status == 403
    assert stack.plan_state(paused) == ("paused", "error")

    # the same request with the token is taken (the refusals above were for the token alone)
    step = next(s.id for s in stack.db.steps(paused) if s.state == "error")
    dry = page.request.post(
        "/api/bulk",
        data={"action": "resume", "filters": {"q": paused}, "dry_run": True},
        headers={"X-CSRF-Token": token},
    )
    assert dry.status == 200 and dry.json()["applicable"] == 1
    bad = page.request.post(
        f"/api/plans/{paused}/steps/{step}/retry",
        data={},
        headers={"X-CSRF-Token": token, "Content-Type": "text/plain"},
    )
    assert bad.status == 415  # past the CSRF check: only the body's type is wrong


def test_no_token_no_page_and_no_api(
    stack: Stack, new_context: ContextFactory, paused: str, unchanged: None
) -> None:
    context = new_context(stack.main, sign_in=False)
    page = context.new_page()
    for path in (f"/plans/{paused}", "/plans", "/worlds", "/bulk?op=resume", "/"):
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/signin\?next="))
        expect(page.get_by_test_id("signin-form")).to_be_visible()
        shown = page.locator("[data-testid=plan-header], [data-testid=plans-table]")
        expect(shown).to_have_count(0)

    request = context.request
    reads = ["/api/plans", f"/api/plans/{paused}", f"/api/plans/{paused}/status", "/api/cluster"]
    for path in reads:
        answer = request.get(path)
        assert answer.status == 401, path
        assert "Authorization: Bearer" in answer.json()["error"]
        assert paused not in answer.text()
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        answer = request.post(f"/api/plans/{paused}/resume", data={}, headers=headers)
        assert answer.status == 401
    assert request.get("/api/plans", headers={"Authorization": f"Bearer {TOKEN}"}).ok

    # a wrong token is refused; the right one leads to the page asked for
    page.goto(f"/plans/{paused}")
    page.locator("input[name=token]").fill("not-the-token")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_have_text("that is not this console's token")
    expect(page.get_by_test_id("plan-header")).to_have_count(0)
    page.locator("input[name=token]").fill(TOKEN)
    page.get_by_test_id("signin-submit").click()
    expect(page).to_have_url(re.compile(f"/plans/{paused}$"))
    expect(page.get_by_test_id("plan-id")).to_have_text(paused)
    assert request.get("/api/plans").ok  # the session cookie opens the API too

    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    page.goto(f"/plans/{paused}")
    expect(page).to_have_url(re.compile(r"/signin\?next="))
    assert request.get("/api/plans").status == 401


def test_read_only_refuses_actions_on_pages_and_api(
    stack: Stack, new_context: ContextFactory, read_only: Console, paused: str, unchanged: None
) -> None:
    page = new_context(read_only).new_page()
    page.goto("/plans")
    expect(page.get_by_test_id("read-only")).to_be_visible()
    expect(page.locator(f'[data-testid=plan-row][data-plan-id="{paused}"]')).to_be_visible()
    expect(page.get_by_test_id("bulk-form")).to_have_count(0)

    page.goto(f"/plans/{paused}")
    expect(page.get_by_test_id("plan-state")).to_have_text("paused")
    step = page.locator("[data-testid=step-row][data-state=error]").get_attribute("data-step-id")
    page.goto(f"/plans/{paused}?step={step}")
    expect(page.get_by_test_id("step-traceback")).to_be_visible()
    expect(page.get_by_test_id("plan-actions")).to_have_count(0)
    expect(page.locator("[data-testid^=step-action-], [data-testid^=action-]")).to_have_count(0)
    token = csrf(page)

    for path in (f"/plans/{paused}/confirm/resume", f"/plans/{paused}/confirm/skip?step={step}"):
        answer = page.goto(path)
        assert answer is not None and answer.status == 403
        expect(page.get_by_test_id("error-message")).to_have_text(
            "this console is read-only: it takes no operator actions"
        )
    answer = page.goto("/bulk?op=resume&state=paused")
    assert answer is not None and answer.status == 403

    posts = [
        (f"/api/plans/{paused}/resume", {}),
        (f"/api/plans/{paused}/cancel", {"abort": True}),
        (f"/api/plans/{paused}/halt", {}),
        (f"/api/plans/{paused}/steps/{step}/skip", {"resume": True}),
        (f"/api/plans/{paused}/steps/{step}/retry", {}),
        ("/api/bulk", {"action": "resume", "filters": {}, "dry_run": True}),
    ]
    for path, body in posts:
        answer = page.request.post(path, data=body, headers={"X-CSRF-Token": token})
        assert answer.status == 403, path
        assert answer.json()["error"] == "this console is read-only: it takes no operator actions"
    answer = page.request.post(f"/plans/{paused}/actions/resume", form={"csrf": token})
    assert answer.status == 403 and "read-only" in answer.text()
    # what it may do, it does: read
    assert page.request.get(f"/api/plans/{paused}").json()["state"] == "paused"


def error_page(page: Any, path: str, status: int, message: str) -> None:
    answer = page.goto(path)
    assert answer is not None and answer.status == status, (path, answer and answer.status)
    expect(page.get_by_test_id("error-message")).to_contain_text(message)


def test_bad_ids_filters_and_illegal_actions_get_a_clear_message(
    stack: Stack, page: Any, paused: str, unchanged: None
) -> None:
    error_page(page, "/plans/no-such-plan", 404, "no execution plan with id 'no-such-plan'")
    error_page(page, f"/plans/{'x' * 300}", 404, "no execution plan with id")
    error_page(page, f"/plans/{paused}?step=abc", 400, "step must be a step id (a whole number)")
    error_page(page, f"/plans/{paused}?step=99999", 404, f"plan {paused} has no step 99999")
    error_page(page, "/plans?state=bogus", 400, "unknown state 'bogus'; use one of")
    error_page(page, "/plans?page=0", 400, "page must be a whole number >= 1, got '0'")
    error_page(page, "/plans?since=yesterday", 400, "since must be a time like 2030-05-01T08:00")
    error_page(page, "/bulk?op=explode", 400, "unknown bulk action 'explode'")
    error_page(page, f"/plans/{paused}/confirm/explode", 404, "unknown action 'explode'")
    error_page(page, f"/plans/{paused}/confirm/retry", 400, "retry needs a step: ?step=ID")

    # the filter form with a time range the wrong way round
    page.goto("/plans")
    page.get_by_test_id("filter-since").fill("2030-01-02T00:00:00")
    page.get_by_test_id("filter-until").fill("2030-01-01T00:00:00")
    page.get_by_test_id("apply-filters").click()
    expect(page.get_by_test_id("error-message")).to_have_text(
        "since (2030-01-02 00:00) must be before until (2030-01-01 00:00)"
    )

    # the API says the same, as JSON
    request = page.request
    token = csrf(page)
    step = next(s.id for s in stack.db.steps(paused) if s.state == "error")
    done = next(s.id for s in stack.db.steps(paused) if s.state == "pending")
    gets = [
        ("/api/plans?result=nope", 400, "unknown result 'nope'"),
        ("/api/plans/nope", 404, "no execution plan with id 'nope'"),
        (f"/api/plans/{paused}/steps/x", 400, "a step id is a whole number, got 'x'"),
        (f"/api/plans/{paused}/steps/99999", 404, "has no step 99999"),
    ]
    for path, status, message in gets:
        answer = request.get(path)
        assert (answer.status, answer.json()["status"]) == (status, status), path
        assert message in answer.json()["error"], (path, answer.json())
    headers = {"X-CSRF-Token": token}
    posts = [
        (f"/api/plans/{paused}/explode", {}, 404, "no plan action 'explode'"),
        (f"/api/plans/{paused}/steps/{step}/explode", {}, 404, "no step action 'explode'"),
        (f"/api/plans/{paused}/steps/{done}/skip", {}, 409, f"step {done} is pending"),
        (f"/api/plans/{paused}/steps/{step}/skip", {"resume": "maybe"}, 400, "resume"),
        ("/api/plans/nope/resume", {}, 404, "no execution plan with id 'nope'"),
        ("/api/bulk", {"action": "resume", "filters": {"state": "bogus"}}, 400, "unknown state"),
        ("/api/bulk", {"action": "explode", "filters": {}}, 400, "action"),
    ]
    for path, body, status, message in posts:
        answer = request.post(path, data=body, headers=headers)
        assert answer.status == status, (path, answer.status, answer.text())
        assert message in answer.json()["error"], (path, answer.json())


def test_an_action_no_longer_allowed_is_refused_and_changes_nothing(
    stack: Stack, page: Any, new_context: ContextFactory
) -> None:
    plan_id = stack.client.trigger(Release, needs={"build": stack.file("never")}).plan_id
    stack.wait_for(plan_id, "paused", "error")

    # two operators on the same plan: bob cancels it while alice confirms a resume
    page.goto(f"/plans/{plan_id}")
    page.get_by_test_id("action-resume").click()
    expect(page.get_by_test_id("confirm-button")).to_be_visible()
    bob = new_context(stack.main).pages[0]
    bob.goto(f"/plans/{plan_id}")
    bob.get_by_test_id("action-cancel").click()
    bob.get_by_test_id("confirm-button").click()
    expect(bob.get_by_test_id("plan-result")).to_have_text("cancelled")
    history = stack.history(plan_id)

    answer_of: list[Any] = []
    page.on("response", lambda answer: answer_of.append(answer.status))
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("error-message")).to_have_text(
        f"plan {plan_id} is stopped (cancelled); there is nothing to resume; nothing was changed"
    )
    assert 409 in answer_of
    assert stack.plan_state(plan_id) == ("stopped", "cancelled")
    assert stack.history(plan_id) == history
