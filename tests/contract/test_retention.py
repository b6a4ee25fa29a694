"""The storage contract of retention (``dynaflow.persistence.retention``): which plans
``prune_plans`` removes, that it removes every row kept for them, in batches, and that
``count_prunable`` foretells it — on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import text

from dynaflow.persistence import Storage, tables
from dynaflow.persistence.base import EventRow, RequestRow
from dynaflow.persistence.reports import StepLogLine
from dynaflow.persistence.retention import PRUNED_TABLES
from dynaflow.persistence.schedules import DelayedRow
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import PlanResult, PlanState

from .test_storage import T0, make_plan

#: the cutoff of every prune here: plans ended before it are old enough
CUTOFF = T0 + timedelta(days=30)
OLD, NEW = T0 + timedelta(days=1), T0 + timedelta(days=31)


def add(
    storage: Storage,
    plan_id: str,
    state: PlanState = PlanState.STOPPED,
    *,
    ended: object = OLD,
    result: PlanResult = PlanResult.SUCCESS,
    parent: str | None = None,
    key: str | None = None,
    singletons: tuple[str, ...] = (),
) -> None:
    """A plan in ``state`` (stopped: ended at ``ended`` with ``result``)."""
    new = make_plan(plan_id, key=key, state=state, steps=2)
    if state == PlanState.STOPPED:
        new.plan = replace(new.plan, result=result, ended_at=ended)  # type: ignore[arg-type]
    new.plan = replace(new.plan, parent_id=parent, parent_step_id=1 if parent else None)
    new.singletons = list(singletons)
    storage.insert_plan(new)


def stop(storage: Storage, plan_id: str, ended: object = OLD) -> None:
    fields = {"state": PlanState.STOPPED, "result": PlanResult.SUCCESS, "ended_at": ended}
    assert storage.update_plan(plan_id, fields)


def present(storage: Storage) -> set[str]:
    return {record.id for record in storage.find_plans()}


def prune_all(storage: Storage, result: PlanResult | None = None) -> dict[str, int]:
    """``prune_plans`` until it removes nothing, as ``dynaflow.retention.prune`` calls it."""
    total = dict.fromkeys(PRUNED_TABLES, 0)
    while True:
        removed = storage.prune_plans(CUTOFF, result, 500)
        if not removed["plans"]:
            return total
        total = {name: total[name] + removed[name] for name in PRUNED_TABLES}


def test_a_pruned_plan_leaves_no_row_in_any_table_and_the_count_said_so(storage: Storage) -> None:
    add(storage, "before")  # a prerequisite, stopped
    add(storage, "p", singletons=("nightly",), key="k-1")
    storage.add_delayed(DelayedRow("p", T0, after=["before"]))  # p was chained after it
    storage.add_events([EventRow("p", 1, "event", {"n": 1}, T0)])
    storage.add_step_logs("p", [StepLogLine(1, 1, T0, "one"), StepLogLine(2, 1, T0, "two")])
    storage.add_request(RequestRow("p", "execute", {}, T0))
    add(storage, "kept", ended=NEW)
    storage.add_events([EventRow("kept", 1, "event", None, T0)])

    foretold = storage.count_prunable(CUTOFF)
    removed = prune_all(storage)

    assert removed == foretold
    assert removed == {
        "step_logs": 2,
        "events": 1,
        "requests": 1,
        "history": 2,  # each plan's "planned"
        "edges": 2,
        "steps": 4,
        "actions": 4,
        "singletons": 1,
        "chains": 1,
        "delayed": 1,
        "plans": 2,
    }
    assert present(storage) == {"kept"}
    assert storage.find_plan_by_key("k-1") is None  # the key is free again
    add(storage, "again", key="k-1", state=PlanState.PLANNED)
    assert storage.find_plan_by_key("k-1").id == "again"  # type: ignore[union-attr]
    assert storage.singleton_holder("nightly") is None
    assert storage.get_delayed("p") is None
    assert [e.plan_id for e in storage.plan_events("kept")] == ["kept"]
    assert storage.count_prunable(CUTOFF) == dict.fromkeys(PRUNED_TABLES, 0)


def test_every_table_with_a_plan_id_is_emptied_of_the_pruned_plans(sql_storage: SQLStorage) -> None:
    """Each table keyed by a plan id (a table added later too) is pruned."""
    add(sql_storage, "before")
    add(sql_storage, "p", singletons=("s",))
    sql_storage.add_delayed(DelayedRow("p", T0, after=["before"]))
    sql_storage.add_events([EventRow("p", 1, "timer", None, T0, T0)])
    sql_storage.add_step_logs("p", [StepLogLine(1, 1, T0, "x")])
    sql_storage.add_request(RequestRow("p", "cancel", {}, T0))
    keyed = [
        (table.name, column)
        for table in tables.metadata.sorted_tables
        for column in ("id", "plan_id", "after_id", "parent_id", "last_plan_id")
        if column in table.c and (column != "id" or table is tables.plans)
        if table is not tables.actions or column == "plan_id"  # its parent_id is an action's
    ]
    prune_all(sql_storage)
    with sql_storage.transaction() as conn:
        for name, column in keyed:
            found = conn.execute(
                text(f"SELECT count(*) FROM {name} WHERE {column} IN ('p', 'before')")
            ).scalar_one()
            assert found == 0, f"{name}.{column} still names a pruned plan"


def test_only_stopped_plans_that_ended_before_the_cutoff_go(storage: Storage) -> None:
    for state in (PlanState.SCHEDULED, PlanState.PLANNED, PlanState.RUNNING, PlanState.PAUSED):
        add(storage, state.value, state)
    add(storage, "recent", ended=NEW)
    add(storage, "at-the-cutoff", ended=CUTOFF)
    add(storage, "old")
    add(storage, "old-error", result=PlanResult.ERROR)

    assert storage.count_prunable(CUTOFF)["plans"] == 2
    assert prune_all(storage)["plans"] == 2
    assert present(storage) == {
        "scheduled",
        "planned",
        "running",
        "paused",
        "recent",
        "at-the-cutoff",
    }


def test_a_result_keeps_plans_that_ended_otherwise(storage: Storage) -> None:
    add(storage, "ok")
    add(storage, "warned", result=PlanResult.WARNING)
    add(storage, "failed", result=PlanResult.ERROR)
    add(storage, "cancelled", result=PlanResult.CANCELLED)

    assert storage.count_prunable(CUTOFF, PlanResult.ERROR)["plans"] == 1
    assert prune_all(storage, PlanResult.ERROR)["plans"] == 1
    assert present(storage) == {"ok", "warned", "cancelled"}
    assert prune_all(storage, PlanResult.SUCCESS)["plans"] == 1
    assert present(storage) == {"warned", "cancelled"}


def test_a_parent_goes_after_its_sub_plans_and_only_once_they_all_can(storage: Storage) -> None:
    add(storage, "parent")
    add(storage, "done", parent="parent")
    add(storage, "live", PlanState.RUNNING, parent="parent")
    add(storage, "grandchild", parent="done")  # a sub-plan of a sub-plan

    # the parent has stopped: its stopped sub-plans may go; a live one keeps it
    assert storage.count_prunable(CUTOFF)["plans"] == 2
    assert prune_all(storage)["plans"] == 2
    assert present(storage) == {"parent", "live"}

    stop(storage, "live")
    assert storage.count_prunable(CUTOFF)["plans"] == 2  # the sub-plan, then its parent
    first = storage.prune_plans(CUTOFF, None, 500)
    assert first["plans"] == 1 and present(storage) == {"parent"}  # never a dangling parent
    assert storage.prune_plans(CUTOFF, None, 500)["plans"] == 1
    assert present(storage) == set()


def test_sub_plans_of_a_parent_that_has_not_stopped_stay(storage: Storage) -> None:
    """A running parent counts its ended sub-plans in the database."""
    add(storage, "parent", PlanState.RUNNING)
    add(storage, "ended", parent="parent")
    assert storage.count_prunable(CUTOFF)["plans"] == 0
    assert prune_all(storage)["plans"] == 0
    assert present(storage) == {"parent", "ended"}


def test_a_result_that_keeps_a_sub_plan_keeps_its_parent(storage: Storage) -> None:
    add(storage, "parent")
    add(storage, "failed", parent="parent", result=PlanResult.ERROR)
    add(storage, "ok", parent="parent")
    assert storage.count_prunable(CUTOFF, PlanResult.SUCCESS)["plans"] == 1
    assert prune_all(storage, PlanResult.SUCCESS)["plans"] == 1
    assert present(storage) == {"parent", "failed"}


def test_a_prerequisite_of_a_chained_plan_that_waits_stays(storage: Storage) -> None:
    add(storage, "first")
    add(storage, "second")
    add(storage, "waiting", PlanState.SCHEDULED)
    storage.add_delayed(DelayedRow("waiting", T0, after=["first"]))
    add(storage, "started", PlanState.RUNNING)
    storage.add_delayed(DelayedRow("started", T0, after=["second"]))

    # "second" was a prerequisite of a plan that has started: it may go, and the link with it
    assert storage.count_prunable(CUTOFF) == {**dict.fromkeys(PRUNED_TABLES, 0), **{
        "plans": 1, "actions": 2, "steps": 2, "edges": 1, "history": 1, "chains": 1,
    }}  # fmt: skip
    assert prune_all(storage)["chains"] == 1
    assert present(storage) == {"first", "waiting", "started"}
    assert storage.waiting_for(["waiting"]) == {"waiting": ["first"]}
    assert storage.get_delayed("started").after == []  # type: ignore[union-attr]

    assert storage.update_plan("waiting", {"state": PlanState.PLANNED})  # it started
    assert prune_all(storage)["plans"] == 1
    assert present(storage) == {"waiting", "started"}


def test_batches_take_the_plans_that_ended_first_at_most_limit_each(storage: Storage) -> None:
    for day in (5, 3, 1, 4, 2):
        add(storage, f"day-{day}", ended=T0 + timedelta(days=day))
    assert storage.prune_plans(CUTOFF, None, 2)["plans"] == 2
    assert present(storage) == {"day-3", "day-4", "day-5"}
    assert storage.prune_plans(CUTOFF, None, 2)["plans"] == 2
    assert storage.prune_plans(CUTOFF, None, 2)["plans"] == 1
    assert storage.prune_plans(CUTOFF, None, 2) == dict.fromkeys(PRUNED_TABLES, 0)


def test_a_prune_joins_the_ambient_transaction_and_rolls_back_with_it(storage: Storage) -> None:
    add(storage, "p")
    with pytest.raises(RuntimeError), storage.transaction():
        assert storage.prune_plans(CUTOFF, None, 10)["plans"] == 1
        raise RuntimeError("undo")
    assert present(storage) == {"p"}
    assert storage.load_plan("p").steps  # its rows are back too


@pytest.mark.postgres
def test_two_pruners_at_once_take_different_plans_without_waiting(
    pg_storage_url: str,
) -> None:
    """PostgreSQL: a batch skips the plans another batch holds (FOR UPDATE SKIP LOCKED)."""
    storage, other = SQLStorage(pg_storage_url), SQLStorage(pg_storage_url)
    try:
        for day in range(1, 6):
            add(storage, f"day-{day}", ended=T0 + timedelta(days=day))
        second: dict[str, int] = {}
        with storage.transaction():
            assert storage.prune_plans(CUTOFF, None, 2)["plans"] == 2  # day-1 and day-2, held
            pruner = threading.Thread(target=lambda: second.update(other.prune_plans(CUTOFF)))
            pruner.start()
            pruner.join(timeout=10)
            assert not pruner.is_alive(), "the second pruner waited for the first"
        assert second["plans"] == 3
        assert present(storage) == set()
    finally:
        storage.close()
        other.close()
