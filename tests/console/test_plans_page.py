"""The plans page and ``GET /api/plans``: counts per state and result, filters, paging newest
first, whole ids linking to each plan; bad filters answered with a clear 400."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from dynaflow import World

from . import actions
from .conftest import paused_release


@pytest.fixture
def plans(executor: World) -> dict[str, str]:
    """Five plans, oldest first: ``{name: plan_id}``."""
    ids = {"nightly": executor.trigger(actions.Nightly, ["a"]).wait(actions.WAIT).id}
    ids["paused"] = paused_release(executor).id
    ids["weekly"] = executor.trigger(actions.Weekly, ["b"]).wait(actions.WAIT).id
    ids["planned"] = executor.plan(actions.Release, ["c"]).id
    halted = paused_release(executor).id
    executor.halt(halted).result(actions.WAIT)
    ids["halted"] = halted
    return ids


def rows(html: str) -> list[str]:
    return re.findall(r'data-testid="plan-row" data-plan-id="([^"]+)"', html)


def listed(client: TestClient, plans: dict[str, str], query: str) -> list[str]:
    """Names of the plans the page lists for ``query``, checked against the API's answer."""
    page = client.get("/plans" + query)
    assert page.status_code == 200, page.text
    api = client.get("/api/plans" + query)
    assert api.status_code == 200
    names = {plan_id: name for name, plan_id in plans.items()}
    ids = rows(page.text)
    assert ids == [p["id"] for p in api.json()["plans"]]
    assert api.json()["total"] >= len(ids)
    return [names[i] for i in ids]


def test_newest_first_with_whole_ids_linking_to_each_plan(
    client: TestClient, plans: dict[str, str]
) -> None:
    page = client.get("/plans").text
    assert listed(client, plans, "") == ["halted", "planned", "weekly", "paused", "nightly"]
    for plan_id in plans.values():
        assert f'<a href="/plans/{plan_id}" data-testid="plan-link"><code class="id"' in page
        assert f'data-testid="plan-id">{plan_id}</code>' in page
        assert f'data-copy="{plan_id}"' in page


def test_counts_per_state_and_result(client: TestClient, plans: dict[str, str]) -> None:
    counts = client.get("/api/plans").json()["counts"]
    assert counts == {
        "total": 5, "planned": 1, "running": 0, "paused": 1, "stopped": 3,
        "success": 2, "warning": 0, "error": 0, "cancelled": 1,
    }  # fmt: skip
    page = client.get("/plans").text
    assert re.search(r'href="/plans\?state=paused" data-testid="count-paused"><strong>1<', page)
    assert re.search(
        r'href="/plans\?state=stopped&amp;result=success" data-testid="count-success">'
        r"<strong>2<",
        page,
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?state=paused", ["paused"]),
        ("?state=stopped&result=success", ["weekly", "nightly"]),
        ("?result=cancelled", ["halted"]),
        ("?action=" + actions.Nightly.action_class_name, ["nightly"]),
        ("?label=weekly+report", ["weekly"]),
        ("?label=weekly", []),
        ("?q=NIGHTLY", ["nightly"]),
        ("?q=rEpOrT", ["weekly"]),
        ("?q=release&state=stopped", ["halted"]),
    ],
)
def test_filters(
    client: TestClient, plans: dict[str, str], query: str, expected: list[str]
) -> None:
    assert listed(client, plans, query) == expected


def test_free_text_matches_a_part_of_the_id(client: TestClient, plans: dict[str, str]) -> None:
    plan_id = plans["weekly"]
    assert listed(client, plans, f"?q={plan_id[:8]}") == ["weekly"]
    assert listed(client, plans, f"?q={plan_id}") == ["weekly"]


def test_a_time_range(client: TestClient, console_world: World, plans: dict[str, str]) -> None:
    created = {name: console_world.get_plan(i).created_at for name, i in plans.items()}
    since = created["paused"].isoformat()
    until = created["planned"].isoformat()
    query = "?" + "&".join([f"since={since}", f"until={until}"]).replace("+", "%2B")
    assert listed(client, plans, query) == ["weekly", "paused"]
    naive = created["planned"].replace(tzinfo=None).isoformat()  # a form's time: UTC
    assert listed(client, plans, f"?since={naive}") == ["halted", "planned"]


def test_paging_keeps_the_filters(client: TestClient, plans: dict[str, str]) -> None:
    assert listed(client, plans, "?per_page=2") == ["halted", "planned"]
    assert listed(client, plans, "?per_page=2&page=3") == ["nightly"]
    page = client.get("/plans?per_page=2&page=2&state=stopped").text
    assert listed(client, plans, "?per_page=2&page=2&state=stopped") == ["nightly"]
    assert 'href="/plans?state=stopped&amp;per_page=2" rel="prev"' in page
    assert "page 2 of 2 · 3 plans" in page
    assert 'rel="next"' not in page
    api = client.get("/api/plans?per_page=2&state=stopped").json()
    assert (api["total"], api["pages"], api["page"]) == (3, 2, 1)
    assert api["filters"] == {"state": "stopped"}


def test_a_page_past_the_end_is_empty(client: TestClient, plans: dict[str, str]) -> None:
    page = client.get("/plans?page=9").text
    assert rows(page) == []
    assert 'data-testid="no-plans"' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "?state=bogus",
            "unknown state 'bogus'; use one of scheduled, planned, running, paused, stopped",
        ),
        ("?result=fine", "unknown result 'fine'"),
        ("?page=0", "page must be a whole number >= 1, got '0'"),
        ("?page=two", "page must be a whole number >= 1, got 'two'"),
        ("?per_page=100000", "per_page must be a whole number from 1 to 500"),
        ("?since=yesterday", "since must be a time like 2030-05-01T08:00"),
        ("?since=2030-01-02&until=2030-01-01", "since (2030-01-02 00:00) must be before until"),
        ("?label=" + "x" * 300, "filter 'label' is longer than 255 characters"),
    ],
)
def test_bad_filters_get_a_clear_400(
    client: TestClient, plans: dict[str, str], query: str, message: str
) -> None:
    page = client.get("/plans" + query)
    assert page.status_code == 400
    shown = re.search(r'data-testid="error-message">([^<]*)<', page.text)
    assert shown
    assert message in html.unescape(shown.group(1))
    api = client.get("/api/plans" + query)
    assert api.status_code == 400
    assert message in api.json()["error"]


def test_no_plans_at_all(client: TestClient) -> None:
    page = client.get("/plans")
    assert page.status_code == 200
    assert 'data-testid="no-plans"' in page.text
    assert client.get("/api/plans").json()["counts"]["total"] == 0


def test_the_root_leads_to_the_plans(client: TestClient) -> None:
    answer = client.get("/")
    assert (answer.status_code, answer.headers["location"]) == (303, "/plans")
