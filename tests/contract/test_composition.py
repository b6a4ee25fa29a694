"""The storage contract of singleton keys and idempotency arguments, on memory, SQLite and
PostgreSQL: a key is held by one plan that has not stopped, taken with the plan's insert and
given back by the update that stops it, in that transaction."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest
from sqlalchemy import Engine, insert, text

from dynaflow.exceptions import ConcurrentModification, SingletonActive
from dynaflow.persistence import Batch, NewPlan, PlanUpdate, Storage, tables
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import PlanResult, PlanState

from .test_storage import T0, make_plan


def singleton_plan(plan_id: str, *keys: str) -> NewPlan:
    return replace(make_plan(plan_id), singletons=list(keys))


def stop(storage: Storage, plan_id: str, old: PlanState = PlanState.PLANNED) -> bool:
    fields = {"state": PlanState.STOPPED, "result": PlanResult.CANCELLED, "ended_at": T0}
    return storage.update_plan(plan_id, fields, frozenset({old}))


def test_a_held_singleton_key_refuses_a_second_plan_and_names_the_holder(
    storage: Storage,
) -> None:
    storage.insert_plan(singleton_plan("first", "app.Sync:repo-1"))

    with pytest.raises(SingletonActive, match=r"'app.Sync:repo-1' is held by plan first") as caught:
        storage.insert_plan(singleton_plan("second", "app.Other", "app.Sync:repo-1"))

    assert (caught.value.key, caught.value.plan_id) == ("app.Sync:repo-1", "first")
    assert storage.count_plans() == 1  # nothing of the second plan was written
    assert storage.singleton_holder("app.Other") is None
    assert storage.singleton_holder("app.Sync:repo-1") == "first"
    storage.insert_plan(singleton_plan("third", "app.Sync:repo-2"))  # another key is free
    assert storage.singleton_holder("app.Sync:repo-2") == "third"


def test_stopping_the_plan_releases_its_keys_pausing_does_not(storage: Storage) -> None:
    storage.insert_plan(singleton_plan("first", "k1", "k2"))
    storage.update_plan("first", {"state": PlanState.RUNNING}, frozenset({PlanState.PLANNED}))
    storage.update_plan("first", {"state": PlanState.PAUSED}, frozenset({PlanState.RUNNING}))
    with pytest.raises(SingletonActive):
        storage.insert_plan(singleton_plan("second", "k2"))

    assert stop(storage, "first", PlanState.PAUSED)

    assert storage.singleton_holder("k1") is None
    storage.insert_plan(singleton_plan("second", "k1", "k2"))
    assert storage.singleton_holder("k2") == "second"


def test_a_stop_that_does_not_apply_keeps_the_keys(storage: Storage) -> None:
    storage.insert_plan(singleton_plan("first", "k"))
    assert not stop(storage, "first", PlanState.RUNNING)  # it is planned, not running
    assert storage.singleton_holder("k") == "first"


def test_a_stop_rolled_back_keeps_the_keys(storage: Storage) -> None:
    storage.insert_plan(singleton_plan("first", "k"))
    with pytest.raises(RuntimeError), storage.transaction():
        assert stop(storage, "first")
        assert storage.singleton_holder("k") is None  # released inside the transaction
        raise RuntimeError("roll back")
    assert storage.singleton_holder("k") == "first"
    with pytest.raises(SingletonActive):
        storage.insert_plan(singleton_plan("second", "k"))


def test_a_batch_stopping_a_plan_releases_its_keys(storage: Storage) -> None:
    """The executor stops plans through write(): its fast path too gives the keys back."""
    storage.insert_plan(singleton_plan("first", "k"))
    update = PlanUpdate(
        "first", frozenset({PlanState.PLANNED}), {"state": PlanState.STOPPED}, owner=None
    )
    result = storage.write(Batch(plans=[update]))
    assert result.plan_conflicts == []
    assert storage.singleton_holder("k") is None


def test_one_plan_may_hold_a_key_twice(storage: Storage) -> None:
    storage.insert_plan(singleton_plan("first", "k", "k"))
    assert storage.singleton_holder("k") == "first"


def test_a_plan_with_the_same_id_or_idempotency_key_takes_no_singleton(storage: Storage) -> None:
    storage.insert_plan(replace(singleton_plan("first", "k1"), plan=make_plan("first").plan))
    taken = replace(make_plan("other", key="idem"), singletons=["k2"])
    storage.insert_plan(taken)
    with pytest.raises(ConcurrentModification):
        storage.insert_plan(replace(make_plan("again", key="idem"), singletons=["k3"]))
    assert storage.singleton_holder("k3") is None


def test_idempotency_arguments_come_back_as_stored(storage: Storage) -> None:
    call = {"action": "app.Root", "args": [1, "ü"], "kwargs": {"when": {"day": [1, 2.5]}}}
    new = make_plan("keyed", key="nightly-1")
    storage.insert_plan(replace(new, plan=replace(new.plan, key_arguments=call)))
    assert storage.get_plan_record("keyed").key_arguments == call
    found = storage.find_plan_by_key("nightly-1")
    assert found is not None and found.key_arguments == call
    storage.insert_plan(make_plan("plain"))
    assert storage.get_plan_record("plain").key_arguments is None


def test_a_key_left_by_a_stopped_plan_is_taken_over(sql_storage: SQLStorage) -> None:
    """A row written by something other than dynaflow (the plan stopped without releasing)."""
    sql_storage.insert_plan(make_plan("old"))
    assert stop(sql_storage, "old")
    with sql_storage.transaction() as conn:
        conn.execute(insert(tables.singletons).values(key="k", plan_id="old"))
    assert sql_storage.singleton_holder("k") is None
    sql_storage.insert_plan(singleton_plan("new", "k"))
    assert sql_storage.singleton_holder("k") == "new"


@pytest.mark.postgres
def test_two_transactions_taking_one_key_at_once_one_wins(
    pg_storage_url: str, pg_admin: Engine
) -> None:
    """The second insert runs while the first's transaction is open: it waits on the key in
    the database and fails once the first commits (no read before the write decides)."""
    storages = [SQLStorage(pg_storage_url), SQLStorage(pg_storage_url)]
    first_inserted = threading.Event()
    outcome: list[object] = []

    def second() -> None:
        first_inserted.wait(10)
        try:
            storages[1].insert_plan(singleton_plan("second", "k"))
            outcome.append("inserted")
        except SingletonActive as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        with storages[0].transaction():
            storages[0].insert_plan(singleton_plan("first", "k"))
            first_inserted.set()
            wait_for_a_lock_wait(pg_admin)  # the second insert waits on the first's key
        thread.join(10)
        (error,) = outcome
        assert isinstance(error, SingletonActive) and error.plan_id == "first"
        assert storages[1].singleton_holder("k") == "first"
        assert storages[1].count_plans() == 1
    finally:
        first_inserted.set()
        thread.join(10)
        for storage in storages:
            storage.close()


def wait_for_a_lock_wait(admin: Engine, timeout: float = 10.0) -> None:
    """Until some backend waits on a lock for an insert into dynaflow_singletons (bounded)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query ILIKE '%dynaflow_singletons%'"
    )
    deadline = time.monotonic() + timeout
    with admin.connect() as conn:
        while conn.execute(query).scalar_one() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the second insert never waited on the first's key")
            time.sleep(0.01)
