"""The storage contract for requests between worlds and for queue limits, on every storage."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from dynaflow.exceptions import UnknownPlan
from dynaflow.persistence import Storage
from dynaflow.persistence.base import Batch, Claim, RequestRow
from dynaflow.persistence.sql import SQLStorage
from dynaflow.states import StepState

from .test_storage import T0, make_plan


def claims(storage: Storage, wanted: list[Claim]) -> tuple[set[tuple[str, int]], set]:
    """Write a batch of claims: (claimed, deferred)."""
    result = storage.write(Batch(claims=wanted))
    return result.claimed, result.deferred


def request(plan_id: str, kind: str = "execute", world: str | None = None) -> RequestRow:
    return RequestRow(plan_id, kind, {"abort": False}, T0, world, "client-1")


def test_requests_are_taken_once_oldest_first_by_the_world_they_are_for(
    storage: Storage,
) -> None:
    plan = make_plan()
    storage.insert_plan(plan)
    plan_id = plan.plan.id
    rows = [request(plan_id), request(plan_id, "cancel", "w2"), request(plan_id)]
    for row in rows:
        storage.add_request(row)
    assert [r.id for r in rows] == sorted(r.id or 0 for r in rows)
    taken = storage.take_requests("w1", 10)
    assert [r.id for r in taken] == [rows[0].id, rows[2].id]  # not the one for w2
    assert all(r.taken_by == "w1" and r.args == {"abort": False} for r in taken)
    assert storage.take_requests("w1", 10) == []
    (for_w2,) = storage.take_requests("w2", 10)
    assert for_w2.kind == "cancel"


def test_a_declined_request_is_kept_with_why_and_may_be_forwarded(storage: Storage) -> None:
    plan = make_plan()
    storage.insert_plan(plan)
    row = request(plan.plan.id)
    storage.add_request(row)
    assert row.id is not None
    storage.take_requests("w1", 10)
    storage.decline_request(row.id, "w1", "does not serve queue 'imports'")
    assert storage.take_requests("w1", 10, skip=[row.id]) == []
    (again,) = storage.open_requests()
    assert again.taken_by is None
    assert again.declined == {"w1": "does not serve queue 'imports'"}
    storage.take_requests("w1", 10)
    storage.decline_request(row.id, "w1", "the plan runs elsewhere", forward_to="w3")
    assert storage.take_requests("w2", 10) == []
    (forwarded,) = storage.take_requests("w3", 10)
    assert forwarded.world_id == "w3"


def test_answers_released_and_purged_requests(storage: Storage) -> None:
    plan = make_plan()
    storage.insert_plan(plan)
    first, second = request(plan.plan.id), request(plan.plan.id, "halt", "dead")
    storage.add_request(first)
    storage.add_request(second)
    assert first.id is not None and second.id is not None
    storage.take_requests("dead", 10)
    assert storage.release_requests("dead") == 2  # taken by it, and addressed to it
    assert {r.world_id for r in storage.open_requests()} == {None}
    storage.take_requests("w1", 10)
    storage.answer_request(first.id, {"type": "InvalidState", "message": "stopped"})
    answered = storage.get_request(first.id)
    assert answered is not None and answered.answered_at is not None
    assert answered.error == {"type": "InvalidState", "message": "stopped"}
    assert [r.id for r in storage.open_requests()] == [second.id]
    assert storage.purge_requests(answered.answered_at + timedelta(seconds=1)) == 1
    assert storage.get_request(first.id) is None
    storage.delete_requests([second.id, 12345])
    assert storage.open_requests() == []


def test_requests_are_read_many_at_once(storage: Storage) -> None:
    plan = make_plan()
    storage.insert_plan(plan)
    rows = [request(plan.plan.id, kind) for kind in ("execute", "halt", "cancel")]
    for row in rows:
        storage.add_request(row)
    ids = [row.id or 0 for row in rows]
    storage.take_requests("w1", 1)
    storage.answer_request(ids[0], None)
    storage.delete_requests([ids[2]])

    found = storage.get_requests([ids[1], ids[0], 99999, ids[2], ids[1]])

    assert set(found) == {ids[0], ids[1]}
    assert found == {i: storage.get_request(i) for i in ids[:2]}
    assert found[ids[0]].answered_at is not None and found[ids[1]].kind == "halt"
    assert storage.get_requests([]) == {}


def test_a_request_for_an_unknown_plan_is_refused(storage: Storage) -> None:
    with pytest.raises(UnknownPlan):
        storage.add_request(request("no-such-plan"))
    assert storage.open_requests() == []


def test_a_request_goes_with_its_plan(storage: Storage) -> None:
    plan = make_plan()
    with storage.transaction():
        storage.insert_plan(plan)
        storage.add_request(request(plan.plan.id))
    with pytest.raises(RuntimeError), storage.transaction():
        other = make_plan()
        storage.insert_plan(other)
        storage.add_request(request(other.plan.id))
        raise RuntimeError("rolled back")
    assert [r.plan_id for r in storage.open_requests()] == [plan.plan.id]


def test_a_limited_queue_claims_only_as_many_as_it_has_room_for(storage: Storage) -> None:
    plan = make_plan(steps=5)
    plan.steps[:] = [replace(step, queue="capped") for step in plan.steps]
    storage.insert_plan(plan)
    plan_id = plan.plan.id
    assert storage.queue_room("capped") is None  # not declared: no limit
    storage.declare_queue("capped", 3)
    assert storage.queue_limits() == {"capped": 3}
    pending = frozenset({StepState.PENDING})
    first = claims(storage, [Claim(plan_id, [1, 2], pending, "w", T0, queue="capped")])
    assert first == ({(plan_id, 1), (plan_id, 2)}, set())
    second = claims(storage, [Claim(plan_id, [3, 4, 5], pending, "w", T0, queue="capped")])
    assert second == ({(plan_id, 3)}, {(plan_id, 4), (plan_id, 5)})
    assert storage.queue_room("capped") == 0
    assert storage.queue_counts()["capped"] == {"running": 3, "pending": 2}
    storage.declare_queue("capped", None)
    assert storage.queue_room("capped") is None


def test_two_worlds_racing_for_the_last_room_do_not_both_win(sql_storage: SQLStorage) -> None:
    plans = [make_plan(steps=1) for _ in range(8)]
    for plan in plans:
        plan.steps[0] = replace(plan.steps[0], queue="one")
        sql_storage.insert_plan(plan)
    sql_storage.declare_queue("one", 1)
    pending = frozenset({StepState.PENDING})
    start = threading.Barrier(len(plans))
    won: list[str] = []

    def claim(plan_id: str) -> None:
        start.wait()
        claimed, _ = claims(sql_storage, [Claim(plan_id, [1], pending, "w", T0, queue="one")])
        won.extend(p for p, _ in claimed)

    threads = [threading.Thread(target=claim, args=(p.plan.id,)) for p in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(won) == 1
