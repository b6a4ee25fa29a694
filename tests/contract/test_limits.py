"""The same limits on every storage (memory, SQLite, PostgreSQL): a string longer than its column,
or holding a NUL character, is refused before anything is written; JSON keeps a NUL as it is."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dynaflow.exceptions import InvalidArgument
from dynaflow.persistence import HistoryRow, NewPlan, PlanFilter, Storage
from dynaflow.persistence.base import EventRow
from dynaflow.states import StepKind

from .test_storage import T0, make_plan


def with_label(new: NewPlan, label: str) -> NewPlan:
    return replace(new, plan=replace(new.plan, label=label))


def with_key(new: NewPlan, key: str) -> NewPlan:
    return replace(new, plan=replace(new.plan, key=key))


def with_class(new: NewPlan, name: str) -> NewPlan:
    actions = [replace(a, action_class=name) for a in new.actions]
    steps = [replace(s, action_class=name) for s in new.steps]
    return replace(
        new, plan=replace(new.plan, root_action_class=name), actions=actions, steps=steps
    )


def with_queue(new: NewPlan, queue: str) -> NewPlan:
    return replace(new, steps=[replace(s, queue=queue) for s in new.steps])


FIELDS = {
    "label": (with_label, 255, "the plan's label"),
    "key": (with_key, 255, "the plan's key"),
    "class": (with_class, 255, "the action class name"),
    "queue": (with_queue, 64, "the queue"),
}


@pytest.mark.parametrize("field", FIELDS)
def test_a_string_longer_than_its_column_is_refused_naming_it(storage: Storage, field: str) -> None:
    change, limit, what = FIELDS[field]
    with pytest.raises(InvalidArgument) as caught:
        storage.insert_plan(change(make_plan(), "x" * (limit + 1)))
    message = str(caught.value)
    assert what in message and f"{limit + 1} characters" in message, message
    assert f"at most {limit}" in message, message
    assert storage.count_plans() == 0


@pytest.mark.parametrize("field", FIELDS)
def test_a_nul_character_in_a_string_is_refused_naming_it(storage: Storage, field: str) -> None:
    change, _, what = FIELDS[field]
    with pytest.raises(InvalidArgument) as caught:
        storage.insert_plan(change(make_plan(), "ab\x00c"))
    message = str(caught.value)
    assert what in message and "NUL character" in message and "index 2" in message, message
    assert storage.count_plans() == 0


def test_strings_as_long_as_their_columns_are_stored(storage: Storage) -> None:
    new = with_label(make_plan(), "l" * 255)
    new = with_queue(with_class(with_key(new, "k" * 255), "c" * 255), "q" * 64)
    storage.insert_plan(new)
    plan = storage.load_plan(new.plan.id)
    assert (plan.label, plan.record.key, plan.record.root_action_class) == (
        "l" * 255,
        "k" * 255,
        "c" * 255,
    )
    assert {s.queue for s in plan.steps} == {"q" * 64}


NUL_JSON: dict[str, Any] = {"a\x00b": "x\x00y", "list": ["\x00", {"\x00": "\x00\x00"}]}


def test_json_holding_nul_characters_comes_back_unchanged(storage: Storage) -> None:
    """PostgreSQL's ``json`` keeps ``\\u0000`` (``jsonb`` would refuse it), like SQLite and the
    memory storage: every storage takes such inputs, outputs, history details and events.
    (120 actions: PostgreSQL receives them through COPY, whose text format has escapes too.)"""
    new = make_plan(steps=120)
    actions = [replace(a, input={**a.input, **NUL_JSON}) for a in new.actions]
    history = [replace(h, detail=NUL_JSON) for h in new.history]
    new = replace(new, actions=actions, history=history)
    storage.insert_plan(new)
    plan_id = new.plan.id
    storage.save_outputs([(plan_id, 1, NUL_JSON)])
    storage.add_history([HistoryRow(plan_id, T0, "note", 1, "w", NUL_JSON)])
    storage.add_events([EventRow(plan_id, 1, "event", NUL_JSON, T0)])

    plan = storage.load_plan(plan_id)
    assert all(NUL_JSON.items() <= a.input.items() for a in plan.actions)
    assert plan.action(1).output == NUL_JSON
    assert [h.detail for h in plan.history] == [NUL_JSON, NUL_JSON]
    assert [e.payload for e in storage.plan_events(plan_id)] == [NUL_JSON]


def test_a_filter_or_key_holding_a_nul_matches_nothing(storage: Storage) -> None:
    """No stored label, class or key holds a NUL, so a lookup by one finds nothing (PostgreSQL
    would refuse the query itself)."""
    new = make_plan(key="k")
    storage.insert_plan(new)
    assert storage.find_plan_by_key("k\x00") is None
    for where in (PlanFilter(label="demo\x00"), PlanFilter(action="app.Root\x00")):
        assert storage.find_plans(where) == []
        assert storage.count_plans(where) == 0
    assert [p.id for p in storage.find_plans(PlanFilter(label="demo"))] == [new.plan.id]
    assert all(s.kind == StepKind.RUN for s in storage.load_plan(new.plan.id).steps)
