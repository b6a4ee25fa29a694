"""What a World does with strings no storage can hold (issue 12, item 10), the same on memory,
SQLite and PostgreSQL: ``trigger`` raises InvalidArgument naming the field and nothing is written;
JSON holding a NUL character runs and comes back unchanged."""

from __future__ import annotations

import pytest

from dynaflow import Action, InvalidArgument, PlanResult, PlanState, World

from .actions import trigger

pytestmark = pytest.mark.executors("inline")


class LongLabel(Action):
    label = "L" * 256

    def run(self) -> None:
        pass


class NulOutput(Action):
    def plan(self, text: str) -> None:
        self.plan_self(text=text)

    def run(self) -> None:
        self.output["echo\x00"] = self.input["text"] + "\x00"


def test_a_label_too_long_raises_invalid_argument_and_writes_nothing(world: World) -> None:
    with pytest.raises(InvalidArgument, match=r"the plan's label .* 256 characters .* at most 255"):
        world.trigger(LongLabel)
    assert world.count_plans() == 0


def test_a_key_holding_a_nul_raises_invalid_argument_and_writes_nothing(world: World) -> None:
    with pytest.raises(
        InvalidArgument, match=r"idempotency key \(idempotency_key= .* NUL character"
    ):
        world.trigger(NulOutput, "x", idempotency_key="order\x00-1")
    assert world.count_plans() == 0


def test_json_holding_a_nul_runs_and_comes_back_unchanged(world: World) -> None:
    plan = trigger(world, NulOutput, "a\x00b")
    assert (plan.state, plan.result) == (PlanState.STOPPED, PlanResult.SUCCESS)
    action = plan.actions[0]
    assert action.input["text"] == "a\x00b"
    assert action.output == {"echo\x00": "a\x00b\x00"}


def test_a_world_id_too_long_for_its_column_is_refused(db_url: str) -> None:
    with pytest.raises(InvalidArgument, match=r"the world id .* 59 characters .* at most 58"):
        World(db_url, world_id="w" * 59)
