"""``World.resolve_plan_id``: a whole plan id, or a prefix only one plan's id starts with."""

from __future__ import annotations

from collections import defaultdict

import pytest

from dynaflow import AmbiguousPlanId, UnknownPlan, World

from .actions import Noop

pytestmark = pytest.mark.executors("inline")


def test_a_whole_id_or_a_unique_prefix_gives_the_whole_id(world: World) -> None:
    plan_id = world.plan(Noop, name="one").id
    assert world.resolve_plan_id(plan_id) == plan_id
    assert world.resolve_plan_id(plan_id[:8]) == plan_id
    assert world.resolve_plan_id(plan_id[:1]) == plan_id


def test_an_ambiguous_prefix_names_the_candidates(world: World) -> None:
    # 17 plans: two of them share the first of their ids' 16 possible first characters
    by_first: dict[str, list[str]] = defaultdict(list)
    for n in range(17):
        plan_id = world.plan(Noop, name=str(n)).id
        by_first[plan_id[0]].append(plan_id)
    prefix, candidates = next((p, ids) for p, ids in by_first.items() if len(ids) > 1)
    with pytest.raises(AmbiguousPlanId) as info:
        world.resolve_plan_id(prefix)
    assert info.value.candidates == sorted(candidates)
    for candidate in candidates:
        assert candidate in str(info.value)
    assert "give more of the id" in str(info.value)
    for candidate in candidates:  # more of the id settles it
        assert world.resolve_plan_id(candidate[:20]) == candidate


@pytest.mark.parametrize("prefix", ["", "zz", "not-a-plan", 42])
def test_no_plan_is_unknown_plan(world: World, prefix: object) -> None:
    world.plan(Noop, name="one")
    with pytest.raises(UnknownPlan):
        world.resolve_plan_id(prefix)  # type: ignore[arg-type]
