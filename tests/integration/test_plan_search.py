"""Finding plans by a part of their label or id, and by when they were created."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from dynaflow import Action, ConfigurationError, World

pytestmark = pytest.mark.executors("inline")


class NightlyBackup(Action):
    label = "Nightly Backup of db-1"

    def run(self) -> None:
        pass


class WeeklyBackup(NightlyBackup):
    label = "weekly backup of db-2"


class Restore(NightlyBackup):
    label = "restore 100%_done"


class RestoreOther(NightlyBackup):
    label = "restore db-3"


T0 = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def plans(world: World) -> dict[str, str]:
    """Four plans an hour apart from T0: ``{name: plan_id}``."""
    ids = {}
    with freeze_time(T0) as clock:
        for name, cls in (
            ("nightly", NightlyBackup),
            ("weekly", WeeklyBackup),
            ("restore", Restore),
            ("other", RestoreOther),
        ):
            ids[name] = world.trigger(cls).plan_id
            clock.tick(timedelta(hours=1))
    return ids


def found(world: World, plans: dict[str, str], **filters: object) -> set[str]:
    by_id = {plan_id: name for name, plan_id in plans.items()}
    records = world.find_plans(**filters)  # type: ignore[arg-type]
    assert world.count_plans(**filters) == len(records)  # type: ignore[arg-type]
    return {by_id[r.id] for r in records}


def test_text_is_a_part_of_the_label_in_any_case(world: World, plans: dict[str, str]) -> None:
    assert found(world, plans, text="BACKUP") == {"nightly", "weekly"}
    # (a space: ids are hex digits and dashes, so "db" alone could match one by chance)
    assert found(world, plans, text=" db-") == {"nightly", "weekly", "other"}
    assert found(world, plans, text="nothing like it") == set()


def test_text_is_a_part_of_the_id(world: World, plans: dict[str, str]) -> None:
    plan_id = plans["weekly"]
    assert found(world, plans, text=plan_id) == {"weekly"}
    assert found(world, plans, text=plan_id[:13].upper()) == {"weekly"}
    assert found(world, plans, text=plan_id[-12:]) == {"weekly"}


def test_wildcards_in_the_text_are_plain_characters(world: World, plans: dict[str, str]) -> None:
    assert found(world, plans, text="100%_") == {"restore"}
    assert found(world, plans, text="%") == {"restore"}
    assert found(world, plans, text="_") == {"restore"}


def test_a_nul_character_matches_no_plan(world: World, plans: dict[str, str]) -> None:
    assert found(world, plans, text="db\x00") == set()


def test_created_after_is_inclusive_and_created_before_is_not(
    world: World, plans: dict[str, str]
) -> None:
    one_hour = timedelta(hours=1)
    assert found(world, plans, created_after=T0 + one_hour) == {"weekly", "restore", "other"}
    assert found(world, plans, created_before=T0 + one_hour) == {"nightly"}
    window = {"created_after": T0 + one_hour, "created_before": T0 + 3 * one_hour}
    assert found(world, plans, **window) == {"weekly", "restore"}
    assert found(world, plans, text="restore", **window) == {"restore"}
    assert found(world, plans, created_after=T0 + 10 * one_hour) == set()


def test_the_filters_combine_with_paging(world: World, plans: dict[str, str]) -> None:
    first = world.find_plans(text=" db", per_page=2)
    second = world.find_plans(text=" db", per_page=2, page=2)
    assert [r.id for r in first] == [plans["other"], plans["weekly"]]
    assert [r.id for r in second] == [plans["nightly"]]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"created_after": datetime(2030, 5, 1)}, "created_after must be an aware datetime"),
        ({"created_before": "2030-05-01"}, "created_before must be an aware datetime"),
        ({"text": 5}, "text must be a str"),
    ],
)
def test_bad_filters_are_refused(
    world: World, plans: dict[str, str], filters: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        world.find_plans(**filters)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        world.count_plans(**filters)  # type: ignore[arg-type]
