"""A plan's page and ``GET /api/plans/ID``: the header, the run graph (or the steps table
first for a big plan), the step panel, the finalize order and the history; bad ids answered
with a clear message."""

from __future__ import annotations

import html
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from dynaflow import ExecutionPlan, World
from dynaflow.console import pages

from . import actions
from .conftest import failed_step, paused_release, wait_for


def text_of(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no {testid} on the page"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


@pytest.fixture
def graph(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """A stand-in run graph module: records each call, draws a marked ``<svg>``."""
    calls: list[Any] = []

    def render_run_graph(plan: ExecutionPlan, *, step_href: Callable[[int], str]) -> str:
        calls.append((plan.id, [step_href(s.id) for s in plan.run_steps()]))
        return f'<svg data-fake="1"><a href="{step_href(3)}"><text>3</text></a></svg>'

    module = types.ModuleType("dynaflow.console.graph")
    module.render_run_graph = render_run_graph  # type: ignore[attr-defined]
    module.GRAPH_STEP_LIMIT = 300  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dynaflow.console.graph", module)
    return calls


def test_the_header(executor: World, client: TestClient) -> None:
    plan = paused_release(executor)
    page = client.get(f"/plans/{plan.id}").text
    assert text_of(page, "plan-label") == "release"
    assert text_of(page, "plan-id") == plan.id
    assert text_of(page, "plan-state") == "paused"
    assert text_of(page, "plan-result") == "error"
    assert text_of(page, "plan-progress-text") == "0/2 done"
    assert re.search(r"\d+ ms|\d+\.\d s", text_of(page, "plan-duration"))
    assert f"{plan.created_at:%Y-%m-%d %H:%M:%S} UTC" in page
    assert text_of(page, "plan-worlds") == "—"  # paused: nothing runs it


def test_the_worlds_running_a_plan(
    executor: World, console_world: World, client: TestClient
) -> None:
    triggered = executor.trigger(actions.Release, ["api"], hold="api")
    actions.arrived("api").wait(actions.WAIT)
    page = client.get(f"/plans/{triggered.plan_id}").text
    assert text_of(page, "plan-worlds") == executor.id
    assert text_of(page, "plan-state") == "running"
    detail = client.get(f"/api/plans/{triggered.plan_id}").json()
    assert detail["worlds"] == [executor.id]
    assert detail["progress"] == {
        "done": 0, "total": 1, "running": 1, "failed": 0, "waiting": 0, "fraction": 0.0
    }  # fmt: skip
    actions.gate("api").set()
    wait_for(console_world, triggered.plan_id, lambda p: p.state == "stopped")


def test_the_step_panel_shows_input_output_error_traceback_attempts_history(
    executor: World, console_world: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    step = failed_step(plan)
    executor.resume(plan.id).result(actions.WAIT)  # fails again: a second attempt
    page = client.get(f"/plans/{plan.id}?step={step}").text

    assert f'data-testid="step-panel" data-step-id="{step}"' in page
    assert text_of(page, "step-state") == "error"
    assert text_of(page, "step-attempts") == "2"
    assert text_of(page, "step-error-message") == "RuntimeError: cannot deploy api"
    traceback = text_of(page, "step-traceback")
    assert traceback.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError(f"cannot deploy {name}")' in traceback
    assert '"name": "api"' in text_of(page, "step-input")
    assert text_of(page, "step-output") == "{}"
    events = re.findall(r'data-testid="step-history-row"><td>[^<]*</td><td>([^<]*)<', page)
    assert events == ["step running", "step error", "step running", "step error"]

    api = client.get(f"/api/plans/{plan.id}/steps/{step}").json()
    assert api["attempts"] == 2
    assert api["input"] == {"name": "api", "hold": None}
    assert api["error"]["message"] == "cannot deploy api"
    assert api["actions"] == ["skip", "retry"]
    assert [h["event"] for h in api["history"]] == events


def test_a_finished_step_shows_its_output(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    step = next(s.id for s in plan.steps if s.kind == "run")
    page = client.get(f"/plans/{plan.id}?step={step}").text
    assert '"deployed": "api"' in text_of(page, "step-output")
    assert 'data-testid="step-error"' not in page


def test_a_step_shows_its_log_and_progress(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Reporting).wait(actions.WAIT)
    step = next(s.id for s in plan.steps if s.kind == "run")
    page = client.get(f"/plans/{plan.id}?step={step}").text
    log = text_of(page, "step-log")
    assert "copying <b>files</b>" in log and "half way" in log
    assert "copying &lt;b&gt;files&lt;/b&gt;" in page
    assert text_of(page, "step-progress") == "2 of 4"
    api = client.get(f"/api/plans/{plan.id}/steps/{step}").json()
    assert [line["message"] for line in api["log"]] == ["copying <b>files</b>", "half way"]
    assert api["progress"]["done"] == 2 and api["progress"]["total"] == 4
    fraction = client.get(f"/api/plans/{plan.id}").json()["progress"]["fraction"]
    assert 0 <= fraction <= 1


def test_finalize_order_and_history(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Release, ["api", "web"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    order = re.search(r'data-testid="finalize-order">(.*?)</ol>', page, re.S)
    assert order
    listed = [int(i) for i in re.findall(r'data-step-id="(\d+)"', order.group(1))]
    assert listed == [s.id for s in plan.finalize_steps()]
    events = re.findall(r'data-testid="history-row" data-event="([^"]+)"', page)
    assert events == [h.event for h in plan.history]
    assert events[-1] == "plan stopped"
    detail = client.get(f"/api/plans/{plan.id}").json()
    assert detail["finalize_order"] == listed
    assert [h["event"] for h in detail["history"]] == events
    assert detail["final"] is True


def test_operator_actions_show_who_in_the_history(executor: World, client: TestClient) -> None:
    plan = paused_release(executor)
    executor.halt(plan.id, by="alice").result(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    row = re.search(r'data-event="operator halt">(.*?)</tr>', page, re.S)
    assert row and "by=alice" in row.group(1)


def test_the_run_graph_links_each_step(
    executor: World, client: TestClient, graph: list[Any]
) -> None:
    plan = executor.trigger(actions.Release, ["api", "web"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    assert '<svg data-fake="1">' in page
    assert graph == [(plan.id, [f"/plans/{plan.id}?step={s.id}#step" for s in plan.run_steps()])]
    assert 'data-testid="steps-table"' in page  # the table is there too


def test_the_run_graph_is_drawn_with_a_link_to_each_step(
    executor: World, client: TestClient
) -> None:
    plan = executor.trigger(actions.Release, ["api", "web"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    graph = re.search(r'data-testid="run-graph">(.*?)</figure>', page, re.S)
    assert graph and graph.group(1).lstrip().startswith("<svg")
    for step in plan.run_steps():
        assert f'href="/plans/{plan.id}?step={step.id}#step"' in graph.group(1)


def test_without_a_graph_renderer_the_page_says_so(
    executor: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "dynaflow.console.graph", None)
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}")
    assert page.status_code == 200
    assert "graph unavailable" in text_of(page.text, "graph-unavailable")
    assert 'data-testid="steps-table"' in page.text


def test_a_failing_graph_renderer_does_not_take_the_page_down(
    executor: World, client: TestClient, graph: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(plan: ExecutionPlan, *, step_href: Callable[[int], str]) -> str:
        raise ValueError("no layout")

    monkeypatch.setattr(sys.modules["dynaflow.console.graph"], "render_run_graph", broken)
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    assert text_of(page, "graph-unavailable") == (
        "graph unavailable: drawing it failed (ValueError: no layout)"
    )


def test_a_big_plan_shows_its_steps_first_and_the_graph_on_demand(
    executor: World, client: TestClient, graph: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["dynaflow.console.graph"], "GRAPH_STEP_LIMIT", 4)
    plan = executor.trigger(actions.Wide, 5).wait(actions.WAIT)  # 1 + 5 * 3 steps
    page = client.get(f"/plans/{plan.id}").text
    assert graph == []
    assert "This plan has 5 run steps" in text_of(page, "graph-on-demand")
    assert f'href="/plans/{plan.id}?graph=1" data-testid="draw-graph"' in page
    assert len(re.findall(r'data-testid="step-row"', page)) == 16
    drawn = client.get(f"/plans/{plan.id}?graph=1").text
    assert '<svg data-fake="1">' in drawn
    assert len(graph) == 1


def test_a_long_history_shows_its_newest_rows_and_all_on_demand(
    executor: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "HISTORY_ROWS", 3)
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    page = client.get(f"/plans/{plan.id}").text
    assert re.findall(r'data-testid="history-row" data-event="([^"]+)"', page) == [
        h.event for h in plan.history[-3:]
    ]
    assert f"The {len(plan.history) - 3} oldest rows are left out" in page
    full = client.get(f"/plans/{plan.id}?history=all").text
    assert len(re.findall(r'data-testid="history-row"', full)) == len(plan.history)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/plans/not-a-plan", 404, "no execution plan with id 'not-a-plan'"),
        ("/plans/" + "9" * 200, 404, "no execution plan with id '999"),
        ("/plans/%00", 404, "no execution plan with id"),
        ("/plans/{id}?step=abc", 400, "step must be a step id (a whole number), got 'abc'"),
        ("/plans/{id}?step=999", 404, "has no step 999"),
        ("/plans/{id}?step=-1", 404, "has no step -1"),
        ("/api/plans/not-a-plan", 404, "no execution plan with id 'not-a-plan'"),
        ("/api/plans/{id}/steps/999", 404, "has no step 999"),
        ("/api/plans/{id}/steps/x", 400, "a step id is a whole number, got 'x'"),
        ("/api/plans/not-a-plan/status", 404, "no execution plan"),
        ("/nowhere", 404, "no such page here"),
        ("/api/nowhere", 404, "no such page here"),
    ],
)
def test_bad_ids_get_a_clear_message(
    executor: World, client: TestClient, path: str, status: int, message: str
) -> None:
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    answer = client.get(path.replace("{id}", plan.id))
    assert answer.status_code == status
    if path.startswith("/api/"):
        assert message in answer.json()["error"]
        assert answer.json()["status"] == status
    else:
        assert message in text_of(answer.text, "error-message")
