"""Idempotency keys: ``trigger(..., idempotency_key=K)`` plans at most one plan per key; every
caller asking for the same thing gets that plan, and waiting on it returns its end, whichever
world executes it; asking for something else under the key raises ``IdempotencyConflict``.
``key=`` is an ordinary plan argument."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel

from dynaflow import (
    Action,
    Args,
    ConfigurationError,
    DynaflowError,
    IdempotencyConflict,
    InvalidArgument,
    NotJSON,
    PlanningFailed,
    PlanResult,
    PlanState,
    World,
)
from dynaflow.executor import InlineExecutor

from .actions import WAIT, Probe


class Counted(Action):
    def run(self) -> None:
        PROBE.record("ran", self.input["name"])


class RotateKey(Action):
    """A plan argument named ``key``: it was trigger's option once."""

    def plan(self, key: str, host: str = "web-1") -> None:
        self.plan_self(key=key, host=host)

    def run(self) -> None:
        self.output["installed"] = f"{self.input['key']} on {self.input['host']}"


class Certificate(Action):
    class Input(BaseModel):
        key: str
        on_conflict: str = "keep"

    def run(self) -> None:
        self.output["policy"] = self.input.on_conflict


class TakesAnIdempotencyKey(Action):
    def plan(self, *, idempotency_key: str) -> None:
        self.plan_self(forwarded=idempotency_key)

    def run(self) -> None:
        self.output["forwarded"] = self.input["forwarded"]


class Gate(Action):
    """Its plan() waits at ``BARRIER`` (both callers' planning transactions open at once)."""

    def plan(self, name: str) -> None:
        BARRIER.wait(WAIT)
        self.plan_self(name=name)

    def run(self) -> None:
        PROBE.record("ran", self.input["name"])


class BrokenPlan(Action):
    def plan(self, name: str) -> None:
        raise RuntimeError(f"no inventory for {name}")


PROBE = Probe()
BARRIER = threading.Barrier(2)


@pytest.fixture(autouse=True)
def fresh_probe() -> None:
    PROBE.reset()
    BARRIER.reset()


def test_a_second_trigger_with_the_same_key_returns_the_first_plan(world: World) -> None:
    first = world.trigger(Counted, idempotency_key="nightly-1", name="a")
    done = first.wait(WAIT)
    again = world.trigger(Counted, idempotency_key="nightly-1", name="a")
    assert again.plan_id == first.plan_id
    assert again.wait(WAIT).id == done.id
    assert (done.state, done.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert done.idempotency_key == "nightly-1"
    assert done.record.key_arguments == {
        "action": Counted.action_class_name,
        "args": [],
        "kwargs": {"name": "a"},
    }
    assert PROBE.names("ran") == ["a"]
    assert world.count_plans() == 1


def test_other_arguments_under_a_key_raise_a_conflict_naming_both(world: World) -> None:
    first = world.trigger(Counted, idempotency_key="nightly-2", name="a").wait(WAIT)

    with pytest.raises(IdempotencyConflict) as caught:
        world.trigger(Counted, idempotency_key="nightly-2", name="b")
    message = str(caught.value)
    assert f"belongs to plan {first.id}" in message
    assert 'planned as Counted(name="a")' in message
    assert 'asks for Counted(name="b")' in message
    assert (caught.value.key, caught.value.plan_id) == ("nightly-2", first.id)
    with pytest.raises(IdempotencyConflict, match=r'asks for RotateKey\(key="a"\)'):
        world.plan(RotateKey, idempotency_key="nightly-2", key="a")  # another class
    with pytest.raises(IdempotencyConflict, match=r'asks for Counted\("a"\)'):
        world.trigger(Counted, "a", idempotency_key="nightly-2")  # positional is not keyword
    assert world.count_plans() == 1
    assert PROBE.names("ran") == ["a"]


def test_plan_then_trigger_with_the_key_runs_the_planned_plan(world: World) -> None:
    planned = world.plan(Counted, idempotency_key="k", name="x")
    assert planned.state == PlanState.PLANNED
    assert world.plan(Counted, idempotency_key="k", name="x").id == planned.id
    done = world.trigger(Counted, idempotency_key="k", name="x").wait(WAIT)
    assert (done.id, done.result) == (planned.id, PlanResult.SUCCESS)
    assert PROBE.names("ran") == ["x"]


def test_a_plan_whose_planning_failed_keeps_its_key(world: World) -> None:
    with pytest.raises(PlanningFailed) as caught:
        world.trigger(BrokenPlan, idempotency_key="inventory-1", name="db")
    again = world.trigger(BrokenPlan, idempotency_key="inventory-1", name="db")
    assert again.plan_id == caught.value.plan_id
    plan = again.wait(WAIT)
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.ERROR)
    assert world.count_plans() == 1


