"""The storage contract of delayed and chained plans and recurring schedules
(``dynaflow.persistence.schedules``), on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from dynaflow.exceptions import UnknownPlan
from dynaflow.persistence import Storage
from dynaflow.persistence.schedules import DelayedRow, ScheduleRow
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import PlanResult, PlanState

from .test_storage import make_plan

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def scheduled(storage: Storage, plan_id: str, start: float, **options: object) -> DelayedRow:
    storage.insert_plan(make_plan(plan_id, state=PlanState.SCHEDULED))
    row = DelayedRow(plan_id, at(start), **options)  # type: ignore[arg-type]
    storage.add_delayed(row)
    return row


def stop(storage: Storage, plan_id: str, result: PlanResult = PlanResult.SUCCESS) -> None:
    assert storage.update_plan(plan_id, {"state": PlanState.STOPPED, "result": result})


def schedule_row(key: str = "nightly", next_run: float = 60) -> ScheduleRow:
    return ScheduleRow(
        key, "app.Job", [1, "two"], {"n": {"deep": [None]}}, "0 2 * * *", "Europe/Prague",
        "skip", at(next_run), T0, T0,
    )  # fmt: skip


# -- delayed and chained plans -----------------------------------------------------------------


def test_a_delayed_plan_reads_back_and_is_due_from_its_start(storage: Storage) -> None:
    row = scheduled(storage, "p", 10, start_before=at(20))

    assert storage.get_delayed("p") == row
    assert storage.get_delayed("other") is None
    assert storage.due_delayed(at(9.9)) == []
    assert storage.due_delayed(at(10)) == [row]
    assert storage.next_start() == at(10)


def test_due_plans_come_earliest_first_and_only_while_scheduled(storage: Storage) -> None:
    for plan_id, start in (("late", 30), ("early", 10), ("middle", 20)):
        scheduled(storage, plan_id, start)
    assert [r.plan_id for r in storage.due_delayed(at(60))] == ["early", "middle", "late"]
    assert [r.plan_id for r in storage.due_delayed(at(60), limit=2)] == ["early", "middle"]

    assert storage.update_plan("early", {"state": PlanState.PLANNED}, {PlanState.SCHEDULED})
    assert [r.plan_id for r in storage.due_delayed(at(60))] == ["middle", "late"]
    assert storage.next_start() == at(20)  # a started plan is no longer due


def test_a_chained_plan_is_due_once_every_prerequisite_stopped(storage: Storage) -> None:
    for plan_id in ("a", "b"):
        storage.insert_plan(make_plan(plan_id))
    row = scheduled(storage, "c", 0, after=["b", "a"])
    assert storage.get_delayed("c") == replace(row, after=["a", "b"])
    assert storage.waiting_for(["c", "a", "nope"]) == {"c": ["a", "b"]}

    stop(storage, "a")
    assert storage.due_delayed(at(60)) == []
    assert storage.lock_delayed("c", at(60)) is None
    stop(storage, "b", PlanResult.ERROR)  # stopped is enough to be due; the result is judged later
    assert [r.plan_id for r in storage.due_delayed(at(60))] == ["c"]


def test_a_plan_past_its_deadline_is_due_even_while_it_waits(storage: Storage) -> None:
    storage.insert_plan(make_plan("a"))
    scheduled(storage, "c", 0, start_before=at(10), after=["a"])
    assert storage.due_delayed(at(10)) == []
    assert [r.plan_id for r in storage.due_delayed(at(10.5))] == ["c"]


def test_delayed_rows_need_existing_plans(storage: Storage) -> None:
    storage.insert_plan(make_plan("p", state=PlanState.SCHEDULED))
    with pytest.raises(UnknownPlan):
        storage.add_delayed(DelayedRow("missing", T0))
    with pytest.raises(UnknownPlan):
        storage.add_delayed(DelayedRow("p", T0, after=["missing"]))
    assert storage.get_delayed("p") is None


def test_update_delayed_replaces_times_and_prerequisites(storage: Storage) -> None:
    storage.insert_plan(make_plan("a"))
    storage.insert_plan(make_plan("b"))
    scheduled(storage, "c", 0, after=["a"])
    new = DelayedRow("c", at(30), at(40), ["b"], "skip")
    storage.update_delayed(new)
    assert storage.get_delayed("c") == new


def test_lock_delayed_takes_a_due_plan_for_the_transaction(storage: Storage) -> None:
    row = scheduled(storage, "p", 10)
    with storage.transaction():
        assert storage.lock_delayed("p", at(9)) is None
        assert storage.lock_delayed("p", at(10)) == row


@pytest.mark.postgres
def test_lock_delayed_skips_a_plan_another_transaction_holds(pg_storage_url: str) -> None:
    """PostgreSQL: ``FOR UPDATE SKIP LOCKED`` (SQLite has one writer at a time instead)."""
    sql_storage = SQLStorage(pg_storage_url)
    row = scheduled(sql_storage, "p", 10)
    held, release = threading.Event(), threading.Event()
    seen: list[object] = []

    def holder() -> None:
        with sql_storage.transaction():
            seen.append(sql_storage.lock_delayed("p", at(10)))
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with sql_storage.transaction():
        assert sql_storage.lock_delayed("p", at(10)) is None  # skipped, not waited for
    release.set()
    thread.join(10)
    sql_storage.close()
    assert seen == [row]


# -- recurring schedules -----------------------------------------------------------------------


def test_a_schedule_round_trips_and_is_due_at_its_next_run(storage: Storage) -> None:
    row = schedule_row()
    assert storage.save_schedule(row, None)
    assert row.revision == 1

    assert storage.get_schedule("nightly") == row
    assert storage.schedules() == [row]
    assert storage.get_schedule("other") is None
    assert storage.due_schedules(at(59)) == []
    assert storage.due_schedules(at(60)) == [row]
    assert storage.next_start() == at(60)


def test_a_schedule_changes_only_at_the_revision_read(storage: Storage) -> None:
    row = schedule_row()
    storage.save_schedule(row, None)
    assert not storage.save_schedule(schedule_row(), None)  # the key exists

    first = replace(row, next_run_at=at(120))
    assert storage.save_schedule(first, 1)
    assert first.revision == 2
    stale = replace(row, next_run_at=at(180))
    assert not storage.save_schedule(stale, 1)  # someone else moved it first
    assert storage.get_schedule("nightly") == first


def test_paused_schedules_are_never_due(storage: Storage) -> None:
    storage.save_schedule(schedule_row("a", 10), None)
    paused = schedule_row("b", 5)
    paused.paused_at = T0
    storage.save_schedule(paused, None)
    assert [r.key for r in storage.due_schedules(at(60))] == ["a"]
    assert storage.next_start() == at(10)
    assert [r.key for r in storage.schedules()] == ["a", "b"]


def test_a_change_rolled_back_leaves_the_schedule(storage: Storage) -> None:
    row = schedule_row()
    storage.save_schedule(row, None)
    with pytest.raises(RuntimeError), storage.transaction():
        assert storage.save_schedule(replace(row, next_run_at=at(999)), 1)
        raise RuntimeError("rolled back")
    assert storage.get_schedule("nightly") == row


def test_delete_schedule(storage: Storage) -> None:
    storage.save_schedule(schedule_row(), None)
    assert storage.delete_schedule("nightly")
    assert not storage.delete_schedule("nightly")
    assert storage.schedules() == []
