"""The console shows a plan's sub-plans (counts per state, a link to the list of them) and a
sub-plan's parent; the list filters by parent."""

from __future__ import annotations

from typing import Any

from dynaflow import Action, SubPlan, SubPlans, World

from .actions import WAIT
from .conftest import ClientFactory


class Leaf(Action):
    def run(self) -> None:
        if self.input["n"] == 1:
            raise RuntimeError("leaf 1 broke")


class Tree(SubPlans, Action):
    def create_sub_plans(self) -> Any:
        for n in range(3):
            yield SubPlan(Leaf, n=n)


def test_a_parent_counts_its_sub_plans_and_a_child_links_its_parent(
    executor: World, make_client: ClientFactory
) -> None:
    parent = executor.trigger(Tree).wait(WAIT)
    client = make_client()
    document = client.get(f"/api/plans/{parent.id}").json()
    assert document["sub_plans"] == {"paused/error": 1, "stopped/success": 2}
    page = client.get(f"/plans/{parent.id}").text
    assert 'data-testid="plan-sub-plans"' in page
    assert f"/plans?parent={parent.id}" in page

    listed = client.get(f"/api/plans?parent={parent.id}").json()
    children = {p["id"] for p in listed["plans"]}
    assert children == {p.id for p in executor.find_plans(parent=parent.id)}
    assert all(p["parent_id"] == parent.id for p in listed["plans"])
    assert "Sub-plans of" in client.get(f"/plans?parent={parent.id}").text

    child = next(iter(children))
    child_page = client.get(f"/plans/{child}").text
    assert 'data-testid="plan-parent"' in child_page and parent.id in child_page
    assert client.get(f"/api/plans/{child}").json()["sub_plans"] == {}