def test_key_is_an_ordinary_plan_argument(world: World) -> None:
    plan = world.trigger(RotateKey, key="ssh-rsa AAAA", host="db-1").wait(WAIT)
    assert plan.result == PlanResult.SUCCESS
    assert plan.key is None
    assert plan.actions[0].output == {"installed": "ssh-rsa AAAA on db-1"}
    done = world.trigger(Certificate, key="-----BEGIN", idempotency_key="cert").wait(WAIT)
    assert done.actions[0].input == {"key": "-----BEGIN", "on_conflict": "keep"}
    assert done.key == "cert"


def test_a_plan_argument_named_like_an_option_is_refused_and_args_passes_it(
    world: World,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        world.trigger(TakesAnIdempotencyKey, idempotency_key="x")
    message = str(caught.value)
    assert "TakesAnIdempotencyKey.plan() takes an argument named 'idempotency_key'" in message
    assert "dynaflow.Args(idempotency_key=...)" in message
    with pytest.raises(ConfigurationError, match=r"Certificate.plan\(\) takes an argument named"):
        world.plan(Certificate, key="k", on_conflict="return")  # a field of its Input
    assert world.count_plans() == 0

    plan = world.trigger(TakesAnIdempotencyKey, Args(idempotency_key="x")).wait(WAIT)
    assert plan.actions[0].output == {"forwarded": "x"}
    assert plan.key is None
    both = world.trigger(
        Certificate, Args(key="k", on_conflict="replace"), idempotency_key="c-1"
    ).wait(WAIT)
    assert (both.actions[0].output, both.key) == ({"policy": "replace"}, "c-1")


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"idempotency_key": ""}, InvalidArgument, r"idempotency_key=''\): the key must be"),
        ({"idempotency_key": 7}, InvalidArgument, r"idempotency_key=7\): the key must be a non"),
        ({"idempotency_key": "k" * 256}, InvalidArgument, r"256 characters long.*at most 255"),
        ({"on_conflict": "skip"}, InvalidArgument, r"on_conflict='skip'\): use 'raise'"),
        ({"idempotency_key": "k", "when": object()}, NotJSON, r"arguments of .*Counted.*when"),
    ],
)
def test_bad_options_raise_before_anything_is_planned(
    world: World, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        world.trigger(Counted, name="a", **options)
    with pytest.raises(error, match=match):
        world.plan(Counted, name="a", **options)
    assert world.count_plans() == 0
    assert PROBE.names("ran") == []


def test_args_mixed_with_other_arguments_is_refused(world: World) -> None:
    with pytest.raises(ConfigurationError, match=r"all inside one Args\(...\) or all as they"):
        world.trigger(Counted, Args(name="a"), name="b")
    assert world.count_plans() == 0


@pytest.mark.sql
@pytest.mark.executors("threads")
@pytest.mark.parametrize("round_", range(5))
def test_two_worlds_triggering_one_key_at_once_both_get_its_end(
    world_factory: Any, round_: int
) -> None:
    worlds = [world_factory(), world_factory()]
    start = threading.Barrier(2)
    outcomes: list[Any] = [None, None]
    key = f"race-{round_}"

    def trigger(index: int) -> None:
        start.wait(WAIT)
        try:
            triggered = worlds[index].trigger(Counted, idempotency_key=key, name=key)
            outcomes[index] = triggered.wait(WAIT)
        except DynaflowError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=trigger, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)

    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert outcomes[0].id == outcomes[1].id
    for plan in outcomes:
        assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    assert PROBE.names("ran") == [key]
    assert worlds[0].count_plans() == 1


@pytest.mark.storages("postgres")
@pytest.mark.executors("threads")
def test_two_worlds_planning_one_key_in_open_transactions_get_one_plan(
    world_factory: Any,
) -> None:
    """Two World instances in two threads; both plan() calls wait for each other, so both
    planning transactions are open when they insert: the database's unique key on the
    idempotency key decides, and the loser returns the winner's plan."""
    worlds = [world_factory(), world_factory()]
    outcomes: list[Any] = [None, None]

    def trigger(index: int) -> None:
        try:
            triggered = worlds[index].trigger(Gate, idempotency_key="open", name="g")
            outcomes[index] = triggered.wait(WAIT)
        except (DynaflowError, threading.BrokenBarrierError) as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=trigger, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)

    assert not any(isinstance(o, BaseException) for o in outcomes), outcomes
    assert outcomes[0].id == outcomes[1].id
    assert outcomes[0].result == PlanResult.SUCCESS
    assert PROBE.names("ran") == ["g"]
    assert worlds[0].count_plans() == 1


@pytest.mark.sql
def test_a_client_world_hands_a_keyed_plan_over_once(world_factory: Any) -> None:
    worker = world_factory()
    client = world_factory(executor=None)
    first = client.trigger(Counted, idempotency_key="handed", name="h")
    second = client.trigger(Counted, idempotency_key="handed", name="h")
    assert second.plan_id == first.plan_id
    if isinstance(worker.executor, InlineExecutor):
        worker.run_pending()
    assert first.wait(WAIT).result == PlanResult.SUCCESS
    assert second.wait(WAIT).id == first.plan_id
    assert PROBE.names("ran") == ["h"]
    with pytest.raises(IdempotencyConflict):
        client.trigger(Counted, idempotency_key="handed", name="other")
