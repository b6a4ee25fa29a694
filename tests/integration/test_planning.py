"""The plan phase: depth-first planning, flows, references, models, subscriptions, persistence.

Planning runs in the caller's thread whatever the executor, so most of these run on the inline
executor over every storage; tests that also execute the plan run on both executors.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from dynaflow import Action, PlanningFailed, PlanResult, PlanState, StepKind, StepState, World

from .actions import (
    PROBE,
    WAIT,
    Echo,
    Noop,
    Probe,
    Shape,
    action_id,
    events_of,
    named_edges,
    states,
    step_of,
    trigger,
)

inline_only = pytest.mark.executors("inline")


# -- depth first -----------------------------------------------------------------------------


class Leaf(Action):
    def plan(self, name: str) -> None:
        PROBE.record("plan", name)
        self.plan_self(name=name)

    def run(self) -> None:
        pass


class Branch(Action):
    def plan(self, name: str, leaves: list[str]) -> None:
        PROBE.record("plan", name)
        for leaf in leaves:
            self.plan_action(Leaf, leaf)
        self.plan_self(name=name)


class Tree(Action):
    def plan(self) -> None:
        PROBE.record("plan", "root")
        self.plan_action(Branch, "b1", ["l1", "l2"])
        self.plan_action(Branch, "b2", ["l3"])


@inline_only
def test_plan_action_plans_each_child_completely_before_the_next(
    world: World, probe: Probe
) -> None:
    plan = world.plan(Tree)

    assert probe.names("plan") == ["root", "b1", "l1", "l2", "b2", "l3"]
    names = {a.id: a.input.get("name", "root") for a in plan.actions}
    assert [names[a.id] for a in plan.actions] == ["root", "b1", "l1", "l2", "b2", "l3"]
    parents = {names[a.id]: names.get(a.parent_id) for a in plan.actions}
    assert parents == {"root": None, "b1": "root", "l1": "b1", "l2": "b1", "b2": "root", "l3": "b2"}
    plan_steps = [s for s in plan.steps if s.kind == StepKind.PLAN]
    assert [names[s.action_id] for s in plan_steps] == ["root", "b1", "l1", "l2", "b2", "l3"]
    assert all(s.state == StepState.SUCCESS and s.duration is not None for s in plan_steps)
    assert plan.action(action_id(plan, "l1")).action_class == f"{__name__}.Leaf"


# -- flows -----------------------------------------------------------------------------------


@inline_only
@pytest.mark.parametrize(
    ("spec", "edges"),
    [
        (["seq", "a", "b", "c"], {("a", "b"), ("b", "c")}),
        (["con", "a", "b", "c"], set()),
        (
            ["seq", "a", ["con", "b", ["seq", "c", "d"]], "e"],
            {("a", "b"), ("a", "c"), ("c", "d"), ("b", "e"), ("d", "e")},
        ),
        (
            ["con", ["seq", "a", "b"], ["seq", "c", ["con", "d", "e"]]],
            {("a", "b"), ("c", "d"), ("c", "e")},
        ),
        (
            ["seq", ["con", "a", "b"], ["con", "c", "d"]],
            {("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")},
        ),
    ],
    ids=["sequence", "concurrence", "nested", "two-branches", "join"],
)
def test_sequence_and_concurrence_scopes_give_the_exact_run_edges(
    world: World, spec: Any, edges: set[tuple[str, str]]
) -> None:
    plan = world.plan(Shape, spec)
    assert named_edges(plan) == edges
    assert len(plan.run_edges) == len(edges)


class TwoChildren(Action):
    def plan(self) -> None:
        self.plan_action(Noop, name="a")
        self.plan_action(Noop, name="b")


class SequenceOfComposites(Action):
    """A child that plans a sequence of its own, in a sequence with a sibling."""

    def plan(self) -> None:
        with self.sequence():
            self.plan_action(Shape, ["seq", "x", "y"])
            self.plan_action(Shape, ["con", "z1", "z2"])
            self.plan_action(Noop, name="w")


@inline_only
def test_a_plan_without_scopes_is_a_concurrence(world: World) -> None:
    assert named_edges(world.plan(TwoChildren)) == set()


@inline_only
def test_a_child_flow_is_ordered_as_a_whole_in_its_parents_sequence(world: World) -> None:
    plan = world.plan(SequenceOfComposites)
    assert named_edges(plan) == {("x", "y"), ("y", "z1"), ("y", "z2"), ("z1", "w"), ("z2", "w")}


# -- references ------------------------------------------------------------------------------


class CrossReference(Action):
    """Two sequences side by side; the second one's tail reads the first one's head."""

    def plan(self) -> None:
        with self.concurrence():
            with self.sequence():
                a = self.plan_action(Echo, name="a", value="from-a")
                self.plan_action(Noop, name="b")
            with self.sequence():
                self.plan_action(Noop, name="c")
                self.plan_action(Echo, name="d", value=a.output["value"])


class Producer(Action):
    """Plans a child of its own, then its own run step."""

    def plan(self, name: str) -> None:
        self.plan_action(Noop, name=f"{name}-child")
        self.plan_self(name=name)

    def run(self) -> None:
        self.output["value"] = self.input["name"].upper()


class ConsumesComposite(Action):
    def plan(self) -> None:
        producer = self.plan_action(Producer, "p")
        self.plan_action(Echo, name="consumer", value=producer.output.value)


def test_a_reference_adds_exactly_one_edge_from_producer_to_consumer(world: World) -> None:
    plan = world.plan(CrossReference)
    # not b -> d: the reference orders d after a only, not after a's whole branch
    assert named_edges(plan) == {("a", "b"), ("c", "d"), ("a", "d")}

    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert done.action(action_id(done, "d")).output == {"value": "from-a"}


@inline_only
def test_a_reference_to_a_composite_action_waits_for_its_run_step_only(world: World) -> None:
    plan = world.plan(ConsumesComposite)
    assert named_edges(plan) == {("p", "consumer")}

    world.execute(plan.id)
    done = world.get_plan(plan.id)
    assert done.action(action_id(done, "consumer")).output == {"value": "P"}


class Nested(Action):
    def run(self) -> None:
        self.output.update(a={"b": {"c": 42}, "list": [1, 2, 3]}, flag=False)


class Collect(Action):
    """Output = its whole input (what its references resolved to)."""

    def run(self) -> None:
        self.output.update(self.input)


class NestedReferences(Action):
    def plan(self) -> None:
        source = self.plan_action(Nested)
        self.plan_action(
            Collect,
            name="collect",
            b=source.output["a"]["b"],
            c=source.output.a["b"]["c"],
            item=source.output["a"]["list"][1],
            flag=source.output.flag,
            inside=[{"deep": source.output["a"]["b"]["c"]}],
        )


def test_references_nest_by_key_attribute_and_index(world: World) -> None:
    plan = trigger(world, NestedReferences)
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.action(action_id(plan, "collect")).output == {
        "name": "collect",
        "b": {"c": 42},
        "c": 42,
        "item": 2,
        "flag": False,
        "inside": [{"deep": 42}],
    }
    assert len(plan.run_edges) == 1  # several references to one producer: still one edge


# -- input and output models -----------------------------------------------------------------


class Typed(Action):
    class Input(BaseModel):
        name: str
        count: int
        tags: list[str] = []

    class Output(BaseModel):
        total: int | None = None
        label: str | None = None

    def run(self) -> None:
        assert isinstance(self.input, Typed.Input)
        self.output.total = self.input.count * 2
        self.output.label = f"{self.input.name}:{','.join(self.input.tags)}"


class TypedFromReference(Action):
    def plan(self, value: Any) -> None:
        source = self.plan_action(Echo, name="source", value=value)
        self.plan_action(Typed, name="typed", count=source.output["value"])


class BadOutput(Action):
    class Output(BaseModel):
        total: int

    def run(self) -> None:
        self.output.total = "lots"


@inline_only
def test_input_is_validated_and_coerced_at_plan_time(world: World) -> None:
    plan = world.plan(Typed, name="t", count="3")
    assert plan.state == PlanState.PLANNED
    assert plan.actions[0].input == {"name": "t", "count": 3, "tags": []}


@inline_only
def test_invalid_input_fails_planning_listing_every_bad_field(world: World) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(Typed, name=["not", "a", "string"], count="many")
    message = str(info.value)
    assert f"{Typed.action_class_name}#1 is invalid" in message
    assert "name: Input should be a valid string" in message
    assert "count: Input should be a valid integer" in message
    assert "tags" not in message  # has a default: not a problem
    assert world.get_plan(info.value.plan_id).state == PlanState.STOPPED


def test_a_reference_is_accepted_in_place_of_a_typed_value(world: World) -> None:
    plan = world.plan(TypedFromReference, 21)
    assert plan.state == PlanState.PLANNED
    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert done.action(action_id(done, "typed")).output == {"total": 42, "label": "typed:"}


def test_a_resolved_reference_is_validated_again_before_run(world: World) -> None:
    plan = world.plan(TypedFromReference, "many")  # not an int, but unknown at plan time
    assert plan.state == PlanState.PLANNED
    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("paused", "error")
    step = step_of(done, "typed")
    assert step.state == StepState.ERROR
    assert "Typed" in step.error.message and "count" in step.error.message
    assert step_of(done, "source").state == StepState.SUCCESS


def test_output_models_are_saved_as_dicts(world: World) -> None:
    plan = trigger(world, Typed, name="t", count=4, tags=["x", "y"])
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.actions[0].output == {"total": 8, "label": "t:x,y"}


def test_an_output_that_breaks_its_model_fails_the_step(world: World) -> None:
    plan = trigger(world, BadOutput)
    assert (plan.state, plan.result) == ("paused", "error")
    (step,) = [s for s in plan.steps if s.kind == StepKind.RUN]
    assert step.state == StepState.ERROR
    assert "BadOutput" in step.error.message and "total" in step.error.message
    assert plan.actions[0].output == {}


class DictIO(Action):
    def run(self) -> None:
        assert type(self.input) is dict and type(self.output) is dict
        self.output["sum"] = sum(self.input["numbers"])
        self.output["nested"] = {"list": [self.input["name"]]}


def test_without_models_input_and_output_are_dicts(world: World) -> None:
    plan = trigger(world, DictIO, name="n", numbers=[1, 2, 3])
    assert (plan.state, plan.result) == ("stopped", "success")
    assert plan.actions[0].input == {"name": "n", "numbers": [1, 2, 3]}
    assert plan.actions[0].output == {"sum": 6, "nested": {"list": ["n"]}}


# -- default plan ----------------------------------------------------------------------------


class NothingToRun(Action):
    pass


@inline_only
def test_the_default_plan_calls_plan_self_with_the_keyword_arguments(world: World) -> None:
    plan = world.plan(Noop, name="a", extra={"k": [1, 2]})
    assert plan.actions[0].input == {"name": "a", "extra": {"k": [1, 2]}}
    assert [s.kind for s in plan.steps] == [StepKind.PLAN, StepKind.RUN]


@inline_only
def test_the_default_plan_rejects_positional_arguments(world: World) -> None:
    with pytest.raises(PlanningFailed) as info:
        world.trigger(Noop, "a")
    assert "positional arguments" in str(info.value.cause)
    assert "Noop" in str(info.value.cause)


def test_an_action_without_run_or_finalize_plans_no_steps_and_succeeds(world: World) -> None:
    plan = trigger(world, NothingToRun)
    assert [s.kind for s in plan.steps] == [StepKind.PLAN]
    assert (plan.state, plan.result) == ("stopped", "success")


# -- subscriptions ---------------------------------------------------------------------------


class Provision(Action):
    def plan(self, host: str, size: int = 1) -> None:
        self.plan_self(host=host, size=size)

    def run(self) -> None:
        self.output["uuid"] = f"uuid-{self.input['host']}"


class Deprovision(Action):
    def plan(self, host: str, size: int = 1) -> None:
        self.plan_self(host=host)


class Audit(Action):
    subscribe = Provision

    def plan(self, host: str, size: int = 1) -> None:
        PROBE.record("audit-plan", (host, size), type(self.triggering_action).__name__)
        self.plan_self(name="audit", uuid=self.triggering_action.output["uuid"])

    def run(self) -> None:
        self.output["audited"] = self.input["uuid"]


class Notify(Action):
    subscribe = (Provision, Deprovision)

    def plan(self, host: str, size: int = 1) -> None:
        self.plan_self(name=f"notify-{type(self.triggering_action).__name__}", host=host)

    def run(self) -> None:
        pass


class ProvisionThenMore(Action):
    def plan(self) -> None:
        self.plan_action(Provision, "h1", size=2)
        self.plan_action(Noop, name="after")


def test_subscribers_are_planned_right_after_the_core_action(world: World, probe: Probe) -> None:
    plan = world.plan(ProvisionThenMore)

    classes = [a.action_class.rsplit(".", 1)[-1] for a in plan.actions]
    assert classes == ["ProvisionThenMore", "Provision", "Audit", "Notify", "Noop"]
    assert probe.calls == [("audit-plan", ("h1", 2), "Provision")]  # same arguments
    provision = plan.actions[1]
    for subscriber in plan.actions[2:4]:
        assert subscriber.trigger_id == provision.id
    assert plan.actions[4].trigger_id is None
    # Audit references the trigger's output: one edge; Notify does not: none
    assert named_edges(plan) == {(f"{Provision.__module__}.Provision", "audit")}

    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert done.action(action_id(done, "audit")).output == {"audited": "uuid-h1"}


@inline_only
def test_a_tuple_subscribes_to_each_core_action(world: World) -> None:
    plan = world.plan(Deprovision, "h2")
    classes = [a.action_class.rsplit(".", 1)[-1] for a in plan.actions]
    assert classes == ["Deprovision", "Notify"]
    assert plan.actions[1].input == {"name": "notify-Deprovision", "host": "h2"}


# -- persisted before anything runs ----------------------------------------------------------


def test_the_plan_is_persisted_before_anything_runs(world: World, probe: Probe) -> None:
    plan = world.plan(Shape, ["seq", "a", ["con", "b", "c"]])

    assert (plan.state, plan.result) == (PlanState.PLANNED, PlanResult.PENDING)
    assert plan.started_at is None and plan.ended_at is None
    assert set(states(plan).values()) == {"pending"}
    assert probe.names("run") == []
    assert events_of(plan, None) == ["plan planning", "plan planned"]
    assert world.get_plan(plan.id) == plan

    done = world.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert probe.names("run")[0] == "a"
    assert sorted(probe.names("run")) == ["a", "b", "c"]


@pytest.mark.sql
def test_a_client_world_plans_and_another_world_runs_the_plan(
    world_factory: Any, probe: Probe
) -> None:
    client = world_factory(executor=None)
    runner = world_factory()
    plan = client.plan(Shape, ["seq", "a", "b"])
    assert probe.names("run") == []
    assert runner.get_plan(plan.id).state == PlanState.PLANNED

    done = runner.execute(plan.id).result(timeout=WAIT)
    assert (done.state, done.result) == ("stopped", "success")
    assert probe.names("run") == ["a", "b"]
    assert client.get_plan(plan.id).state == PlanState.STOPPED


class OnSlowQueue(Action):
    queue = "slow"

    def run(self) -> None:
        pass


@inline_only
def test_the_flow_tree_and_queues_are_persisted_for_display(world: World) -> None:
    plan = world.plan(Shape, ["seq", "a", ["con", "b", "c"]])
    a, b, c = (step_of(plan, name).id for name in "abc")
    assert plan.run_flow == {"sequence": [a, {"concurrence": [b, c]}]}
    assert {s.queue for s in plan.steps} == {"default"}
    assert [s.queue for s in world.plan(OnSlowQueue).run_steps()] == ["slow"]


class ListOutput(Action):
    def run(self) -> None:
        self.input["items"].append("changed in run")  # not saved: input is read-only data
        self.output["list"] = [1, {"k": "v"}]


def test_the_plan_keeps_its_own_copies_of_inputs_and_outputs(world: World) -> None:
    items, nested = [1, 2], {"a": 1}
    planned = world.plan(ListOutput, items=items, nested=nested)
    items.append("changed by the caller")
    nested["a"] = "changed by the caller"
    planned.actions[0].input["items"].append("changed in a snapshot")

    done = world.execute(planned.id).result(timeout=WAIT)
    done.actions[0].output["list"][1]["k"] = "changed in a snapshot"

    again = world.get_plan(planned.id)
    assert again.actions[0].input == {"items": [1, 2], "nested": {"a": 1}}
    assert again.actions[0].output == {"list": [1, {"k": "v"}]}
