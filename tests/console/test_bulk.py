"""Bulk actions: the same action over every plan the list's filters match (every page, not
only the one shown), a dry run first, then a result per plan."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from dynaflow import World
from dynaflow.console import bulk

from . import actions
from .conftest import csrf_of, paused_release, wait_for


@pytest.fixture
def paused_nightlies(executor: World) -> list[str]:
    """Three paused Nightly plans (failing on 'api'), a paused Release and a finished one."""
    actions.BROKEN.add("api")
    ids = [
        executor.trigger(actions.Nightly, ["api", "web"]).wait(actions.WAIT).id for _ in range(3)
    ]
    paused_release(executor)
    executor.trigger(actions.Nightly, ["web"]).wait(actions.WAIT)
    return ids


def results(page: str) -> dict[str, bool]:
    return {
        plan_id: ok == "true"
        for plan_id, ok in re.findall(
            r'data-testid="bulk-result" data-plan-id="([^"]+)" data-ok="(\w+)"', page
        )
    }


def test_bulk_resume_of_every_paused_plan_of_one_class_past_the_first_page(
    console_world: World, client: TestClient, paused_nightlies: list[str]
) -> None:
    cls = actions.Nightly.action_class_name
    filters = f"state=paused&action={cls}"
    listing = client.get(f"/plans?{filters}&per_page=1").text
    assert len(re.findall(r'data-testid="plan-row"', listing)) == 1  # one shown, three match

    preview = client.get(f"/bulk?op=resume&{filters}&per_page=1")
    assert preview.status_code == 200
    assert re.search(r'data-testid="bulk-matched">3<', preview.text)
    assert re.search(r'data-testid="bulk-applicable">3<', preview.text)
    assert results(preview.text) == dict.fromkeys(paused_nightlies, True)
    assert all(console_world.get_plan(i).state == "paused" for i in paused_nightlies)  # dry

    actions.BROKEN.clear()
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', preview.text))
    assert form == {"csrf": csrf_of(client), "op": "resume", "state": "paused", "action": cls}
    done = client.post("/bulk", data=form)
    assert done.status_code == 200
    assert results(done.text) == dict.fromkeys(paused_nightlies, True)
    for plan_id in paused_nightlies:
        plan = wait_for(console_world, plan_id, lambda p: p.state == "stopped")
        assert plan.result == "success"
        assert [h.detail for h in plan.history if h.event == "operator resume"] == [
            {"by": "console (testclient)"}
        ]


def test_a_dry_run_says_which_plans_the_action_does_not_apply_to(
    client: TestClient, paused_nightlies: list[str]
) -> None:
    answer = client.post("/api/bulk", json={"action": "resume", "filters": {}, "dry_run": True})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["matched"], body["applicable"], body["dry_run"]) == (5, 4, True)
    refused = [r for r in body["results"] if not r["ok"]]
    assert [r["message"] for r in refused] == ["cannot resume it: the plan is stopped (success)"]


def test_bulk_skip_and_resume_through_the_api(
    console_world: World, client: TestClient, paused_nightlies: list[str]
) -> None:
    body = {
        "action": "skip_and_resume",
        "filters": {"action": actions.Nightly.action_class_name, "state": "paused"},
        "dry_run": False,
    }
    answer = client.post("/api/bulk", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["applicable"] == 3
    for item in result["results"]:
        assert item["message"].startswith("skipped step ")
        assert item["message"].endswith(": resume requested")
    for plan_id in paused_nightlies:
        assert wait_for(console_world, plan_id, lambda p: p.state == "stopped").result == "warning"


def test_bulk_cancel_with_abort_and_halt(
    console_world: World, client: TestClient, paused_nightlies: list[str]
) -> None:
    answer = client.post(
        "/api/bulk",
        json={"action": "cancel", "abort": True, "dry_run": False, "filters": {"state": "paused"}},
    )
    assert answer.json()["applicable"] == 4
    for plan_id in paused_nightlies:
        plan = wait_for(console_world, plan_id, lambda p: p.state == "stopped")
        assert plan.result == "cancelled"
        assert [h.detail for h in plan.history if h.event == "operator cancel"] == [
            {"by": "api (testclient)", "abort": True}
        ]
    again = client.post("/api/bulk", json={"action": "halt", "dry_run": False}).json()
    assert again["applicable"] == 0  # everything is stopped now


def test_bulk_retry_takes_plans_with_one_failed_step(
    executor: World, console_world: World, client: TestClient
) -> None:
    one = paused_release(executor)
    actions.BROKEN.update({"host0", "host1"})
    two = executor.trigger(actions.Wide, 2).wait(actions.WAIT)
    assert len([s for s in two.steps if s.state == "error"]) == 2
    preview = client.post("/api/bulk", json={"action": "retry", "filters": {"state": "paused"}})
    by_plan = {r["plan_id"]: r for r in preview.json()["results"]}
    assert by_plan[one.id]["ok"] is True
    assert by_plan[two.id]["ok"] is False
    assert "2 failed steps" in by_plan[two.id]["message"]
    assert "resume the plan" in by_plan[two.id]["message"]


def test_bulk_is_refused_beyond_its_limit(
    client: TestClient, paused_nightlies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BULK_LIMIT", 2)
    answer = client.post("/api/bulk", json={"action": "halt", "dry_run": False})
    assert answer.status_code == 400
    assert "5 plans match; a bulk action takes at most 2" in answer.json()["error"]
    page = client.get("/bulk?op=halt")
    assert page.status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "explode"}, "action:"),
        ({"action": "halt", "filters": {"state": "bogus"}}, "unknown state 'bogus'"),
        ({"action": "halt", "filters": {"since": "soon"}}, "since must be a time"),
        ({"filters": {}}, "action: Field required"),
        ({"action": "halt", "dry_run": "maybe"}, "dry_run:"),
    ],
)
def test_bad_bulk_requests(client: TestClient, body: dict[str, object], message: str) -> None:
    answer = client.post("/api/bulk", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_bad_bulk_pages(client: TestClient) -> None:
    assert client.get("/bulk").status_code == 400
    assert "unknown bulk action" in client.get("/bulk?op=explode").text
    assert client.get("/bulk?op=halt&state=bogus").status_code == 400
