"""An operator's day in the console, in a real browser: find a paused plan, read why its step
failed, skip it or retry it, cancel a running plan, resume many plans at once — and watch the
plans go on live, without reloading the page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .actions import Nightly, Release, Weekly
from .conftest import OPERATOR, Stack

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def plan_row(page: Any, plan_id: str) -> Any:
    return page.locator(f'[data-testid=plan-row][data-plan-id="{plan_id}"]')


def step_row(page: Any, step_id: int) -> Any:
    return page.locator(f'[data-testid=step-row][data-step-id="{step_id}"]')


def step_named(stack: Stack, plan_id: str, name: str) -> int:
    """The id of the plan's run step whose input ``name`` is ``name``."""
    return stack.db.run_steps(plan_id)[name].id


class Navigations:
    """Counts the page's top-level navigations (a reload is one), and marks the document: a
    reload would lose the mark."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.count = 0
        page.on("framenavigated", self._navigated)
        page.evaluate("() => { window.__sameDocument = true; }")

    def _navigated(self, frame: Any) -> None:
        if frame == self.page.main_frame:
            self.count += 1

    def assert_none(self) -> None:
        assert self.count == 0, f"the page navigated {self.count} times"
        assert self.page.evaluate("() => window.__sameDocument") is True, "the page was reloaded"


def test_skip_and_resume_a_paused_plan_then_watch_it_finish(stack: Stack, page: Any) -> None:
    gate = stack.file("web-gate")
    plan_id = stack.client.trigger(
        Release, needs={"build": stack.file("never")}, gates={"deploy web": gate}
    ).plan_id
    stack.wait_for(plan_id, "paused", "error")

    # the list, filtered to paused plans
    page.goto("/plans")
    page.get_by_test_id("filter-state").select_option("paused")
    page.get_by_test_id("apply-filters").click()
    expect(page).to_have_url(re.compile(r"state=paused"))
    rows = page.get_by_test_id("plan-row")
    expect(rows.first).to_be_visible()
    expect(page.locator("[data-testid=plan-row]:not([data-state=paused])")).to_have_count(0)
    expect(page.get_by_test_id("count-paused")).to_contain_text(str(rows.count()))

    # the plan, its failed step, the traceback
    plan_row(page, plan_id).get_by_test_id("plan-link").click()
    expect(page).to_have_url(re.compile(f"/plans/{plan_id}$"))
    expect(page.get_by_test_id("plan-id")).to_have_text(plan_id)
    expect(page.get_by_test_id("plan-state")).to_have_text("paused")
    expect(page.get_by_test_id("plan-result")).to_have_text("error")
    build = step_named(stack, plan_id, "build")
    failed = page.locator("[data-testid=step-row][data-state=error]")
    expect(failed).to_have_count(1)
    expect(failed).to_have_attribute("data-step-id", str(build))
    failed.get_by_test_id("step-link").click()
    panel = page.get_by_test_id("step-panel")
    expect(panel).to_have_attribute("data-step-id", str(build))
    expect(panel.get_by_test_id("step-state")).to_have_text("error")
    expect(panel.get_by_test_id("step-error-message")).to_contain_text("FileNotFoundError: build: ")
    traceback = panel.get_by_test_id("step-traceback")
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("browser/actions.py")
    expect(traceback).to_contain_text("raise FileNotFoundError")

    # skip & resume, confirmed
    panel.locator(f'[data-testid=step-action-skip-resume][data-step-id="{build}"]').click()
    expect(page.get_by_test_id("confirm-form")).to_be_visible()
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"step {build} skipped, plan resumed")
    expect(page.get_by_test_id("plan-state")).to_have_text("running")
    assert stack.plan_state(plan_id) == ("running", "pending")

    # it finishes while we watch: no reload
    navigations = Navigations(page)
    Path(gate).touch()
    expect(page.get_by_test_id("plan-state")).to_have_text("stopped")
    expect(page.get_by_test_id("plan-result")).to_have_text("warning")
    expect(page.get_by_test_id("live-status")).to_have_text("finished")
    expect(step_row(page, build)).to_have_attribute("data-state", "skipped")
    succeeded = page.locator("[data-testid=step-row][data-kind=run][data-state=success]")
    expect(succeeded).to_have_count(3)
    expect(page.get_by_test_id("plan-progress-text")).to_have_text("4/4 done")
    navigations.assert_none()
    skipped = page.locator('[data-testid=history-row][data-event="operator skip"]')
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(OPERATOR)
    assert stack.plan_state(plan_id) == ("stopped", "warning")


def test_retry_a_failed_step_after_fixing_its_cause(stack: Stack, page: Any) -> None:
    fix = stack.file("api-fix")
    plan_id = stack.client.trigger(Release, needs={"deploy api": fix}).plan_id
    stack.wait_for(plan_id, "paused", "error")
    api = step_named(stack, plan_id, "deploy api")

    page.goto(f"/plans/{plan_id}")
    row = step_row(page, api)
    expect(row).to_have_attribute("data-state", "error")
    expect(row).to_contain_text(f"FileNotFoundError: deploy api: {fix} is missing")
    expect(page.get_by_test_id("action-resume")).to_be_visible()

    Path(fix).touch()  # the operator fixes the cause, then retries the step
    row.locator(f'[data-testid=step-action-retry][data-step-id="{api}"]').click()
    expect(page.get_by_test_id("confirm-sentence")).to_contain_text(f"Run step {api} again")
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"step {api}: retry requested")

    navigations = Navigations(page)
    expect(page.get_by_test_id("plan-state")).to_have_text("stopped")
    expect(page.get_by_test_id("plan-result")).to_have_text("success")
    expect(step_row(page, api)).to_have_attribute("data-state", "success")
    expect(page.get_by_test_id("plan-progress-text")).to_have_text("4/4 done")
    navigations.assert_none()
    retried = page.locator('[data-testid=history-row][data-event="operator retry"]')
    expect(retried).to_contain_text(OPERATOR)

    step_row(page, api).get_by_test_id("step-link").click()
    panel = page.get_by_test_id("step-panel")
    expect(panel.get_by_test_id("step-state")).to_have_text("success")
    expect(panel.get_by_test_id("step-attempts")).to_have_text("2")
    expect(panel.get_by_test_id("step-output")).to_contain_text('"checked": "deploy api"')
    assert stack.plan_state(plan_id) == ("stopped", "success")


def test_cancel_a_running_plan(stack: Stack, page: Any) -> None:
    gate = stack.file("build-gate")
    plan_id = stack.client.trigger(Release, gates={"build": gate}).plan_id
    build = step_named(stack, plan_id, "build")
    page.goto(f"/plans/{plan_id}")
    expect(step_row(page, build)).to_have_attribute("data-state", "running")
    expect(page.get_by_test_id("plan-state")).to_have_text("running")
    expect(page.get_by_test_id("action-resume")).to_have_count(0)

    page.get_by_test_id("action-cancel").click()
    expect(page.get_by_test_id("confirm-abort")).not_to_be_checked()
    page.get_by_test_id("confirm-button").click()
    expect(page.get_by_test_id("flash")).to_contain_text(f"plan {plan_id}: cancel requested")
    # the worker running it takes the request: the plan is cancelling while its step runs
    expect(page.locator('[data-testid=history-row][data-event="plan cancelling"]')).to_have_count(1)
    expect(page.get_by_test_id("plan-state")).to_have_text("running")

    navigations = Navigations(page)
    Path(gate).touch()  # the running step finishes; nothing after it starts
    expect(page.get_by_test_id("plan-state")).to_have_text("stopped")
    expect(page.get_by_test_id("plan-result")).to_have_text("cancelled")
    expect(step_row(page, build)).to_have_attribute("data-state", "success")
    cancelled = page.locator("[data-testid=step-row][data-kind=run][data-state=cancelled]")
    expect(cancelled).to_have_count(3)
    expect(page.get_by_test_id("plan-actions")).to_have_count(0)
    navigations.assert_none()
    operator = page.locator('[data-testid=history-row][data-event="operator cancel"]')
    expect(operator).to_contain_text(OPERATOR)
    assert stack.plan_state(plan_id) == ("stopped", "cancelled")


def test_bulk_resume_every_paused_plan_of_one_action_class(stack: Stack, page: Any) -> None:
    fix = stack.file("nightly-fix")
    nightly = [stack.client.trigger(Nightly, needs={"build": fix}).plan_id for _ in range(3)]
    weekly = stack.client.trigger(Weekly, needs={"build": fix}).plan_id
    done = stack.client.trigger(Nightly).plan_id
    for plan_id in [*nightly, weekly]:
        stack.wait_for(plan_id, "paused", "error")
    stack.wait_for(done, "stopped", "success")

    page.goto("/plans")
    page.get_by_test_id("filter-action").fill("browser.actions.Nightly")
    page.get_by_test_id("filter-state").select_option("paused")
    page.get_by_test_id("apply-filters").click()
    rows = page.get_by_test_id("plan-row")
    expect(rows).to_have_count(3)
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.planId)")) == sorted(nightly)

    # the dry run: a count, and what would happen to each
    page.get_by_test_id("bulk-action").select_option("resume")
    page.get_by_test_id("bulk-preview").click()
    expect(page.get_by_test_id("bulk-matched")).to_have_text("3")
    expect(page.get_by_test_id("bulk-applicable")).to_have_text("3")
    results = page.get_by_test_id("bulk-result")
    expect(results).to_have_count(3)
    expect(page.locator("[data-testid=bulk-result][data-ok=true]")).to_have_count(3)
    assert all(stack.plan_state(p) == ("paused", "error") for p in nightly)  # nothing done yet

    Path(fix).touch()
    page.get_by_test_id("bulk-confirm").click()
    expect(page.locator("h1")).to_contain_text("done")
    expect(results).to_have_count(3)
    ids = results.evaluate_all("rows => rows.map(r => r.dataset.planId)")
    assert sorted(ids) == sorted(nightly)
    expect(page.locator("[data-testid=bulk-result][data-ok=true]")).to_have_count(3)
    expect(page.get_by_test_id("bulk-confirm")).to_have_count(0)

    for plan_id in nightly:
        stack.wait_for(plan_id, "stopped", "success")
        assert "operator resume" in stack.history(plan_id)
    assert stack.plan_state(weekly) == ("paused", "error")  # another class: left alone
    assert "operator resume" not in stack.history(weekly)
    assert "operator resume" not in stack.history(done)
