"""The follower (futures of plans other worlds run): what it reads, and how often. A world that
triggers many plans follows each one; a new one, or a notification, must not make it read
every plan it follows, and one look reads them all at once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from dynaflow.exceptions import UnknownPlan
from dynaflow.executor import PlanFuture
from dynaflow.following import Follower
from dynaflow.persistence import MemoryStorage
from dynaflow.persistence.base import RequestRow
from dynaflow.states import PlanResult, PlanState

from .test_storage import T0, make_plan

WAIT = 10


class Counting(MemoryStorage):
    """Records the plan ids of each read of plan rows; no periodic look (an hour apart)."""

    poll_interval = 3600.0

    def __init__(self) -> None:
        super().__init__()
        self.looks: list[list[str]] = []
        self.looked = threading.Condition()

    def plan_records(self, plan_ids: Sequence[str]) -> Any:
        with self.looked:
            self.looks.append(list(plan_ids))
            self.looked.notify_all()
        return super().plan_records(plan_ids)

    def wait_for_look(self, count: int) -> list[str]:
        """The ``count``-th read (1-based), once it has happened."""
        with self.looked:
            assert self.looked.wait_for(lambda: len(self.looks) >= count, WAIT)
            return self.looks[count - 1]


def plans(storage: MemoryStorage, n: int) -> list[str]:
    ids = []
    for i in range(n):
        new = make_plan(f"plan-{i:02}", state=PlanState.RUNNING)
        storage.insert_plan(new)
        ids.append(new.plan.id)
    return ids


def test_a_new_future_or_a_notification_reads_only_its_own_plan() -> None:
    storage = Counting()
    ids = plans(storage, 21)
    follower = Follower(storage)
    futures = {}
    try:
        for plan_id in ids[:20]:
            futures[plan_id] = PlanFuture(None, plan_id)  # type: ignore[arg-type]
            follower.follow(futures[plan_id])
        with storage.looked:  # the first looks (everything followed so far) are done
            assert storage.looked.wait_for(
                lambda: set().union(*map(set, storage.looks)) >= set(ids[:20]), WAIT
            )
            seen = len(storage.looks)

        futures[ids[20]] = PlanFuture(None, ids[20])  # type: ignore[arg-type]
        follower.follow(futures[ids[20]])
        assert storage.wait_for_look(seen + 1) == [ids[20]]

        storage.update_plan(ids[3], {"state": PlanState.STOPPED, "result": PlanResult.SUCCESS})
        follower.notified(f"p {ids[3]}")
        assert storage.wait_for_look(seen + 2) == [ids[3]]
        assert settled(futures[ids[3]])

        follower.notified(None)  # notifications may have been lost: one read for all
        assert sorted(storage.wait_for_look(seen + 3)) == sorted(set(ids) - {ids[3]})
    finally:
        follower.close()
    assert not any(futures[p].done() for p in ids if p != ids[3])


def settled(future: PlanFuture) -> bool:
    """Whether ``future`` resolves within the bound."""
    with future._condition:  # type: ignore[attr-defined]
        return bool(future._condition.wait_for(future.done, WAIT))  # type: ignore[attr-defined]


def test_an_answered_request_settles_its_future_and_is_deleted() -> None:
    storage = Counting()
    ended, running, failed = plans(storage, 3)
    storage.update_plan(ended, {"state": PlanState.STOPPED, "result": PlanResult.SUCCESS})
    rows = {
        p: RequestRow(p, kind, {}, T0, None, "client")
        for p, kind in ((ended, "execute"), (running, "execute"), (failed, "halt"))
    }
    for row in rows.values():
        storage.add_request(row)
    storage.take_requests("w1", 10)
    storage.answer_request(rows[ended].id or 0, None)
    storage.answer_request(rows[failed].id or 0, {"type": "InvalidState", "message": "no"})
    follower = Follower(storage)
    futures = {p: PlanFuture(None, p) for p in rows}  # type: ignore[arg-type]
    try:
        for plan_id, future in futures.items():
            follower.follow(future, rows[plan_id].id, rows[plan_id].kind)
        assert settled(futures[ended]) and settled(futures[failed])
    finally:
        follower.close()
    assert futures[ended].exception() is None
    assert "no" in str(futures[failed].exception())
    assert not futures[running].done()  # its request is not answered yet
    # the answered request is deleted; a failed one stays (the purge takes it)
    left = storage.get_requests([r.id or 0 for r in rows.values()])
    assert left.keys() == {rows[running].id, rows[failed].id}


def test_a_plan_that_does_not_exist_fails_its_future() -> None:
    storage = Counting()
    follower = Follower(storage)
    future = PlanFuture(None, "nope")  # type: ignore[arg-type]
    try:
        follower.follow(future)
        assert settled(future)
    finally:
        follower.close()
    with pytest.raises(UnknownPlan):
        future.result()
