"""Operator actions from the console, on plans a real executor world runs: each offered only
where it is legal, confirmed, POSTed, recorded with who asked; an illegal one is refused with
a clear message and changes nothing."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from dynaflow import World

from . import actions
from .actions import WAIT
from .conftest import ClientFactory, csrf_of, failed_step, paused_release, wait_for


def actions_offered(client: TestClient, plan_id: str, step: int | None = None) -> set[str]:
    html = client.get(f"/plans/{plan_id}" + (f"?step={step}" if step else "")).text
    plan_level = set(re.findall(r'data-testid="action-(\w+)"', html))
    step_level = set(re.findall(r'data-testid="step-action-([\w-]+)"', html))
    return plan_level | step_level


def post_action(client: TestClient, plan_id: str, action: str, **form: str) -> tuple[int, str]:
    """Confirm and POST ``action`` as a browser does; ``(status, page or flash)``."""
    query = f"?step={form['step']}" if "step" in form else ""
    confirm = client.get(f"/plans/{plan_id}/confirm/{action}{query}")
    assert confirm.status_code == 200, confirm.text
    assert 'data-testid="confirm-form"' in confirm.text
    token = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
    assert token
    answer = client.post(
        f"/plans/{plan_id}/actions/{action}", data={"csrf": token.group(1), **form}
    )
    if answer.status_code != 303:
        return answer.status_code, answer.text
    assert answer.headers["location"] == f"/plans/{plan_id}"
    page = client.get(answer.headers["location"]).text
    flash = re.search(r'data-testid="flash">([^<]*)<', page)
    assert flash, "no message after the action"
    return 303, flash.group(1)


def operators(world: World, plan_id: str) -> list[tuple[str, object]]:
    return [
        (h.event, (h.detail or {}).get("by"))
        for h in world.get_plan(plan_id).history
        if h.event.startswith("operator")
    ]


def test_a_paused_plan_offers_resume_cancel_halt_and_its_failed_step_skip_and_retry(
    executor: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    step = failed_step(plan)
    assert actions_offered(client, plan.id) >= {"resume", "cancel", "halt"}
    assert actions_offered(client, plan.id, step) == {
        "resume", "cancel", "halt", "skip", "skip-resume", "retry"
    }  # fmt: skip


def test_a_stopped_plan_offers_nothing(executor: World, client: TestClient) -> None:
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    assert plan.result == "success"
    assert actions_offered(client, plan.id, plan.steps[1].id) == set()


def test_resume_after_fixing_the_cause(
    executor: World, console_world: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    actions.BROKEN.clear()

    status, message = post_action(client, plan.id, "resume")

    assert status == 303
    assert message == f"plan {plan.id}: resume requested"
    done = wait_for(console_world, plan.id, lambda p: p.state == "stopped")
    assert done.result == "success"
    assert operators(console_world, plan.id) == [("operator resume", "console (testclient)")]


def test_skip_leaves_the_plan_paused_and_skip_and_resume_finishes_it(
    executor: World, console_world: World, client: TestClient
) -> None:
    first = paused_release(executor)
    second = paused_release(executor)

    status, message = post_action(client, first.id, "skip", step=str(failed_step(first)))
    assert (status, message) == (303, f"step {failed_step(first)} skipped")
    skipped = console_world.get_plan(first.id)
    assert (skipped.state, skipped.result) == ("paused", "warning")

    status, message = post_action(
        client, second.id, "skip_and_resume", step=str(failed_step(second))
    )
    assert (status, message) == (303, f"step {failed_step(second)} skipped, plan resumed")
    done = wait_for(console_world, second.id, lambda p: p.state == "stopped")
    assert done.result == "warning"
    assert operators(console_world, second.id) == [("operator skip", "console (testclient)")]
    row = next(h for h in done.history if h.event == "operator skip")
    assert row.detail == {"by": "console (testclient)", "resume": True}


def test_retry_a_failed_step_after_fixing_its_cause(
    executor: World, console_world: World, client: TestClient
) -> None:
    plan = paused_release(executor)
    step = failed_step(plan)
    actions.BROKEN.clear()

    status, message = post_action(client, plan.id, "retry", step=str(step))

    assert (status, message) == (303, f"step {step}: retry requested")
    done = wait_for(console_world, plan.id, lambda p: p.state == "stopped")
    assert done.result == "success"
    assert done.step(step).state == "success"


def test_cancel_with_abort_of_a_running_plan(
    executor: World, console_world: World, client: TestClient
) -> None:
    triggered = executor.trigger(actions.Waiting)
    wait_for(
        console_world, triggered.plan_id, lambda p: any(s.state == "suspended" for s in p.steps)
    )

    status, message = post_action(client, triggered.plan_id, "cancel", abort="1")

    assert (status, message) == (303, f"plan {triggered.plan_id}: cancel requested (abort)")
    done = wait_for(console_world, triggered.plan_id, lambda p: p.state == "stopped")
    assert done.result == "cancelled"
    output = next(a.output for a in done.actions if a.action_class.endswith("Waiting"))
    assert output["stopped_by"] == "abort"
    (row,) = [h for h in done.history if h.event == "operator cancel"]
    assert row.detail == {"by": "console (testclient)", "abort": True}


def test_halt_a_paused_plan(executor: World, console_world: World, client: TestClient) -> None:
    plan = paused_release(executor)
    status, message = post_action(client, plan.id, "halt")
    assert (status, message) == (303, f"plan {plan.id}: halt requested")
    done = wait_for(console_world, plan.id, lambda p: p.state == "stopped")
    assert done.result == "cancelled"


@pytest.mark.parametrize(
    ("action", "form", "fragment"),
    [
        ("resume", {}, "is stopped (success); there is nothing to resume"),
        ("cancel", {}, "is stopped (success); there is nothing to cancel"),
        ("halt", {}, "there is nothing to halt"),
        ("skip", {"step": "3"}, "step 3 is success; only a failed step can be skipped"),
        ("retry", {"step": "3"}, "step 3 is success; only a failed step can be retried"),
        ("retry", {"step": "2"}, "step 2 is a plan step; only run steps can be retried"),
    ],
)
def test_illegal_actions_are_refused_and_change_nothing(
    executor: World,
    console_world: World,
    client: TestClient,
    action: str,
    form: dict[str, str],
    fragment: str,
) -> None:
    plan = executor.trigger(actions.Release, ["api"]).wait(actions.WAIT)
    before = console_world.get_plan(plan.id)
    answer = client.post(
        f"/plans/{plan.id}/actions/{action}", data={"csrf": csrf_of(client), **form}
    )
    assert answer.status_code == 409
    assert fragment in answer.text
    assert "nothing was changed" in answer.text
    assert console_world.get_plan(plan.id) == before
    api = (
        client.post(f"/api/plans/{plan.id}/{action}", json={})
        if "step" not in form
        else (client.post(f"/api/plans/{plan.id}/steps/{form['step']}/{action}", json={}))
    )
    assert api.status_code == 409
    assert fragment in api.json()["error"]
    assert console_world.get_plan(plan.id) == before


def test_a_failed_step_of_a_running_plan_can_be_retried_not_skipped(
    executor: World, console_world: World, client: TestClient
) -> None:
    actions.BROKEN.add("api")
    triggered = executor.trigger(actions.Pair)
    actions.arrived("web").wait(actions.WAIT)
    plan = wait_for(
        console_world, triggered.plan_id, lambda p: any(s.state == "error" for s in p.steps)
    )
    step = failed_step(plan)
    assert plan.state == "running"
    assert actions_offered(client, plan.id, step) == {"cancel", "halt", "retry"}

    answer = client.post(f"/api/plans/{plan.id}/steps/{step}/skip", json={})
    assert answer.status_code == 409
    assert "can be skipped only while the plan is paused" in answer.json()["error"]

    actions.BROKEN.clear()
    answer = client.post(f"/api/plans/{plan.id}/steps/{step}/retry", json={})
    assert answer.status_code == 200, answer.text
    wait_for(console_world, plan.id, lambda p: p.step(step).state == "success")
    actions.gate("web").set()
    done = wait_for(console_world, plan.id, lambda p: p.state == "stopped")
    assert done.result == "success"


def test_the_api_acts_too(executor: World, console_world: World, client: TestClient) -> None:
    plan = paused_release(executor)
    step = failed_step(plan)
    answer = client.post(
        f"/api/plans/{plan.id}/steps/{step}/skip",
        json={"resume": True},
        headers={"X-Dynaflow-Operator": "deploy-bot"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["plan_id"] == plan.id
    assert body["message"] == f"step {step} skipped, plan resumed"
    done = wait_for(console_world, plan.id, lambda p: p.state == "stopped")
    assert done.result == "warning"
    assert operators(console_world, plan.id) == [("operator skip", "deploy-bot (testclient)")]


def test_the_operator_callable_names_who_acts(executor: World, make_client: ClientFactory) -> None:
    client = make_client(operator=lambda request: request.headers.get("x-user"))
    plan = paused_release(executor)
    answer = client.post(f"/api/plans/{plan.id}/halt", json={}, headers={"x-user": "alice"})
    assert answer.status_code == 200
    assert operators(executor, plan.id) == [("operator halt", "alice")]


def test_skipping_needs_the_action_class_in_the_console_process(
    executor: World, console_world: World, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dynaflow import registry

    plan = paused_release(executor)
    step = failed_step(plan)
    known = registry.known()
    name = plan.step(step).action_class
    monkeypatch.setattr(registry, "_by_name", {k: v for k, v in known.items() if k != name})
    monkeypatch.setattr(registry, "_entry_points_loaded", True)
    before = console_world.get_plan(plan.id)

    answer = client.post(f"/api/plans/{plan.id}/steps/{step}/skip", json={})

    assert answer.status_code == 409
    assert "--import MODULE" in answer.json()["error"]
    assert console_world.get_plan(plan.id) == before


def test_unknown_actions_plans_and_steps(executor: World, client: TestClient) -> None:
    plan = paused_release(executor)
    csrf = csrf_of(client)
    assert client.post(f"/plans/{plan.id}/actions/explode", data={"csrf": csrf}).status_code == 404
    assert client.get(f"/plans/{plan.id}/confirm/explode").status_code == 404
    assert client.post("/plans/no-such-plan/actions/resume", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/api/plans/{plan.id}/explode", json={}).status_code == 404
    answer = client.post(f"/api/plans/{plan.id}/steps/999/retry", json={})
    assert answer.status_code == 404
    assert "no step 999" in answer.json()["error"] or "999" in answer.json()["error"]
    answer = client.post(f"/api/plans/{plan.id}/steps/abc/retry", json={})
    assert answer.status_code == 400
    assert client.get(f"/plans/{plan.id}/confirm/skip").status_code == 400  # which step?


def test_the_confirmation_of_an_action_not_allowed_now_is_refused(
    executor: World, make_client: ClientFactory
) -> None:
    plan = executor.trigger(actions.Release, ["api"]).wait(WAIT)
    assert plan.state == "stopped"
    client = make_client()
    answer = client.get(f"/plans/{plan.id}/confirm/resume")
    assert answer.status_code == 409
    assert "is stopped" in answer.text
    assert 'data-testid="confirm-form"' not in answer.text
