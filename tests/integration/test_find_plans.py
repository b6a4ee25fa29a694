"""Reading plans back: find_plans filters, paging and ordering; count_plans."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from dynaflow import Action, ConfigurationError, PlanningFailed, PlanRecord, World

from .actions import Noop, Shape

pytestmark = pytest.mark.executors("inline")


class NightlySync(Action):
    label = "nightly sync"

    def run(self) -> None:
        pass


class BrokenPlan(Action):
    def plan(self) -> None:
        raise LookupError("no such repository")


@pytest.fixture
def plans(world: World) -> dict[str, str]:
    """Five plans, created a minute apart: ``{name: plan_id}``."""
    ids = {}
    with freeze_time("2030-05-01 08:00:00") as clock:
        ids["ok1"] = world.trigger(NightlySync).plan_id
        clock.tick(timedelta(minutes=1))
        ids["failed"] = world.trigger(Shape, ["seq", "fail:f"]).plan_id
        clock.tick(timedelta(minutes=1))
        ids["planned"] = world.plan(Noop, name="later").id
        clock.tick(timedelta(minutes=1))
        with pytest.raises(PlanningFailed) as info:
            world.trigger(BrokenPlan)
        ids["broken"] = info.value.plan_id
        clock.tick(timedelta(minutes=1))
        ids["ok2"] = world.trigger(NightlySync).plan_id
    return ids


def names(records: list[PlanRecord], plans: dict[str, str]) -> list[str]:
    by_id = {plan_id: name for name, plan_id in plans.items()}
    return [by_id[r.id] for r in records]


def test_newest_first_by_default_and_oldest_first_on_request(
    world: World, plans: dict[str, str]
) -> None:
    assert names(world.find_plans(), plans) == ["ok2", "broken", "planned", "failed", "ok1"]
    assert names(world.find_plans(order_by="created_at"), plans) == [
        "ok1",
        "failed",
        "planned",
        "broken",
        "ok2",
    ]


def test_records_carry_label_state_result_and_root_class(
    world: World, plans: dict[str, str]
) -> None:
    records = {r.id: r for r in world.find_plans()}
    ok1 = records[plans["ok1"]]
    assert (ok1.label, ok1.state, ok1.result) == ("nightly sync", "stopped", "success")
    assert ok1.root_action_class == NightlySync.action_class_name
    failed = records[plans["failed"]]
    assert (failed.label, failed.state, failed.result) == ("Shape", "paused", "error")
    broken = records[plans["broken"]]
    assert (broken.state, broken.result) == ("stopped", "error")
    assert broken.error.class_name == "LookupError"
    assert records[plans["planned"]].label == "Noop"


FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"state": "stopped"}, ["ok2", "broken", "ok1"]),
    ({"state": ["paused", "planned"]}, ["planned", "failed"]),
    ({"result": "success"}, ["ok2", "ok1"]),
    ({"result": "error"}, ["broken", "failed"]),
    ({"state": "stopped", "result": "error"}, ["broken"]),
    ({"label": "nightly sync"}, ["ok2", "ok1"]),
    ({"label": "Shape"}, ["failed"]),
    ({"label": "no such label"}, []),
    ({"action": NightlySync}, ["ok2", "ok1"]),
    ({"action": NightlySync.action_class_name}, ["ok2", "ok1"]),
    ({"action": Shape, "state": "paused"}, ["failed"]),
    ({"action": Noop, "result": "success"}, []),
]


def test_filters(world: World, plans: dict[str, str]) -> None:
    for filters, expected in FILTERS:
        assert names(world.find_plans(**filters), plans) == expected, filters
        assert world.count_plans(**filters) == len(expected), filters


def test_paging(world: World, plans: dict[str, str]) -> None:
    pages = [names(world.find_plans(page=n, per_page=2), plans) for n in (1, 2, 3, 4)]
    assert pages == [["ok2", "broken"], ["planned", "failed"], ["ok1"], []]
    assert names(world.find_plans(result="success", page=2, per_page=1), plans) == ["ok1"]
    assert world.count_plans() == 5


def test_ordering_by_other_columns(world: World, plans: dict[str, str]) -> None:
    by_label = [r.label for r in world.find_plans(order_by="label")]
    assert by_label == sorted(by_label)
    assert [r.label for r in world.find_plans(order_by="-label")] == sorted(by_label, reverse=True)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"state": "finished"}, "unknown plan state"),
        ({"result": ["success", "ok"]}, "unknown plan result"),
        ({"order_by": "colour"}, "cannot order plans by 'colour'"),
        ({"page": 0}, "page must be an int >= 1"),
        ({"per_page": -5}, "per_page must be an int >= 1"),
    ],
)
def test_bad_queries_raise_a_configuration_error(
    world: World, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        world.find_plans(**arguments)


def test_plans_that_never_started_sort_last_both_ways(world: World, plans: dict[str, str]) -> None:
    ascending = names(world.find_plans(order_by="started_at"), plans)
    descending = names(world.find_plans(order_by="-started_at"), plans)
    assert ascending[:3] == ["ok1", "failed", "ok2"]
    assert descending[:3] == ["ok2", "failed", "ok1"]
    assert set(ascending[3:]) == set(descending[3:]) == {"planned", "broken"}
