"""plan_only plans without running and returns a tree to assert on: the actions with their
inputs (subscribers included), the flow, the stages and the edges of the run graph."""

from __future__ import annotations

import pytest

from dynaflow import Action, InvalidArgument, OutputRef, PlanningFailed, PlanState, World
from dynaflow.testing import Planned, plan_only

from .actions import Broken, Provision, Stack, Watch


def test_nothing_runs_and_nothing_is_kept(dynaflow_probe) -> None:
    planned = plan_only(Stack)

    assert dynaflow_probe.calls == []
    assert planned.plan.state == PlanState.PLANNED
    assert {s.state for s in planned.plan.steps if s.kind != "plan"} == {"pending"}


def test_the_inputs_of_each_planned_action() -> None:
    planned = plan_only(Stack, prefix="x-")

    assert planned.actions(Provision) == [
        {"name": "x-db", "profile": "db", "db": None},
        {"name": "x-cache", "profile": "cache", "db": None},
        {"name": "x-app", "profile": "web", "db": planned.one(Provision, name="x-db").output.uuid},
    ]
    assert planned.input(Provision, profile="cache") == {
        "name": "x-cache",
        "profile": "cache",
        "db": None,
    }
    assert planned.actions("Provision", name="nope") == []
    assert [a.name for a in planned.all] == ["Stack", *["Provision", "Watch"] * 3]


def test_a_reference_is_the_producers_output() -> None:
    planned = plan_only(Stack)
    db = planned.one(Provision, name="db")
    app = planned.one(Provision, name="app")

    assert isinstance(app.input["db"], OutputRef)
    assert app.input["db"] == db.output.uuid
    assert app.input["db"] != db.output["other"]
    assert planned.runs_after(app, db)
    assert not planned.runs_after(db, app)


def test_subscribers_are_planned_with_their_trigger() -> None:
    planned = plan_only(Provision, "solo", "db")
    machine = planned.one(Provision)
    (watch,) = planned.subscribers(machine)

    assert watch.is_a(Watch)
    assert watch.input == {"host": "solo", "machine": machine.output.uuid}
    assert (watch.trigger_id, watch.parent_id) == (machine.id, machine.id)
    assert planned.children(machine) == [watch]
    assert planned.runs_after(watch, machine)


def test_the_flow_is_nested_tuples_of_class_names() -> None:
    planned = plan_only(Stack)

    assert planned.flow == (
        "sequence",
        [
            ("concurrence", ["Provision", "Watch", "Provision", "Watch"]),
            ("concurrence", ["Provision", "Watch"]),
        ],
    )
    by_name = planned.flow_by(lambda a: a.input.get("name") or f"watch {a.input['host']}")
    assert by_name == (
        "sequence",
        [
            ("concurrence", ["db", "watch db", "cache", "watch cache"]),
            ("concurrence", ["app", "watch app"]),
        ],
    )


def test_one_run_step_is_its_class_name() -> None:
    class Alone(Action):
        def run(self) -> None:
            pass

    assert plan_only(Alone).flow == "Alone"


def test_stages_say_what_runs_together_and_what_after() -> None:
    planned = plan_only(Stack)
    label = lambda a: a.input.get("name") or f"watch {a.input['host']}"  # noqa: E731

    # the watchers wait for their machine (a reference); app waits for the whole first scope
    assert planned.stages(label) == [
        ["db", "cache"],
        ["watch db", "watch cache"],
        ["app"],
        ["watch app"],
    ]
    assert planned.stages()[0] == ["Provision", "Provision"]


def test_edges_include_the_orderings_references_add() -> None:
    planned = plan_only(Provision, "solo")
    assert planned.edges() == {("Provision", "Watch")}
    assert planned.flow == ("concurrence", ["Provision", "Watch"])


def test_one_names_what_was_planned_when_it_finds_none_or_many() -> None:
    planned = plan_only(Stack)
    with pytest.raises(
        InvalidArgument, match=r"expected one planned Provision, found 3; planned: "
    ):
        planned.one(Provision)
    with pytest.raises(InvalidArgument, match=r"found 0.*Provision#2 \{'name': 'db'"):
        planned.one(Provision, name="web")
    with pytest.raises(InvalidArgument, match="has no action 99"):
        planned.action(99)


def test_a_planning_error_raises_with_the_cause() -> None:
    with pytest.raises(PlanningFailed) as failed:
        plan_only(Broken, "no capacity")
    assert isinstance(failed.value.cause, ValueError)
    assert str(failed.value.cause) == "no capacity"


def test_a_plan_from_a_world_reads_the_same(dynaflow_world: World) -> None:
    from_world = Planned.of(dynaflow_world.plan(Stack))
    assert from_world.flow == plan_only(Stack).flow
    assert from_world.actions(Provision) == plan_only(Stack).actions(Provision)
